"""Issue 14 §5: the limits and fallbacks the seed names, declared per tool and per workflow,
against the simulator: retry limits per tool, latency limits per step and per run (their own
escalation reason), the last cached result on failure (marked, and the answer must say so),
and "the rules changed, re-run the validation step" (tests/demo/test_financial_report_seed.py
for the demo's side)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest

from orchestration import limits
from orchestration.launch import start_run
from orchestration.models import AuditEvent, Run, ToolCall
from orchestration.workflows import registry
from orchestration.workflows.declaration import CachedResult, Constraints, RerunWhenChanged, Tool
from orchestration.workflows.prompt import render_system_prompt
from reviews import resolutions
from reviews.sla import DEFAULT_SLA
from tests import engine_workflows

S = Run.Status
DAY = {"day": "2026-11-20"}


def _variant(monkeypatch, *, tools=None, **constraints):
    """ledger_close with some tools replaced (by name) and some constraints changed."""
    workflow = registry.get("ledger_close")
    replaced = {t.name: t for t in tools or ()}
    variant = dataclasses.replace(
        workflow,
        tools=tuple(replaced.get(t.name, t) for t in workflow.tools),
        constraints=dataclasses.replace(workflow.constraints, **constraints),
    )
    monkeypatch.setitem(registry._REGISTRY, "ledger_close", variant)
    return variant


def _tool(name, **changes):
    return dataclasses.replace(registry.get("ledger_close").tool(name), **changes)


def _failing(args, ctx):
    raise RuntimeError("the ledger service is down")


def _slow(seconds, handler):
    def slow(args, ctx):
        time.sleep(seconds)
        return handler(args, ctx)

    return slow


# --- retry limits per tool ----------------------------------------------------------------


def test_attempts_for_reads_the_tool_before_the_workflow():
    default = Constraints(max_attempts_per_tool=3)
    assert limits.attempts_for(_tool("fetch_entries"), default) == 3
    assert limits.attempts_for(_tool("fetch_entries", max_attempts=1), default) == 1
    assert limits.attempts_for(_tool("fetch_entries", max_attempts=5), default) == 5
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        _tool("fetch_entries", max_attempts=0)


@pytest.mark.parametrize(("declared", "expected"), [(None, 3), (1, 1), (2, 2), (5, 5)])
def test_a_tool_retry_limit_is_its_own(operator, drive, monkeypatch, declared, expected):
    _variant(
        monkeypatch,
        tools=[_tool("fetch_entries", handler=_failing, max_attempts=declared)],
        max_attempts_per_tool=3,
    )
    run = drive(start_run("ledger_close", DAY, operator))
    attempts = ToolCall.objects.filter(run=run, name="fetch_entries")
    assert attempts.count() == expected
    assert set(attempts.values_list("status", flat=True)) == {"error"}
    ticket = run.tickets.get()
    assert ticket.reason == "retries_exhausted"
    assert f"fetch_entries failed {expected} times" in ticket.message


def test_the_prompt_states_the_declared_limits(monkeypatch):
    variant = _variant(
        monkeypatch,
        tools=[_tool("fetch_entries", max_attempts=2)],
        step_latency_seconds=30,
        run_latency_seconds=120,
    )
    prompt = render_system_prompt(variant)
    assert "- fetch_entries: max 2 attempt(s)." in prompt
    assert "over 30s times out and escalates" in prompt
    assert "may not exceed 120s" in prompt


# --- latency limits ------------------------------------------------------------------------


def test_latency_limit_has_its_own_reason_and_service_level():
    assert DEFAULT_SLA["latency_limit"] == (2, 60)


def test_a_tool_stopped_by_the_step_budget_escalates_without_a_retry(operator, drive, monkeypatch):
    fetch = _tool("fetch_entries")
    _variant(
        monkeypatch,
        tools=[dataclasses.replace(fetch, handler=_slow(3.0, fetch.handler))],
        step_latency_seconds=1.0,
    )
    started = time.monotonic()
    run = drive(start_run("ledger_close", DAY, operator))
    took = time.monotonic() - started
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "latency_limit"
    assert "went over its 1s latency limit: fetch_entries was stopped" in ticket.message
    assert ticket.priority == 2
    assert dt.timedelta(minutes=59) < ticket.due_at - ticket.created_at <= dt.timedelta(minutes=60)
    # One attempt, cut by the step's budget (not the tool's 10 s timeout), and no retry.
    assert list(
        ToolCall.objects.filter(run=run, name="fetch_entries").values_list("status", flat=True)
    ) == ["timeout"]
    assert took < 3.0


def test_a_step_that_ends_over_its_limit_escalates(operator, db):
    run = start_run("ledger_close", DAY, operator)
    Run.objects.filter(pk=run.pk).update(status=S.RUNNING)
    run.refresh_from_db()
    constraints = Constraints(step_latency_seconds=30)
    fast = limits.StepClock(limit=30, started=time.monotonic() - 5)
    assert limits.after_step(run, constraints, fast) is False
    assert not run.tickets.exists()
    slow = limits.StepClock(limit=30, started=time.monotonic() - 41)
    assert limits.after_step(run, constraints, slow) is True
    ticket = run.tickets.get()
    assert ticket.reason == "latency_limit"
    assert "took 41." in ticket.message and "step latency limit is 30s" in ticket.message
    assert ticket.context["details"]["limit"] == "step"
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW
    # A run no longer running is left alone.
    assert limits.after_step(run, constraints, slow) is False


def test_run_latency_limit_escalates_and_a_resume_grants_another_allowance(
    operator, reviewer, drive, monkeypatch
):
    fetch, check = _tool("fetch_entries"), _tool("check_balance")
    _variant(
        monkeypatch,
        tools=[
            dataclasses.replace(fetch, handler=_slow(0.7, fetch.handler)),
            dataclasses.replace(check, handler=_slow(0.7, check.handler)),
        ],
        run_latency_seconds=1.0,
    )
    run = drive(start_run("ledger_close", DAY, operator))
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "latency_limit"
    assert (
        ticket.message.startswith("The run has worked 1.")
        and "its latency limit is 1s" in ticket.message
    )
    assert (
        ticket.context["details"]["limit"] == "run"
        and ticket.context["details"]["worked_seconds"] > 1.0
    )
    assert limits.run_work_seconds(run) > 1.0
    # Not posted yet: the limit stopped it after check_balance.
    assert not engine_workflows.posted_for(run.pk)
    resolutions.resolve(ticket.pk, reviewer, "resume", comment="the ledger service was slow today")
    run = drive(run)
    assert run.status == S.SUCCEEDED  # 2 s allowed now; the post is fast
    assert len(engine_workflows.posted_for(run.pk)) == 1


# --- the last cached result -----------------------------------------------------------------


def _fallback_run(operator, drive):
    """fx_rates on a Sunday, after a Friday run: the fetch times out, the Friday answer is used."""
    friday = drive(start_run("fx_rates", {"date": "2026-11-20"}, operator))
    assert friday.status == S.SUCCEEDED and friday.result["fallbacks"] == []
    live = ToolCall.objects.get(run=friday, name="fetch_fx_rates", status="ok")

    sunday = drive(start_run("fx_rates", {"date": "2026-11-22"}, operator))
    assert sunday.status == S.SUCCEEDED
    attempts = list(ToolCall.objects.filter(run=sunday, name="fetch_fx_rates").order_by("attempt"))
    assert [a.status for a in attempts] == [
        "timeout",
        "timeout",
        "ok",
    ]  # max_attempts=2, then the cache
    answered = attempts[-1]
    assert answered.settled and answered.output["rates"] == live.output["rates"]
    marker = answered.output["fallback"]
    assert marker["kind"] == "last_cached_result" and marker["source_tool_call"] == live.pk
    assert marker["cached_at"] == live.finished_at.isoformat()
    assert "timeout" in marker["reason"]
    # The visible marker in the answer, checked by the engine against the record.
    assert sunday.result["fallbacks"] == [
        {"tool": "fetch_fx_rates", "cached_at": marker["cached_at"]}
    ]
    assert (
        sunday.result["as_of"] == "2026-11-20" and sunday.result["requested_date"] == "2026-11-22"
    )
    event = AuditEvent.objects.get(run=sunday, kind="tool.fallback")
    assert event.payload["source_tool_call"] == live.pk
    return sunday


def test_fetch_timeout_falls_back_to_the_last_cached_result_and_says_so(operator, drive):
    _fallback_run(operator, drive)


def test_the_run_page_marks_the_cached_answer(operator, drive, client):
    sunday = _fallback_run(operator, drive)
    client.force_login(operator)
    page = client.get(f"/runs/{sunday.pk}/").content.decode()
    assert page.count("fallback: last cached result, cached ") == 1


def test_no_cached_result_escalates_as_before(operator, drive):
    run = drive(start_run("fx_rates", {"date": "2026-11-22"}, operator))
    assert run.status == S.AWAITING_REVIEW
    assert run.tickets.get().reason == "retries_exhausted"
    assert not AuditEvent.objects.filter(run=run, kind="tool.fallback").exists()


def test_an_answer_that_hides_the_fallback_is_refused(operator, drive, monkeypatch):
    drive(start_run("fx_rates", {"date": "2026-11-20"}, operator))
    workflow = registry.get("fx_rates")

    def hiding(conv):
        turn = workflow.policy(conv)
        if turn.content[-1]["type"] == "text":  # the answer: drop the fallback it names
            import json

            answer = json.loads(turn.content[-1]["text"])
            answer["fallbacks"] = []
            turn.content[-1]["text"] = json.dumps(answer)
        return turn

    monkeypatch.setitem(
        registry._REGISTRY, "fx_rates", dataclasses.replace(workflow, policy=hiding)
    )
    run = drive(start_run("fx_rates", {"date": "2026-11-22"}, operator))
    assert run.status == S.AWAITING_REVIEW
    rejected = AuditEvent.objects.filter(run=run, kind="final.rejected")
    assert rejected.count() == 2
    assert any(
        "answered with its last cached result" in p for p in rejected.first().payload["problems"]
    )
    ticket = run.tickets.get()
    assert ticket.reason == "validation_failed" and "last cached result" in ticket.message
    assert run.result is None


def test_an_answer_that_claims_a_fallback_that_did_not_happen_is_refused(
    operator, drive, monkeypatch
):
    workflow = registry.get("fx_rates")

    def claiming(conv):
        turn = workflow.policy(conv)
        if turn.content[-1]["type"] == "text":
            import json

            answer = json.loads(turn.content[-1]["text"])
            answer["fallbacks"] = [
                {"tool": "fetch_fx_rates", "cached_at": "2026-11-20T00:00:00+00:00"}
            ]
            turn.content[-1]["text"] = json.dumps(answer)
        return turn

    monkeypatch.setitem(
        registry._REGISTRY, "fx_rates", dataclasses.replace(workflow, policy=claiming)
    )
    run = drive(start_run("fx_rates", {"date": "2026-11-20"}, operator))
    assert run.status == S.AWAITING_REVIEW
    assert "no such fallback was used" in run.tickets.get().message


def test_a_fallback_needs_room_in_the_output_and_no_side_effect():
    workflow = registry.get("fx_rates")
    schema = {
        **workflow.output_schema,
        "properties": {
            k: v for k, v in workflow.output_schema["properties"].items() if k != "fallbacks"
        },
    }
    with pytest.raises(ValueError, match="must declare 'fallbacks'"):
        dataclasses.replace(workflow, output_schema=schema)
    with pytest.raises(ValueError, match="a cached result cannot stand in"):
        dataclasses.replace(_tool("post_summary"), fallback=CachedResult())


# --- rules that changed ----------------------------------------------------------------------


def test_rules_changed_refuses_the_guarded_tool_until_the_check_runs_again(
    operator, drive, monkeypatch
):
    """Generic: check_balance records the rules version; post_summary needs it current."""
    version = {"now": "1"}
    check = _tool("check_balance")
    calls = []

    def versioned_check(args, ctx):
        calls.append(version["now"])
        out = check.handler(args, ctx)
        if len(calls) == 1:
            version["now"] = "2"  # the rules change right after the first check
        return {**out, "rules_version": calls[-1]}

    schema = {
        **check.output_schema,
        "properties": {**check.output_schema["properties"], "rules_version": {"type": "string"}},
    }
    variant = _variant(
        monkeypatch,
        tools=[dataclasses.replace(check, handler=versioned_check, output_schema=schema)],
    )
    rerun = RerunWhenChanged(
        "check_balance", "rules_version", lambda: version["now"], before=("post_summary",)
    )
    base_policy = variant.policy

    def policy(conv):
        refused = conv.last_result("post_summary")
        if (
            refused is not None
            and refused["is_error"]
            and "rules changed" in str(refused["content"])
            and len(conv.results("check_balance")) < 2
        ):
            fetched = conv.last_result("fetch_entries")["content"]
            from simulator.policy import Turn, tool_use

            return Turn(content=[tool_use("check_balance", {"total": fetched["total"]})])
        return base_policy(conv)

    monkeypatch.setitem(
        registry._REGISTRY,
        "ledger_close",
        dataclasses.replace(variant, reruns=(rerun,), policy=policy),
    )
    run = drive(start_run("ledger_close", DAY, operator))
    assert run.status == S.SUCCEEDED
    assert calls == ["1", "2"]
    refused = ToolCall.objects.get(run=run, name="post_summary", status="rejected")
    assert "rules_changed" in refused.error and "version 1, now 2" in refused.error
    assert len(engine_workflows.posted_for(run.pk)) == 1


def test_a_rerun_must_name_declared_tools():
    workflow = registry.get("ledger_close")
    with pytest.raises(ValueError, match="unknown tool"):
        dataclasses.replace(
            workflow, reruns=(RerunWhenChanged("nope", "v", lambda: "1", before=("post_summary",)),)
        )


def test_tool_declares_its_fallbacks_as_data():
    tool = Tool(
        "t",
        "d",
        {"type": "object"},
        {"type": "object"},
        lambda a, c: {},
        max_attempts=2,
        fallback=CachedResult(max_age_seconds=60),
        narrow_on_timeout=lambda i: None,
    )
    assert tool.max_attempts == 2 and tool.fallback.on == ("timeout",)
