"""The demo workflows end to end, in this process: every branch of financial_reporting and
payment_approval, with its final status, ticket and tools (customer_router's branches run a
tree of runs: tests/test_subagents.py). The engine's own tests (tests/test_engine.py) use a
workflow written for them, not these."""

from __future__ import annotations

import pytest

from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from warehouse.models import AuditLogEntry, PublishedReport

S = Run.Status


def _start(user, workflow, value, faults=None):
    options = {"simulator_faults": faults} if faults else None
    return start_run(workflow, value, user, options=options)


MATRIX = [
    # workflow, input, final status, ticket reason, tools that ran ok (in order)
    (
        "financial_reporting",
        {"date": "2026-11-20"},
        S.SUCCEEDED,
        None,
        ["fetch_transactions", "reconcile_ledger", "validate_apra", "publish_report", "audit_log"],
    ),
    (
        "financial_reporting",
        {"date": "2026-11-17"},
        S.AWAITING_REVIEW,
        "validation_failed",  # $3.50 difference: the seed's "If reconciled == false, escalate"
        ["fetch_transactions", "reconcile_ledger"],
    ),
    (
        "financial_reporting",
        {"date": "2026-11-21"},
        S.AWAITING_REVIEW,
        "validation_failed",
        ["fetch_transactions"],
    ),
    (
        "financial_reporting",
        {"date": "2026-11-18"},
        S.AWAITING_REVIEW,
        "validation_failed",
        ["fetch_transactions", "reconcile_ledger"],
    ),
    (
        "financial_reporting",
        {"date": "2026-11-19"},
        S.AWAITING_REVIEW,
        "regulatory_trigger",
        ["fetch_transactions", "reconcile_ledger", "validate_apra"],
    ),
    (
        "payment_approval",
        {"payment_id": "PAY-1001"},
        S.SUCCEEDED,
        None,
        ["fetch_payment", "standard_validator", "record_decision", "audit_log"],
    ),
    (
        "payment_approval",
        {"payment_id": "PAY-1002"},
        S.SUCCEEDED,
        None,
        ["fetch_payment", "high_value_validator", "record_decision", "audit_log"],
    ),
    (
        "payment_approval",
        {"payment_id": "PAY-1003"},
        S.AWAITING_REVIEW,
        "regulatory_trigger",
        ["fetch_payment", "high_value_validator"],
    ),
    (
        "payment_approval",
        {"payment_id": "PAY-1004"},
        S.AWAITING_REVIEW,
        "regulatory_trigger",
        ["fetch_payment", "standard_validator"],
    ),
    (
        "payment_approval",
        {"payment_id": "PAY-1005"},
        S.AWAITING_REVIEW,
        "regulatory_trigger",  # sign-off first
        ["fetch_payment", "high_value_validator"],
    ),
]


@pytest.mark.parametrize(
    ("workflow", "value", "status", "reason", "tools"),
    MATRIX,
    ids=[f"{m[0]}-{list(m[1].values())[-1]}" for m in MATRIX],
)
def test_branch_matrix(operator, drive, workflow, value, status, reason, tools):
    run = drive(_start(operator, workflow, value))
    assert run.status == status
    ok = list(
        ToolCall.objects.filter(run=run, status="ok")
        .order_by("created_at")
        .values_list("name", flat=True)
    )
    assert ok == tools
    calls = ModelCall.objects.filter(run=run)
    assert calls.count() >= 1 and all(mc.status == "ok" and mc.cost_usd > 0 for mc in calls)
    assert run.cost_usd == sum(mc.cost_usd for mc in calls)
    assert run.input_tokens == sum(mc.input_tokens for mc in calls)
    kinds = set(AuditEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert {"run.requested", "estimate.made", "run.queued", "run.running", "model.called"} <= kinds
    if reason is None:
        assert not run.tickets.exists()
        assert run.result is not None and "run.succeeded" in kinds
    else:
        ticket = run.tickets.get()
        assert ticket.reason == reason and ticket.status == "open"
        assert ticket.context["input"] == value
        assert len(ticket.context["model_calls"]) == calls.count()
        assert {"run.awaiting_review", "ticket.opened"} <= kinds
        assert run.result is None


def test_successful_report_is_published_once_and_answer_traces_to_tools(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"}))
    report = PublishedReport.objects.get()
    assert run.result["report_id"] == report.report_id
    assert run.result["record_count"] == len(
        run.tool_calls.get(name="fetch_transactions").output["transactions"]
    )
    assert AuditLogEntry.objects.count() == 1


def test_non_compliant_day_is_never_published(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-19"}))
    assert run.status == S.AWAITING_REVIEW
    assert PublishedReport.objects.count() == 0
