"""Schedules on a real beat: a `celery worker -B` subprocess (beat embedded, on the database
scheduler) against the test database and Redis.

Beat last fired the schedule two days ago and went down. It comes back: the missed occurrence
runs once, through a real worker, to a final status. Beat is SIGKILLed and comes back again:
it sends nothing (it recorded that it fired). The same tick delivered once more finds the
occurrence claimed and starts nothing.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from orchestration.models import Run
from schedules import service
from schedules.models import Schedule, ScheduledTick
from schedules.tasks import tick
from tests.conftest import _user, wait_for

pytestmark = pytest.mark.worker
S = Run.Status


def _wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_beat_back_after_downtime_runs_the_missed_occurrence_once(seeded, worker_factory):
    manager, operator = _user("manager"), _user("operator")
    schedule = service.create(
        manager,
        {
            "name": "Nightly report",
            "workflow_name": "financial_reporting",
            "cron": "0 6 * * *",
            "timezone": "Australia/Sydney",
            "input_template": {"date": "2026-11-20"},
            "owner": operator,
        },
    )
    Schedule.objects.filter(pk=schedule.pk).update(
        active_since=timezone.now() - dt.timedelta(days=10)
    )
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(
        last_run_at=timezone.now() - dt.timedelta(days=2)
    )

    first = worker_factory()  # beat is back
    _wait_until(lambda: ScheduledTick.objects.filter(outcome="started").exists())
    run = wait_for(Run.objects.get(), (S.SUCCEEDED, S.FAILED, S.AWAITING_REVIEW))
    assert run.status == S.SUCCEEDED and run.requested_by == operator
    assert run.options["schedule"]["due_at"] == ScheduledTick.objects.get().due_at.isoformat()
    # Beat recorded at once that it fired (it syncs after its first send).
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.last_run_at > timezone.now() - dt.timedelta(minutes=5)
    first.kill()

    log = first.log
    before = len(log.read_bytes())
    worker_factory()  # beat back again: nothing is overdue now
    started = time.monotonic()
    _wait_until(lambda: b"beat: Starting" in log.read_bytes()[before:])
    time.sleep(max(0.0, 12 - (time.monotonic() - started)))  # beat's loop is at most 5 s
    assert b"Sending due task countersign-schedule-" not in log.read_bytes()[before:]

    # The same tick delivered again (a redelivery, a second beat by mistake): nothing starts.
    tick.delay(schedule.pk)
    _wait_until(lambda: b"Nightly report @" in log.read_bytes()[before:])
    assert Run.objects.count() == 1 and ScheduledTick.objects.count() == 1
    assert ScheduledTick.objects.get().run_id == run.pk
