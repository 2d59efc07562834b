"""The tool-use loop, step by step in this process: every branch, every escalation reason,
every fault. Each case asserts the run's status, its rows, its ticket and its audit trail.

Written on workflows made for the tests (tests/engine_workflows.py "ledger_close", and the
probes of tests/workflows_for_tests.py), never on the demo workflows, which have their own
tests in tests/demo/."""

from __future__ import annotations

import tests.workflows_for_tests  # noqa: F401 - registers the probe workflow
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from reviews.models import EscalationTicket
from tests import engine_workflows
from tests.engine_workflows import posted_for

S = Run.Status


def _start(user, workflow, value, faults=None):
    options = {"simulator_faults": faults} if faults else None
    return start_run(workflow, value, user, options=options)


def test_conversation_replays_exactly(operator, drive):
    """Each request carries the previous turns verbatim and answers every tool_use first."""
    run = drive(_start(operator, "ledger_close", {"day": "2026-11-20"}))
    calls = list(run.model_calls.order_by("turn"))
    assert calls[0].request_content == [{"type": "text", "text": '{"day": "2026-11-20"}'}]
    for previous, current in zip(calls, calls[1:], strict=False):
        results = [b for b in current.request_content if b["type"] == "tool_result"]
        assert [r["tool_use_id"] for r in results] == [t["id"] for t in previous.tool_uses]


# --- faults from the simulated API ------------------------------------------------------


def test_rate_limits_are_retried_by_the_sdk_and_counted(operator, drive):
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "rate_limit", "turn": 1, "times": 2}],
        )
    )
    assert run.status == S.SUCCEEDED
    turn1 = run.model_calls.get(turn=1)
    assert turn1.sdk_attempts == 3  # two 429s, then success
    assert all(mc.sdk_attempts == 1 for mc in run.model_calls.exclude(turn=1))


def test_overload_storm_is_retried_with_backoff_then_escalates(operator, drive, settings):
    settings.LLM_STEP_MAX_ATTEMPTS = 3
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "overloaded", "turn": 0, "times": 99}],
        )
    )
    assert run.status == S.AWAITING_REVIEW
    attempts = list(run.model_calls.filter(turn=0).order_by("attempt"))
    assert [mc.attempt for mc in attempts] == [1, 2, 3]
    assert all(
        mc.status == "error" and "529" in mc.error and mc.sdk_attempts == 3 for mc in attempts
    )
    ticket = run.tickets.get()
    assert ticket.reason == "retries_exhausted" and "failed 3 times" in ticket.message
    assert run.cost_usd == 0


def test_hallucinated_tool_is_answered_as_error_then_escalates_when_repeated(operator, drive):
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[
                {"fault": "hallucinated_tool", "turn": 0},
                {"fault": "hallucinated_tool", "turn": 1},
            ],
        )
    )
    unknown = list(run.tool_calls.filter(status="unknown_tool"))
    assert len(unknown) == 2 and unknown[0].name == "fetch_entries_v2"
    assert "Available tools: fetch_entries, check_balance, post_summary" in unknown[0].error
    assert run.status == S.AWAITING_REVIEW and run.tickets.get().reason == "unknown_tool"
    second_request = run.model_calls.get(turn=1).request_content
    assert second_request[0]["type"] == "tool_result" and second_request[0]["is_error"] is True


def test_single_hallucinated_tool_recovers(operator, drive):
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "hallucinated_tool", "turn": 0}],
        )
    )
    assert run.status == S.SUCCEEDED
    assert run.tool_calls.filter(status="unknown_tool").count() == 1


def test_malformed_tool_input_is_rejected_and_the_model_corrects_it(operator, drive):
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "malformed_tool_input", "turn": 0}],
        )
    )
    rejected = run.tool_calls.get(status="rejected")
    assert rejected.name == "fetch_entries" and "does not match its schema" in rejected.error
    assert run.status == S.SUCCEEDED


def test_ambiguity_escalates_with_the_models_words(operator, drive):
    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "ambiguity", "turn": 2}],
        )
    )
    ticket = run.tickets.get()
    assert ticket.reason == "ambiguity"
    assert "ambiguous" in ticket.context["details"]["model_words"]
    assert run.status == S.AWAITING_REVIEW


# --- hostile or broken tools ------------------------------------------------------------


def test_flaky_tool_is_retried_with_backoff_until_it_works(operator, drive):
    run = drive(_start(operator, "probe", {"mode": "flaky"}))
    attempts = list(
        run.tool_calls.filter(name="probe").order_by("attempt").values_list("status", flat=True)
    )
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


def test_a_settled_attempt_and_its_audit_event_commit_together(operator, drive, monkeypatch):
    """An attempt's outcome is never committed without its audit event: when the event cannot
    be appended (here it raises, as a crash between the two writes would stop it), the
    attempt stays as it was before (running: the next step treats it as interrupted) and the
    run escalates; no invalid_output row exists that the trail does not show."""
    from orchestration import audit

    real = audit.record

    def failing(kind, **kwargs):
        if kind == "tool.invalid_output":
            raise RuntimeError("the audit append failed")
        return real(kind, **kwargs)

    monkeypatch.setattr(audit, "record", failing)
    run = drive(_start(operator, "probe", {"mode": "invalid"}))
    assert not run.tool_calls.filter(status="invalid_output").exists()
    assert run.tickets.get().reason == "tool_error"
    for tc in run.tool_calls.exclude(status="running"):
        assert AuditEvent.objects.filter(run=run, payload__tool_use_id=tc.tool_use_id).exists()


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
    stripped = AuditEvent.objects.get(run=run, kind="tool.called", payload__name="probe").payload[
        "stripped"
    ]
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

    from simulator.policy import final

    skipping = dataclasses.replace(workflow, policy=lambda conv: final({"value": 1}))
    registry._REGISTRY["probe"] = skipping
    try:
        run = drive(run)
    finally:
        registry._REGISTRY["probe"] = workflow
    rejected = AuditEvent.objects.filter(run=run, kind="final.rejected")
    assert rejected.count() == 2
    problems = rejected.first().payload["problems"]
    assert "required tool(s) not called successfully: receipt" in problems
    assert (
        run.model_calls.get(turn=1)
        .request_content[0]["text"]
        .startswith("[engine] Your final answer was not accepted")
    )
    assert run.tickets.get().reason == "validation_failed"


def test_step_limit_escalates(operator, drive, monkeypatch):
    from orchestration.workflows import registry

    workflow = registry.get("ledger_close")
    import dataclasses

    tight = dataclasses.replace(
        workflow, constraints=dataclasses.replace(workflow.constraints, max_steps=2)
    )
    monkeypatch.setitem(registry._REGISTRY, "ledger_close", tight)
    run = drive(_start(operator, "ledger_close", {"day": "2026-11-20"}))
    assert run.model_calls.count() == 2
    assert run.tickets.get().reason == "step_limit"


def test_cost_budget_escalates_when_crossed(operator, drive, monkeypatch):
    from decimal import Decimal

    from orchestration.workflows import registry

    workflow = registry.get("ledger_close")
    import dataclasses

    tight = dataclasses.replace(
        workflow,
        constraints=dataclasses.replace(workflow.constraints, max_cost_usd=Decimal("0.13")),
    )
    monkeypatch.setitem(registry._REGISTRY, "ledger_close", tight)
    run = drive(_start(operator, "ledger_close", {"day": "2026-11-20"}))
    ticket = run.tickets.get()
    # The call that would not fit under the ceiling at its worst case was never sent: with
    # $0.13 the first call's worst case ($0.126) fits, the second's on top of it does not.
    assert ticket.reason == "budget_exceeded"
    assert "would pass its ceiling of $0.13 (the workflow's maximum of $0.13)" in ticket.message
    assert (
        run.model_calls.count() >= 1 and run.cost_usd <= Decimal("0.13") and run.reserved_usd == 0
    )
    assert run.cost_usd + Decimal(ticket.context["details"]["needed_usd"]) > Decimal("0.13")


def test_redelivered_step_is_harmless(operator, drive):
    """A second delivery of a step while the first holds the lease does nothing."""
    from orchestration import engine

    run = _start(operator, "ledger_close", {"day": "2026-11-20"})
    claimed = engine.claim_step(run.pk)
    assert claimed is not None and claimed.status == S.RUNNING
    assert engine.claim_step(run.pk) is None  # the duplicate finds the lease held
    engine.release_step(run.pk, None)
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert len(posted_for(run.pk)) == 1 and engine_workflows.CALLS[str(run.pk)] == 1


def test_interrupted_tool_attempt_is_repeated_with_the_same_key(operator, drive):
    """A tool attempt left 'running' by a dead worker is marked interrupted and redone once."""
    from orchestration import engine

    run = drive(
        _start(
            operator,
            "ledger_close",
            {"day": "2026-11-20"},
            faults=[{"fault": "ambiguity", "turn": 3}],
        )
    )  # stop after the post
    assert run.status == S.AWAITING_REVIEW
    post = run.tool_calls.get(name="post_summary")
    assert engine_workflows.CALLS[str(run.pk)] == 1
    # Simulate a crash after the side effect but before the row was finished.
    ToolCall.objects.filter(pk=post.pk).update(status="running", settled=False)
    Run.objects.filter(pk=run.pk).update(status="running", lease_expires_at=None)
    EscalationTicket.objects.filter(run=run).delete()
    ModelCall.objects.filter(run=run, turn=3).delete()
    engine.run_step(run.pk)
    attempts = list(run.tool_calls.filter(name="post_summary").order_by("attempt"))
    assert [a.status for a in attempts] == ["error", "ok"]
    assert "interrupted" in attempts[0].error
    # The handler ran again with the same idempotency key: the summary is posted once.
    assert engine_workflows.CALLS[str(run.pk)] == 2
    assert len(posted_for(run.pk)) == 1


def test_tool_calls_of_one_turn_run_in_parallel(operator, drive):
    run = drive(_start(operator, "pair", {}))
    assert run.status == S.SUCCEEDED
    a, b = run.tool_calls.order_by("name")
    assert a.status == b.status == "ok"
    # Their executions overlap in time (each naps 0.6 s).
    assert a.created_at < b.finished_at and b.created_at < a.finished_at
    results = run.model_calls.get(turn=1).request_content
    assert [r["tool_use_id"] for r in results] == [
        t["id"] for t in run.model_calls.get(turn=0).tool_uses
    ]


def test_run_timeout_escalates(operator, drive):
    import datetime as dt

    from django.utils import timezone

    run = _start(operator, "ledger_close", {"day": "2026-11-20"})
    Run.objects.filter(pk=run.pk).update(queued_at=timezone.now() - dt.timedelta(hours=1))
    run = drive(run)
    assert run.tickets.get().reason == "timeout"
    assert run.model_calls.count() == 0
