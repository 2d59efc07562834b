"""The fan-out job's shortened path between its two calls (issue 13, section 6): the JSONL
line's mark rides on the job's next write, a passing verdict settles the job in the same
write, and the threads-pool worker's GIL switch interval."""

from __future__ import annotations

import json
import sys
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency import thread as celery_thread

import tests.workflows_for_tests as probes
from config import celery as celery_config
from orchestration.fanout import artifacts, jobs
from orchestration.fanout.models import FanoutJob
from orchestration.models import AuditEvent, ModelCall, Run
from reviews.escalation import pause_if_running
from reviews.models import EscalationTicket
from tests import test_fanout

S = Run.Status
J = FanoutJob.Status
# The fan-out tests' fixtures: the settings, and a run driven in this process.
_fanout_settings = test_fanout._fanout_settings
drive_fanout = test_fanout.drive_fanout


def _raw_lines(run: Run) -> Counter:
    """(job_id, attempt) -> how many lines the artifact holds (read_lines drops repeats)."""
    with open(artifacts.path_for(run.pk), encoding="utf-8") as fh:
        return Counter((line["job_id"], line["attempt"]) for line in map(json.loads, fh))


def test_each_attempt_is_one_line_and_the_row_records_it_with_the_verdict(
    seeded, drive_fanout
) -> None:
    probes.FANOUT_SEEN.clear()
    run = drive_fanout(drive_fanout.start({"n": 6, "fail_once": ["j001"]}))
    assert run.status == S.SUCCEEDED, run.error
    jobs_ = {j.job_id: j for j in FanoutJob.objects.filter(run=run)}
    assert {j.status for j in jobs_.values()} == {J.SUCCEEDED}
    for job in jobs_.values():
        assert job.logged_attempt == job.verdict_attempt == job.output_attempt == job.attempts
        assert job.verdict == FanoutJob.Verdict.PASS
    assert jobs_["j001"].attempts == 2
    expected = {(f"j{i:03d}", 1): 1 for i in range(6)} | {("j001", 2): 1}
    assert _raw_lines(run) == expected
    # Settled once each, with every call it made as evidence.
    for job in jobs_.values():
        event = AuditEvent.objects.get(
            run=run, kind="fanout.job.passed", payload__job_id=job.job_id
        )
        ids = {e["id"] for e in event.payload["evidence"] if e["model"].endswith("modelcall")}
        assert ids == {
            str(pk) for pk in ModelCall.objects.filter(job=job).values_list("pk", flat=True)
        }
        assert event.payload["cost_usd"] == str(job.cost_usd)


def test_a_job_handed_back_after_its_line_keeps_the_mark_and_does_not_write_it_twice(
    seeded, drive_fanout, monkeypatch, manager
) -> None:
    """The run pauses after j002's line is written and before its validator call: the
    handback writes the line's mark, so the resumed job goes on to its validator without
    appending the line again."""
    from reviews.resolutions import resolve

    real = jobs.schema_errors
    paused: dict[str, Any] = {}

    def pause_before_j002s_validator(value: Any, schema: Any) -> list[str]:
        if value == {"value": "j002"} and not paused:
            job = FanoutJob.objects.get(job_id="j002", run__workflow_name="fanout_probe")
            paused["run"] = job.run_id
            pause_if_running(job.run_id, EscalationTicket.Reason.BUDGET_EXCEEDED, "paused (test)")
            paused["logged"] = FanoutJob.objects.get(pk=job.pk).logged_attempt
        return real(value, schema)

    monkeypatch.setattr(jobs, "schema_errors", pause_before_j002s_validator)
    probes.FANOUT_SEEN.clear()
    run = drive_fanout(drive_fanout.start({"n": 4}), threads=1)
    assert run.status == S.AWAITING_REVIEW
    j002 = FanoutJob.objects.get(run=run, job_id="j002")
    # While it ran, the mark was not yet on the row; the handback wrote it.
    assert paused["logged"] == 0
    assert (j002.status, j002.logged_attempt, j002.verdict_attempt) == (J.QUEUED, 1, 0)
    resolve(run.tickets.get().pk, manager, "resume", note="go on")
    run = drive_fanout(run)
    assert run.status == S.SUCCEEDED, run.error
    assert _raw_lines(run) == {(f"j{i:03d}", 1): 1 for i in range(4)}
    assert ModelCall.objects.filter(job=j002, role="specialist").count() == 1
    assert ModelCall.objects.filter(job=j002, role="validator", status="ok").count() == 1


@pytest.mark.parametrize(
    ("pool", "threads"),
    [
        ("threads", True),
        (celery_thread.TaskPool, True),
        ("prefork", False),
        (None, False),
    ],
)
def test_only_a_threads_pool_worker_shortens_the_switch_interval(settings, pool, threads) -> None:
    settings.FANOUT_THREADS_SWITCH_INTERVAL = 0.0005
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        celery_config._switch_interval_for_threads(sender=SimpleNamespace(pool_cls=pool))
        assert sys.getswitchinterval() == pytest.approx(0.0005 if threads else 0.005)
    finally:
        sys.setswitchinterval(before)


def test_a_zero_switch_interval_keeps_pythons(settings) -> None:
    settings.FANOUT_THREADS_SWITCH_INTERVAL = 0
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        celery_config._switch_interval_for_threads(sender=SimpleNamespace(pool_cls="threads"))
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


def test_a_job_that_passes_first_time_makes_at_most_38_statements(
    seeded, drive_fanout, monkeypatch, settings
) -> None:
    """What a job costs the database between its claim and its settle event (its two calls'
    reservations, charges and audit events included; the fan-in is not counted): 38
    statements for a first-time pass (50 before issue 13's fan-out work)."""
    from django.db import connection

    counts: dict[int, int] = {}
    real = jobs.run_job

    def counted(pk: int) -> Any:
        seen = []

        def count(execute, sql, params, many, context):
            seen.append(sql)
            return execute(sql, params, many, context)

        try:
            with connection.execute_wrapper(count):
                return real(pk)
        finally:
            counts[pk] = len(seen)

    monkeypatch.setattr(jobs, "run_job", counted)
    settings.LLM_STREAM_PERSIST_SECONDS = 0  # no partial answer written mid-stream
    probes.FANOUT_SEEN.clear()
    run = drive_fanout(drive_fanout.start({"n": 4}), threads=1)
    assert run.status == S.SUCCEEDED, run.error
    assert len(counts) == 4
    assert max(counts.values()) <= 38, counts
