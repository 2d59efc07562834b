"""Re-run, fork, cancel and compare (orchestration.run_actions): every action, its refusals,
and what the engine does when a run is cancelled under it."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

import tests.workflows_for_tests as test_workflows
from costs import accounting, budgets
from costs.models import Budget
from orchestration import audit, forks, lifecycle, model_calls, run_actions
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run, WorkflowVersion
from orchestration.run_actions import ActionRefused
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot
from reviews import resolutions
from reviews.models import ApprovalRequest, EscalationTicket
from warehouse.models import AuditLogEntry, PublishedReport

S = Run.Status
COMPLIANT = json.dumps({"compliant": True, "violations": [], "rules_version": "1"})


@pytest.fixture
def paused(operator, drive):
    """A financial report paused on APRA violations (failing step: validate_apra)."""
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    assert run.status == S.AWAITING_REVIEW
    return run, run.tickets.get()


def _failing(ticket: EscalationTicket) -> tuple[int, str]:
    tc = ticket.failing_tool_call
    return tc.model_call.turn, tc.tool_use_id


def _refused(code: str, match: str = ""):
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(ActionRefused, match=match or None)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            assert self.info.value.code == code, (self.info.value.code, str(self.info.value))
            return handled

    return _Check()


# --- lifecycle ---------------------------------------------------------------------------


def test_every_state_but_the_final_ones_may_be_cancelled():
    assert set(lifecycle.CANCELLABLE) == {
        S.REQUESTED,
        S.AWAITING_APPROVAL,
        S.APPROVED,
        S.QUEUED,
        S.RUNNING,
        S.AWAITING_REVIEW,
        S.AWAITING_SUBAGENT,
    }
    assert not set(lifecycle.CANCELLABLE) & set(Run.FINAL)


# --- re-run ------------------------------------------------------------------------------


def test_rerun_is_a_new_run_with_the_same_input_linked_to_the_original(operator, drive):
    original = drive(start_run("probe", {"mode": "ok"}, operator))
    assert original.status == S.SUCCEEDED
    again = run_actions.rerun(operator, original.pk)
    assert again.pk != original.pk and again.status == S.QUEUED
    assert again.input == original.input and again.options == original.options
    assert (again.origin, again.origin_kind, again.fork_turn) == (original, Run.Origin.RERUN, None)
    assert again.requested_by == operator and again.estimate_usd > 0 and again.ceiling_usd > 0
    linked = AuditEvent.objects.get(run=again, kind="run.rerun_of")
    assert linked.payload["origin"] == str(original.pk) and linked.actor == operator
    assert linked.payload["origin_head"]["run_seq"] > 0
    assert AuditEvent.objects.get(run=original, kind="run.derived").payload == {
        "run": str(again.pk),
        "kind": "rerun",
    }
    again = drive(again)
    assert again.status == S.SUCCEEDED and again.result == original.result
    assert not again.model_calls.filter(copied=True).exists()  # a re-run copies nothing
    assert audit.verify_run(again.pk).ok and audit.verify_run(original.pk).ok


def test_rerun_refusals_change_nothing(operator, reviewer, outsider, paused, settings):
    run, _ticket = paused
    before = Run.objects.count()
    with _refused(ActionRefused.NOT_FOUND):
        run_actions.rerun(outsider, run.pk)
    # The reviewer sees the run (its ticket is in the shared queue) but may not start runs.
    with _refused(ActionRefused.FORBIDDEN, "may start runs"):
        run_actions.rerun(reviewer, run.pk)
    # The same start path as any run: a hard budget that would be passed refuses it.
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("0.000001"), hard=True)
    with _refused("budget_exceeded"):
        run_actions.rerun(operator, run.pk)
    assert Run.objects.count() == before


def test_rerun_page_shows_the_estimate_and_a_second_submit_starts_nothing_more(
    client, operator, paused
):
    run, _ticket = paused
    client.force_login(operator)
    page = client.get(reverse("run_rerun", args=[run.pk]))
    body = page.content.decode()
    assert page.status_code == 200 and "Estimated at up to" in body and "2026-11-19" in body
    key = page.context["key"]
    first = client.post(reverse("run_rerun", args=[run.pk]), {"idempotency_key": key})
    second = client.post(reverse("run_rerun", args=[run.pk]), {"idempotency_key": key})
    new = Run.objects.get(origin=run)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == reverse("run_detail", args=[new.pk])


# --- fork --------------------------------------------------------------------------------


def test_a_reviewer_forks_a_paused_run_with_a_corrected_output_and_the_fork_finishes(
    reviewer, paused, drive
):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    original_calls = list(run.model_calls.filter(status="ok").order_by("turn"))
    fork = forks.fork(reviewer, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    assert fork.status == S.QUEUED and fork.requested_by == reviewer
    assert (fork.origin, fork.origin_kind, fork.fork_turn) == (run, Run.Origin.FORK, turn)
    assert fork.workflow_version == run.workflow_version

    copied = list(fork.model_calls.order_by("turn"))
    assert [c.turn for c in copied] == list(range(turn + 1))
    assert all(
        c.copied
        and c.cost_usd == 0
        and c.input_tokens == c.output_tokens == 0
        and c.price_id is None
        for c in copied
    )
    assert [c.copied_from_id for c in copied] == [c.pk for c in original_calls[: turn + 1]]
    assert [c.response_content for c in copied] == [
        c.response_content for c in original_calls[: turn + 1]
    ]
    corrected = fork.tool_calls.get(tool_use_id=tool_use_id)
    assert (
        corrected.status == "corrected"
        and not corrected.copied
        and corrected.output == json.loads(COMPLIANT)
    )
    assert (
        fork.tool_calls.filter(copied=True).count()
        == run.tool_calls.filter(settled=True, model_call__turn__lte=turn)
        .exclude(tool_use_id=tool_use_id)
        .count()
        > 0
    )
    forked = AuditEvent.objects.get(run=fork, kind="run.forked")
    assert (
        forked.actor == reviewer
        and forked.payload["origin"] == str(run.pk)
        and forked.payload["turn"] == turn
    )
    assert forked.payload["corrected"]["tool"] == "validate_apra"
    origin_head = forked.payload["origin_head"]  # the original's chain as it was when forked
    assert (
        AuditEvent.objects.get(run=run, run_seq=origin_head["run_seq"]).hash == origin_head["hash"]
    )
    assert AuditEvent.objects.get(run=run, run_seq=origin_head["run_seq"] + 1).kind == "run.derived"
    assert len(forked.payload["evidence"]) == len(copied) + fork.tool_calls.count()

    fork = drive(fork)
    assert fork.status == S.SUCCEEDED and fork.result["report_id"].startswith("RPT-2026-11-19")
    assert PublishedReport.objects.filter(report_date="2026-11-19").count() == 1
    # Copied calls were paid by the original: the fork's cost is its own calls only, and every
    # sum over calls (costs page, budgets) counts each call once.
    own = fork.model_calls.filter(copied=False)
    assert own.exists() and fork.cost_usd == own.aggregate(s=Sum("cost_usd"))["s"] > 0
    both = ModelCall.objects.filter(run__in=[run, fork]).aggregate(s=Sum("cost_usd"))["s"]
    assert both == run.cost_usd + fork.cost_usd
    # The original is untouched: still paused on its ticket.
    run.refresh_from_db()
    ticket.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW and ticket.status == "open"
    assert audit.verify_run(fork.pk).ok and audit.verify_run(run.pk).ok


def test_fork_refusals_change_nothing(operator, reviewer, auditor, outsider, paused):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    before = Run.objects.count()
    with _refused(ActionRefused.NOT_FOUND):  # a run the user cannot see
        forks.fork(outsider, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    with _refused(ActionRefused.FORBIDDEN):
        forks.fork(auditor, run.pk, turn=turn)
    with _refused(ActionRefused.FORBIDDEN, "reviewers and managers"):  # typing a tool's output
        forks.fork(operator, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    with _refused(ActionRefused.INVALID_INPUT, "out of range") as info:
        forks.fork(reviewer, run.pk, turn=turn + 7)
    assert info.value.fields == {
        "turn": f"turn {turn + 7} is out of range: this run's turns are 0 to {turn}"
    }
    with _refused(ActionRefused.INVALID_INPUT, "not a turn number"):
        forks.fork(reviewer, run.pk, turn="two")
    with _refused(ActionRefused.INVALID_INPUT, "boolean") as info:  # fails the tool's output schema
        forks.fork(
            reviewer,
            run.pk,
            turn=turn,
            tool_use_id=tool_use_id,
            corrected='{"compliant": "yes", "violations": [], "rules_version": "1"}',
        )
    assert "corrected" in info.value.fields
    with _refused(ActionRefused.INVALID_INPUT, "violations are listed"):  # its semantic validator
        forks.fork(
            reviewer,
            run.pk,
            turn=turn,
            tool_use_id=tool_use_id,
            corrected=json.dumps(
                {
                    "compliant": True,
                    "violations": [{"rule_id": "R", "transaction_id": "T", "reason": "x"}],
                    "rules_version": "1",
                }
            ),
        )
    with _refused(ActionRefused.INVALID_INPUT, "belongs to turn"):
        forks.fork(reviewer, run.pk, turn=0, tool_use_id=tool_use_id, corrected=COMPLIANT)
    with _refused(ActionRefused.INVALID_INPUT, "choose the tool call"):
        forks.fork(reviewer, run.pk, turn=turn, corrected=COMPLIANT)
    with _refused(ActionRefused.INVALID_INPUT, "may serve runs"):
        forks.fork(reviewer, run.pk, turn=turn, version_id=999999)
    assert Run.objects.count() == before
    assert not ModelCall.objects.filter(copied=True).exists()


def test_the_requester_may_not_correct_a_four_eyes_step_in_a_fork(manager, reviewer, drive):
    """A manager who requested a run paused for a sign-off (regulatory trigger) may not
    resolve its ticket; forking it with a corrected output is refused the same way."""
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, manager))
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.REGULATORY_TRIGGER
    turn, tool_use_id = _failing(ticket)
    with pytest.raises(resolutions.NotAllowed, match="four-eyes"):
        resolutions.resolve(ticket.pk, manager, "correct", corrected=COMPLIANT)
    with _refused(ActionRefused.FORBIDDEN, "four-eyes"):
        forks.fork(manager, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    assert not Run.objects.filter(origin=run).exists()
    # Without a correction the requester may fork (the same rules then judge the fork), and
    # another reviewer may correct it.
    assert forks.fork(manager, run.pk, turn=turn).origin == run
    fork = forks.fork(reviewer, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    assert fork.requested_by == reviewer


def test_a_run_still_going_cannot_be_forked(operator, manager):
    run = start_run("probe", {"mode": "ok"}, operator)  # queued, not driven
    with _refused(ActionRefused.CONFLICT, "finished or paused"):
        forks.fork(manager, run.pk, turn=0)


def test_a_side_effects_output_cannot_be_typed_into_a_fork(operator, manager, drive):
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1005"}, operator))
    tc = run.tickets.get().failing_tool_call
    workflow = registry.get("payment_approval")
    assert workflow.tool(tc.name).side_effect
    with _refused(ActionRefused.INVALID_INPUT, "side effect"):
        forks.fork(
            manager, run.pk, turn=tc.model_call.turn, tool_use_id=tc.tool_use_id, corrected="{}"
        )


def test_fork_on_another_version_asks_the_chosen_turn_again(operator, drive, monkeypatch):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    assert run.status == S.SUCCEEDED
    declared = registry.get("probe")
    # Another declaration deployed beside the current one, recorded (pending), then approved.
    brief = dataclasses.replace(declared, version="2", rules=(*declared.rules, "Be brief."))
    monkeypatch.setitem(registry._PREVIOUS, "probe", [brief])
    other = snapshot(brief)
    assert other.pk != run.workflow_version_id
    assert other not in forks.servable_versions(declared), "a pending version serves no fork"
    with _refused(ActionRefused.INVALID_INPUT, "may serve runs"):
        forks.fork(operator, run.pk, turn=1, version_id=other.pk)
    WorkflowVersion.objects.filter(pk=other.pk).update(status=WorkflowVersion.Status.APPROVED)
    other.refresh_from_db()
    assert other in forks.servable_versions(declared)
    fork = forks.fork(operator, run.pk, turn=1, version_id=other.pk)
    assert fork.workflow_version == other
    assert list(fork.model_calls.values_list("turn", "copied")) == [(0, True)]
    assert list(fork.tool_calls.values_list("name", "copied")) == [("probe", True)]
    fork = drive(fork)
    assert fork.status == S.SUCCEEDED and fork.result == run.result
    # Turn 1 was asked again (not copied); the probe tool was not executed again.
    assert fork.model_calls.get(turn=1).copied is False
    assert fork.tool_calls.filter(name="probe").count() == 1
    assert AuditLogEntry.objects.filter(step_name="probe").count() == 1
    assert (
        AuditEvent.objects.get(run=fork, kind="run.forked").payload["version"] == other.content_hash
    )


def test_a_version_whose_code_is_not_deployed_may_not_serve_a_fork(operator, drive):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    stale = run.workflow_version
    stale.pk = None
    stale.serving = False  # approved once, its code since replaced
    stale.content_hash = "stale-" + stale.content_hash[:50]
    stale.tools = [
        *stale.tools,
        {"name": "retired_tool", "description": "gone", "input_schema": {"type": "object"}},
    ]
    stale.save()
    assert stale not in forks.servable_versions(registry.get("probe"))
    with _refused(ActionRefused.INVALID_INPUT, "may serve runs"):
        forks.fork(operator, run.pk, turn=1, version_id=stale.pk)


def test_a_turn_after_a_final_answer_is_not_a_fork_point(operator, drive):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    final = run.model_calls.get(turn=2)
    assert final.stop_reason == "end_turn"
    # As after a rejected final answer: the engine's nudge went out in the next turn's request,
    # which a fork from that turn could not rebuild.
    ModelCall.objects.create(
        run=run,
        turn=3,
        attempt=1,
        model=final.model,
        status="ok",
        stop_reason="end_turn",
        request_content=[{"type": "text", "text": "[engine] nudge"}],
        response_content=final.response_content,
    )
    with _refused(ActionRefused.INVALID_INPUT, "follows a final answer"):
        forks.fork(operator, run.pk, turn=3)
    assert forks.fork(operator, run.pk, turn=2).fork_turn == 2  # turn 2 follows tool results


def test_copied_payloads_stay_encrypted_at_rest(settings, reviewer, paused, drive):
    settings.PAYLOAD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    fork = forks.fork(reviewer, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    copy = fork.tool_calls.filter(copied=True, name="fetch_transactions").get()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT input::text, output::text FROM orchestration_toolcall WHERE id = %s", [copy.pk]
        )
        raw_input, raw_output = cursor.fetchone()
        cursor.execute(
            "SELECT response_content::text FROM orchestration_modelcall WHERE id = %s",
            [fork.model_calls.get(turn=0).pk],
        )
        (raw_response,) = cursor.fetchone()
    assert "$countersign_encrypted" in raw_output and "TX-" not in raw_output
    assert "2026-11-19" not in raw_input and "fetch_transactions" not in raw_response
    assert copy.output == copy.copied_from.output and copy.output["transactions"]
    assert drive(fork).status == S.SUCCEEDED


def test_a_run_whose_payloads_were_purged_cannot_be_forked(operator, drive):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    ModelCall.objects.filter(run=run).update(
        request_content=None, response_content=None, payload_purged_at=timezone.now()
    )
    with _refused(ActionRefused.CONFLICT, "purged by the retention policy"):
        forks.fork(operator, run.pk, turn=1)


def test_fork_page_preselects_the_failing_step_and_shows_a_refusal_inline(client, reviewer, paused):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    client.force_login(reviewer)
    page = client.get(reverse("run_fork", args=[run.pk]))
    body = page.content.decode()
    assert page.status_code == 200 and "failing step" in body
    assert (
        page.context["chosen"]["turn"] == str(turn)
        and page.context["chosen"]["tool_use_id"] == tool_use_id
    )
    bad = client.post(
        reverse("run_fork", args=[run.pk]),
        {
            "turn": turn,
            "tool_use_id": tool_use_id,
            "corrected": '{"compliant": "yes"}',
            "version": run.workflow_version_id,
            "idempotency_key": "k1",
        },
    )
    assert bad.status_code == 422 and "Nothing was changed" in bad.content.decode()
    assert "{&quot;compliant&quot;: &quot;yes&quot;}" in bad.content.decode()  # the edit is kept
    assert not Run.objects.filter(origin=run).exists()
    good = client.post(
        reverse("run_fork", args=[run.pk]),
        {
            "turn": turn,
            "tool_use_id": tool_use_id,
            "corrected": COMPLIANT,
            "version": run.workflow_version_id,
            "idempotency_key": "k2",
        },
    )
    fork = Run.objects.get(origin=run)
    assert good.status_code == 302 and good["Location"] == reverse("run_detail", args=[fork.pk])
    page = client.get(good["Location"]).content.decode()
    assert (
        "Fork</strong> of" in page
        and "copied</span> history" in page
        and "corrected by reviewer" in page
    )


def test_fork_page_answers_404_for_a_run_the_user_cannot_see(
    client, outsider, paused, django_user_model
):
    other = django_user_model.objects.create_user("operator2", password="x-operator2-1")
    other.groups.add(Group.objects.get(name="operators"))
    client.force_login(other)  # may fork runs, but not this one: it is not theirs
    assert client.get(reverse("run_fork", args=[paused[0].pk])).status_code == 404
    assert client.post(reverse("run_fork", args=[paused[0].pk]), {"turn": 0}).status_code == 404
    client.force_login(outsider)  # no role at all: refused before any run is looked up
    assert client.get(reverse("run_fork", args=[paused[0].pk])).status_code == 403
    assert not Run.objects.filter(origin=paused[0]).exists()


# --- cancel ------------------------------------------------------------------------------


def test_cancel_a_paused_run_closes_its_ticket(reviewer, paused):
    run, ticket = paused
    done = run_actions.cancel(reviewer, run.pk, reason="Wrong date requested")
    run.refresh_from_db()
    ticket.refresh_from_db()
    assert run.status == S.CANCELLED and run.finished_at is not None
    assert run.error == "Cancelled by reviewer: Wrong date requested"
    assert (ticket.status, ticket.resolution, ticket.resolved_by) == (
        "resolved",
        "cancelled",
        reviewer,
    )
    assert done.closed_tickets == 1
    event = AuditEvent.objects.get(run=run, kind="run.cancelled")
    assert event.actor == reviewer and event.payload["from"] == S.AWAITING_REVIEW
    assert (
        event.payload["closed_tickets"] == [ticket.pk]
        and event.payload["reason"] == "Wrong date requested"
    )
    assert AuditEvent.objects.filter(
        run=run, kind="ticket.closed", payload__ticket=ticket.pk
    ).exists()
    assert audit.verify_run(run.pk).ok


def test_cancel_a_run_waiting_for_approval_closes_the_request_and_frees_the_budget(
    operator, settings
):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    run = start_run("probe", {"mode": "ok"}, operator)
    assert run.status == S.AWAITING_APPROVAL
    budget = Budget.objects.create(
        scope="global", period="day", limit_usd=Decimal("100"), hard=True
    )
    assert budgets.usage(budget).outstanding == run.estimate_usd
    run_actions.cancel(operator, run.pk)
    run.refresh_from_db()
    request = ApprovalRequest.objects.get(run=run)
    assert (
        run.status == S.CANCELLED
        and request.status == "cancelled"
        and request.comment == "Cancelled by operator."
    )
    assert budgets.usage(budget).outstanding == 0
    assert AuditEvent.objects.filter(run=run, kind="approval.cancelled").exists()


def test_cancel_a_queued_run_and_no_step_runs(operator, drive):
    run = start_run("probe", {"mode": "ok"}, operator)
    run_actions.cancel(operator, run.pk)
    run = drive(run)
    assert run.status == S.CANCELLED and not run.model_calls.exists()


def test_cancel_releases_the_reservations_of_calls_in_flight(operator):
    run = start_run("probe", {"mode": "ok"}, operator)
    lifecycle.transition(run.pk, S.RUNNING, actor="engine")
    mc = ModelCall(run=run, turn=0, attempt=1, model="claude-sonnet-4-6", request_content=[])
    accounting.reserve(
        mc,
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1000,
            "messages": [{"role": "user", "content": "hello"}],
        },
    )
    run.refresh_from_db()
    assert run.reserved_usd > 0 and run.reserved_tokens > 0
    done = run_actions.cancel(operator, run.pk)
    run.refresh_from_db()
    mc.refresh_from_db()
    assert done.released_calls == 1 and run.reserved_usd == 0 and run.reserved_tokens == 0
    assert mc.status == "error" and mc.error == accounting.ABANDONED and mc.reserved_usd == 0


def test_cancel_of_a_finished_run_is_refused_and_changes_nothing(operator, drive):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    events = AuditEvent.objects.filter(run=run).count()
    with _refused(ActionRefused.CONFLICT, "already ended"):
        run_actions.cancel(operator, run.pk)
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and AuditEvent.objects.filter(run=run).count() == events


def test_who_may_cancel(operator, reviewer, manager, auditor, outsider, paused, django_user_model):
    run, ticket = paused
    with _refused(ActionRefused.NOT_FOUND):
        run_actions.cancel(outsider, run.pk)
    with _refused(ActionRefused.FORBIDDEN):
        run_actions.cancel(auditor, run.pk)  # sees every run, acts on none
    holder = django_user_model.objects.create_user("reviewer2", password="x-reviewer2-1")
    holder.groups.add(Group.objects.get(name="reviewers"))
    resolutions.claim(ticket.pk, holder)
    # The ticket is someone else's now: the first reviewer no longer sees the run.
    with _refused(ActionRefused.NOT_FOUND):
        run_actions.cancel(reviewer, run.pk)
    assert run_actions.cancel_refusal(operator, run) is None  # its requester
    assert run_actions.cancel_refusal(manager, run) is None
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW
    run_actions.cancel(holder, run.pk)
    run.refresh_from_db()
    assert run.status == S.CANCELLED


def test_a_cancel_while_the_model_answers_records_the_answer_and_starts_no_tool(
    operator, drive, monkeypatch
):
    """The call in flight when the run is cancelled: its answer is recorded and charged (the
    API bills it), its reservation was given back at the cancel, and none of the tools it
    asked for runs."""
    real_send = model_calls.send
    run = start_run("probe", {"mode": "ok"}, operator)
    who = operator

    def send_then_cancel_arrives(mc, params, client, **kwargs):
        run_actions.cancel(who, mc.run_id, reason="stop")
        return real_send(mc, params, client, **kwargs)

    monkeypatch.setattr(model_calls, "send", send_then_cancel_arrives)
    run = drive(run)
    mc = run.model_calls.get()
    assert run.status == S.CANCELLED
    assert mc.status == "ok" and mc.stop_reason == "tool_use" and mc.cost_usd > 0
    assert run.cost_usd == mc.cost_usd and run.reserved_usd == 0 and mc.reserved_usd == 0
    assert not run.tool_calls.exists() and not AuditLogEntry.objects.exists()


def test_a_cancel_between_tool_attempts_starts_no_further_attempt(operator, drive, monkeypatch):
    test_workflows.CALLS.clear()
    run = start_run("probe", {"mode": "flaky"}, operator)  # probe fails twice, then works
    cancelled = []

    def backoff_with_a_cancel(attempt, base, cap=30.0):
        if not cancelled:
            cancelled.append(run_actions.cancel(operator, run.pk))
        return 0.0

    monkeypatch.setattr("orchestration.tool_execution.backoff_seconds", backoff_with_a_cancel)
    run = drive(run)
    assert run.status == S.CANCELLED and cancelled
    assert list(run.tool_calls.values_list("name", "attempt", "status")) == [("probe", 1, "error")]
    assert sum(test_workflows.CALLS.values()) == 1


def test_cancel_page_confirms_first_and_refuses_a_finished_run(client, operator, paused, drive):
    run, _ticket = paused
    client.force_login(operator)
    page = client.get(reverse("run_cancel", args=[run.pk]))
    assert page.status_code == 200 and "Yes, cancel the run" in page.content.decode()
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW  # a GET changes nothing
    detail = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="run-cancel"' in detail
    response = client.post(reverse("run_cancel", args=[run.pk]), {"reason": "duplicate"})
    assert response.status_code == 302 and response["Location"] == reverse(
        "run_detail", args=[run.pk]
    )
    run.refresh_from_db()
    assert run.status == S.CANCELLED
    again = client.post(reverse("run_cancel", args=[run.pk]), {"reason": "again"})
    assert again.status_code == 409 and "already ended" in again.content.decode()
    detail = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="run-cancel"' not in detail


# --- compare -----------------------------------------------------------------------------


def test_compare_a_run_with_its_fork(client, reviewer, outsider, paused, drive):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    fork = drive(
        forks.fork(reviewer, run.pk, turn=turn, tool_use_id=tool_use_id, corrected=COMPLIANT)
    )
    cmp = run_actions.compare(reviewer, run.pk, fork.pk)
    assert cmp.same_input and not cmp.same_result
    assert "is a fork of" in cmp.related
    a_path = [(s.name, s.status, s.copied) for s in cmp.a.path]
    b_path = [(s.name, s.status, s.copied) for s in cmp.b.path]
    assert (
        a_path[-1][:2] == ("validate_apra", "ok")
        and ("validate_apra", "corrected", False) in b_path
    )
    assert [n for n, *_ in b_path][-2:] == ["publish_report", "audit_log"]
    assert cmp.rows[0].same and not cmp.rows[len(a_path) - 1].same
    assert cmp.b.own_cost == fork.cost_usd and cmp.b.copied_cost == sum(
        mc.cost_usd for mc in run.model_calls.filter(turn__lte=turn, status="ok")
    )
    assert (
        cmp.a.copied_cost == 0
        and cmp.b.model_calls == fork.model_calls.filter(copied=False).count()
    )
    with _refused(ActionRefused.NOT_FOUND):
        run_actions.compare(outsider, run.pk, fork.pk)

    client.force_login(reviewer)
    page = client.get(reverse("run_compare"), {"a": run.pk, "b": fork.pk})
    body = page.content.decode()
    assert page.status_code == 200 and "Same input." in body and "The outputs differ." in body
    assert body.count('class="differs"') >= 1 and "publish_report" in body
    client.force_login(outsider)
    assert client.get(reverse("run_compare"), {"a": run.pk, "b": fork.pk}).status_code == 404
    assert client.get(reverse("run_compare"), {"a": "x", "b": "y"}).status_code == 422
