"""The run state machine: allowed moves, refused moves that change nothing, and locking."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from orchestration import lifecycle
from orchestration.models import AuditEvent, Run
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot

S = Run.Status


@pytest.fixture
def run(operator):
    version = snapshot(registry.get("financial_reporting"))
    return Run.objects.create(
        workflow_version=version,
        workflow_name="financial_reporting",
        requested_by=operator,
        input={"date": "2026-11-20"},
    )


def test_every_status_has_a_rule_and_final_states_are_dead_ends():
    assert set(lifecycle.ALLOWED) == set(S.values)
    for status in Run.FINAL:
        assert lifecycle.ALLOWED[status] == frozenset()


def test_allowed_path_sets_timestamps_and_audits(run, monkeypatch):
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(run_id),
    )
    lifecycle.transition(run.pk, S.AWAITING_APPROVAL)
    lifecycle.transition(run.pk, S.APPROVED, actor="manager")
    with pytest.MonkeyPatch.context():
        from django.test import TestCase

        with TestCase.captureOnCommitCallbacks(execute=True):
            lifecycle.transition(run.pk, S.QUEUED)
    run.refresh_from_db()
    assert run.status == S.QUEUED and run.queued_at is not None
    assert enqueued == [run.pk]
    lifecycle.transition(run.pk, S.RUNNING)
    lifecycle.transition(run.pk, S.SUCCEEDED, result={"ok": True})
    run.refresh_from_db()
    assert run.started_at and run.finished_at and run.result == {"ok": True}
    kinds = list(AuditEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == [
        "run.awaiting_approval",
        "run.approved",
        "run.queued",
        "run.running",
        "run.succeeded",
    ]


@pytest.mark.parametrize("target", [S.RUNNING, S.SUCCEEDED, S.APPROVED, S.AWAITING_REVIEW])
def test_invalid_transition_raises_clearly_and_changes_nothing(run, target):
    before = AuditEvent.objects.count()
    with pytest.raises(
        lifecycle.InvalidTransition, match=f"is requested and cannot become {target}"
    ):
        lifecycle.transition(run.pk, target)
    run.refresh_from_db()
    assert run.status == S.REQUESTED
    assert AuditEvent.objects.count() == before


def test_final_run_refuses_everything(run):
    lifecycle.transition(run.pk, S.CANCELLED)
    with pytest.raises(lifecycle.InvalidTransition, match="it is final"):
        lifecycle.transition(run.pk, S.QUEUED)


def test_transition_cannot_set_status_or_arbitrary_fields(run):
    with pytest.raises(TypeError):
        lifecycle.transition(run.pk, S.QUEUED, cost_usd=0)


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_approvals_approve_once(run):
    lifecycle.transition(run.pk, S.AWAITING_APPROVAL)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve() -> None:
        barrier.wait()
        try:
            lifecycle.transition(run.pk, S.APPROVED, actor="manager")
            outcomes.append("approved")
        except lifecycle.InvalidTransition:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["approved", "refused"]
    assert AuditEvent.objects.filter(run=run, kind="run.approved").count() == 1
