"""Alert rules at their threshold edges (just below, at, just above), deduplication,
notification once, acknowledgement and resolution with audit events, and the user pause."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

import tests.workflows_for_tests  # noqa: F401 - registers the test workflows
from alerts import pauses, raising, rules
from alerts.models import Alert, AlertThresholds, UserPause
from costs.models import Budget
from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, Run
from tests import alert_factories as f
from tests.api_helpers import assert_documented, call, token_for

pytestmark = pytest.mark.django_db

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def keys(now: dt.datetime, rule: str) -> set[str]:
    return {x.key for x in rules.evaluate(now) if x.rule == rule}


@pytest.fixture
def operator():
    return f.person("op1", "operators")


@pytest.fixture
def manager():
    return f.person("boss", "managers")


# --- cost ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("today", "fires"), [("19.99", False), ("20.00", True), ("20.01", True)])
def test_cost_spike_day_over_day_at_its_edge(operator, today, fires):
    now = f.now()
    r = f.run(operator, "wf_cost")
    f.call(r, now - 2 * H, cost=today)
    f.call(r, now - D - 2 * H, cost="10.00")  # the day before: 2x is $20.00
    for day in range(2, 8):  # a high baseline, so only the day-over-day rule can fire
        f.call(r, now - day * D - 2 * H, cost="100")
    assert keys(now, Alert.Rule.COST_SPIKE) == ({"cost_spike:workflow:wf_cost"} if fires else set())
    assert keys(now, Alert.Rule.COST_BASELINE) == set()


@pytest.mark.parametrize(("today", "fires"), [("19.99", False), ("20.00", True), ("20.01", True)])
def test_cost_spike_against_the_rolling_baseline_at_its_edge(operator, today, fires):
    AlertThresholds.objects.update_or_create(
        workflow_name="wf_base", defaults={"cost_baseline_days": 4}
    )
    now = f.now()
    r = f.run(operator, "wf_base")
    f.call(r, now - H, cost=today)
    for day, cost in (
        (1, "16"),
        (2, "8"),
        (3, "8"),
        (4, "8"),
    ):  # mean $10; the day before alone: 2x = $32
        f.call(r, now - day * D - H, cost=cost)
    f.call(r, now - 6 * D, cost="1000")  # outside the 4-day baseline: not counted
    assert keys(now, Alert.Rule.COST_BASELINE) == (
        {"cost_baseline:workflow:wf_base"} if fires else set()
    )
    assert keys(now, Alert.Rule.COST_SPIKE) == set()


def test_cost_under_the_minimum_is_no_spike(operator):
    now = f.now()
    r = f.run(operator, "wf_cents")
    f.call(r, now - H, cost="0.90")  # 9x the day before, but under cost_min_usd ($1.00)
    f.call(r, now - D - H, cost="0.10")
    assert keys(now, Alert.Rule.COST_SPIKE) == set()


@pytest.mark.parametrize("evaluation", [True, False])
def test_an_evaluations_spend_is_no_cost_spike(operator, evaluation):
    # An evaluation runs a dataset's cases at once: its spend is on the costs page, not a
    # production spike. The same spend by a production run fires.
    now = f.now()
    prod = f.run(operator, "wf_eval_cost")
    f.call(prod, now - H, cost="10.00")
    for day in range(1, 8):  # $10 a day: day over day and against the baseline, 1x
        f.call(prod, now - day * D - H, cost="10.00")
    batch = f.run(operator, "wf_eval_cost")
    Run.objects.filter(pk=batch.pk).update(is_evaluation=evaluation)
    f.call(batch, now - 2 * H, cost="30.00")  # $40 today against $10: 4x
    expected = set() if evaluation else {"cost_spike:workflow:wf_eval_cost"}
    assert keys(now, Alert.Rule.COST_SPIKE) == expected
    assert keys(now, Alert.Rule.COST_BASELINE) == (
        set() if evaluation else {"cost_baseline:workflow:wf_eval_cost"}
    )


# --- latency -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p95", "fires"), [(1499, False), (1500, True), (1501, True)])
def test_latency_increase_at_its_edge(operator, p95, fires):
    AlertThresholds.objects.create(
        workflow_name="wf_lat", latency_min_calls=3, cost_baseline_days=2
    )
    now = f.now()
    r = f.run(operator, "wf_lat")
    for i in range(3):
        f.call(r, now - D - (i + 1) * H, latency_ms=1000)  # baseline p95: 1000 ms; ratio 1.5
        f.call(r, now - (i + 1) * H, latency_ms=p95)
    f.call(r, now - H, latency_ms=99_000, status="error")  # failed calls do not count
    found = [x for x in rules.evaluate(now) if x.rule == Alert.Rule.LATENCY]
    assert [x.key for x in found] == (["latency:workflow:wf_lat"] if fires else [])
    if fires:
        assert (
            found[0].numbers["current_p95_ms"] == p95
            and found[0].numbers["baseline_p95_ms"] == 1000
        )


def test_latency_needs_enough_calls(operator):
    AlertThresholds.objects.create(
        workflow_name="wf_few", latency_min_calls=3, cost_baseline_days=2
    )
    now = f.now()
    r = f.run(operator, "wf_few")
    for i in range(3):
        f.call(r, now - D - (i + 1) * H, latency_ms=1000)
    for i in range(2):  # 2 calls today: under latency_min_calls
        f.call(r, now - (i + 1) * H, latency_ms=9000)
    assert keys(now, Alert.Rule.LATENCY) == set()


# --- error rate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failed", "fires"), [(4, False), (5, False), (6, True)])
def test_error_rate_over_five_percent_at_its_edge(operator, failed, fires):
    # "Over a threshold": 5 of 100 is at 5% and does not fire; 6 of 100 does.
    now = f.now()
    f.runs_ended(operator, "wf_err", ok=100 - failed, failed=failed, when=now - H)
    f.runs_ended(
        operator, "wf_err", ok=0, failed=50, when=now - 25 * H
    )  # outside the 24-hour window
    found = [x for x in rules.evaluate(now) if x.rule == Alert.Rule.ERROR_RATE]
    assert [x.key for x in found] == (["error_rate:workflow:wf_err"] if fires else [])
    if fires:
        assert found[0].numbers["failed"] == 6 and found[0].numbers["ended"] == 100


def test_error_rate_threshold_is_per_workflow(operator):
    AlertThresholds.objects.create(workflow_name="wf_strict", error_rate_percent=Decimal("1.00"))
    now = f.now()
    f.runs_ended(operator, "wf_strict", ok=98, failed=2, when=now - H)
    f.runs_ended(operator, "wf_lenient", ok=98, failed=2, when=now - H)
    assert keys(now, Alert.Rule.ERROR_RATE) == {"error_rate:workflow:wf_strict"}


# --- retries and escalations over a window ----------------------------------------------------------


def _spread(end: dt.datetime, count: int, span: dt.timedelta) -> list[dt.datetime]:
    step = span / max(count - 1, 1)
    return [end - span + i * step for i in range(count)]


@pytest.mark.parametrize(("count", "fires"), [(99, False), (100, True), (101, True)])
def test_retry_burst_100_in_10_seconds_at_its_edge(operator, count, fires):
    now = f.now()
    r = f.run(operator, "wf_retry")
    f.retries(r, _spread(now - dt.timedelta(seconds=5), count, dt.timedelta(seconds=10)), tools=10)
    expected = (
        {f"retry_burst:user:{operator.pk}", "retry_burst:workflow:wf_retry"} if fires else set()
    )
    assert keys(now, Alert.Rule.RETRY_BURST) == expected


def test_retry_burst_window_is_10_seconds_not_more(operator):
    now = f.now()
    r = f.run(operator, "wf_retry")
    f.retries(r, _spread(now, 100, dt.timedelta(seconds=10.5)))  # 100 retries, but over 10.5 s
    assert keys(now, Alert.Rule.RETRY_BURST) == set()


@pytest.mark.parametrize(("count", "fires"), [(2, False), (3, True), (4, True)])
def test_escalation_burst_3_in_one_day_at_its_edge(operator, count, fires):
    now = f.now()
    for when in _spread(now - dt.timedelta(seconds=10), count, D):
        f.ticket(f.run(operator, "wf_esc"), when)
    expected = (
        {f"escalation_burst:user:{operator.pk}", "escalation_burst:workflow:wf_esc"}
        if fires
        else set()
    )
    assert keys(now, Alert.Rule.ESCALATION_BURST) == expected


def test_escalation_burst_window_is_one_day(operator):
    now = f.now()
    for when in _spread(now, 3, D + dt.timedelta(seconds=1)):
        f.ticket(f.run(operator, "wf_esc"), when)
    assert keys(now, Alert.Rule.ESCALATION_BURST) == set()


# --- budgets and the breaker -------------------------------------------------------------------------


@pytest.mark.parametrize(("spent", "fires"), [("79.99", False), ("80.00", True), ("80.01", True)])
def test_budget_nearing_its_limit_at_its_edge(operator, spent, fires):
    now = f.now()
    budget = Budget.objects.create(
        scope=Budget.Scope.WORKFLOW,
        workflow_name="wf_budget",
        period=Budget.Period.MONTH,
        limit_usd=Decimal("100.00"),
        hard=True,
        effective_from=now - D * 40,
    )
    r = f.run(operator, "wf_budget", Run.Status.SUCCEEDED)
    f.call(r, now, cost=spent)
    found = [x for x in rules.evaluate(now) if x.rule == Alert.Rule.BUDGET]
    assert [x.key for x in found] == ([f"budget:{budget.pk}"] if fires else [])
    if fires:
        assert Decimal(found[0].numbers["committed_usd"]) == Decimal(spent)


def test_budget_counts_what_unfinished_runs_may_still_spend(operator):
    now = f.now()
    Budget.objects.create(
        scope=Budget.Scope.GLOBAL,
        period=Budget.Period.MONTH,
        limit_usd=Decimal("10.00"),
        hard=False,
        effective_from=now - D * 40,
    )
    f.run(
        operator, "wf_any", Run.Status.RUNNING, estimate="8.00"
    )  # $8 committed, nothing spent yet
    assert keys(now, Alert.Rule.BUDGET) != set()


@pytest.mark.parametrize(
    ("age", "fires"),
    [
        (D + dt.timedelta(seconds=1), False),
        (D, False),
        (D - dt.timedelta(seconds=1), True),
        (H, True),
    ],
)
def test_breaker_tripping_opens_an_alert_within_its_day(operator, age, fires):
    # The window is (now - 24h, now]: a trip exactly 24 hours ago is yesterday's.
    now = f.now()
    r = f.run(operator, "wf_fan", Run.Status.HALTED)
    f.ticket(r, now - age, reason="failure_rate_exceeded", message="12 of 40 jobs failed")
    found = [x for x in rules.evaluate(now) if x.rule == Alert.Rule.BREAKER]
    assert [x.key for x in found] == (["breaker:workflow:wf_fan"] if fires else [])
    if fires:
        assert found[0].numbers["halted_runs"] == 1 and "12 of 40 jobs failed" in found[0].detail


# --- deduplication, notification once, acknowledgement ------------------------------------------------


def _escalations(user, n=3, workflow="wf_esc"):
    for i in range(n):
        f.ticket(f.run(user, workflow), f.now() - (i + 1) * dt.timedelta(minutes=1))


def test_an_alert_is_opened_once_and_notified_once_while_unresolved(operator, manager):
    _escalations(operator)
    opened = raising.evaluate_and_raise()
    assert len(opened) == 2 and Alert.objects.count() == 2
    assert AuditEvent.objects.filter(kind="alert.opened").count() == 2
    mail.outbox.clear()
    assert raising.notify_pending() == 2
    assert len(mail.outbox) == 2 and all(m.to == ["boss@example.com"] for m in mail.outbox)
    assert "3 escalations" in mail.outbox[0].subject and "threshold is 3" in mail.outbox[0].body
    for _ in range(2):  # the rule keeps crossing: the same rows are updated, nobody is told again
        assert raising.evaluate_and_raise() == []
        assert raising.notify_pending() == 0
    assert Alert.objects.count() == 2 and len(mail.outbox) == 2
    assert set(Alert.objects.values_list("occurrences", flat=True)) == {3}
    assert AuditEvent.objects.filter(kind="alert.opened").count() == 2


def test_acknowledged_still_deduplicates_and_resolved_reopens_only_on_new_events(operator, manager):
    _escalations(operator)
    raising.evaluate_and_raise()
    alert = Alert.objects.get(key="escalation_burst:workflow:wf_esc")
    raising.acknowledge(alert.pk, manager, "looking at it")
    assert raising.evaluate_and_raise() == []
    raising.resolve(alert.pk, manager, "upstream fixed")
    # The same three escalations do not reopen it ...
    assert [a.key for a in raising.evaluate_and_raise()] == []
    # ... three new ones do, as a new alert.
    later = timezone.now() + dt.timedelta(seconds=5)
    for i in range(3):
        f.ticket(f.run(operator, "wf_esc"), later - dt.timedelta(seconds=i + 1))
    reopened = [a for a in raising.evaluate_and_raise(later) if a.key == alert.key]
    assert len(reopened) == 1 and reopened[0].pk != alert.pk


def test_acknowledge_and_resolve_are_audited_and_for_managers_only(operator, manager):
    _escalations(operator)
    raising.evaluate_and_raise()
    alert = Alert.objects.get(key="escalation_burst:workflow:wf_esc")
    with pytest.raises(raising.AlertError, match="Only a manager"):
        raising.acknowledge(alert.pk, operator)
    acked = raising.acknowledge(alert.pk, manager, "on it")
    assert acked.status == "acknowledged" and acked.acknowledged_by == manager
    event = AuditEvent.objects.get(kind="alert.acknowledged")
    assert (
        event.actor == manager
        and event.payload["alert"] == alert.pk
        and event.payload["note"] == "on it"
    )
    with pytest.raises(raising.AlertError, match="is acknowledged and cannot become acknowledged"):
        raising.acknowledge(alert.pk, manager)
    resolved = raising.resolve(alert.pk, manager, "fixed")
    assert resolved.status == "resolved" and resolved.resolved_by == manager
    assert AuditEvent.objects.get(kind="alert.resolved").actor == manager
    with pytest.raises(raising.AlertError, match="is resolved"):
        raising.resolve(alert.pk, manager)


def test_alerts_page_shows_the_numbers_and_acts(client, operator, manager):
    _escalations(operator)
    raising.evaluate_and_raise()
    alert = Alert.objects.get(key="escalation_burst:workflow:wf_esc")
    client.force_login(operator)
    assert client.get(reverse("alert_list")).status_code == 403
    assert client.post(reverse("alert_acknowledge", args=[alert.pk])).status_code == 403
    client.force_login(manager)
    page = client.get(reverse("alert_list")).content.decode()
    assert f'id="alert-{alert.pk}"' in page and "escalation burst" in page
    assert "window_seconds" in page and "86400" in page and "the threshold is 3" in page
    assert client.get(reverse("alert_acknowledge", args=[alert.pk])).status_code == 405
    response = client.post(reverse("alert_acknowledge", args=[alert.pk]), {"note": "mine"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.note == "mine"
    client.post(reverse("alert_resolve", args=[alert.pk]))
    alert.refresh_from_db()
    assert alert.status == "resolved"


# --- the pause ------------------------------------------------------------------------------------------


def test_a_retry_burst_pauses_the_user_until_a_manager_lifts_it(client, operator, manager):
    now = f.now()
    f.retries(
        f.run(operator, "wf_retry"),
        _spread(now - dt.timedelta(seconds=1), 100, dt.timedelta(seconds=9)),
    )
    raising.evaluate_and_raise(now)
    alert = Alert.objects.get(key=f"retry_burst:user:{operator.pk}")
    pause = UserPause.objects.get(user=operator, lifted_at__isnull=True)
    assert pause.alert == alert and "100 retries" in pause.reason
    assert AuditEvent.objects.get(kind="user.paused").payload["user"] == operator.pk
    workflow_alert = Alert.objects.get(key="retry_burst:workflow:wf_retry")
    assert not workflow_alert.pauses.exists()  # only the user's own burst pauses them

    # Refused through the one start path, by every entry point.
    runs_before = Run.objects.count()
    with pytest.raises(RunRefused) as refused:
        start_run("probe", {"mode": "ok"}, operator)
    assert refused.value.code == "user_paused" and "A manager must lift the pause" in str(
        refused.value
    )
    with pytest.raises(CommandError, match="paused"):
        call_command(
            "start_run",
            "probe",
            "--user",
            operator.username,
            "--input",
            '{"mode": "ok"}',
            stdout=io.StringIO(),
        )
    answer = call(
        client,
        "POST",
        "/api/runs",
        token_for(operator),
        {"workflow": "probe", "input": {"mode": "ok"}},
    )
    body = assert_documented(answer, "/api/runs", "post")
    assert answer.status_code == 403 and body["error"]["code"] == "user_paused"
    client.force_login(operator)
    page = client.post(reverse("start_form", args=["probe"]), {"mode": "ok"})
    assert page.status_code == 200 and "A manager must lift the pause" in page.content.decode()
    assert Run.objects.count() == runs_before

    # The paused user, even a manager, cannot lift their own pause; another manager can.
    with pytest.raises(pauses.PauseError, match="Only a manager"):
        pauses.lift(pause.pk, operator)
    lifted = pauses.lift(pause.pk, manager, "a broken script, fixed")
    assert lifted.lifted_by == manager
    assert AuditEvent.objects.get(kind="user.pause_lifted").actor == manager
    assert pauses.start_refusal(operator) is None
    with pytest.raises(pauses.PauseError, match="already lifted"):
        pauses.lift(pause.pk, manager)


def test_a_workflow_that_turns_pausing_off_raises_the_alert_but_pauses_nobody(operator):
    AlertThresholds.objects.create(workflow_name="wf_nopause", pause_user_on_retry_burst=False)
    now = f.now()
    f.retries(
        f.run(operator, "wf_nopause"),
        _spread(now - dt.timedelta(seconds=1), 100, dt.timedelta(seconds=9)),
    )
    opened = {a.key for a in raising.evaluate_and_raise(now)}
    assert opened == {f"retry_burst:user:{operator.pk}", "retry_burst:workflow:wf_nopause"}
    assert not UserPause.objects.exists()
    assert not AuditEvent.objects.filter(kind="user.paused").exists()
    assert pauses.start_refusal(operator) is None


def test_pausing_turned_off_in_the_defaults_row_pauses_nobody(operator):
    AlertThresholds.objects.filter(workflow_name="").update(pause_user_on_retry_burst=False)
    now = f.now()
    f.retries(
        f.run(operator, "wf_default"),
        _spread(now - dt.timedelta(seconds=1), 100, dt.timedelta(seconds=9)),
    )
    assert f"retry_burst:user:{operator.pk}" in {a.key for a in raising.evaluate_and_raise(now)}
    assert not UserPause.objects.exists()


@pytest.mark.parametrize(("pausing", "paused"), [(99, False), (100, True), (101, True)])
def test_only_retries_of_workflows_that_allow_pausing_count_toward_the_pause(
    operator, pausing, paused
):
    # 60 retries in a workflow that turns pausing off, and ``pausing`` in one that leaves it
    # on, all within 10 seconds: the user's burst is an alert either way; the pause needs
    # 100 retries in the workflows that allow it.
    AlertThresholds.objects.create(workflow_name="wf_quiet", pause_user_on_retry_burst=False)
    now = f.now()
    window = _spread(now - dt.timedelta(seconds=1), 60 + pausing, dt.timedelta(seconds=9))
    f.retries(f.run(operator, "wf_quiet"), window[::2][:60])
    f.retries(f.run(operator, "wf_loud"), [w for w in window if w not in window[::2][:60]])
    raising.evaluate_and_raise(now)
    alert = Alert.objects.get(key=f"retry_burst:user:{operator.pk}")
    assert alert.numbers["count"] == 60 + pausing
    assert UserPause.objects.filter(user=operator).exists() == paused
    if paused:
        assert UserPause.objects.get(user=operator).alert == alert


def test_a_paused_manager_cannot_lift_their_own_pause(manager):
    other = f.person("boss2", "managers")
    pause = pauses.pause(manager.pk, reason="test")
    with pytest.raises(pauses.PauseError, match="another manager"):
        pauses.lift(pause.pk, manager)
    assert pauses.lift(pause.pk, other).lifted_by == other


def test_pause_lift_page(client, operator, manager):
    pause = pauses.pause(operator.pk, reason="100 retries in 10 seconds.")
    client.force_login(operator)
    assert client.post(reverse("pause_lift", args=[pause.pk])).status_code == 403
    client.force_login(manager)
    assert "100 retries in 10 seconds." in client.get(reverse("alert_list")).content.decode()
    assert client.post(reverse("pause_lift", args=[pause.pk]), {"note": "ok"}).status_code == 302
    pause.refresh_from_db()
    assert pause.lifted_by == manager and pause.lift_note == "ok"


def test_the_beat_task_opens_and_notifies_once(operator, manager):
    from alerts.tasks import evaluate_alerts

    _escalations(operator)
    mail.outbox.clear()
    assert evaluate_alerts() == 2
    assert len(mail.outbox) == 2 and Alert.objects.filter(notified_at__isnull=False).count() == 2
    assert evaluate_alerts() == 0 and len(mail.outbox) == 2


# --- thresholds in the admin -------------------------------------------------------------------


def _threshold_form(**values) -> dict:
    """The admin form's POST data for a thresholds row (checkboxes: sent only when on)."""
    row = AlertThresholds(workflow_name="")
    for name, value in values.items():
        setattr(row, name, value)
    data = {}
    for field in AlertThresholds._meta.concrete_fields:
        if field.name in ("id", "updated_at"):
            continue
        value = getattr(row, field.name)
        if isinstance(value, bool):
            if value:
                data[field.name] = "on"
        else:
            data[field.name] = str(value)
    return data


def test_thresholds_changed_in_the_admin_change_the_rule_and_are_audited(client, operator):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(root)
    now = f.now()
    f.runs_ended(operator, "wf_admin", ok=97, failed=3, when=now - H)  # 3%
    response = client.post(
        reverse("admin:alerts_alertthresholds_add"),
        _threshold_form(workflow_name="wf_admin", error_rate_percent=Decimal("3.00")),
    )
    assert response.status_code == 302
    row = AlertThresholds.objects.get(workflow_name="wf_admin")
    assert (
        AuditEvent.objects.get(kind="alert.thresholds_added").payload["error_rate_percent"]
        == "3.00"
    )
    assert keys(now, Alert.Rule.ERROR_RATE) == set()  # 3 of 100 is not over 3%

    url = reverse("admin:alerts_alertthresholds_change", args=[row.pk])
    response = client.post(
        url, _threshold_form(workflow_name="wf_admin", error_rate_percent=Decimal("2.99"))
    )
    assert response.status_code == 302
    assert keys(now, Alert.Rule.ERROR_RATE) == {"error_rate:workflow:wf_admin"}
    event = AuditEvent.objects.get(kind="alert.thresholds_changed")
    assert event.actor_label == "root"
    assert event.payload["workflow_name"] == "wf_admin"
    assert event.payload["error_rate_percent"] == "2.99"

    # Out of range: refused with the field's message; nothing changed, nothing audited.
    response = client.post(
        url,
        _threshold_form(
            workflow_name="wf_admin", error_rate_percent=Decimal("2.99"), cost_baseline_days=31
        ),
    )
    assert response.status_code == 200
    assert "less than or equal to 30" in response.content.decode()
    row.refresh_from_db()
    assert row.cost_baseline_days == 7
    assert AuditEvent.objects.filter(kind="alert.thresholds_changed").count() == 1


def test_only_superusers_change_thresholds_in_the_admin(client, manager):
    row = AlertThresholds.objects.get(workflow_name="")
    client.force_login(manager)
    response = client.post(
        reverse("admin:alerts_alertthresholds_change", args=[row.pk]),
        _threshold_form(error_rate_percent=Decimal("50.00")),
    )
    assert response.status_code in (302, 403)
    row.refresh_from_db()
    assert row.error_rate_percent == Decimal("5.00")
    assert not AuditEvent.objects.filter(kind="alert.thresholds_changed").exists()
