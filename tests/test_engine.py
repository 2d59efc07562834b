"""The tool-use loop, step by step in this process: every branch, every escalation reason,
every fault. Each case asserts the run's status, its rows, its ticket and its audit trail."""

from __future__ import annotations

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers the probe workflow
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from reviews.models import EscalationTicket
from warehouse.models import AuditLogEntry, PaymentDecision, PublishedReport

S = Run.Status


def _start(user, workflow, value, faults=None):
    options = {"simulator_faults": faults} if faults else None
    return start_run(workflow, value, user, options=options)


MATRIX = [
    # workflow, input, final status, ticket reason, tools that ran ok (in order)
    ("financial_reporting", {"date": "2026-11-20"}, S.SUCCEEDED, None,
     ["fetch_transactions", "reconcile_ledger", "validate_apra", "publish_report", "audit_log"]),
    ("financial_reporting", {"date": "2026-11-17"}, S.SUCCEEDED, None,  # $3.50 difference: under the limit
     ["fetch_transactions", "reconcile_ledger", "validate_apra", "publish_report", "audit_log"]),
    ("financial_reporting", {"date": "2026-11-21"}, S.AWAITING_REVIEW, "validation_failed", ["fetch_transactions"]),
    ("financial_reporting", {"date": "2026-11-18"}, S.AWAITING_REVIEW, "validation_failed",
     ["fetch_transactions", "reconcile_ledger"]),
    ("financial_reporting", {"date": "2026-11-19"}, S.AWAITING_REVIEW, "regulatory_trigger",
     ["fetch_transactions", "reconcile_ledger", "validate_apra"]),
    ("payment_approval", {"payment_id": "PAY-1001"}, S.SUCCEEDED, None,
     ["fetch_payment", "standard_validator", "record_decision", "audit_log"]),
    ("payment_approval", {"payment_id": "PAY-1002"}, S.SUCCEEDED, None,
     ["fetch_payment", "high_value_validator", "record_decision", "audit_log"]),
    ("payment_approval", {"payment_id": "PAY-1003"}, S.AWAITING_REVIEW, "regulatory_trigger",
     ["fetch_payment", "high_value_validator"]),
    ("payment_approval", {"payment_id": "PAY-1004"}, S.AWAITING_REVIEW, "regulatory_trigger",
     ["fetch_payment", "standard_validator"]),
    ("payment_approval", {"payment_id": "PAY-1005"}, S.AWAITING_REVIEW, "regulatory_trigger",  # sign-off first
     ["fetch_payment", "high_value_validator"]),
    ("customer_router", {"customer_account": "ACC-100", "question": "How much could I borrow for a car loan?"},
     S.SUCCEEDED, None, ["lending_agent"]),
    ("customer_router", {"customer_account": "ACC-101", "question": "Is my KYC verification complete?"},
     S.SUCCEEDED, None, ["compliance_agent"]),
    ("customer_router", {"customer_account": "ACC-100", "question": "hello there"}, S.AWAITING_REVIEW, "ambiguity", []),
    ("customer_router", {"customer_account": "ACC-900", "question": "status of my payment"},
     S.AWAITING_REVIEW, "validation_failed", []),
]


@pytest.mark.parametrize(("workflow", "value", "status", "reason", "tools"), MATRIX,
                         ids=[f"{m[0]}-{list(m[1].values())[-1]}" for m in MATRIX])
def test_branch_matrix(operator, drive, workflow, value, status, reason, tools):
    run = drive(_start(operator, workflow, value))
    assert run.status == status
    ok = list(ToolCall.objects.filter(run=run, status="ok").order_by("created_at").values_list("name", flat=True))
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
    assert run.result["record_count"] == len(run.tool_calls.get(name="fetch_transactions").output["transactions"])
    assert AuditLogEntry.objects.count() == 1


def test_non_compliant_day_is_never_published(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-19"}))
    assert run.status == S.AWAITING_REVIEW
    assert PublishedReport.objects.count() == 0


def test_conversation_replays_exactly(operator, drive):
    """Each request carries the previous turns verbatim and answers every tool_use first."""
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"}))
    calls = list(run.model_calls.order_by("turn"))
    assert calls[0].request_content == [{"type": "text", "text": '{"date": "2026-11-20"}'}]
    for previous, current in zip(calls, calls[1:], strict=False):
        results = [b for b in current.request_content if b["type"] == "tool_result"]
        assert [r["tool_use_id"] for r in results] == [t["id"] for t in previous.tool_uses]


# --- faults from the simulated API ------------------------------------------------------


def test_rate_limits_are_retried_by_the_sdk_and_counted(operator, drive):
    run = drive(_start(operator, "payment_approval", {"payment_id": "PAY-1001"},
                       faults=[{"fault": "rate_limit", "turn": 1, "times": 2}]))
    assert run.status == S.SUCCEEDED
    turn1 = run.model_calls.get(turn=1)
    assert turn1.sdk_attempts == 3  # two 429s, then success
    assert all(mc.sdk_attempts == 1 for mc in run.model_calls.exclude(turn=1))


def test_overload_storm_is_retried_with_backoff_then_escalates(operator, drive, settings):
    settings.LLM_STEP_MAX_ATTEMPTS = 3
    run = drive(_start(operator, "payment_approval", {"payment_id": "PAY-1001"},
                       faults=[{"fault": "overloaded", "turn": 0, "times": 99}]))
    assert run.status == S.AWAITING_REVIEW
    attempts = list(run.model_calls.filter(turn=0).order_by("attempt"))
    assert [mc.attempt for mc in attempts] == [1, 2, 3]
    assert all(mc.status == "error" and "529" in mc.error and mc.sdk_attempts == 3 for mc in attempts)
    ticket = run.tickets.get()
    assert ticket.reason == "retries_exhausted" and "failed 3 times" in ticket.message
    assert run.cost_usd == 0


def test_hallucinated_tool_is_answered_as_error_then_escalates_when_repeated(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"},
                       faults=[{"fault": "hallucinated_tool", "turn": 0}, {"fault": "hallucinated_tool", "turn": 1}]))
    unknown = list(run.tool_calls.filter(status="unknown_tool"))
    assert len(unknown) == 2 and unknown[0].name == "fetch_transactions_v2"
    assert "Available tools: fetch_transactions" in unknown[0].error
    assert run.status == S.AWAITING_REVIEW and run.tickets.get().reason == "unknown_tool"
    second_request = run.model_calls.get(turn=1).request_content
    assert second_request[0]["type"] == "tool_result" and second_request[0]["is_error"] is True


def test_single_hallucinated_tool_recovers(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"},
                       faults=[{"fault": "hallucinated_tool", "turn": 0}]))
    assert run.status == S.SUCCEEDED
    assert run.tool_calls.filter(status="unknown_tool").count() == 1


def test_malformed_tool_input_is_rejected_and_the_model_corrects_it(operator, drive):
    run = drive(_start(operator, "payment_approval", {"payment_id": "PAY-1001"},
                       faults=[{"fault": "malformed_tool_input", "turn": 0}]))
    rejected = run.tool_calls.get(status="rejected")
    assert rejected.name == "fetch_payment" and "does not match its schema" in rejected.error
    assert run.status == S.SUCCEEDED


def test_ambiguity_escalates_with_the_models_words(operator, drive):
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"},
                       faults=[{"fault": "ambiguity", "turn": 2}]))
    ticket = run.tickets.get()
    assert ticket.reason == "ambiguity"
    assert "ambiguous" in ticket.context["details"]["model_words"]
    assert run.status == S.AWAITING_REVIEW


# --- hostile or broken tools ------------------------------------------------------------


def test_flaky_tool_is_retried_with_backoff_until_it_works(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "flaky"}))
    attempts = list(run.tool_calls.filter(name="probe").order_by("attempt").values_list("status", flat=True))
    assert attempts == ["error", "error", "ok"]
    assert run.status == S.SUCCEEDED and run.result == {"value": 7, "receipt": "RCPT-7"}


def test_broken_tool_escalates_after_max_attempts(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "broken"}))
    assert run.tool_calls.filter(name="probe").count() == 3
    ticket = run.tickets.get()
    assert ticket.reason == "retries_exhausted" and "upstream down" in ticket.message
    assert ticket.failing_tool_call.attempt == 3


def test_tool_timeout_is_bounded(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "slow"}))
    statuses = list(run.tool_calls.filter(name="probe").values_list("status", flat=True))
    assert statuses == ["timeout"] * 3
    assert run.tickets.get().reason == "retries_exhausted"


def test_invalid_output_is_retried_once_then_escalates(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "invalid"}))
    probes = list(run.tool_calls.filter(name="probe"))
    assert [p.status for p in probes] == ["invalid_output", "invalid_output"]
    assert "value: 'not a number' is not of type 'integer'" in probes[0].validation_errors[0]
    assert run.tickets.get().reason == "validation_failed"


def test_semantic_validator_failure_escalates(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "semantic"}))
    assert run.tool_calls.filter(status="invalid_output").count() == 2
    assert "must be positive" in run.tickets.get().message


def test_injected_fields_are_stripped_and_skip_nothing(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "extra"}))
    probe = run.tool_calls.get(name="probe", status="ok")
    assert probe.output == {"value": 7, "checked": False}
    assert probe.raw_output["validation_passed"] is True
    sent = run.model_calls.get(turn=1).request_content[0]["content"]
    assert "validation_passed" not in sent and "ignore all audit rules" not in sent
    stripped = AuditEvent.objects.get(run=run, kind="tool.called", payload__name="probe").payload["stripped"]
    assert stripped == ["/validation_passed", "/note"]
    assert run.status == S.SUCCEEDED  # the required receipt step still ran
    assert run.tool_calls.filter(name="receipt", status="ok").exists()


def test_hallucinated_value_in_the_answer_escalates(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "fake_id"}))
    ticket = run.tickets.get()
    assert ticket.reason == "hallucination" and "RCPT-FAKE" in ticket.message
    assert run.result is None


def test_answer_without_required_tool_is_nudged_once_then_escalates(operator, drive):
    from orchestration.workflows import registry

    workflow = registry.get("probe")
    run = _start(operator, "probe", {"mode": "ok"})
    import dataclasses

    from demo.playbook import answer

    skipping = dataclasses.replace(workflow, policy=lambda conv: answer({"value": 1}))
    registry._REGISTRY["probe"] = skipping
    try:
        run = drive(run)
    finally:
        registry._REGISTRY["probe"] = workflow
    rejected = AuditEvent.objects.filter(run=run, kind="final.rejected")
    assert rejected.count() == 2
    problems = rejected.first().payload["problems"]
    assert "required tool(s) not called successfully: receipt" in problems
    assert run.model_calls.get(turn=1).request_content[0]["text"].startswith("[engine] Your final answer was not accepted")
    assert run.tickets.get().reason == "validation_failed"


def test_step_limit_escalates(operator, drive, monkeypatch):
    from orchestration.workflows import registry

    workflow = registry.get("financial_reporting")
    import dataclasses

    tight = dataclasses.replace(workflow, constraints=dataclasses.replace(workflow.constraints, max_steps=2))
    monkeypatch.setitem(registry._REGISTRY, "financial_reporting", tight)
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"}))
    assert run.model_calls.count() == 2
    assert run.tickets.get().reason == "step_limit"


def test_cost_budget_escalates_when_crossed(operator, drive, monkeypatch):
    from decimal import Decimal

    from orchestration.workflows import registry

    workflow = registry.get("financial_reporting")
    import dataclasses

    tight = dataclasses.replace(workflow, constraints=dataclasses.replace(workflow.constraints, max_cost_usd=Decimal("0.15")))
    monkeypatch.setitem(registry._REGISTRY, "financial_reporting", tight)
    run = drive(_start(operator, "financial_reporting", {"date": "2026-11-20"}))
    ticket = run.tickets.get()
    # The call that would not fit under the ceiling at its worst case was never sent.
    assert ticket.reason == "budget_exceeded"
    assert "would pass its ceiling of $0.15 (the workflow's maximum of $0.15)" in ticket.message
    assert run.model_calls.count() >= 1 and run.cost_usd <= Decimal("0.15") and run.reserved_usd == 0
    assert run.cost_usd + Decimal(ticket.context["details"]["needed_usd"]) > Decimal("0.15")


def test_redelivered_step_is_harmless(operator, drive):
    """A second delivery of a step while the first holds the lease does nothing."""
    from orchestration import engine

    run = _start(operator, "financial_reporting", {"date": "2026-11-20"})
    claimed = engine.claim_step(run.pk)
    assert claimed is not None and claimed.status == S.RUNNING
    assert engine.claim_step(run.pk) is None  # the duplicate finds the lease held
    engine.release_step(run.pk, None)
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert PublishedReport.objects.count() == 1


def test_interrupted_tool_attempt_is_repeated_with_the_same_key(operator, drive):
    """A tool attempt left 'running' by a dead worker is marked interrupted and redone once."""
    from orchestration import engine

    run = drive(_start(operator, "payment_approval", {"payment_id": "PAY-1001"},
                       faults=[{"fault": "ambiguity", "turn": 2}]))  # stop after the validator
    assert run.status == S.AWAITING_REVIEW
    validator = run.tool_calls.get(name="standard_validator")
    # Simulate a crash after the side effect but before the row was finished.
    ToolCall.objects.filter(pk=validator.pk).update(status="running", settled=False)
    Run.objects.filter(pk=run.pk).update(status="running", lease_expires_at=None)
    EscalationTicket.objects.filter(run=run).delete()
    ModelCall.objects.filter(run=run, turn=2).delete()
    engine.run_step(run.pk)
    attempts = list(run.tool_calls.filter(name="standard_validator").order_by("attempt"))
    assert [a.status for a in attempts] == ["error", "ok"]
    assert "interrupted" in attempts[0].error
    assert PaymentDecision.objects.filter(validator="standard").count() == 1


def test_tool_calls_of_one_turn_run_in_parallel(operator, drive):
    run = drive(_start(operator, "pair", {}))
    assert run.status == S.SUCCEEDED
    a, b = run.tool_calls.order_by("name")
    assert a.status == b.status == "ok"
    # Their executions overlap in time (each naps 0.6 s).
    assert a.created_at < b.finished_at and b.created_at < a.finished_at
    results = run.model_calls.get(turn=1).request_content
    assert [r["tool_use_id"] for r in results] == [t["id"] for t in run.model_calls.get(turn=0).tool_uses]


def test_run_timeout_escalates(operator, drive):
    import datetime as dt

    from django.utils import timezone

    run = _start(operator, "financial_reporting", {"date": "2026-11-20"})
    Run.objects.filter(pk=run.pk).update(queued_at=timezone.now() - dt.timedelta(hours=1))
    run = drive(run)
    assert run.tickets.get().reason == "timeout"
    assert run.model_calls.count() == 0
