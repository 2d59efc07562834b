"""What the engine does when Redis or Postgres is away (fast checks; `make faults` crashes the
real services under running work).

An unreachable broker must not turn a committed start into an error: the step is left to
the reaper. A step whose database connection died must not escalate to a reviewer: it is
resumed from its last commit. A database error on a live connection is still a failure.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

import tests.workflows_for_tests  # noqa: F401 - registers the probe workflow
from config import celery_app
from orchestration import dispatch, engine
from orchestration.launch import start_run
from orchestration.models import Run
from reviews.models import EscalationTicket

S = Run.Status
REAL_ENQUEUE = dispatch.enqueue_step


def _refuse(*args, **kwargs):
    raise BrokerUnavailable("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_start_with_the_broker_down_commits_the_run_and_leaves_its_step_to_the_reaper(
    operator, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(celery_app, "send_task", _refuse)
    with (
        caplog.at_level(logging.WARNING, logger="orchestration.dispatch"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        run = start_run("probe", {"mode": "ok"}, operator)
    assert Run.objects.get(pk=run.pk).status == S.QUEUED
    assert "broker unavailable, step not sent; the reaper will send it" in caplog.text
    assert dispatch.enqueue_step(run.pk) is False


def test_the_reaper_counts_only_steps_it_really_sent(operator, monkeypatch):
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    run = start_run("probe", {"mode": "ok"}, operator)
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Run.objects.filter(pk=run.pk).update(updated_at=long_ago)

    monkeypatch.setattr(celery_app, "send_task", _refuse)
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", REAL_ENQUEUE)
    assert engine.reap_stalled_runs() == 0
    assert Run.objects.get(pk=run.pk).updated_at == long_ago  # not sent: tried again next round

    sent: list[str] = []
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, args, countdown=None: sent.append((name, args[0]))
    )
    assert engine.reap_stalled_runs() == 1
    assert sent == [("orchestration.tasks.advance_run", str(run.pk))]
    assert Run.objects.get(pk=run.pk).updated_at > long_ago


@pytest.mark.parametrize("went_away", [True, False], ids=["connection-lost", "live-connection"])
def test_a_database_error_mid_step(
    operator, monkeypatch, django_capture_on_commit_callbacks, went_away
):
    steps: list[tuple[str, float | None]] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: steps.append((str(run_id), countdown)),
    )
    run = start_run("probe", {"mode": "ok"}, operator)

    def lose_the_database(*step_args):  # the step body: (run, workflow, conversation)
        raise OperationalError("consuming input failed: server closed the connection unexpectedly")

    monkeypatch.setattr(engine, "_step", lose_the_database)
    monkeypatch.setattr(engine, "_database_went_away", lambda: went_away)
    # (The test's own transaction holds the connection: closing it is what a worker does.)
    monkeypatch.setattr(engine.connections, "close_all", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        engine.run_step(run.pk)
    run.refresh_from_db()
    tickets = EscalationTicket.objects.filter(run=run)
    if went_away:
        # An outage: no ticket, the lease is given back and the step comes again shortly.
        assert run.status == S.RUNNING and run.lease_expires_at is None
        assert not tickets.exists()
        assert steps[-1] == (str(run.pk), engine.DATABASE_RETRY_SECONDS)
    else:
        # A deadlock or a cancelled statement on a live connection: a failure for a human.
        assert run.status == S.AWAITING_REVIEW
        assert tickets.get().reason == EscalationTicket.Reason.TOOL_ERROR
        assert "OperationalError" in tickets.get().message


def test_fanout_slots_with_redis_down_hand_the_job_back_instead_of_failing_it(monkeypatch, caplog):
    import redis

    from orchestration.fanout import slots

    def down(*args, **kwargs):
        raise redis.exceptions.ConnectionError(
            "Error 111 connecting to 127.0.0.1:6379. Connection refused."
        )

    monkeypatch.setattr(slots, "try_acquire", down)
    with (
        pytest.raises(slots.NoSlot, match="fan-out slots unavailable"),
        slots.slot("job-1", wait_seconds=5),
    ):
        raise AssertionError("a slot was granted while Redis was down")

    # Redis went away during the call: the call's result stands, the slot's lease frees it.
    monkeypatch.setattr(slots, "try_acquire", lambda token: True)
    monkeypatch.setattr(slots, "release", down)
    ran = []
    with (
        caplog.at_level(logging.WARNING, logger="orchestration.fanout.slots"),
        slots.slot("job-2", wait_seconds=5),
    ):
        ran.append(True)
    assert ran == [True]
    assert "its lease frees it" in caplog.text
