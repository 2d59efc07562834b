"""Sub-agents for real (issue 14 §2): a router hands requests to domain agents that run as
child runs, parks until they end, and carries on with their result; escalations, costs and
audit roll up; limits and crash safety hold. Against the simulator, in this process."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from costs import accounting
from orchestration import engine, lifecycle, subagents
from orchestration.audit import verify_run
from orchestration.launch import start_run
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.workflows import delegation, registry
from orchestration.workflows.declaration import (
    HANDOFF_OUTPUT,
    Constraints,
    EscalationRule,
    Expectation,
    Handoff,
    SubAgent,
    Tool,
    Workflow,
    handoff,
)
from orchestration.workflows.registry import register
from reviews import access
from reviews.resolutions import ReviewError, resolve
from simulator.policy import Conversation, Turn, final, tool_use
from tests.audit_factories import make_run

S = Run.Status

# --- workflows written for these tests --------------------------------------------------------

ECHO_IN = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
LEAF_OUT = {
    "type": "object",
    "properties": {"echo": {"type": "string"}},
    "required": ["echo"],
    "additionalProperties": False,
}


def _echo(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"echo": args["text"]}


def _leaf_policy(conv: Conversation) -> Turn:
    found = conv.last_result("echo")
    if found is None or found["is_error"]:
        return Turn([tool_use("echo", {"text": conv.input["text"]})])
    return final({"echo": found["content"]["echo"]})


def _workflow(
    name: str,
    tools: tuple[Tool, ...],
    policy: Any,
    *,
    output: dict[str, Any] | None = None,
    max_cost: str = "0.50",
    steps: int = 6,
) -> Workflow:
    return Workflow(
        name=name,
        title=name,
        version="1",
        domain="testing",
        role="Tests sub-agents.",
        input_schema=ECHO_IN,
        output_schema=output or {"type": "object"},
        tools=tools,
        rules=("Follow the test.",),
        constraints=Constraints(max_steps=steps, max_cost_usd=Decimal(max_cost)),
        expectation=Expectation(turns=2),
        input_example={"text": "hi"},
        policy=policy,
    )


LEAF = register(
    _workflow(
        "sa_leaf",
        (Tool("echo", "Echo the text.", ECHO_IN, LEAF_OUT, _echo),),
        _leaf_policy,
        output=LEAF_OUT,
    )
)

# What the hostile parent's model asks for, turn after turn (agent names; then it answers).
PLAN: list[str] = []


def _planned_policy(conv: Conversation) -> Turn:
    i = conv.turn_index()
    if i < len(PLAN):
        agents = PLAN[i] if isinstance(PLAN[i], list) else [PLAN[i]]
        return Turn(
            [
                tool_use("handoff", {"agent": a, "input": {"text": f"job {i}.{j}"}})
                for j, a in enumerate(agents)
            ]
        )
    return final({"done": True})


PARENT = register(
    _workflow(
        "sa_parent",
        (handoff(SubAgent("leaf", "sa_leaf", "echoes"), max_children=2),),
        _planned_policy,
        steps=8,
    )
)
# The same, with a handoff whose schema lets any agent name through: only the engine's own
# check stands between the model and an undeclared workflow.
PERMISSIVE = register(
    _workflow(
        "sa_permissive",
        (
            Handoff(
                name="handoff",
                description="Hand off.",
                handler=lambda a, c: {},
                output_schema=HANDOFF_OUTPUT,
                input_schema={
                    "type": "object",
                    "properties": {"agent": {"type": "string"}, "input": {"type": "object"}},
                    "required": ["agent", "input"],
                },
                agents=(SubAgent("leaf", "sa_leaf", "echoes"),),
                max_children=2,
            ),
        ),
        _planned_policy,
        steps=8,
    )
)


def _relay_policy(conv: Conversation) -> Turn:
    found = conv.last_result("handoff")
    if found is None:
        return Turn([tool_use("handoff", {"agent": "next", "input": {"text": conv.input["text"]}})])
    return final({"relayed": found["is_error"] is False})


RULED = register(
    dataclasses.replace(
        _workflow("sa_ruled", (handoff(SubAgent("next", "sa_leaf", "echoes")),), _relay_policy),
        escalation_rules=(
            EscalationRule(
                "handoff",
                "validation_failed",
                "The sub-agent said stop.",
                lambda out, ctx: out["result"].get("echo") == "stop",
            ),
        ),
    )
)
MIDDLE = register(
    _workflow("sa_middle", (handoff(SubAgent("next", "sa_leaf", "echoes")),), _relay_policy)
)
TOP = register(
    _workflow("sa_top", (handoff(SubAgent("next", "sa_middle", "relays")),), _relay_policy)
)


# --- driving a tree of runs ------------------------------------------------------------------


@pytest.fixture
def tree(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run every enqueued step in this process, in order, until none is left: the steps a
    worker would take for the whole tree (children's, and the parent's when they wake it)."""
    queued: list[str] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: queued.append(str(run_id)),
    )

    class Tree:
        enqueued = queued

        def drive(self, root: Run, max_steps: int = 60) -> Run:
            for _ in range(max_steps):
                if not queued:
                    root.refresh_from_db()
                    return root
                engine.run_step(queued.pop(0))
            raise AssertionError(f"the tree of {root.pk} did not settle in {max_steps} steps")

        def step(self, run: Run) -> Run:
            if str(run.pk) in queued:
                queued.remove(str(run.pk))
            engine.run_step(run.pk)
            run.refresh_from_db()
            return run

    return Tree()


def _router(user: Any, account: str, question: str) -> Run:
    return start_run("customer_router", {"customer_account": account, "question": question}, user)


def _kinds(run: Run) -> list[str]:
    return list(run.events.order_by("run_seq").values_list("kind", flat=True))


# --- the hierarchical pattern end to end --------------------------------------------------------


def test_router_on_haiku_hands_off_to_a_child_run_and_relays_its_answer(operator, tree):
    root = tree.drive(_router(operator, "ACC-100", "How much could I borrow for a car loan?"))

    assert root.status == S.SUCCEEDED, root.error
    child = Run.objects.get(parent=root)
    handoff_call = ToolCall.objects.get(run=root, name="handoff", status="ok")
    assert child.parent_tool_use_id == handoff_call.tool_use_id
    assert child.workflow_name == "customer_lending" and child.status == S.SUCCEEDED
    # Its own prompt, tools and model: the child ran its tool on Sonnet, the router on Haiku.
    assert child.workflow_version.system_prompt != root.workflow_version.system_prompt
    assert [t["name"] for t in child.workflow_version.tools] == ["repayment_capacity"]
    assert set(ModelCall.objects.filter(run=root).values_list("model", flat=True)) == {
        "claude-haiku-4-5"
    }
    assert set(ModelCall.objects.filter(run=child).values_list("model", flat=True)) == {
        "claude-sonnet-5"
    }
    # The router's turns are the classifier's (turn_roles), not the orchestrator's.
    assert set(ModelCall.objects.filter(run=root).values_list("role", flat=True)) == {"classifier"}
    assert list(ToolCall.objects.filter(run=child, status="ok").values_list("name", flat=True)) == [
        "repayment_capacity"
    ]
    # The child's result is the handoff's tool result, and the router relays it.
    assert (
        handoff_call.output["run"] == str(child.pk)
        and handoff_call.output["result"] == child.result
    )
    assert root.result == {
        "routed_to": "lending",
        "answer": child.result["answer"],
        "facts": child.result["facts"],
    }
    # Parked, then queued by the child's end: not a busy wait.
    assert _kinds(root) == [
        "run.requested",
        "estimate.made",
        "run.queued",
        "run.running",
        "model.called",
        "subagent.handoff",
        "run.awaiting_subagent",
        "run.queued",
        "run.running",
        "subagent.returned",
        "model.called",
        "run.succeeded",
    ]
    woke = root.events.filter(kind="run.queued").order_by("run_seq").last().payload
    assert woke["sub_agent_run"] == str(child.pk) and woke["sub_agent_status"] == "succeeded"
    # The child's trail names its parent; both chains verify.
    requested = child.events.get(kind="run.requested").payload
    assert (
        requested["parent"] == str(root.pk) and requested["tool_use_id"] == child.parent_tool_use_id
    )
    assert requested["source"] == "subagent" and requested["agent"] == "lending"
    assert verify_run(root.pk).ok and verify_run(child.pk).ok


def test_costs_roll_up_to_the_parent_and_nothing_stays_reserved(operator, tree):
    root = tree.drive(_router(operator, "ACC-101", "Is my KYC verification complete?"))
    child = Run.objects.get(parent=root)
    assert root.status == child.status == S.SUCCEEDED
    own = sum(mc.cost_usd for mc in ModelCall.objects.filter(run=root))
    child_cost = sum(mc.cost_usd for mc in ModelCall.objects.filter(run=child))
    assert own > 0 and child_cost > 0
    assert root.cost_usd == own  # its own calls only: a sum over runs counts each call once
    assert root.children_cost_usd == child_cost == child.cost_usd
    assert root.tree_cost_usd == own + child_cost
    assert root.children_tokens == child.total_input_tokens + child.output_tokens
    assert (root.reserved_usd, root.children_reserved_usd, child.reserved_usd) == (0, 0, 0)
    assert root.children_reserved_tokens == 0
    assert ToolCall.objects.get(run=root, name="handoff").output["cost_usd"] == str(child.cost_usd)


def test_the_parent_parks_and_only_the_childs_end_queues_it(operator, tree):
    root = _router(operator, "ACC-100", "How much could I borrow?")
    root = tree.step(root)  # the router's turn: hands off and parks
    assert root.status == S.AWAITING_SUBAGENT and root.lease_expires_at is None
    child = Run.objects.get(parent=root)
    assert tree.enqueued == [str(child.pk)]  # nothing for the parent: it waits for no timer
    engine.reap_stalled_runs()
    assert str(root.pk) not in tree.enqueued  # the reaper leaves a parked run alone
    tree.enqueued.clear()
    child = tree.step(child)  # the child's task: its tool, its answer; its end queues the parent
    assert child.status == S.SUCCEEDED
    root.refresh_from_db()
    assert root.status == S.QUEUED and tree.enqueued == [str(root.pk)]
    assert tree.drive(root).status == S.SUCCEEDED


@pytest.mark.parametrize(
    ("account", "question", "status", "reason", "agent"),
    [
        (
            "ACC-100",
            "How much could I borrow for a car loan?",
            S.SUCCEEDED,
            None,
            "customer_lending",
        ),
        ("ACC-101", "Is my KYC verification complete?", S.SUCCEEDED, None, "customer_compliance"),
        ("ACC-100", "status of my payment", S.SUCCEEDED, None, "customer_payments"),
        ("ACC-100", "hello there", S.AWAITING_REVIEW, "ambiguity", None),
        # The open compliance review blocks the handoff to payments (a guard): no child starts.
        ("ACC-900", "status of my payment", S.AWAITING_REVIEW, "validation_failed", None),
    ],
)
def test_router_branches(operator, tree, account, question, status, reason, agent):
    root = tree.drive(_router(operator, account, question))
    assert root.status == status
    assert list(Run.objects.filter(parent=root).values_list("workflow_name", flat=True)) == (
        [agent] if agent else []
    )
    if reason:
        assert root.tickets.get().reason == reason


# --- escalations of the child ----------------------------------------------------------------


def test_a_paused_child_shows_on_the_parent_and_resolving_it_resumes_child_then_parent(
    operator, reviewer, tree, client
):
    root = tree.drive(_router(operator, "ACC-555", "Could I get a loan?"))  # no income on file
    child = Run.objects.get(parent=root)
    assert child.status == S.AWAITING_REVIEW and root.status == S.AWAITING_SUBAGENT
    ticket = child.tickets.get()
    assert ticket.reason == "ambiguity" and not root.tickets.exists()
    fam = subagents.family(root)
    assert fam.paused_children == [(child, ticket)]

    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[root.pk])).content.decode()
    assert "Waiting for its sub-agent" in page and f"/runs/{child.pk}" in page
    assert reverse("ticket_detail", args=[ticket.pk]) in page
    child_page = client.get(reverse("run_detail", args=[child.pk])).content.decode()
    assert "Sub-agent of" in child_page and reverse("run_detail", args=[root.pk]) in child_page

    resolve(ticket.pk, reviewer, "resume", note="Answer with what is on file: no income yet.")
    root = tree.drive(root)
    child.refresh_from_db()
    assert child.status == S.SUCCEEDED and root.status == S.SUCCEEDED
    assert root.result["routed_to"] == "lending"


def test_a_reviewer_of_a_childs_ticket_sees_the_family_and_only_while_the_ticket_is_theirs(
    operator, reviewer, tree, client, django_user_model
):
    """The child's ticket links to its parent ("Sub-agent of ..."): the reviewer must be able
    to open it to judge the escalation. Another reviewer stops seeing both once the ticket is
    resolved by someone else; an operator who did not start the run never sees them."""
    root = tree.drive(_router(operator, "ACC-555", "Could I get a loan?"))
    child = Run.objects.get(parent=root)
    ticket = child.tickets.get()
    other = django_user_model.objects.create_user("reviewer-2", password="x-reviewer-2-1")
    other.groups.add(Group.objects.get(name="reviewers"))
    stranger = django_user_model.objects.create_user("operator-2", password="x-operator-2-1")
    stranger.groups.add(Group.objects.get(name="operators"))

    def status(user: Any, run: Run) -> int:
        client.force_login(user)
        return client.get(reverse("run_detail", args=[run.pk])).status_code

    sibling = make_run(operator, status=S.SUCCEEDED)  # another sub-agent of the same parent
    Run.objects.filter(pk=sibling.pk).update(parent=root)
    assert (status(reviewer, child), status(reviewer, root)) == (200, 200)
    assert status(reviewer, sibling) == 404
    assert set(access.visible_runs(reviewer).filter(pk__in=[root.pk, child.pk])) == {root, child}
    assert access.visible_tickets(reviewer).filter(pk=ticket.pk).exists()
    assert (status(stranger, child), status(stranger, root)) == (404, 404)

    resolve(ticket.pk, reviewer, "resume", note="Answer with what is on file: no income yet.")
    assert (status(reviewer, child), status(reviewer, root)) == (200, 200)  # resolved by them
    assert (status(other, child), status(other, root)) == (404, 404)
    assert not access.visible_tickets(other).filter(pk=ticket.pk).exists()


def test_a_child_that_fails_is_an_error_result_for_the_parent(operator, reviewer, tree):
    root = tree.drive(_router(operator, "ACC-555", "Could I get a loan?"))
    first = Run.objects.get(parent=root)
    resolve(first.tickets.get().pk, reviewer, "fail", comment="not for the bot")
    root = tree.drive(root)
    failed = ToolCall.objects.get(run=root, tool_use_id=first.parent_tool_use_id, settled=True)
    assert failed.status == "error" and "did not succeed: it is failed" in failed.error
    assert "not for the bot" in failed.error
    returned = root.events.get(kind="subagent.returned").payload
    assert returned["child"] == str(first.pk) and returned["status"] == "failed"
    # The model was told, and tried again (a second child, its limit is two).
    assert Run.objects.filter(parent=root).count() == 2 and root.status == S.AWAITING_SUBAGENT


def test_cancelling_the_parent_cancels_its_unfinished_children(operator, tree):
    root = tree.drive(_router(operator, "ACC-555", "Could I get a loan?"))
    child = Run.objects.get(parent=root)
    lifecycle.transition(root.pk, S.CANCELLED, actor=operator)
    child.refresh_from_db()
    assert child.status == S.CANCELLED
    assert child.events.filter(
        kind="run.cancelled", payload__parent_cancelled=str(root.pk)
    ).exists()


def test_escalation_rules_apply_to_a_sub_agents_result(operator, tree):
    root = tree.drive(start_run("sa_ruled", {"text": "stop"}, operator))
    assert root.status == S.AWAITING_REVIEW
    ticket = root.tickets.get()
    assert ticket.reason == "validation_failed" and ticket.message == "The sub-agent said stop."
    assert ticket.failing_tool_call.name == "handoff" and ticket.failing_tool_call.status == "ok"
    assert tree.drive(start_run("sa_ruled", {"text": "go"}, operator)).status == S.SUCCEEDED


# --- one ceiling for the whole tree ------------------------------------------------------------


def test_a_child_cannot_spend_past_its_parents_ceiling(operator, manager, tree):
    root = tree.step(_router(operator, "ACC-100", "How much could I borrow?"))
    assert root.status == S.AWAITING_SUBAGENT
    child = Run.objects.get(parent=root)
    # The parent's ceiling leaves less than any call of the child could cost.
    Run.objects.filter(pk=root.pk).update(ceiling_usd=root.cost_usd + Decimal("0.000010"))
    child = tree.step(child)
    assert child.status == S.AWAITING_REVIEW
    ticket = child.tickets.get()
    assert ticket.reason == "budget_exceeded" and f"parent run {root.pk}" in ticket.message
    assert not ModelCall.objects.filter(run=child).exists()  # nothing was sent
    root.refresh_from_db()
    child.refresh_from_db()
    assert (root.children_reserved_usd, root.children_cost_usd, child.reserved_usd) == (0, 0, 0)

    with pytest.raises(ReviewError, match=f"parent run {root.pk}"):  # resuming never raises it
        resolve(ticket.pk, manager, "retry")
    accounting.raise_ceiling(root.pk, manager, refusal=access.ceiling_refusal, usd="1.00")
    resolve(ticket.pk, manager, "retry")
    root = tree.drive(root)
    assert root.status == S.SUCCEEDED
    assert root.tree_cost_usd <= root.ceiling_usd


def test_the_parents_own_calls_count_its_childrens_spend(operator, tree):
    root = tree.step(_router(operator, "ACC-100", "How much could I borrow?"))
    child = Run.objects.get(parent=root)
    tree.step(child)
    root.refresh_from_db()
    assert (
        root.status == S.QUEUED
        and root.children_cost_usd == Run.objects.get(pk=child.pk).cost_usd > 0
    )
    lifecycle.transition(root.pk, S.RUNNING, actor="engine")
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    worst = accounting.worst_case(params)
    # Room for the call by the run's own spend, none once its child's spend is counted.
    Run.objects.filter(pk=root.pk).update(
        ceiling_usd=root.cost_usd + root.children_cost_usd + worst.usd / 2
    )
    with pytest.raises(accounting.DoesNotFit, match="its sub-agents"):
        accounting.reserve(
            ModelCall(run_id=root.pk, turn=9, model=params["model"], request_content=[]), params
        )
    Run.objects.filter(pk=root.pk).update(
        ceiling_usd=root.cost_usd + root.children_cost_usd + worst.usd
    )
    mc = ModelCall(run_id=root.pk, turn=9, model=params["model"], request_content=[])
    accounting.reserve(mc, params)
    root.refresh_from_db()
    assert root.reserved_usd == worst.usd


def test_a_childs_call_is_held_on_its_parent_until_charged(operator, tree):
    root = tree.step(_router(operator, "ACC-100", "How much could I borrow?"))
    child = Run.objects.get(parent=root)
    lifecycle.transition(child.pk, S.RUNNING, actor="engine")
    params = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    mc = ModelCall(run_id=child.pk, turn=0, model=params["model"], request_content=[])
    worst = accounting.reserve(mc, params)
    root.refresh_from_db()
    assert root.children_reserved_usd == worst.usd and root.children_reserved_tokens == worst.tokens
    accounting.release(mc)
    root.refresh_from_db()
    assert (root.children_reserved_usd, root.children_reserved_tokens, root.children_cost_usd) == (
        0,
        0,
        0,
    )


def test_the_estimate_and_so_the_approval_gate_cover_the_whole_tree(operator):
    from costs.estimates import estimate_run
    from orchestration.launch import measure_prompt, preview
    from orchestration.workflows.versions import snapshot

    value = {"customer_account": "ACC-100", "question": "How much could I borrow?"}
    router = registry.get("customer_router")
    alone = estimate_run(router, value, measure_prompt(router, snapshot(router), value))
    tree_estimate = preview("customer_router", value, operator).estimate
    items = [line["item"] for line in tree_estimate.lines]
    assert {
        "Sub-agent lending (customer_lending, claude-sonnet-5)",
        "Sub-agent payments (customer_payments, claude-sonnet-5)",
        "Sub-agent compliance (customer_compliance, claude-sonnet-5)",
        "Sub-agents through handoff",
        "Upper bound with sub-agents",
    } <= set(items)
    children = [
        Decimal(line["usd"].lstrip("$"))
        for line in tree_estimate.lines
        if line["item"].startswith("Sub-agent ")
    ]
    assert tree_estimate.upper_usd == alone.upper_usd + 2 * max(children)  # max_children = 2
    assert tree_estimate.expected_usd > alone.expected_usd
    run = start_run("customer_router", value, operator)
    assert run.estimate_usd == tree_estimate.upper_usd


# --- limits ------------------------------------------------------------------------------


def test_a_hostile_model_naming_an_undeclared_agent_is_refused(operator, tree, monkeypatch):
    monkeypatch.setattr("tests.test_subagents.PLAN", ["payment_approval", "sa_leaf", "treasury"])
    root = tree.drive(start_run("sa_permissive", {"text": "x"}, operator))
    assert not Run.objects.filter(parent=root).exists()
    refused = list(ToolCall.objects.filter(run=root, name="handoff").order_by("created_at"))
    assert [tc.status for tc in refused] == ["rejected"] * 3
    assert all(
        "is not a sub-agent this workflow declares (declared: leaf)" in tc.error for tc in refused
    )
    assert [
        e.payload["agent"] for e in root.events.filter(kind="subagent.refused").order_by("run_seq")
    ] == ["payment_approval", "sa_leaf", "treasury"]
    assert root.status == S.AWAITING_REVIEW and root.tickets.get().reason == "validation_failed"


def test_the_handoff_schema_refuses_an_undeclared_agent_too(operator, tree, monkeypatch):
    monkeypatch.setattr("tests.test_subagents.PLAN", ["payment_approval"])
    root = tree.drive(start_run("sa_parent", {"text": "x"}, operator))
    assert not Run.objects.filter(parent=root).exists()
    assert ToolCall.objects.get(run=root, name="handoff").status == "rejected"


def test_max_children_per_run(operator, tree, monkeypatch):
    monkeypatch.setattr("tests.test_subagents.PLAN", ["leaf", "leaf", "leaf"])
    root = tree.drive(start_run("sa_parent", {"text": "x"}, operator))
    assert root.status == S.SUCCEEDED
    assert Run.objects.filter(parent=root, status=S.SUCCEEDED).count() == 2
    third = ToolCall.objects.filter(run=root, name="handoff").order_by("created_at").last()
    assert (
        third.status == "rejected"
        and "already started 2 sub-agent run(s), its limit" in third.error
    )


def test_max_children_holds_for_handoffs_of_one_turn_settled_in_parallel(
    operator, tree, monkeypatch
):
    monkeypatch.setattr("tests.test_subagents.PLAN", [["leaf", "leaf", "leaf"]])
    root = tree.drive(start_run("sa_parent", {"text": "x"}, operator))
    assert root.status == S.SUCCEEDED
    assert Run.objects.filter(parent=root).count() == 2
    statuses = sorted(
        ToolCall.objects.filter(run=root, name="handoff", settled=True).values_list(
            "status", flat=True
        )
    )
    assert statuses == ["ok", "ok", "rejected"]


def test_max_depth_at_runtime(operator, tree, settings):
    assert tree.drive(start_run("sa_top", {"text": "x"}, operator)).status == S.SUCCEEDED
    grandchild = Run.objects.get(parent__parent__workflow_name="sa_top")
    assert grandchild.workflow_name == "sa_leaf" and subagents.depth_of(grandchild) == 2

    settings.SUBAGENT_MAX_DEPTH = 1
    root = tree.drive(start_run("sa_top", {"text": "y"}, operator))
    middle = Run.objects.get(parent=root)
    assert not Run.objects.filter(parent=middle).exists()
    refused = ToolCall.objects.filter(run=middle, name="handoff", status="rejected").first()
    assert "sub-agents may nest at most 1 levels" in refused.error


def test_declarations_are_checked_at_load(settings):
    def wf(name: str, *agents: SubAgent, **more: Any) -> Workflow:
        return _workflow(name, (handoff(*agents, **more),), _leaf_policy)

    with pytest.raises(delegation.DelegationError, match="not a registered workflow"):
        delegation.check(
            wf("x_unknown", SubAgent("a", "nope", "d")), registry._REGISTRY, strict=True
        )
    with pytest.raises(delegation.DelegationError, match="max_children must be between 1"):
        register(wf("x_many", SubAgent("a", "sa_leaf", "d"), max_children=99))
    with pytest.raises(delegation.DelegationError, match="declares a sub-agent name twice"):
        register(wf("x_twice", SubAgent("a", "sa_leaf", "d"), SubAgent("a", "sa_leaf", "e")))
    with pytest.raises(delegation.DelegationError, match="cycle"):
        register(wf("x_loop", SubAgent("self", "x_loop", "d")))
    delegation.check_all(registry._REGISTRY)  # the demo and test declarations hold
    settings.SUBAGENT_MAX_DEPTH = 1
    with pytest.raises(delegation.DelegationError, match="nest 2 levels deep"):
        register(wf("x_deep", SubAgent("a", "sa_middle", "d")))
    with pytest.raises(
        delegation.DelegationError, match="'sa_top': its sub-agents nest 2 levels deep"
    ):
        delegation.check_all(registry._REGISTRY)
    assert not {"x_many", "x_twice", "x_loop", "x_deep"} & set(registry._REGISTRY)


# --- crash safety --------------------------------------------------------------------------


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the step sees it."""


def test_a_worker_killed_after_starting_the_child_does_not_start_a_second(
    operator, tree, monkeypatch
):
    root = _router(operator, "ACC-100", "How much could I borrow?")

    def killed(run_id: Any) -> bool:
        raise WorkerKilled

    monkeypatch.setattr(subagents, "park", killed)
    with pytest.raises(WorkerKilled):
        tree.step(root)
    root.refresh_from_db()
    assert root.status == S.RUNNING and Run.objects.filter(parent=root).count() == 1
    first = Run.objects.get(parent=root)

    monkeypatch.undo()
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: tree.enqueued.append(str(run_id)),
    )
    Run.objects.filter(pk=root.pk).update(lease_expires_at=None)  # the lease ran out
    root = tree.step(root)  # the redelivered step settles the same tool_use again
    assert root.status == S.AWAITING_SUBAGENT
    assert list(Run.objects.filter(parent=root)) == [first]
    assert root.events.filter(kind="subagent.handoff").count() == 1
    assert tree.drive(root).status == S.SUCCEEDED
    assert Run.objects.filter(parent=root).count() == 1


def test_starting_the_child_of_one_tool_use_twice_returns_the_first(operator, tree):
    root = tree.step(_router(operator, "ACC-100", "How much could I borrow?"))
    first = Run.objects.get(parent=root)
    mc = ModelCall.objects.get(run=root, turn=0)
    again = subagents.start_child(
        root, "lending", registry.get("customer_lending"), first.input, first.parent_tool_use_id, mc
    )
    assert again.pk == first.pk and Run.objects.filter(parent=root).count() == 1


# --- the run page ----------------------------------------------------------------------------


def test_run_page_shows_the_tree(operator, tree, client):
    root = tree.drive(_router(operator, "ACC-100", "How much could I borrow?"))
    child = Run.objects.get(parent=root)
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[root.pk])).content.decode()
    assert 'id="subagents"' in page and reverse("run_detail", args=[child.pk]) in page
    assert "customer_lending" in page and "lending" in page
    assert f"${child.cost_usd:.4f}" in page or f"{child.cost_usd:.4f}" in page
    assert "sub-agents" in page  # the cost tile splits own and sub-agents' spend
    # The parent's timeline shows the handoff and the result, each linking the child.
    assert "subagent.handoff" in page and "subagent.returned" in page
    assert page.count(f'href="{reverse("run_detail", args=[child.pk])}"') >= 3
    child_page = client.get(reverse("run_detail", args=[child.pk])).content.decode()
    assert "Sub-agent run of" in child_page


def test_an_unrelated_user_cannot_open_the_child(operator, outsider, tree, client):
    root = tree.drive(_router(operator, "ACC-100", "How much could I borrow?"))
    child = Run.objects.get(parent=root)
    client.force_login(outsider)
    assert client.get(reverse("run_detail", args=[child.pk])).status_code == 404


def test_workflow_replace_keeps_handoff():
    # dataclasses.replace (how tests swap a policy) keeps a handoff a Handoff.
    wf = dataclasses.replace(registry.get("customer_router"), policy=None)
    assert isinstance(wf.tool("handoff"), Handoff) and wf.handoffs[0].max_children == 2
