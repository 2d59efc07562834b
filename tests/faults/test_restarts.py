"""Redis and Postgres crash and come back while runs are mid-flight.

Both are killed the hard way (redis-server SIGKILLed, so whatever its append-only file had not
synced is gone; Postgres stopped with `-m immediate`, a crash that needs WAL recovery, with
synchronous_commit on so no commit the engine acted on is lost). Workers keep running and
must reconnect by themselves; whatever message or step the outage lost, the reaper finds.
"""

from __future__ import annotations

import time
from typing import Any

from orchestration.launch import start_run
from orchestration.models import Run
from tests.faults import services
from tests.faults.conftest import FAST_RECOVERY, wait_until, worker_log
from tests.faults.invariants import check, wait_settled

S = Run.Status
FR = {"date": "2026-11-20"}
OUTAGE_SECONDS = (
    3.0  # how long the service stays down (the fault's length, not a wait for anything)
)


def _batch(user: Any, n_reports: int = 6, n_probes: int = 2) -> list[Run]:
    # Slow model calls (0.8 s, on different turns) keep the runs mid-flight when the fault hits.
    runs = [
        start_run(
            "financial_reporting",
            FR,
            user,
            options={"simulator_faults": [{"fault": "slow", "turn": k % 5, "seconds": 0.8}]},
        )
        for k in range(n_reports)
    ]
    runs += [start_run("probe", {"mode": "sleepy_side_effect"}, user) for _ in range(n_probes)]
    return runs


def _mid_flight(runs: list[Run]) -> bool:
    return (
        Run.objects.filter(
            pk__in=[r.pk for r in runs], status=S.RUNNING, steps_taken__gte=2
        ).count()
        >= 3
    )


def test_redis_crash_and_restart_mid_run(request, operator_user, worker_factory):
    started = time.monotonic()
    worker_factory(env=FAST_RECOVERY, concurrency=3)
    runs = _batch(operator_user)
    wait_until(lambda: _mid_flight(runs), 60, "three runs mid-flight")

    services.crash_redis()
    # Started while the broker is down: the run is committed, its first step cannot be sent.
    # The start must not fail (the reaper sends it once Redis is back).
    late = start_run("probe", {"mode": "ok"}, operator_user)
    assert late.status == S.QUEUED
    time.sleep(OUTAGE_SECONDS)
    services.start_redis()

    wait_settled([*runs, late], timeout=120, worker_log=worker_log(request))
    check(
        "Redis crash + restart",
        f"redis-server SIGKILLed mid-run, down {OUTAGE_SECONDS:g}s, restarted; "
        "one run started during the outage",
        [*runs, late],
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )


def test_postgres_crash_and_restart_mid_run(request, operator_user, worker_factory):
    started = time.monotonic()
    worker_factory(env=FAST_RECOVERY, concurrency=3)
    runs = _batch(operator_user)
    wait_until(lambda: _mid_flight(runs), 60, "three runs mid-flight")

    services.crash_postgres()
    time.sleep(OUTAGE_SECONDS)
    services.start_postgres()
    # The web side reconnects too: a run started right after the restart goes through.
    late = start_run("probe", {"mode": "ok"}, operator_user)

    wait_settled([*runs, late], timeout=120, worker_log=worker_log(request))
    check(
        "Postgres crash + restart",
        f"pg_ctl stop -m immediate mid-run (synchronous_commit on), down "
        f"{OUTAGE_SECONDS:g}s, restarted; one run started just after",
        [*runs, late],
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )


def test_redis_crash_mid_fanout(request, operator_user, worker_factory, settings):
    """Fan-out leans on Redis twice: the job tasks and the global slot semaphore. 30 jobs,
    one retried after a FAIL verdict, with Redis SIGKILLed while calls are in flight."""
    from orchestration.fanout.models import FanoutJob

    started = time.monotonic()
    env = {
        **FAST_RECOVERY,
        "FANOUT_SLOT_LEASE_SECONDS": "8",
        "FANOUT_REAPER_INTERVAL_SECONDS": "1",
        "SIMULATOR_FIXED_LATENCY_SECONDS": "0.3",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "FANOUT_SLOT_KEY": settings.FANOUT_SLOT_KEY,
    }
    worker_factory(env=env, pool="threads", concurrency=12)
    run = start_run("fanout_probe", {"n": 30, "fail_once": ["j004"]}, operator_user)
    wait_until(
        lambda: FanoutJob.objects.filter(run=run, status=FanoutJob.Status.SUCCEEDED).count() >= 5,
        60,
        "five fan-out jobs done",
    )

    services.crash_redis()
    time.sleep(OUTAGE_SECONDS)
    services.start_redis()

    wait_settled([run], timeout=120, worker_log=worker_log(request))
    tally = check(
        "Redis crash mid fan-out",
        f"redis-server SIGKILLed while 30 fan-out jobs ran (threads pool, global slots in Redis), "
        f"down {OUTAGE_SECONDS:g}s, restarted",
        [run],
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.filter(status=FanoutJob.Status.SUCCEEDED).count() == 30
    assert tally.runs == 1


def test_redis_restarted_again_and_again_under_a_threads_pool(
    request, operator_user, worker_factory, settings
):
    """Eight Redis crashes in a row under a threads-pool worker with fan-out jobs in flight.
    Each tears the worker's broker connection down while late-acknowledged tasks hold
    deliveries. With kombu 5.7.0's own Redis transport, such a teardown can shut the worker
    down ("Unrecoverable error"; config/broker.py, pinned by tests/test_broker_transport.py)
    and leave runs running with nobody to run them, which is how "Redis crash mid fan-out"
    once failed in CI. It is a race: this scenario did not hit it in two runs without the
    fix, a bare 12-thread app did on its fifth crash. The worker must still be there at the
    end, and both runs finished."""
    from orchestration.fanout.models import FanoutJob

    started = time.monotonic()
    env = {
        **FAST_RECOVERY,
        "FANOUT_SLOT_LEASE_SECONDS": "8",
        "FANOUT_REAPER_INTERVAL_SECONDS": "1",
        "SIMULATOR_FIXED_LATENCY_SECONDS": "0.4",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "FANOUT_SLOT_KEY": settings.FANOUT_SLOT_KEY,
    }
    worker = worker_factory(env=env, pool="threads", concurrency=12)
    runs = [start_run("fanout_probe", {"n": 80}, operator_user) for _ in range(2)]
    wait_until(
        lambda: (
            FanoutJob.objects.filter(run__in=runs, status=FanoutJob.Status.SUCCEEDED).count() >= 3
        ),
        60,
        "three fan-out jobs done",
    )
    for _ in range(8):
        services.crash_redis()
        time.sleep(OUTAGE_SECONDS)
        services.start_redis()
        time.sleep(1.5)  # back long enough for the worker to reconnect and take work again
        assert worker.proc.poll() is None, f"the worker exited; see {worker_log(request)}"

    wait_settled(runs, timeout=150, worker_log=worker_log(request))
    assert worker.proc.poll() is None, f"the worker exited; see {worker_log(request)}"
    assert "Unrecoverable error" not in worker_log(request).read_text(errors="replace")
    tally = check(
        "Redis crash x8 (threads pool)",
        f"redis-server SIGKILLed eight times, {OUTAGE_SECONDS:g}s down and 1.5s up each, while two "
        "runs of 80 fan-out jobs ran on a threads pool",
        runs,
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )
    assert FanoutJob.objects.filter(run__in=runs, status=FanoutJob.Status.SUCCEEDED).count() == 160
    assert tally.runs == 2


def test_postgres_crash_mid_fanout(request, operator_user, worker_factory, settings):
    """Postgres crashes (pg_ctl stop -m immediate) while 40 fan-out jobs are in flight on a
    threads pool: calls answered while it is away cannot be recorded, job rows cannot move, the
    fan-in cannot lock the run. When it is back the run finishes: every job once, each job
    attempt answered once per role, every recorded answer charged once (the run's cost is the
    sum of its calls, each job's the sum of its own), nothing left reserved, the chain verifies."""
    from django.db.models import Sum

    from orchestration.fanout.models import FanoutJob
    from orchestration.models import ModelCall

    started = time.monotonic()
    env = {
        **FAST_RECOVERY,
        "FANOUT_SLOT_LEASE_SECONDS": "8",
        "FANOUT_REAPER_INTERVAL_SECONDS": "1",
        "SIMULATOR_FIXED_LATENCY_SECONDS": "0.4",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "FANOUT_SLOT_KEY": settings.FANOUT_SLOT_KEY,
    }
    worker_factory(env=env, pool="threads", concurrency=16)
    run = start_run("fanout_probe", {"n": 40, "fail_once": ["j004", "j031"]}, operator_user)
    wait_until(
        lambda: FanoutJob.objects.filter(run=run, status=FanoutJob.Status.SUCCEEDED).count() >= 6,
        60,
        "six fan-out jobs done",
    )
    in_flight = ModelCall.objects.filter(run=run, status=ModelCall.Status.PENDING).count()

    services.crash_postgres()
    time.sleep(OUTAGE_SECONDS)
    services.start_postgres()

    wait_settled([run], timeout=180, worker_log=worker_log(request))
    tally = check(
        "Postgres crash mid fan-out",
        f"pg_ctl stop -m immediate while 40 fan-out jobs ran ({in_flight} calls in flight; "
        f"threads pool), down {OUTAGE_SECONDS:g}s, restarted",
        [run],
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )
    assert tally.runs == 1 and tally.duplicates == 0
    run.refresh_from_db()
    jobs = FanoutJob.objects.filter(run=run)
    # Every job exactly once, each finished by one task: the two planted FAILs retried once.
    assert jobs.count() == 40 and jobs.filter(status=FanoutJob.Status.SUCCEEDED).count() == 40
    assert sorted(jobs.filter(attempts=2).values_list("job_id", flat=True)) == ["j004", "j031"]
    assert run.result["passed"] == 40 and run.result["echoed"] == [f"j{i:03d}" for i in range(40)]
    # Charged once: the run's spend is its recorded calls', each job's its own calls', and no
    # reservation is left behind by a call the crash cut off.
    calls = ModelCall.objects.filter(run=run)
    assert run.cost_usd > 0 and run.cost_usd == calls.aggregate(s=Sum("cost_usd"))["s"]
    for job in jobs:
        assert job.cost_usd == calls.filter(job=job).aggregate(s=Sum("cost_usd"))["s"], job.job_id
    assert run.reserved_usd == 0 and run.reserved_tokens == 0
    assert not calls.filter(status=ModelCall.Status.OK, cost_usd=0).exists()
    assert calls.filter(job__isnull=True, status=ModelCall.Status.OK).count() == 2
