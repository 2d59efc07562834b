"""The spend ceiling: stored on the run, reserved before every model request on every path,
settled on charge; only a manager who did not request the run raises it.

The four bypasses of issue 12 section 1 are the first four tests: each ends with the run
paused on a budget_exceeded ticket a reviewer cannot resolve, and its cost within the
ceiling. On the code before the ceiling, each run spent past its limit and succeeded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse

import tests.workflows_for_tests  # noqa: F401 - registers the fan-out probe
from costs import accounting, budgets
from costs.models import Budget
from orchestration import engine, lifecycle
from orchestration.fanout.models import FanoutJob
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run
from orchestration.workflows import registry
from reviews import access, resolutions
from reviews.escalation import escalate
from reviews.models import EscalationTicket
from tests.test_fanout import _fanout_settings, drive_fanout  # noqa: F401 - fixtures
from tests.version_helpers import approve_deployed

S = Run.Status
R = EscalationTicket.Reason
FR_INPUT = {"date": "2026-11-20"}  # financial_reporting: 5-6 calls, about $0.06 in all


class Crash(BaseException):
    """A worker dying: not an Exception, so nothing in the engine catches it."""


def _cap(monkeypatch: pytest.MonkeyPatch, name: str, max_cost: str) -> None:
    """Give the workflow a low max_cost_usd (the ceiling is the lowest of its limits)."""
    workflow = registry.get(name)
    tight = dataclasses.replace(
        workflow,
        constraints=dataclasses.replace(workflow.constraints, max_cost_usd=Decimal(max_cost)),
    )
    monkeypatch.setitem(registry._REGISTRY, name, tight)
    # A changed limit is a new version: it serves once proposed and approved (four eyes).
    approve_deployed(name)


def _resume_whatever_a_reviewer_may(run: Run, reviewer: Any, drive: Any) -> Run:
    """A reviewer resumes every ticket the queue lets them resume, until the run stops for good
    or on a ticket they may not resolve."""
    for _ in range(10):
        ticket = run.tickets.exclude(status=EscalationTicket.Status.RESOLVED).first()
        if ticket is None or ticket.reason == R.BUDGET_EXCEEDED:
            return run
        resolutions.resolve(ticket.pk, reviewer, "resume", note="Looks fine, go on.")
        run = drive(run)
    raise AssertionError("the run kept pausing")


def _assert_held_at_ceiling(run: Run, limit: Decimal, reviewer: Any) -> EscalationTicket:
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get(status=EscalationTicket.Status.OPEN, reason=R.BUDGET_EXCEEDED)
    assert run.cost_usd <= limit
    with pytest.raises(resolutions.ReviewError, match="Only a manager"):
        resolutions.resolve(ticket.pk, reviewer, "resume", note="go on")
    return ticket


# --- the four bypasses -------------------------------------------------------------------------


def test_a_call_that_also_states_ambiguity_cannot_hide_the_limit(
    drive, operator, reviewer, monkeypatch
):
    """Bypass 1: the call that crossed the limit stated ambiguity, so the run paused as
    'ambiguity', a reviewer resumed it and nothing checked the spend again."""
    limit = Decimal("0.03")  # the third call (~$0.036 in all) crosses it, stating ambiguity
    _cap(monkeypatch, "financial_reporting", str(limit))
    run = drive(
        start_run(
            "financial_reporting",
            FR_INPUT,
            operator,
            options={"simulator_faults": [{"fault": "ambiguity", "turn": 2}]},
        )
    )
    run = _resume_whatever_a_reviewer_may(run, reviewer, drive)
    _assert_held_at_ceiling(run, limit, reviewer)


def test_a_worker_dying_between_charge_and_check_does_not_lose_the_limit(
    drive, operator, reviewer, monkeypatch
):
    """Bypass 2: the worker died after an answer was charged and before it was checked; the
    resumed step called the model again with no spend check."""
    limit = Decimal("0.04")
    _cap(monkeypatch, "financial_reporting", str(limit))
    checked = engine._after_response
    crashed: set[int] = set()

    def die_once_after_each_answer(run, workflow, mc, *args):
        if mc.pk not in crashed:
            crashed.add(mc.pk)
            raise Crash
        return checked(run, workflow, mc, *args)

    monkeypatch.setattr(engine, "_after_response", die_once_after_each_answer)
    run = start_run("financial_reporting", FR_INPUT, operator)
    for _ in range(30):  # the reaper re-queues the run; its next step resumes from the database
        try:
            run = drive(run)
            break
        except Crash:
            Run.objects.filter(pk=run.pk).update(lease_expires_at=None)
    _assert_held_at_ceiling(run, limit, reviewer)
    assert run.reserved_usd == 0


def test_a_fanout_job_answering_after_the_run_paused_does_not_lose_the_limit(
    seeded,
    drive_fanout,  # noqa: F811 - the fixture imported above
    reviewer,
    monkeypatch,
):
    """Bypass 3: a job's answer crossed the limit after the run had paused for another reason;
    the escalation's InvalidTransition was swallowed and the reviewer's resume let every
    remaining job run with no limit."""
    from orchestration.fanout import jobs

    limit = Decimal("0.02")
    _cap(monkeypatch, "fanout_probe", str(limit))
    record = jobs._record

    paused = []

    def paused_just_before_the_check(job, mc, *args):
        charged = record(job, mc, *args)
        run = Run.objects.get(pk=job.run_id)
        if run.cost_usd > limit and not paused:  # the answer that crossed the limit
            paused.append(mc.pk)
            escalate(run.pk, R.TOOL_ERROR, "Another job's tool failed (test).")
        return charged

    monkeypatch.setattr(jobs, "_record", paused_just_before_the_check)
    run = drive_fanout(drive_fanout.start({"n": 12}), threads=1)
    for _ in range(10):
        ticket = run.tickets.exclude(status=EscalationTicket.Status.RESOLVED).first()
        if ticket is None or ticket.reason == R.BUDGET_EXCEEDED:
            break
        resolutions.resolve(ticket.pk, reviewer, "resume", note="go on")
        drive_fanout.steps.append(str(run.pk))
        run = drive_fanout(run, threads=1)
    _assert_held_at_ceiling(run, limit, reviewer)
    assert not FanoutJob.objects.filter(run=run, status=FanoutJob.Status.RUNNING).exists()


def test_resuming_a_budget_ticket_never_removes_the_ceiling(drive, operator, manager, monkeypatch):
    """Bypass 4: a manager resumed the budget_exceeded ticket and the run then had no ceiling."""
    limit = Decimal("0.04")
    _cap(monkeypatch, "financial_reporting", str(limit))
    run = drive(start_run("financial_reporting", FR_INPUT, operator))
    ticket = run.tickets.get(reason=R.BUDGET_EXCEEDED)
    for action in ("resume", "retry", "approve"):
        with pytest.raises(resolutions.ReviewError, match="must raise the ceiling first"):
            resolutions.resolve(ticket.pk, manager, action, note="Worth it; go on.")
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW and run.cost_usd <= limit
    assert run.tickets.get(pk=ticket.pk).status == EscalationTicket.Status.OPEN

    accounting.raise_ceiling(
        run.pk,
        manager,
        refusal=access.ceiling_refusal,
        usd="0.25",
        comment="The report is due today.",
    )
    # (retry: the call was never sent, so there is no answer to add a note to)
    resolutions.resolve(ticket.pk, manager, "retry", comment="Ceiling raised; go on.")
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert run.cost_usd <= limit + Decimal("0.25") and run.reserved_usd == 0


# --- the mechanism ---------------------------------------------------------------------------


def test_every_call_holds_its_worst_case_while_in_flight_and_settles_to_its_real_cost(
    drive, operator, monkeypatch
):
    seen = []
    real_create = engine.client_for

    def client_for(**kwargs):
        client = real_create(**kwargs)
        run_id = kwargs["run_id"]
        original = client.messages.stream  # every call streams (orchestration.model_calls)

        def stream(**params):
            run = Run.objects.get(pk=run_id)
            seen.append((run.reserved_usd, accounting.worst_case(params).usd))
            return original(**params)

        monkeypatch.setattr(client.messages, "stream", stream)
        return client

    monkeypatch.setattr(engine, "client_for", client_for)
    run = drive(start_run("financial_reporting", FR_INPUT, operator))
    assert run.status == S.SUCCEEDED
    assert seen and all(reserved == worst > 0 for reserved, worst in seen)  # held before it left
    assert run.reserved_usd == 0 and run.reserved_tokens == 0
    calls = ModelCall.objects.filter(run=run)
    assert all(mc.reserved_usd == 0 and mc.reserved_tokens == 0 and mc.cost_usd > 0 for mc in calls)
    assert run.cost_usd == sum(mc.cost_usd for mc in calls)


def test_the_ceiling_is_stored_when_the_run_is_created(operator, manager, settings, monkeypatch):
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    plain = start_run("financial_reporting", FR_INPUT, operator)
    assert plain.ceiling_usd == Decimal("2.00")  # the workflow's maximum, under the $20 threshold
    assert (
        plain.ceiling_tokens == registry.get("financial_reporting").constraints.max_tokens_per_run
    )
    capped = start_run(
        "quarter_probe", {"quarter": "2026Q3"}, operator
    )  # ~$138 estimated, at most $100
    assert capped.status == S.AWAITING_APPROVAL
    assert (
        capped.ceiling_usd == Decimal("100")
        and capped.ceiling_basis == "the workflow's maximum of $100.00"
    )
    _cap(monkeypatch, "quarter_probe", "1000")
    approved = start_run("quarter_probe", {"quarter": "2026Q3"}, operator)
    assert approved.ceiling_usd == (approved.estimate_usd * Decimal("1.25")).quantize(
        Decimal("1e-12")
    )
    assert approved.ceiling_basis.startswith("its approved estimate of $")
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.50")
    small = start_run("probe", {}, operator)  # max $1.00, under the lowered threshold
    assert small.status == S.QUEUED and small.ceiling_usd == Decimal("0.50")
    event = AuditEvent.objects.get(run=plain, kind="estimate.made")
    assert event.payload["ceiling_usd"] == str(plain.ceiling_usd)


def test_the_spend_check_comes_before_the_ambiguity_check(drive, operator, monkeypatch):
    """If an answer costs more than its worst case was bounded at (the bound is wrong), the run
    pauses for a manager even when the same answer also states ambiguity."""
    # A ceiling the second call's answer passes: what the first call costs, plus half the
    # second's (measured on a run of the same input: the prompt, and so the cost, is the same).
    calls = drive(start_run("financial_reporting", FR_INPUT, operator)).model_calls
    first, second = (
        calls.filter(status="ok").order_by("turn").values_list("cost_usd", flat=True)[:2]
    )
    cap = (first + second / 2).quantize(Decimal("0.0001"))
    _cap(monkeypatch, "financial_reporting", str(cap))
    tiny = accounting.WorstCase(usd=Decimal("0.000001"), input_tokens=1, output_tokens=1)
    monkeypatch.setattr(accounting, "worst_case", lambda params, batch=False: tiny)
    run = drive(
        start_run(
            "financial_reporting",
            FR_INPUT,
            operator,
            options={"simulator_faults": [{"fault": "ambiguity", "turn": 1}]},
        )
    )
    ticket = run.tickets.get()
    assert ticket.reason == R.BUDGET_EXCEEDED and "over its ceiling of $" in ticket.message
    assert ticket.failing_model_call.turn == 1 and "ambiguous" in ticket.failing_model_call.text


def test_fifty_calls_in_flight_never_pass_the_ceiling(transactional_db, seeded, monkeypatch):
    """50 threads reserve, then charge their worst case, on one run, at once (real Postgres)."""
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    operator = get_user_model().objects.get(username="operator")
    run = start_run("financial_reporting", FR_INPUT, operator)
    lifecycle.transition(run.pk, S.RUNNING, actor="engine")
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "x" * 500}],
    }
    worst = accounting.worst_case(params)
    ceiling = worst.usd * 17 + worst.usd / 2  # room for 17 calls at their worst, not 18
    Run.objects.filter(pk=run.pk).update(ceiling_usd=ceiling)
    barrier = threading.Barrier(50)
    sent = []

    def call(i: int) -> None:
        try:
            mc = ModelCall(run_id=run.pk, turn=100 + i, model=params["model"], request_content=[])
            barrier.wait()
            try:
                accounting.reserve(mc, params)
            except accounting.DoesNotFit:
                return
            sent.append(i)
            with transaction.atomic():  # the answer, billed at its worst case
                accounting.charge(
                    mc, {"input_tokens": worst.input_tokens, "output_tokens": worst.output_tokens}
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.refresh_from_db()
    assert len(sent) == 17
    assert run.cost_usd == worst.usd * 17 <= ceiling
    assert run.reserved_usd == 0 and run.reserved_tokens == 0


def test_no_call_leaves_while_the_run_is_paused(seeded, monkeypatch):
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    operator = get_user_model().objects.get(username="operator")
    run = start_run("financial_reporting", FR_INPUT, operator)
    lifecycle.transition(run.pk, S.RUNNING, actor="engine")
    escalate(run.pk, R.TOOL_ERROR, "paused (test)")
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    with pytest.raises(accounting.DoesNotFit) as refused:
        accounting.reserve(
            ModelCall(run_id=run.pk, turn=0, model=params["model"], request_content=[]), params
        )
    assert refused.value.running is False and "awaiting_review" in str(refused.value)
    assert not ModelCall.objects.filter(run=run).exists()


def test_a_reservation_left_by_a_dead_worker_is_given_back(drive, operator, monkeypatch):
    """The worker dies after the request left: the next step marks the call interrupted and
    gives its reservation back before it reserves again; the reaper does it for a run nobody
    steps again."""
    original = engine.client_for
    died = []

    def client_for(**kwargs):
        client = original(**kwargs)
        if not died:

            def stream(**params):
                died.append(Run.objects.get(pk=kwargs["run_id"]).reserved_usd)
                raise Crash

            monkeypatch.setattr(client.messages, "stream", stream)
        return client

    monkeypatch.setattr(engine, "client_for", client_for)
    run = start_run("financial_reporting", FR_INPUT, operator)
    with pytest.raises(Crash):
        engine.run_step(run.pk)
    run.refresh_from_db()
    assert died[0] > 0 and run.reserved_usd == died[0]  # held by the dead call
    Run.objects.filter(pk=run.pk).update(lease_expires_at=None)
    run = drive(run)
    assert run.status == S.SUCCEEDED and run.reserved_usd == 0
    assert ModelCall.objects.get(run=run, turn=0, attempt=1).error.startswith("interrupted")

    # A run cancelled while its call was in flight: the reaper gives the reservation back.
    died.clear()
    stuck = start_run("financial_reporting", FR_INPUT, operator)
    with pytest.raises(Crash):
        engine.run_step(stuck.pk)
    lifecycle.transition(stuck.pk, S.CANCELLED, actor="engine")
    assert accounting.release_stale_reservations() == 0  # it may still be in flight
    long_ago = dt.timedelta(seconds=accounting.max_call_seconds() + 1)
    ModelCall.objects.filter(run=stuck).update(created_at=F("created_at") - long_ago)
    assert accounting.release_stale_reservations() == 1
    stuck.refresh_from_db()
    assert stuck.reserved_usd == 0 and stuck.reserved_tokens == 0


# --- raising the ceiling ----------------------------------------------------------------------


@pytest.fixture
def paused(db, operator, monkeypatch):
    """A run of the operator's, paused at its ceiling by a call that did not fit."""
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    _cap(monkeypatch, "financial_reporting", "0.01")
    run = start_run("financial_reporting", FR_INPUT, operator)
    engine.run_step(run.pk)
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW and not ModelCall.objects.filter(run=run).exists()
    return run


def test_only_a_manager_who_did_not_request_the_run_may_raise_its_ceiling(
    paused, operator, reviewer, manager
):
    with pytest.raises(accounting.CeilingError, match="Only a manager"):
        accounting.raise_ceiling(paused.pk, reviewer, refusal=access.ceiling_refusal, usd="5")
    with pytest.raises(accounting.CeilingError, match="Only a manager"):
        accounting.raise_ceiling(
            paused.pk, operator, refusal=access.ceiling_refusal, usd="5"
        )  # the requester, and no manager
    boss = get_user_model().objects.create_user("boss", password="x-boss-1")
    boss.groups.add(Group.objects.get(name="managers"))
    own = start_run("financial_reporting", FR_INPUT, boss)
    with pytest.raises(accounting.CeilingError, match="You requested this run"):
        accounting.raise_ceiling(own.pk, boss, refusal=access.ceiling_refusal, usd="5")
    for typed, why in [
        ("0", "more than \\$0.00"),
        ("-5", "more than \\$0.00"),
        ("abc", "not an amount"),
        ("1.234", "at most two decimals"),
        ("1000000", "At most \\$1,000.00"),
        ("NaN", "more than"),
        ("", "Type how much"),
    ]:
        with pytest.raises(accounting.CeilingError, match=why):
            accounting.raise_ceiling(paused.pk, manager, refusal=access.ceiling_refusal, usd=typed)
    with pytest.raises(accounting.CeilingError, match="whole number"):
        accounting.raise_ceiling(
            paused.pk, manager, refusal=access.ceiling_refusal, usd="", tokens="-3"
        )
    paused.refresh_from_db()
    assert paused.ceiling_usd == Decimal("0.01")
    assert not AuditEvent.objects.filter(kind="ceiling.raised").exists()

    run = accounting.raise_ceiling(
        paused.pk,
        manager,
        refusal=access.ceiling_refusal,
        usd="$2.50",
        tokens="1,000",
        comment="Board pack.",
    )
    assert run.ceiling_usd == Decimal("2.51") and run.ceiling_tokens == paused.ceiling_tokens + 1000
    event = AuditEvent.objects.get(run=run, kind="ceiling.raised")
    assert (
        event.actor == manager
        and event.payload["by_usd"] == "2.50"
        and event.payload["to_usd"] == str(run.ceiling_usd)
    )
    assert event.payload["comment"] == "Board pack."


def test_the_ticket_page_raises_the_ceiling_for_a_manager_only(client, paused, reviewer, manager):
    ticket = paused.tickets.get()
    url = reverse("ticket_raise_ceiling", args=[ticket.pk])
    client.force_login(manager)
    page = client.get(reverse("ticket_detail", args=[ticket.pk])).content.decode()
    assert 'name="add_usd"' in page and "Spend ceiling" in page
    refused = client.post(url, {"add_usd": "-1"})
    assert refused.status_code == 422 and "more than $0.00" in refused.content.decode()
    response = client.post(url, {"add_usd": "3.00", "comment": "ok"})
    assert response.status_code == 302
    paused.refresh_from_db()
    assert paused.ceiling_usd == Decimal("3.01")

    client.force_login(reviewer)  # the ticket is still open in the shared queue: visible
    page = client.get(reverse("ticket_detail", args=[ticket.pk]))
    assert page.status_code == 200 and 'name="add_usd"' not in page.content.decode()
    assert client.post(url, {"add_usd": "3.00"}).status_code == 403
    assert client.get(url).status_code == 405

    resolutions.resolve(ticket.pk, manager, "retry", comment="go on")  # room now: accepted


def test_the_api_raises_the_ceiling_with_the_same_rules(
    client, paused, operator, reviewer, manager
):
    from tests.api_helpers import call, token_for

    path = f"/api/runs/{paused.pk}/ceiling"
    assert (
        call(client, "POST", path, token_for(operator), {"add_usd": "5.00"}).status_code == 403
    )  # requester
    assert call(client, "POST", path, token_for(reviewer), {"add_usd": "5.00"}).status_code == 403
    for body, field in [
        ({"add_usd": "0"}, "add_usd"),
        ({"add_usd": 5}, "add_usd"),
        ({"add_tokens": -3}, "add_tokens"),
        ({"add_usd": "1", "extra": 1}, "extra"),
    ]:
        bad = call(client, "POST", path, token_for(manager), body)
        assert bad.status_code == 422 and field in bad.json()["error"]["fields"], body
    paused.refresh_from_db()
    assert paused.ceiling_usd == Decimal("0.01")
    ok = call(client, "POST", path, token_for(manager), {"add_usd": "5.00", "comment": "approved"})
    assert (
        ok.status_code == 200
        and ok.json()["ceiling_usd"] == "5.010000"
        and ok.json()["reserved_usd"] == "0.000000"
    )
    assert (
        AuditEvent.objects.get(run=paused, kind="ceiling.raised").payload["comment"] == "approved"
    )


# --- budgets ------------------------------------------------------------------------------------


def test_budgets_count_reservations_as_committed_spend(db, operator, monkeypatch):
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    budget = Budget.objects.create(
        scope=Budget.Scope.GLOBAL, period=Budget.Period.DAY, limit_usd=Decimal("100")
    )
    others = budgets.usage(budget).committed
    run = start_run("financial_reporting", FR_INPUT, operator)
    assert budgets.usage(budget).committed == others + run.estimate_usd
    # Past its estimate, with calls in flight: what they hold is committed, not zero.
    Run.objects.filter(pk=run.pk).update(cost_usd=run.estimate_usd, reserved_usd=Decimal("0.75"))
    assert budgets.usage(budget).committed == others + Decimal("0.75")
    # Budgets are history (never edited): a newer row in force replaces this one.
    Budget.objects.create(
        scope=Budget.Scope.GLOBAL, period=Budget.Period.DAY, limit_usd=others + Decimal("0.76")
    )
    with pytest.raises(budgets.StartRefused, match="still estimated for unfinished runs"):
        budgets.check_start("financial_reporting", operator, Decimal("0.02"), lock=False)
    budgets.check_start("financial_reporting", operator, Decimal("0.01"), lock=False)  # just fits


def test_the_migration_gives_existing_runs_the_ceiling_a_new_run_gets(
    operator, manager, settings, monkeypatch
):
    import importlib

    from django.apps import apps

    from reviews import approvals

    backfill = importlib.import_module(
        "orchestration.migrations.0007_spend_ceiling"
    ).backfill_ceilings
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    plain = start_run("financial_reporting", FR_INPUT, operator)
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    capped = start_run("quarter_probe", {"quarter": "2026Q3"}, operator)
    approvals.decide(capped.approvals.get().pk, manager, approve=True)
    _cap(monkeypatch, "quarter_probe", "1000")  # a new snapshot, whose maximum is $1,000
    approved = start_run("quarter_probe", {"quarter": "2026Q3"}, operator)
    approvals.decide(approved.approvals.get().pk, manager, approve=True)
    pending = start_run("probe", {}, operator)  # awaiting approval: no approved estimate yet
    Run.objects.update(ceiling_usd=None, ceiling_tokens=None, ceiling_basis="")
    backfill(apps, None)
    runs = [Run.objects.get(pk=r.pk) for r in (plain, capped, approved, pending)]
    plain, capped, approved, pending = runs
    assert plain.ceiling_usd == Decimal("0.0001")  # the settings threshold, under the $2.00 maximum
    assert capped.ceiling_usd == Decimal("100")
    assert capped.ceiling_basis == "the workflow's maximum of $100.00"
    assert approved.ceiling_usd == (approved.estimate_usd * Decimal("1.25")).quantize(
        Decimal("1e-12")
    )
    assert approved.ceiling_basis.startswith("its approved estimate of $")
    assert pending.ceiling_usd == Decimal("0.0001") and pending.ceiling_tokens == 400_000
