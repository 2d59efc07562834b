"""SIGKILL a Celery worker mid-step, ten times, each at a different moment of a step.

Each kill takes the whole worker (main process, pool children and its beat) down at once, as
a machine or OOM kill would; a new worker is started and the next moment is set up. Runs of
earlier cycles recover while later cycles go on (their leases expire after 4 s, the reaper
re-queues them), so later kills also hit recovering runs at moments nobody chose. Then one
last worker drains everything and every invariant is checked.
"""

from __future__ import annotations

import time
from typing import Any

from orchestration.launch import start_run
from orchestration.models import ModelCall, Run, ToolCall
from tests.faults.conftest import FAST_RECOVERY, wait_until, worker_log
from tests.faults.invariants import check, wait_settled
from warehouse.models import AuditLogEntry

S = Run.Status
FR = {"date": "2026-11-20"}


def slow(turn: int, seconds: float = 3.0) -> list[dict[str, Any]]:
    return [{"fault": "slow", "turn": turn, "seconds": seconds}]


def _pending(run: Run, turn: int) -> bool:
    return ModelCall.objects.filter(run=run, turn=turn, status=ModelCall.Status.PENDING).exists()


def _between_steps(run: Run) -> bool:
    run.refresh_from_db()
    return run.status == S.RUNNING and run.lease_expires_at is None and run.steps_taken >= 1


def test_sigkill_a_worker_mid_step_ten_times(request, operator_user, worker_factory):
    started = time.monotonic()
    runs: list[Run] = []
    kills: list[str] = []

    def start(
        workflow: str, run_input: dict[str, Any], faults: list[dict[str, Any]] | None = None
    ) -> Run:
        run = start_run(
            workflow,
            run_input,
            operator_user,
            options={"simulator_faults": faults} if faults else {},
        )
        assert run.status == S.QUEUED, run.status
        runs.append(run)
        return run

    def kill_when(worker: Any, moment: str, predicate: Any, timeout: float = 60) -> None:
        wait_until(predicate, timeout, moment)
        worker.kill()
        kills.append(moment)

    # 1. Between two steps: one process; T's first step is done (lease released, its next step
    #    is waiting in Redis) while the process is busy with B's slow model call.
    w = worker_factory(env=FAST_RECOVERY, concurrency=1)
    t = start("probe", {"mode": "ok"}, slow(0, 1.0))
    b = start("financial_reporting", FR, slow(0))
    kill_when(w, "between two steps", lambda: _between_steps(t) and _pending(b, 0))

    # 2. Before a run's first step was claimed: D is still queued behind C's slow call.
    w = worker_factory(env=FAST_RECOVERY, concurrency=1)
    c = start("financial_reporting", FR, slow(0))
    d = start("probe", {"mode": "ok"})
    kill_when(
        w,
        "before the first claim",
        lambda: _pending(c, 0) and Run.objects.get(pk=d.pk).status == S.QUEUED,
    )

    # 3. During the first model call of a run.
    w = worker_factory(env=FAST_RECOVERY)
    r = start("financial_reporting", FR, slow(1))
    kill_when(w, "during a model call (turn 1)", lambda: _pending(r, 1))

    # 4. During a model call after two tools (turn 3: after publish_report's side effect).
    w = worker_factory(env=FAST_RECOVERY)
    r = start("financial_reporting", FR, slow(3))
    kill_when(w, "during a model call after a side effect (turn 3)", lambda: _pending(r, 3))

    # 5. After a tool applied its side effect, before its attempt was recorded.
    w = worker_factory(env=FAST_RECOVERY)
    r = start("probe", {"mode": "sleepy_side_effect"})
    kill_when(
        w,
        "after a side effect, before it was recorded",
        lambda: (
            ToolCall.objects.filter(run=r, name="probe", status=ToolCall.Status.RUNNING).exists()
            and AuditLogEntry.objects.filter(
                idempotency_key__in=ToolCall.objects.filter(run=r, name="probe").values(
                    "tool_use_id"
                )
            ).exists()
        ),
    )

    # 6. While two tools of one turn run in parallel (before either returned).
    w = worker_factory(env=FAST_RECOVERY)
    r = start("pair", {})
    kill_when(
        w,
        "during two parallel tool calls",
        lambda: ToolCall.objects.filter(run=r, status=ToolCall.Status.RUNNING).count() == 2,
    )

    # 7. During the final answer's model call (turn 5), before the run could finish.
    w = worker_factory(env=FAST_RECOVERY)
    r = start("financial_reporting", FR, slow(5))
    kill_when(w, "during the final answer (turn 5)", lambda: _pending(r, 5))

    # 8. While the SDK waits out a 429's retry-after (3 s) before retrying.
    w = worker_factory(env=FAST_RECOVERY)
    r = start(
        "financial_reporting", FR, [{"fault": "rate_limit", "turn": 2, "times": 1, "seconds": 3}]
    )
    kill_when(w, "during the SDK's retry-after wait (429)", lambda: _pending(r, 2))

    # 9. Two steps at once, both mid model call (whichever two runs they are: runs of earlier
    #    cycles may hold a process, so these two are not guaranteed to overlap each other).
    w = worker_factory(env=FAST_RECOVERY)
    start("financial_reporting", FR, slow(2))
    start("financial_reporting", FR, slow(2))
    kill_when(
        w,
        "two steps at once (two model calls)",
        lambda: (
            ModelCall.objects.filter(run__in=runs, status=ModelCall.Status.PENDING).count() >= 2
        ),
    )

    # 10. A burst of five fast runs, killed once they are well under way.
    w = worker_factory(env=FAST_RECOVERY)
    burst = [start("financial_reporting", FR) for _ in range(3)] + [
        start("probe", {"mode": "ok"}) for _ in range(2)
    ]
    kill_when(
        w,
        "a burst of five runs mid-flight",
        lambda: Run.objects.filter(pk__in=[x.pk for x in burst], steps_taken__gte=2).count() >= 2,
    )

    assert len(kills) == 10
    worker_factory(env=FAST_RECOVERY)  # the survivor: its reaper and the broker finish everything
    wait_settled(runs, timeout=150, worker_log=worker_log(request))
    tally = check(
        "SIGKILL x10",
        f"10 SIGKILLs of the whole worker: {'; '.join(kills)}",
        runs,
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )
    assert tally.interrupted >= 5  # the kills really landed mid-step
