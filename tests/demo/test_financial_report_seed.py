"""Issue 14 §6: the daily financial report as the seed describes it, against the simulator:
a manual start defaults to the previous calendar day (Sydney), a timeout is retried once with
a narrower range, unreconciled differences follow the seed's rule, the APRA rules changing
makes validate_apra run again, a step over 30 s escalates, and the finance team is told
through the workflow's own recipients."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from demo import financial_reporting as fr
from insight import digest
from notifications.recipients import for_workflow
from orchestration.launch import start_defaults, start_run
from orchestration.models import AuditEvent, Run, ToolCall
from orchestration.workflows import registry
from reviews import notifications, resolutions
from warehouse.models import ApraRuleSet, PublishedReport, Transaction

S = Run.Status
UTC = dt.UTC


def _ok(run, name):
    return list(ToolCall.objects.filter(run=run, name=name, status="ok").order_by("created_at"))


# --- the previous calendar day, in the workflow's time zone ---------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 14:30 UTC on the 3rd is 01:30 on the 4th in Sydney: yesterday there is the 3rd (UTC would say the 2nd).
        (dt.datetime(2026, 12, 3, 14, 30, tzinfo=UTC), "2026-12-03"),
        (dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC), "2026-12-02"),  # 23:00 on the 3rd in Sydney
        (dt.datetime(2027, 1, 1, 0, 0, tzinfo=UTC), "2026-12-31"),
    ],
)
def test_manual_start_defaults_to_the_previous_calendar_day_in_sydney(now, expected):
    assert start_defaults(registry.get("financial_reporting"), now) == {"date": expected}


def test_a_start_without_a_date_reports_on_yesterday(operator, drive):
    yesterday = start_defaults(registry.get("financial_reporting"))["date"]
    run = start_run("financial_reporting", {}, operator)
    assert run.input == {"date": yesterday}
    run = drive(run)  # the demo data has every recent day
    assert run.status == S.SUCCEEDED and run.result["date"] == yesterday
    assert run.result["record_count"] == Transaction.objects.filter(booked_on=yesterday).count() > 0
    # A date given is kept.
    assert start_run("financial_reporting", {"date": "2026-11-20"}, operator).input == {
        "date": "2026-11-20"
    }


def test_the_start_page_opens_on_yesterday(client, operator):
    client.force_login(operator)
    page = client.get(reverse("start_form", args=["financial_reporting"]))
    assert page.status_code == 200
    yesterday = start_defaults(registry.get("financial_reporting"))["date"]
    assert f'value="{yesterday}"' in page.content.decode()


# --- a timeout retried once with a narrower range ----------------------------------------------------


def test_a_timeout_is_retried_once_with_the_narrower_window_then_the_rest_is_fetched(
    operator, drive
):
    run = drive(start_run("financial_reporting", {"date": "2026-11-13"}, operator))
    assert run.status == S.SUCCEEDED
    fetches = list(
        ToolCall.objects.filter(run=run, name="fetch_transactions").order_by("created_at")
    )
    # The full day hits the statement timeout; the engine retries it once, 00:00-12:00; the
    # model then fetches 12:00-24:00 itself.
    assert [(f.status, f.input.get("from_time"), f.input.get("until_time")) for f in fetches] == [
        ("timeout", None, None),
        ("ok", "00:00", "12:00"),
        ("ok", "12:00", None),
    ]
    assert "statement timeout" in fetches[0].error
    assert fetches[0].tool_use_id == fetches[1].tool_use_id != fetches[2].tool_use_id
    narrowed = AuditEvent.objects.get(run=run, kind="tool.narrowed")
    assert narrowed.payload["retry_input"] == {
        "date": "2026-11-13",
        "from_time": "00:00",
        "until_time": "12:00",
    }
    day = Transaction.objects.filter(booked_on="2026-11-13")
    assert (
        len(fetches[1].output["transactions"]) + len(fetches[2].output["transactions"])
        == day.count()
    )
    report = PublishedReport.objects.get()
    assert report.payload["record_count"] == day.count() == run.result["record_count"]
    assert report.payload["total_amount"] == pytest.approx(float(sum(t.amount for t in day)))


def test_half_a_day_is_not_enough_to_reconcile(operator, drive, monkeypatch):
    """The model may not reconcile (or publish) only the window the retry covered."""
    workflow = registry.get("financial_reporting")

    def hasty(conv):
        first = conv.last_result("fetch_transactions")
        if first is not None and not first["is_error"] and not conv.called("reconcile_ledger"):
            refs = [
                {"id": t["id"], "amount": t["amount"]} for t in first["content"]["transactions"]
            ]
            return fr.call("reconcile_ledger", {"date": "2026-11-13", "transactions": refs})
        return workflow.policy(conv)

    monkeypatch.setitem(
        registry._REGISTRY, "financial_reporting", dataclasses.replace(workflow, policy=hasty)
    )
    run = drive(start_run("financial_reporting", {"date": "2026-11-13"}, operator))
    refused = ToolCall.objects.filter(run=run, name="reconcile_ledger", status="rejected").first()
    assert refused is not None and "covered only 00:00-12:00 of 2026-11-13" in refused.error
    assert run.status == S.SUCCEEDED  # it then fetched the rest, as told
    assert (
        PublishedReport.objects.get().payload["record_count"]
        == Transaction.objects.filter(booked_on="2026-11-13").count()
    )


def test_first_half_narrows_on_the_hour_and_stops_at_an_hour():
    assert fr.first_half({"date": "2026-11-13"}) == {
        "date": "2026-11-13",
        "from_time": "00:00",
        "until_time": "12:00",
    }
    assert fr.first_half({"date": "d", "from_time": "12:00"})["until_time"] == "18:00"
    assert fr.first_half({"date": "d", "from_time": "09:00", "until_time": "10:00"}) is None


# --- unreconciled differences: the seed's rule ------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "words"),
    [
        (
            "2026-11-17",
            "does not reconcile (reconciled is false)",
        ),  # $3.50: under $100, still escalates
        ("2026-11-18", "exceed $100: manual review"),
    ],
)
def test_any_unreconciled_difference_escalates_before_validation_and_publication(
    operator, drive, date, words
):
    run = drive(start_run("financial_reporting", {"date": date}, operator))
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "validation_failed" and words in ticket.message
    recon = _ok(run, "reconcile_ledger")[0].output
    assert recon["reconciled"] is False and recon["differences"]
    assert not _ok(run, "validate_apra") and PublishedReport.objects.count() == 0


def test_reconciled_must_agree_with_the_differences():
    diff = {"transaction_id": "T1", "discrepancy": 3.5}
    check = fr._check_reconciliation
    assert check({"reconciled": True, "differences": [diff], "total_discrepancy": 3.5}, None) == [
        "reconciled is True but 1 difference(s) are listed"
    ]
    assert check({"reconciled": False, "differences": [diff], "total_discrepancy": 1.0}, None) == [
        "total_discrepancy 1.0 is not the differences' sum 3.5"
    ]
    assert check({"reconciled": True, "differences": [], "total_discrepancy": 0}, None) == []


def test_a_reviewer_may_resume_a_small_difference_and_the_report_says_it(operator, reviewer, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-17"}, operator))
    resolutions.resolve(run.tickets.get().pk, reviewer, "resume", comment="$3.50 rounding, known")
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert PublishedReport.objects.get().payload["total_discrepancy"] == pytest.approx(3.5)


# --- the rules changed: re-run the validation ---------------------------------------------------------


def test_rules_changed_while_paused_make_the_validation_run_again(operator, reviewer, drive):
    """The start page's scenario: the 19th breaks CPS234-KYC-01 under rules v1 and pauses; the
    compliance team changes the rules; the resumed run must validate again before publishing."""
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    assert run.tickets.get().reason == "regulatory_trigger"
    assert _ok(run, "validate_apra")[0].output["rules_version"] == "1"
    ApraRuleSet.objects.create(
        large_amount=Decimal("50000"), note="threshold raised"
    )  # saved as version 2
    resolutions.resolve(
        run.tickets.get().pk, reviewer, "resume", comment="rules updated by compliance"
    )
    run = drive(run)
    assert run.status == S.SUCCEEDED
    refused = ToolCall.objects.get(run=run, name="publish_report", status="rejected")
    assert "rules_changed" in refused.error and "version 1, now 2" in refused.error
    assert [v.output["rules_version"] for v in _ok(run, "validate_apra")] == ["1", "2"]
    assert _ok(run, "validate_apra")[1].output["compliant"] is True
    assert PublishedReport.objects.count() == 1


def test_rules_tightened_mid_run_escalate_on_the_new_validation(
    operator, drive, monkeypatch, settings
):
    settings.ENGINE_TASK_SLICE_SECONDS = 0  # one step per task: the test acts between steps
    from orchestration import engine

    run = start_run("financial_reporting", {"date": "2026-11-20"}, operator)
    for _ in range(20):
        engine.run_step(run.pk)
        if _ok(run, "validate_apra"):
            break
    assert _ok(run, "validate_apra")[0].output == {
        "compliant": True,
        "violations": [],
        "rules_version": "1",
    }
    # The day's transactions are all to verified customers: make one unverified and large
    # under the new rules (threshold lowered), as a compliance change would.
    txn = Transaction.objects.filter(booked_on="2026-11-20").order_by("-amount").first()
    Transaction.objects.filter(pk=txn.pk).update(customer_verified=False)
    ApraRuleSet.objects.create(large_amount=Decimal("10.00"), note="threshold lowered")
    run = drive(run)
    assert run.status == S.AWAITING_REVIEW
    assert run.tickets.get().reason == "regulatory_trigger"
    second = _ok(run, "validate_apra")[1].output
    assert second["rules_version"] == "2" and not second["compliant"]
    assert PublishedReport.objects.count() == 0


def test_an_admin_edit_of_the_rules_is_a_new_version(db):
    ApraRuleSet.objects.all().delete()
    first = ApraRuleSet.objects.create(large_amount=Decimal("10000"))
    first.large_amount = Decimal("20000")
    first.save()
    assert list(ApraRuleSet.objects.values_list("version", "large_amount")) == [
        (2, Decimal("20000.00")),
        (1, Decimal("10000.00")),
    ]
    assert fr.current_rules_version() == "2"


# --- a step over its latency limit ----------------------------------------------------------------------


def test_a_slow_warehouse_step_times_out_and_escalates(operator, drive, monkeypatch):
    """The 11th's degraded warehouse, scaled down: a step limit of 1 s, queries of 3 s."""
    workflow = registry.get("financial_reporting")
    monkeypatch.setitem(fr.SLOW_DAYS, dt.date(2026, 11, 11), 3.0)
    monkeypatch.setitem(
        registry._REGISTRY,
        "financial_reporting",
        dataclasses.replace(
            workflow,
            constraints=dataclasses.replace(workflow.constraints, step_latency_seconds=1.0),
        ),
    )
    run = drive(start_run("financial_reporting", {"date": "2026-11-11"}, operator))
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "latency_limit" and "fetch_transactions was stopped" in ticket.message
    assert list(ToolCall.objects.filter(run=run).values_list("status", flat=True)) == ["timeout"]


def test_the_seed_limits_are_declared():
    workflow = registry.get("financial_reporting")
    assert workflow.constraints.step_latency_seconds == 30
    assert workflow.tool("fetch_transactions").max_attempts == 2
    assert workflow.reruns[0].tool == "validate_apra" and workflow.reruns[0].before == (
        "publish_report",
    )


# --- the finance team --------------------------------------------------------------------------------------


def test_the_finance_team_gets_tickets_and_run_ends_of_the_report(db):
    assert "finance-team@example.com" in for_workflow("financial_reporting", "ticket.opened")
    assert "finance-team@example.com" in for_workflow("financial_reporting", "run.ended")
    assert "finance-team@example.com" in for_workflow("financial_reporting", "alert.opened")
    assert "finance-team@example.com" not in for_workflow("payment_approval", "ticket.opened")
    assert for_workflow("fx_rates", "ticket.opened") == []
    # Its daily digest goes to the finance team rather than to the managers.
    assert digest.recipients("financial_reporting") == ["finance-team@example.com"]


def test_a_failed_report_emails_the_finance_team(operator, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-18"}, operator))
    ticket = run.tickets.get()
    mail.outbox.clear()
    notifications.ticket_opened(ticket.pk)
    to_finance = [m for m in mail.outbox if "finance-team@example.com" in m.to]
    assert len(to_finance) == 1
    assert "financial_reporting" in to_finance[0].subject and "manual review" in to_finance[0].body


def test_the_start_page_offers_a_scenario_per_feature(client, operator):
    client.force_login(operator)
    page = client.get(reverse("start_form", args=["financial_reporting"])).content.decode()
    for title in (
        "A timeout, retried once with a narrower range",
        "An unreconciled difference under $100",
        "The rules changed: re-run the validation",
        "A step over 30 seconds",
    ):
        assert title in page
    picked = client.get(
        reverse("start_form", args=["financial_reporting"]) + "?scenario=1"
    ).content.decode()
    assert 'value="2026-11-13"' in picked
    fx = client.get(reverse("start_form", args=["fx_rates"]) + "?scenario=1").content.decode()
    assert "the last cached result" in fx and 'value="2026-11-22"' in fx
    # An index that is not a scenario falls back on the defaults.
    assert client.get(reverse("start_form", args=["fx_rates"]) + "?scenario=9").status_code == 200
