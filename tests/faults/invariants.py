"""What must hold after every fault scenario, checked from the database, and the counts.

After the faults stop, every run must reach a correct final or paused state on its own
(paused = awaiting_review with an open ticket that carries the context), every tool_use must
have been accepted at most once and its side effect applied exactly once in the demo
warehouse, the audit chain must verify (the verify_audit command), and the reapers must
find nothing left to re-queue.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DatabaseError, connections
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.models import ModelCall, Run, ToolCall
from reviews.models import EscalationTicket
from warehouse.models import AuditLogEntry, PaymentDecision, PublishedReport

S = Run.Status
TC = ToolCall.Status
# The tools whose handlers write to the demo warehouse, and where (keyed by the tool_use_id).
SIDE_EFFECTS = {
    "publish_report": PublishedReport,
    "audit_log": AuditLogEntry,
    "probe": AuditLogEntry,
    "record_decision": PaymentDecision,
}
SETTLED = (*Run.FINAL, S.AWAITING_REVIEW)

# Filled by each scenario; printed and written by conftest.pytest_terminal_summary.
SUMMARY: list[Tally] = []


@dataclass
class Tally:
    scenario: str
    faults: str
    runs: int = 0
    succeeded: int = 0
    paused: int = 0
    failed: int = 0
    sdk_retries: int = 0
    model_retries: int = 0
    tool_retries: int = 0
    interrupted: int = 0
    tools_executed: int = 0
    side_effects: int = 0
    duplicates: int = 0
    chain_ok: bool = False
    audit_events: int = 0
    stuck: int = 0
    reaped: int = 0
    broker_unavailable: int = 0
    database_away: int = 0
    seconds: float = 0.0
    pause_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reconnect() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()


def wait_settled(runs: list[Run], timeout: float, worker_log: Path | None = None) -> None:
    """Wait until every run is final or paused; survives the database being away meanwhile.

    A run still moving at the deadline fails the scenario with what a person would look at
    first: each stuck run's lease and last write, its fan-out phase and jobs by status (with
    their leases), its pending calls, and the tail of the workers' log."""
    ids = [r.pk for r in runs]
    deadline = time.monotonic() + timeout
    left: list[Any] = ids
    while time.monotonic() < deadline:
        try:
            left = list(
                Run.objects.filter(pk__in=ids)
                .exclude(status__in=SETTLED)
                .values_list("pk", "status")
            )
        except DatabaseError:
            _reconnect()
            time.sleep(0.5)
            continue
        if not left:
            return
        time.sleep(0.25)
    raise AssertionError(
        f"{len(left)} run(s) not final or paused after {timeout:g}s: {left}\n"
        + stuck_report([pk for pk, _ in left], worker_log)
    )


def stuck_report(run_ids: list[Any], worker_log: Path | None = None, log_lines: int = 80) -> str:
    """What the database says about runs that did not settle, and the log's last lines."""
    now = timezone.now()
    lines: list[str] = []
    for run in Run.objects.filter(pk__in=run_ids):
        lease = run.lease_expires_at and f"{(run.lease_expires_at - now).total_seconds():+.1f}s"
        lines.append(
            f"run {run.pk}: {run.status}, lease {lease or 'none'}, "
            f"updated {(now - run.updated_at).total_seconds():.1f}s ago"
        )
        fan = Fanout.objects.filter(run=run).first()
        if fan is not None:
            lines.append(
                f"  fan-out phase {fan.phase}, updated {(now - fan.updated_at).total_seconds():.1f}s ago"
            )
            by_status = Counter(FanoutJob.objects.filter(run=run).values_list("status", flat=True))
            lines.append(f"  jobs: {dict(by_status)}")
            for job in FanoutJob.objects.filter(run=run, status__in=("queued", "running")).order_by(
                "seq"
            )[:10]:
                job_lease = (
                    job.lease_expires_at and f"{(job.lease_expires_at - now).total_seconds():+.1f}s"
                )
                lines.append(
                    f"  job {job.pk} {job.job_id} {job.status} attempts {job.attempts} "
                    f"lease {job_lease or 'none'} owner {job.lease_owner or '-'}"
                )
        pending = ModelCall.objects.filter(run=run, status=ModelCall.Status.PENDING).count()
        lines.append(f"  pending model calls: {pending}")
    if worker_log is not None and worker_log.exists():
        tail = worker_log.read_text(errors="replace").splitlines()[-log_lines:]
        lines.append(f"last {len(tail)} lines of {worker_log}:")
        lines.extend(line[:300] for line in tail)
    return "\n".join(lines)


def check(
    scenario: str,
    faults: str,
    runs: list[Run],
    *,
    started: float,
    worker_log: Path,
    pause_reasons: tuple[str, ...] = (),
    expect_all_succeed: bool = False,
) -> Tally:
    """Assert every invariant over ``runs`` and record their counts under ``scenario``.

    ``worker_log`` (the scenario's workers' output) gives the recoveries: steps the reaper
    re-queued, steps not sent while the broker was down, steps cut short by the database.
    """
    from orchestration import engine
    from orchestration.fanout import coordinator

    ids = [r.pk for r in runs]
    tally = Tally(
        scenario=scenario,
        faults=faults,
        runs=len(ids),
        seconds=round(time.monotonic() - started, 1),
    )
    problems: list[str] = []
    reasons: Counter[str] = Counter()

    for run in Run.objects.filter(pk__in=ids):
        if run.status == S.SUCCEEDED:
            tally.succeeded += 1
            problems += _result_problems(run)
        elif run.status == S.AWAITING_REVIEW:
            tally.paused += 1
            ticket = run.tickets.filter(
                status__in=(EscalationTicket.Status.OPEN, EscalationTicket.Status.CLAIMED)
            ).first()
            if ticket is None:
                problems.append(f"run {run.pk} is awaiting review without an open ticket")
                continue
            reasons[ticket.reason] += 1
            if not ticket.context.get("model_calls") and not ticket.context.get("input"):
                problems.append(f"run {run.pk}: ticket {ticket.pk} has no context")
            if ticket.reason not in pause_reasons:
                problems.append(f"run {run.pk} paused for {ticket.reason}: {ticket.message}")
        elif run.status == S.FAILED:
            tally.failed += 1
            problems.append(f"run {run.pk} failed: {run.error}")
        else:
            problems.append(f"run {run.pk} ended {run.status}")
        if run.lease_expires_at is not None:
            problems.append(f"run {run.pk} ({run.status}) still holds a step lease")
    tally.pause_reasons = dict(reasons)
    if expect_all_succeed and tally.succeeded != tally.runs:
        problems.append(f"only {tally.succeeded} of {tally.runs} runs succeeded")

    calls = ModelCall.objects.filter(run_id__in=ids)
    if calls.filter(status=ModelCall.Status.PENDING).exists():
        problems.append("a model call of a settled run is still pending")
    tally.sdk_retries = (
        calls.aggregate(n=Sum(F("sdk_attempts") - 1, filter=Q(sdk_attempts__gt=1)))["n"] or 0
    )
    tally.model_retries = calls.filter(attempt__gt=1).count()
    tally.interrupted = calls.filter(error__startswith="interrupted").count()
    # Two answers recorded for one turn would mean two steps of a run overlapped.
    doubled = list(
        calls.filter(job__isnull=True, status=ModelCall.Status.OK)
        .values("run_id", "turn")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    tally.duplicates += len(doubled)
    problems += [
        f"run {d['run_id']} turn {d['turn']} has {d['n']} recorded answers" for d in doubled
    ]
    # Fan-out: every job finished, each job attempt answered once per role.
    from orchestration.fanout.models import FanoutJob

    unfinished = (
        FanoutJob.objects.filter(run_id__in=ids).exclude(status__in=FanoutJob.FINAL).count()
    )
    if unfinished:
        problems.append(f"{unfinished} fan-out job(s) of settled runs not finished")
    job_doubles = list(
        calls.filter(job__isnull=False, status=ModelCall.Status.OK)
        .values("job_id", "role", "turn")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    tally.duplicates += len(job_doubles)
    problems += [
        f"job {d['job_id']} {d['role']} attempt {d['turn']} answered {d['n']} times"
        for d in job_doubles
    ]
    log = worker_log.read_text(errors="replace") if worker_log.exists() else ""
    tally.reaped = log.count("re-queueing stalled run")
    tally.broker_unavailable = log.count("broker unavailable, step not sent")
    tally.database_away = log.count("step interrupted: the database went away")

    tools = ToolCall.objects.filter(run_id__in=ids)
    tally.tool_retries = tools.filter(attempt__gt=1).count()
    tally.interrupted += tools.filter(error__startswith="interrupted").count()
    if tools.filter(status=TC.RUNNING).exists():
        problems.append("a tool call of a settled run is still running")
    accepted = tools.filter(status__in=(TC.OK, TC.CORRECTED))
    tally.tools_executed = accepted.count()
    twice = list(accepted.values("run_id", "tool_use_id").annotate(n=Count("id")).filter(n__gt=1))
    tally.duplicates += len(twice)
    problems += [
        f"tool_use {d['tool_use_id']} of run {d['run_id']} accepted {d['n']} times" for d in twice
    ]

    # Side effects, counted where they land: one warehouse row per accepted side-effecting
    # tool_use, and no row for a tool_use that was never accepted (or repeated under a new key).
    for model in {*SIDE_EFFECTS.values()}:
        names = [n for n, m in SIDE_EFFECTS.items() if m is model]
        keys = set(tools.filter(name__in=names).values_list("tool_use_id", flat=True))
        accepted_keys = set(accepted.filter(name__in=names).values_list("tool_use_id", flat=True))
        rows = Counter(
            model.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True)
        )
        tally.side_effects += sum(rows.values())
        missing = accepted_keys - set(rows)
        if missing:
            problems.append(
                f"{model.__name__}: accepted {names} call(s) without their side effect: {sorted(missing)[:3]}"
            )
        extra = [k for k, n in rows.items() if n > 1]
        tally.duplicates += len(extra)
    # Every warehouse row written during the scenario belongs to a tool_use of these runs.
    all_keys = set(tools.values_list("tool_use_id", flat=True))
    for model in {*SIDE_EFFECTS.values()}:
        strays = model.objects.exclude(idempotency_key__in=all_keys).count()
        if strays:
            tally.duplicates += strays
            problems.append(f"{strays} {model.__name__} row(s) keyed by no tool_use of these runs")

    out = io.StringIO()
    call_command("verify_audit", stdout=out)  # raises CommandError when the chain is broken
    tally.chain_ok = out.getvalue().startswith("OK:")
    tally.audit_events = int(out.getvalue().split(": ")[-1].split()[0]) if tally.chain_ok else 0
    if not tally.chain_ok:
        problems.append(f"verify_audit: {out.getvalue().strip()}")

    tally.stuck = engine.reap_stalled_runs() + coordinator.reap()
    if tally.stuck:
        problems.append(f"the reapers still found {tally.stuck} run(s)/job(s) to re-queue")

    SUMMARY.append(tally)
    assert not problems, f"{scenario}: " + "; ".join(problems[:10])
    return tally


def _result_problems(run: Run) -> list[str]:
    """A succeeded run's result must be the one its own accepted tool calls produced."""
    result = run.result or {}
    if run.workflow_name == "financial_reporting":
        published = run.tool_calls.filter(
            name="publish_report", status__in=(TC.OK, TC.CORRECTED)
        ).values_list("output", flat=True)
        reports = [(o or {}).get("report_id") for o in published]
        if len(reports) != 1 or result.get("report_id") != reports[0]:
            return [
                f"run {run.pk}: result report {result.get('report_id')} is not its one published report {reports}"
            ]
        if not PublishedReport.objects.filter(report_id=reports[0]).exists():
            return [f"run {run.pk}: report {reports[0]} is not in the reporting system"]
    elif run.workflow_name == "probe" and result != {"value": 7, "receipt": "RCPT-7"}:
        return [f"run {run.pk}: unexpected probe result {result}"]
    elif run.workflow_name == "pair" and result != {"done": True}:
        return [f"run {run.pk}: unexpected pair result {result}"]
    return []
