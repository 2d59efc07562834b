"""Runs through a real Celery worker subprocess and Redis: the slice end to end, and crashes.

A worker is SIGKILLed mid-step; after a new worker starts, the reaper re-queues the run,
and every side effect has happened exactly once (counted in the demo warehouse, where the
side effects land, not in our own rows).
"""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from orchestration.models import ModelCall, Run, ToolCall
from tests.conftest import wait_for
from warehouse.models import AuditLogEntry, PublishedReport

pytestmark = pytest.mark.worker
S = Run.Status


def test_start_run_command_runs_to_success_on_a_worker(seeded, worker, capsys):
    call_command(
        "start_run",
        "financial_reporting",
        "--input",
        '{"date": "2026-11-20"}',
        "--user",
        "operator",
    )
    run = Run.objects.get(pk=capsys.readouterr().out.strip())
    run = wait_for(run, (S.SUCCEEDED, S.FAILED, S.AWAITING_REVIEW))
    assert run.status == S.SUCCEEDED, run.tickets.values_list("message", flat=True)
    assert run.model_calls.filter(status="ok").count() == 6
    assert run.tool_calls.filter(status="ok").count() == 5
    assert PublishedReport.objects.get().report_id == run.result["report_id"]
    assert run.steps_taken >= 6 and run.lease_expires_at is None


def _wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_sigkill_during_a_model_call_loses_nothing(seeded, worker_factory):
    from django.contrib.auth import get_user_model

    from orchestration.launch import start_run

    first = worker_factory()
    run = start_run(
        "financial_reporting",
        {"date": "2026-11-20"},
        get_user_model().objects.get(username="operator"),
        options={"simulator_faults": [{"fault": "slow", "turn": 4, "seconds": 3, "times": 1}]},
    )
    # Turn 4 asks for audit_log after publish_report ran: kill while it is in flight.
    _wait_until(lambda: ModelCall.objects.filter(run=run, turn=4, status="pending").exists())
    first.kill()
    worker_factory()  # a new worker; its beat runs the reaper once the lease expires
    run = wait_for(run, (S.SUCCEEDED, S.FAILED, S.AWAITING_REVIEW), timeout=90)
    assert run.status == S.SUCCEEDED
    interrupted = ModelCall.objects.get(run=run, turn=4, attempt=1)
    assert interrupted.status == "error" and "interrupted" in interrupted.error
    assert PublishedReport.objects.count() == 1
    assert AuditLogEntry.objects.count() == 1
    assert ToolCall.objects.filter(run=run, name="publish_report").count() == 1


def test_sigkill_after_a_side_effect_does_not_repeat_it(seeded, worker_factory):
    """The tool wrote its side effect, then the worker died before the attempt was recorded."""
    from django.contrib.auth import get_user_model

    import tests.workflows_for_tests  # noqa: F401
    from orchestration.launch import start_run

    first = worker_factory()
    run = start_run(
        "probe", {"mode": "sleepy_side_effect"}, get_user_model().objects.get(username="operator")
    )
    _wait_until(
        lambda: (
            AuditLogEntry.objects.exists()
            and ToolCall.objects.filter(run=run, name="probe", status="running").exists()
        )
    )
    first.kill()
    worker_factory()
    run = wait_for(run, (S.SUCCEEDED, S.FAILED, S.AWAITING_REVIEW), timeout=90)
    assert run.status == S.SUCCEEDED
    attempts = list(
        ToolCall.objects.filter(run=run, name="probe")
        .order_by("attempt")
        .values_list("status", flat=True)
    )
    assert attempts == ["error", "ok"]  # the interrupted attempt, then the repeat
    assert AuditLogEntry.objects.count() == 1  # ...which found the side effect already done
