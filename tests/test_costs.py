"""Budgets and the start limit from every entry point, the mid-run guard, batch mode, the costs page."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from costs import accounting
from costs.models import Budget
from costs.pricing import Usage, batch_saving, cache_saving, cost_of
from costs.reports import run_savings, spend_report
from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, ModelCall, Run
from reviews import access, approvals, resolutions
from reviews.models import EscalationTicket
from tests.api_helpers import call, token_for

INPUT = {"date": "2026-11-12"}
R = EscalationTicket.Reason


@pytest.fixture(autouse=True)
def _no_enqueue(monkeypatch):
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)


def _start_from_form(client, user):
    client.force_login(user)
    return client.post(reverse("start_form", args=["financial_reporting"]), INPUT)


def _start_from_api(client, user):
    return call(
        client,
        "POST",
        "/api/runs",
        token_for(user),
        {"workflow": "financial_reporting", "input": INPUT},
    )


def _start_from_command(user):
    call_command(
        "start_run",
        "financial_reporting",
        "--input",
        '{"date": "2026-11-12"}',
        "--user",
        user.username,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )


# --- budgets -----------------------------------------------------------------------------


def test_hard_budget_refuses_from_start_run_naming_the_budget_and_the_excess(operator):
    first = start_run("financial_reporting", INPUT, operator)
    Run.objects.filter(pk=first.pk).update(
        cost_usd=first.estimate_usd
    )  # spent its whole estimate...
    ModelCall.objects.create(
        run=first,
        turn=0,
        model="claude-opus-4-6",
        request_content=[],
        status="ok",
        cost_usd=first.estimate_usd,
    )  # ...through one call today
    limit = (first.estimate_usd * Decimal("1.5")).quantize(Decimal("0.01"))
    Budget.objects.create(scope="global", period="day", limit_usd=limit, hard=True)
    with pytest.raises(RunRefused) as refused:
        start_run("financial_reporting", INPUT, operator)
    message = refused.value.errors["budget"]
    assert refused.value.code == "budget_exceeded"
    assert f"the hard daily global budget (${limit:,.2f})" in message
    over = first.estimate_usd * 2 - limit  # spent + this run's estimate - the limit
    assert f"by ${over:,.2f}" in message
    assert Run.objects.count() == 1


def test_unfinished_runs_count_what_they_may_still_spend(operator):
    first = start_run("financial_reporting", INPUT, operator)  # queued, nothing spent yet
    Budget.objects.create(
        scope="workflow",
        workflow_name="financial_reporting",
        period="month",
        limit_usd=(first.estimate_usd * Decimal("1.5")).quantize(Decimal("0.01")),
        hard=True,
    )
    with pytest.raises(RunRefused, match="still estimated for unfinished runs"):
        start_run("financial_reporting", INPUT, operator)
    Run.objects.filter(pk=first.pk).update(
        status=Run.Status.CANCELLED
    )  # finished: no longer counts
    assert start_run("financial_reporting", INPUT, operator).status == Run.Status.QUEUED


def test_budgets_of_other_scopes_do_not_apply(operator, manager):
    Budget.objects.create(
        scope="user", user=manager, period="day", limit_usd=Decimal("0.00"), hard=True
    )
    Budget.objects.create(
        scope="workflow",
        workflow_name="payment_approval",
        period="day",
        limit_usd=Decimal("0"),
        hard=True,
    )
    assert start_run("financial_reporting", INPUT, operator).status == Run.Status.QUEUED
    with pytest.raises(RunRefused, match="user manager budget"):
        start_run("financial_reporting", INPUT, manager)


def test_soft_budget_warns_and_records_it(operator):
    Budget.objects.create(
        scope="user", user=operator, period="day", limit_usd=Decimal("0.00"), hard=False
    )
    run = start_run("financial_reporting", INPUT, operator)
    assert run.status == Run.Status.QUEUED
    [warning] = run.estimate["budget_warnings"]
    assert "soft daily user operator budget ($0.00)" in warning
    assert AuditEvent.objects.filter(run=run, kind="budget.warning").exists()


def test_hard_budget_refuses_from_the_page_and_the_command(client, operator):
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("0.00"), hard=True)
    response = _start_from_form(client, operator)
    assert response.status_code == 200
    assert "would pass the hard daily global budget ($0.00)" in response.content.decode()
    with pytest.raises(CommandError, match="would pass the hard daily global budget"):
        _start_from_command(operator)
    api = _start_from_api(client, operator)
    assert api.status_code == 403 and api.json()["error"]["code"] == "budget_exceeded"
    assert "hard daily global budget ($0.00)" in api.json()["error"]["fields"]["budget"]
    assert Run.objects.count() == 0


def test_soft_budget_warning_reaches_the_page(client, operator):
    Budget.objects.create(scope="global", period="month", limit_usd=Decimal("0.00"), hard=False)
    page = _start_from_form(client, operator)
    run = Run.objects.get()
    page = client.get(page["Location"]).content.decode()
    assert run.status == Run.Status.QUEUED and "soft monthly global budget" in page


# --- the per-user start limit --------------------------------------------------------------


def test_daily_start_limit_from_every_entry_point(client, operator, manager, settings):
    settings.RUNS_PER_USER_PER_DAY = 2
    start_run("financial_reporting", INPUT, operator, idempotency_key="a")
    start_run("financial_reporting", INPUT, operator)
    # A retry with a known key returns the first run: it is not a new start.
    assert (
        start_run("financial_reporting", INPUT, operator, idempotency_key="a").idempotency_key
        == "a"
    )
    with pytest.raises(RunRefused) as refused:
        start_run("financial_reporting", INPUT, operator)
    assert refused.value.code == "rate_limited"
    assert (
        "started 2 runs in the last 24 hours; the limit is 2 a day"
        in refused.value.errors["rate_limit"]
    )
    assert "limit is 2 a day" in _start_from_form(client, operator).content.decode()
    with pytest.raises(CommandError, match="limit is 2 a day"):
        _start_from_command(operator)
    api = _start_from_api(client, operator)
    assert api.status_code == 429 and api.json()["error"]["code"] == "rate_limited"
    assert 0 < int(api["Retry-After"]) <= 24 * 3600
    assert Run.objects.filter(requested_by=operator).count() == 2
    assert start_run("financial_reporting", INPUT, manager).status == Run.Status.QUEUED  # per user


# --- the mid-run guard ----------------------------------------------------------------------


def test_approved_run_pauses_before_a_call_that_could_pass_its_estimate_plus_a_quarter(
    drive, operator, manager, settings
):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    run = start_run("financial_reporting", INPUT, operator)
    assert run.ceiling_usd == (run.estimate_usd * Decimal("1.25")).quantize(Decimal("1e-12"))
    req = run.approvals.get()
    approvals.decide(req.pk, manager, approve=True)
    # As if the approved estimate were small: the first call's worst case does not fit.
    Run.objects.filter(pk=run.pk).update(ceiling_usd=Decimal("0.004"))
    run = drive(run)
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == R.BUDGET_EXCEEDED
    assert "its approved estimate of $" in ticket.message and "plus 25%" in ticket.message
    assert run.model_calls.count() == 0 and run.cost_usd == 0  # not sent


def test_never_approved_run_pauses_at_the_threshold_and_only_a_manager_lets_it_go_on(
    drive, operator, reviewer, manager, settings, monkeypatch
):
    import dataclasses

    from orchestration.workflows import registry

    workflow = registry.get("financial_reporting")
    roomy = dataclasses.replace(
        workflow, constraints=dataclasses.replace(workflow.constraints, max_cost_usd=Decimal(50))
    )
    monkeypatch.setitem(registry._REGISTRY, "financial_reporting", roomy)
    settings.APPROVAL_THRESHOLD_USD = Decimal("19.00")
    run = start_run("financial_reporting", INPUT, operator)
    assert run.status == Run.Status.QUEUED and run.ceiling_usd == Decimal("19.00")
    settings.APPROVAL_THRESHOLD_USD = Decimal(
        "0.001"
    )  # lowered after the start: the stored ceiling holds
    Run.objects.filter(pk=run.pk).update(ceiling_usd=Decimal("0.001"))  # as if it had been this low
    run = drive(run)
    ticket = run.tickets.get()
    assert ticket.reason == R.BUDGET_EXCEEDED and "the $19.00 approval threshold" in ticket.message
    with pytest.raises(resolutions.ReviewError, match="Only a manager"):
        resolutions.resolve(ticket.pk, reviewer, "resume", note="go on")
    with pytest.raises(resolutions.ReviewError, match="raise the ceiling first"):
        resolutions.resolve(ticket.pk, manager, "resume", note="Worth it; go on.")
    accounting.raise_ceiling(run.pk, manager, refusal=access.ceiling_refusal, usd="1.00")
    resolutions.resolve(ticket.pk, manager, "retry", comment="Worth it; go on.")
    run = drive(run)
    assert run.status == Run.Status.SUCCEEDED and run.cost_usd <= Decimal("1.001")
    assert run.tickets.count() == 1


# --- batch mode -----------------------------------------------------------------------------


def test_batch_mode_runs_through_message_batches_at_half_price(drive, operator, settings):
    settings.SIMULATOR = {**settings.SIMULATOR, "batch_seconds": 0.0}
    realtime = drive(start_run("financial_reporting", INPUT, operator))
    batch = start_run("financial_reporting", INPUT, operator, options={"batch": True})
    assert batch.estimate["lines"][-2]["item"] == "Batch mode"
    assert batch.estimate_usd < realtime.estimate_usd
    batch = drive(batch)
    assert batch.status == realtime.status == Run.Status.SUCCEEDED
    calls = list(batch.model_calls.order_by("turn"))
    assert calls and all(c.is_batch and c.batch_id.startswith("msgbatch_") for c in calls)
    for mc in calls:
        usage = Usage.from_api(mc.usage)
        assert mc.cost_usd == cost_of(usage, mc.price, batch=True) == cost_of(usage, mc.price) / 2
    assert AuditEvent.objects.filter(run=batch, kind="model.batch_submitted").count() == len(calls)
    assert run_savings(batch)["batch"] == sum(
        cost_of(Usage.from_api(c.usage), c.price) / 2 for c in calls
    )


def test_a_batch_still_processing_leaves_the_run_waiting(drive, operator, settings):
    settings.SIMULATOR = {**settings.SIMULATOR, "batch_seconds": 3600.0}
    run = start_run("financial_reporting", INPUT, operator, options={"batch": True})
    from orchestration import engine

    engine.run_step(run.pk)
    engine.run_step(run.pk)  # polls: still in progress
    mc = run.model_calls.get()
    assert mc.status == "pending" and mc.batch_id and not engine.batch_ended(mc)
    assert engine.poll_batches() == 0
    assert (
        engine.reap_stalled_runs() == 0 or Run.objects.get(pk=run.pk).status == Run.Status.RUNNING
    )


# --- savings and the costs page ----------------------------------------------------------------


@pytest.mark.django_db
def test_savings_formulas_by_hand():
    from costs.pricing import price_for

    opus = price_for("claude-opus-4-6")
    usage = Usage(input_tokens=100, cache_write_5m=2_000, cache_read=10_000, output_tokens=50)
    # reads: 10,000 x (5.00 - 0.50) = 45,000; write premium: 2,000 x (6.25 - 5.00) = 2,500 -> $0.0425
    assert cache_saving(usage, opus) == Decimal("0.0425")
    assert cache_saving(usage, opus, batch=True) == Decimal("0.02125")
    assert batch_saving(usage, opus, batch=True) == cost_of(usage, opus) / 2
    assert batch_saving(usage, opus, batch=False) == 0


def test_costs_page_sums_match_the_calls_and_the_csv(client, drive, manager, operator, settings):
    settings.SIMULATOR = {**settings.SIMULATOR, "batch_seconds": 0.0}
    drive(start_run("financial_reporting", INPUT, operator))
    drive(start_run("financial_reporting", INPUT, operator, options={"batch": True}))
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("100.00"), hard=True)
    calls = list(ModelCall.objects.filter(status="ok"))
    total = sum(c.cost_usd for c in calls)
    report = spend_report(30)
    assert report.total == total and report.calls == len(calls)
    assert report.cache_saving == sum(
        cache_saving(Usage.from_api(c.usage), c.price, batch=c.is_batch) for c in calls
    )
    assert report.batch_saving == sum(
        batch_saving(Usage.from_api(c.usage), c.price, batch=c.is_batch) for c in calls
    )
    assert report.by_day[-1]["cost"] == total and len(report.by_day) == 30
    assert report.by_user[0]["name"] == "operator" and report.by_workflow[0]["cost"] == total

    client.force_login(manager)
    page = client.get(reverse("costs")).content.decode()
    assert f"${total.quantize(Decimal('0.01'))}" in page
    assert "The hard daily global budget ($100.00)" in page and "spend-chart" in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    response = client.get(reverse("costs_csv") + "?days=7")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert response["Content-Type"] == "text/csv"
    # Exact amounts: the rows (a day has one per model) add up to the total to the last digit.
    assert sum(Decimal(r["cost_usd"]) for r in rows) == total
    assert {r["workflow"] for r in rows} == {"financial_reporting"}


def test_costs_page_is_for_managers_and_auditors(client, operator, reviewer, auditor, manager):
    for user, status in ((operator, 403), (reviewer, 403), (auditor, 200), (manager, 200)):
        client.force_login(user)
        assert client.get(reverse("costs")).status_code == status
        assert client.get(reverse("costs_csv")).status_code == status
    page = client.get(reverse("costs")).content.decode()
    assert "No model call in the last 30 days" in page


def test_estimate_preview_shows_the_calculation_and_the_verdict(client, operator, settings):
    client.force_login(operator)
    url = reverse("start_estimate", args=["financial_reporting"])
    body = client.post(url, INPUT, HTTP_HX_REQUEST="true").content.decode()
    assert "count_tokens on the rendered prompt" in body and "starts at once" in body
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    body = client.post(url, {**INPUT, "mode": "batch"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Batch mode" in body and "wait for a manager" in body
    assert "is not a &#x27;date&#x27;" in client.post(url, {"date": "x"}).content.decode()
    assert Run.objects.count() == 0
