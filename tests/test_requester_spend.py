"""The per-requester daily spend roll-up behind the approval queue (issue 13, part 6)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from costs import requester_spend
from costs.models import RequesterDailySpend
from orchestration.models import Run
from tests.audit_factories import workflow_version


def _run(user, days_ago: float, cost: str) -> Run:
    run = Run.objects.create(
        workflow_version=workflow_version(),
        workflow_name="financial_reporting",
        requested_by=user,
        input={},
        cost_usd=Decimal(cost),
    )
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(days=days_ago))
    return run


@pytest.fixture
def history(operator, reviewer):
    # Two days ago, ten days ago, 40 days ago (outside the window), and today.
    _run(operator, 2, "1.00")
    _run(operator, 10, "2.50")
    _run(operator, 40, "100.00")
    _run(reviewer, 3, "0.75")
    return operator, reviewer


def test_complete_days_come_from_the_roll_up_and_today_is_live(history):
    operator, reviewer = history
    written = requester_spend.refresh()
    assert written == 3  # one row per requester and day with runs in the window
    today = timezone.now().astimezone(dt.UTC).date()
    rows = RequesterDailySpend.objects.filter(requested_by=operator).order_by("day")
    assert [(r.runs, r.cost_usd) for r in rows] == [(1, Decimal("2.5")), (1, Decimal("1"))]
    assert {r.covered_through for r in RequesterDailySpend.objects.all()} == {
        today - dt.timedelta(days=1)
    }
    _run(operator, 0, "0.20")  # started after the rebuild: read live
    spend = requester_spend.recent_spend({operator.pk, reviewer.pk})
    assert (spend[operator.pk].runs, spend[operator.pk].cost_usd) == (3, Decimal("3.70"))
    assert (spend[reviewer.pk].runs, spend[reviewer.pk].cost_usd) == (1, Decimal("0.75"))


def test_the_queue_reads_the_roll_up_not_every_run(history):
    """The roll-up is what counts for complete days: a figure only it holds shows up."""
    operator, _ = history
    requester_spend.refresh()
    RequesterDailySpend.objects.filter(requested_by=operator).update(runs=7, cost_usd=Decimal("9"))
    spend = requester_spend.recent_spend({operator.pk})[operator.pk]
    assert (spend.runs, spend.cost_usd) == (14, Decimal("18"))


def test_without_a_rebuild_the_whole_window_is_read_live(history):
    operator, _ = history
    assert not RequesterDailySpend.objects.exists()
    spend = requester_spend.recent_spend({operator.pk})[operator.pk]
    assert (spend.runs, spend.cost_usd) == (2, Decimal("3.50"))


def test_days_after_the_last_rebuild_are_read_live(history):
    """Just after midnight (or with beat down for a day) the last rebuild covers less: the
    days after it are read from the runs, so no day is missing or counted twice."""
    operator, _ = history
    today = timezone.now().astimezone(dt.UTC).date()
    requester_spend.refresh(today=today - dt.timedelta(days=2))  # covers up to 3 days ago
    spend = requester_spend.recent_spend({operator.pk})[operator.pk]
    assert (spend.runs, spend.cost_usd) == (2, Decimal("3.50"))
    requester_spend.refresh()
    again = requester_spend.recent_spend({operator.pk})[operator.pk]
    assert again == spend


def test_a_later_charge_to_a_past_days_run_shows_after_the_next_rebuild(history):
    operator, _ = history
    requester_spend.refresh()
    Run.objects.filter(requested_by=operator, cost_usd=Decimal("1.00")).update(
        cost_usd=Decimal("1.50")
    )
    assert requester_spend.recent_spend({operator.pk})[operator.pk].cost_usd == Decimal("3.50")
    requester_spend.refresh()
    assert requester_spend.recent_spend({operator.pk})[operator.pk].cost_usd == Decimal("4.00")


def test_beat_rebuilds_it(history, settings):
    from costs.tasks import refresh_requester_spend

    entry = settings.CELERY_BEAT_SCHEDULE["refresh-requester-spend"]
    assert entry["task"] == "costs.tasks.refresh_requester_spend"
    assert entry["schedule"] == settings.REQUESTER_SPEND_REFRESH_SECONDS == 600.0
    assert refresh_requester_spend() == 3


def test_the_queue_page_shows_the_figure(client, manager, history, operator):
    """A pending request of the operator's shows their 30 days (roll-up plus today)."""
    from reviews.models import ApprovalRequest

    requester_spend.refresh()
    waiting = _run(operator, 0, "0.30")
    Run.objects.filter(pk=waiting.pk).update(status=Run.Status.AWAITING_APPROVAL)
    ApprovalRequest.objects.create(
        run=waiting,
        requested_by=operator,
        estimate_usd=Decimal("5"),
        threshold_usd=Decimal("1"),
        calculation={"basis": "test"},
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    client.force_login(manager)
    page = client.get(reverse("approval_queue")).content.decode()
    assert "3 runs, $3.80 in 30 days" in page
