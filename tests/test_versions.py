"""Workflow versions: complete snapshots with code digests, four-eyes approval of a change,
rollback, the diff page, and runs judged by the version they started on (issue 16 §1)."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from orchestration import version_policy
from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, Run, WorkflowVersion
from orchestration.version_diff import diff
from orchestration.workflows import registry
from orchestration.workflows.declaration import EscalationRule, Workflow
from orchestration.workflows.versions import (
    code_digest,
    content_hash,
    drift,
    hash_of,
    serving,
    snapshot,
    snapshot_fields,
)
from reviews import resolutions
from tests.api_helpers import assert_documented, call, token_for
from tests.workflows_for_tests import PROBE

S = Run.Status
V = WorkflowVersion.Status
ROOT = Path(__file__).resolve().parent.parent


def _strict(out: dict[str, Any], ctx: Any) -> list[str]:
    return [] if out["value"] > 10 else [f"value {out['value']} must be over 10"]


def _with_validator(workflow: Workflow, validator: Any, version: str = "2") -> Workflow:
    probe_tool = dataclasses.replace(workflow.tools[0], validators=(validator,))
    return dataclasses.replace(workflow, version=version, tools=(probe_tool, *workflow.tools[1:]))


def _limit(factor: int) -> Any:
    def over(out: dict[str, Any], ctx: Any) -> list[str]:
        return [] if out["value"] > factor else ["too small"]

    return over


def _deploy(monkeypatch: pytest.MonkeyPatch, workflow: Workflow, *previous: Workflow) -> None:
    """Deploy ``workflow`` as the current declaration of its name (and keep ``previous``)."""
    monkeypatch.setitem(registry._REGISTRY, workflow.name, workflow)
    monkeypatch.setitem(registry._PREVIOUS, workflow.name, list(previous))


@pytest.fixture
def probe_v1(monkeypatch: pytest.MonkeyPatch, db: Any) -> WorkflowVersion:
    _deploy(monkeypatch, PROBE)
    return snapshot(PROBE)


@pytest.fixture
def dual(seeded: None) -> Any:
    """One person holding two roles: operator and manager."""
    user = get_user_model().objects.create_user("dual", password="x-dual-1")
    user.groups.set(Group.objects.filter(name__in=["operators", "managers"]))
    return user


@pytest.fixture
def manager2(seeded: None) -> Any:
    user = get_user_model().objects.create_user("manager2", password="x-manager2-1")
    user.groups.set(Group.objects.filter(name="managers"))
    return user


# --- the snapshot covers what decides a run's behaviour -------------------------------------


def test_the_snapshot_covers_rules_examples_schemas_limits_models_and_code(db: Any) -> None:
    fr = registry.get("financial_reporting")
    fields = snapshot_fields(fr)
    b = fields["behaviour"]
    assert b["rules"] == list(fr.rules) and b["examples"][0]["title"] == fr.examples[0].title
    assert (
        fields["model_roles"] == dict(fr.models)
        and fields["constraints"]["max_steps"] == fr.constraints.max_steps
    )
    tools = {t["name"]: t for t in b["tools"]}
    validated = next(t for t in fr.tools if t.validators)
    assert tools[validated.name]["output_schema"] == validated.output_schema
    assert tools[validated.name]["validators"] == [code_digest(v) for v in validated.validators]
    assert all(len(d["sha256"]) == 64 for d in tools[validated.name]["validators"])
    rules = b["escalation_rules"]
    assert [r["reason"] for r in rules] == [r.reason for r in fr.escalation_rules]
    assert all(r["when"]["sha256"] for r in rules)
    pa = registry.get("payment_approval")
    pa_fields = snapshot_fields(pa)["behaviour"]
    guarded = [t for t in pa_fields["tools"] if t["preconditions"]]
    assert guarded and guarded[0]["preconditions"][0]["check"]["sha256"]
    assert (
        pa_fields["regulatory_trigger"] == code_digest(pa.regulatory_trigger)
        or pa.regulatory_trigger is None
    )


def test_a_change_of_code_is_a_new_version_and_the_simulators_policy_is_not(db: Any) -> None:
    base = hash_of(PROBE)
    assert hash_of(dataclasses.replace(PROBE)) == base  # same declaration, same version
    assert (
        hash_of(_with_validator(PROBE, _strict, version="1")) != base
    )  # another validator's source
    # A validator made by a factory: the captured limit is part of its digest.
    assert code_digest(_limit(5)) != code_digest(_limit(6))
    assert code_digest(_limit(5)) == code_digest(_limit(5))
    rule = EscalationRule("probe", "regulatory_trigger", "Big", lambda out, ctx: out["value"] > 5)
    assert hash_of(dataclasses.replace(PROBE, escalation_rules=(rule,))) != base
    assert hash_of(dataclasses.replace(PROBE, rules=(*PROBE.rules, "Never guess."))) != base
    assert (
        hash_of(
            dataclasses.replace(PROBE, models={**PROBE.models, "orchestrator": "claude-haiku-4-5"})
        )
        != base
    )
    # The simulator's policy plays the model; it is not the workflow's logic.
    assert hash_of(dataclasses.replace(PROBE, policy=lambda conv: None)) == base


def test_the_digest_is_the_same_in_another_process(db: Any) -> None:
    """A worker computes the same version for the same code (no memory address in a digest),
    or every run would look changed to the engine."""
    script = (
        "import django; django.setup(); import tests.workflows_for_tests; "
        "from orchestration.workflows import registry; from orchestration.workflows.versions import hash_of; "
        "print(hash_of(registry.get('probe'))); print(hash_of(registry.get('financial_reporting')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [hash_of(PROBE), hash_of(registry.get("financial_reporting"))]


# --- bootstrap, pending, and what serves -----------------------------------------------------


def test_the_first_version_is_the_systems_bootstrap_audited(probe_v1: WorkflowVersion) -> None:
    assert probe_v1.status == V.APPROVED and probe_v1.serving and probe_v1.author is None
    event = AuditEvent.objects.get(kind="version.bootstrapped")
    assert event.actor_label == "system" and event.payload["content_hash"] == probe_v1.content_hash


def test_a_change_is_pending_and_the_previous_version_keeps_serving(
    monkeypatch, probe_v1, operator, drive
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)  # v2 deployed, v1's declaration kept beside it
    workflow, version = serving("probe")
    assert workflow is PROBE and version == probe_v1
    pending = WorkflowVersion.objects.get(content_hash=hash_of(v2))
    assert pending.status == V.PENDING and not pending.serving
    assert AuditEvent.objects.filter(
        kind="version.recorded", payload__content_hash=pending.content_hash
    ).exists()
    # The run starts on v1 and runs v1's code: v1's validator passes 7, v2's would refuse it.
    run = drive(start_run("probe", {}, operator))
    assert run.workflow_version == probe_v1
    assert run.status == S.SUCCEEDED and run.result["value"] == 7


def test_a_change_deployed_in_place_starts_no_run_until_approved(
    monkeypatch, probe_v1, operator
) -> None:
    _deploy(monkeypatch, _with_validator(PROBE, _strict))
    with pytest.raises(RunRefused) as refused:
        start_run("probe", {}, operator)
    assert refused.value.code == RunRefused.VERSION_UNAVAILABLE
    assert "no longer deployed" in refused.value.errors["workflow"]
    assert "pending" in refused.value.errors["workflow"]
    assert Run.objects.count() == 0


# --- four eyes -------------------------------------------------------------------------------


def test_approval_needs_an_author_and_a_manager_who_is_not_them(
    monkeypatch, probe_v1, operator, manager, dual, reviewer
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2)
    pending = snapshot(v2)
    # Nobody proposed it yet: nobody answers for it, so nobody may approve it.
    assert any(
        "Nobody has proposed" in b for b in version_policy.approval_blockers(pending, manager)
    )
    with pytest.raises(version_policy.VersionRefused):
        version_policy.approve(pending.pk, "probe", manager)
    # A reviewer may not propose.
    with pytest.raises(version_policy.VersionRefused, match="Only operators and managers"):
        version_policy.propose(pending.pk, "probe", reviewer)
    # One person with two roles proposes, then tries to approve their own change.
    version_policy.propose(pending.pk, "probe", dual, note="Stricter probe")
    with pytest.raises(version_policy.VersionRefused, match="You proposed this version"):
        version_policy.approve(pending.pk, "probe", dual)
    # An operator is not a manager.
    with pytest.raises(version_policy.VersionRefused, match="Only a manager"):
        version_policy.approve(pending.pk, "probe", operator)
    pending.refresh_from_db()
    assert pending.status == V.PENDING and not pending.serving
    assert not AuditEvent.objects.filter(kind="version.approved").exists()
    # Another manager approves: it serves, v1 stops serving new runs.
    version_policy.approve(pending.pk, "probe", manager, note="Reviewed the validator")
    pending.refresh_from_db()
    probe_v1.refresh_from_db()
    assert pending.status == V.APPROVED and pending.serving and pending.decided_by == manager
    assert probe_v1.status == V.APPROVED and not probe_v1.serving
    event = AuditEvent.objects.get(kind="version.approved")
    assert event.actor_label == "manager" and event.payload["author"] == "dual"
    assert event.payload["previous"] == probe_v1.content_hash
    assert AuditEvent.objects.filter(kind="version.proposed", actor_label="dual").exists()
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    assert start_run("probe", {}, operator).workflow_version == pending


def test_a_version_whose_code_is_not_deployed_cannot_be_approved(
    monkeypatch, probe_v1, operator, manager
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2)
    pending = snapshot(v2)
    version_policy.propose(pending.pk, "probe", operator)
    _deploy(monkeypatch, PROBE)  # the change was reverted before anyone approved it
    with pytest.raises(version_policy.VersionRefused, match="not deployed"):
        version_policy.approve(pending.pk, "probe", manager)


def test_reject_needs_a_note_and_a_rejected_version_never_serves(
    monkeypatch, probe_v1, operator, manager
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    pending = snapshot(v2)
    version_policy.propose(pending.pk, "probe", operator)
    with pytest.raises(version_policy.VersionRefused, match="needs a note"):
        version_policy.reject(pending.pk, "probe", manager, note="  ")
    version_policy.reject(pending.pk, "probe", manager, note="The limit of 10 is wrong")
    pending.refresh_from_db()
    assert pending.status == V.REJECTED and pending.decision_note == "The limit of 10 is wrong"
    with pytest.raises(version_policy.VersionRefused, match="not pending"):
        version_policy.approve(pending.pk, "probe", manager)
    assert serving("probe")[1] == probe_v1


# --- rollback ----------------------------------------------------------------------------------


def test_rollback_is_one_audited_action_with_its_refusals(
    monkeypatch, probe_v1, operator, manager, manager2
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    new = snapshot(v2)
    version_policy.propose(new.pk, "probe", operator)
    version_policy.approve(new.pk, "probe", manager)
    # Refusals: an unknown version, one of another workflow, the serving one, a non-manager.
    with pytest.raises(version_policy.VersionRefused, match="has no version 999999"):
        version_policy.rollback(999999, "probe", manager)
    other = snapshot(registry.get("financial_reporting"))
    with pytest.raises(version_policy.VersionRefused, match="has no version"):
        version_policy.rollback(other.pk, "probe", manager)
    with pytest.raises(version_policy.VersionRefused, match="already serves"):
        version_policy.rollback(new.pk, "probe", manager)
    with pytest.raises(version_policy.VersionRefused, match="Only a manager"):
        version_policy.rollback(probe_v1.pk, "probe", operator)
    assert not AuditEvent.objects.filter(kind="version.rolled_back").exists()
    version_policy.rollback(probe_v1.pk, "probe", manager2, note="v2 refuses good payments")
    probe_v1.refresh_from_db()
    new.refresh_from_db()
    assert probe_v1.serving and not new.serving and new.status == V.APPROVED
    event = AuditEvent.objects.get(kind="version.rolled_back")
    assert event.actor_label == "manager2" and event.payload["previous"] == new.content_hash
    assert event.payload["content_hash"] == probe_v1.content_hash
    assert serving("probe")[1] == probe_v1


def test_rollback_to_a_pending_version_or_one_whose_code_is_gone_is_refused(
    monkeypatch, probe_v1, operator, manager
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    pending = snapshot(v2)
    with pytest.raises(version_policy.VersionRefused, match="only a version that was approved"):
        version_policy.rollback(pending.pk, "probe", manager)
    version_policy.propose(pending.pk, "probe", operator)
    version_policy.approve(pending.pk, "probe", manager)
    _deploy(monkeypatch, v2)  # v1's declaration is no longer deployed
    with pytest.raises(version_policy.VersionRefused, match="code is not deployed"):
        version_policy.rollback(probe_v1.pk, "probe", manager)


# --- a run is judged by the version it started on --------------------------------------------


def test_resuming_a_run_whose_version_is_gone_is_refused_with_a_way_forward(
    monkeypatch, probe_v1, operator, reviewer, drive
) -> None:
    run = drive(start_run("probe", {"mode": "broken"}, operator))
    ticket = run.tickets.get()
    assert run.status == S.AWAITING_REVIEW
    _deploy(monkeypatch, _with_validator(PROBE, _strict))  # deployed in place
    why = drift(run.workflow_version)
    assert why and "no longer deployed" in why and "rules and code" in why and "Fail the run" in why
    for action in ("resume", "retry"):
        with pytest.raises(resolutions.ReviewError, match="no longer deployed"):
            resolutions.resolve(ticket.pk, reviewer, action, note="go on", comment="go on")
    run.refresh_from_db()
    ticket.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW and ticket.status != "resolved"
    # The way forward: fail it (and start a new run on the approved version).
    resolutions.resolve(ticket.pk, reviewer, "fail", comment="version changed")
    run.refresh_from_db()
    assert run.status == S.FAILED


def test_resuming_works_while_the_runs_version_is_still_deployed(
    monkeypatch, probe_v1, operator, reviewer, drive
) -> None:
    run = drive(start_run("probe", {"mode": "broken"}, operator))
    _deploy(monkeypatch, _with_validator(PROBE, _strict), PROBE)  # v1 kept beside v2
    assert drift(run.workflow_version) is None
    resolutions.resolve(
        run.tickets.get().pk, reviewer, "fail", comment="x"
    )  # any action is allowed


def test_a_queued_run_whose_version_changed_pauses_before_any_model_call(
    monkeypatch, probe_v1, operator, drive
) -> None:
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    run = start_run("probe", {}, operator)
    _deploy(monkeypatch, _with_validator(PROBE, _strict))
    run = drive(run)
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "version_unavailable" and "no longer deployed" in ticket.message
    assert run.model_calls.count() == 0 and run.tool_calls.count() == 0


def test_the_run_page_says_when_its_version_is_gone(
    client, monkeypatch, probe_v1, operator, drive
) -> None:
    run = drive(start_run("probe", {"mode": "broken"}, operator))
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="version-drift"' not in page and 'id="run-version"' in page
    _deploy(monkeypatch, _with_validator(PROBE, _strict))
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="version-drift"' in page and "no longer deployed" in page


def test_a_snapshot_from_before_code_digests_is_matched_by_its_data(probe_v1) -> None:
    legacy_fields = {k: v for k, v in snapshot_fields(PROBE).items() if k != "behaviour"}
    WorkflowVersion.objects.filter(pk=probe_v1.pk).update(
        behaviour={}, content_hash=content_hash(legacy_fields)
    )
    probe_v1.refresh_from_db()
    assert drift(probe_v1) is None
    changed = dataclasses.replace(PROBE, rules=(*PROBE.rules, "Say hello."))
    registry._REGISTRY["probe"] = changed
    try:
        assert "no longer deployed" in (drift(probe_v1) or "")
    finally:
        registry._REGISTRY["probe"] = PROBE


# --- the diff ---------------------------------------------------------------------------------


def test_the_diff_shows_prompt_lines_limits_and_code_that_changed(monkeypatch, probe_v1) -> None:
    v2 = dataclasses.replace(
        _with_validator(PROBE, _strict),
        rules=(*PROBE.rules, "Never invent a receipt."),
        constraints=dataclasses.replace(
            PROBE.constraints, max_steps=9, max_cost_usd=Decimal("2.00")
        ),
    )
    _deploy(monkeypatch, v2, PROBE)
    new = snapshot(v2)
    sections = {s.label: s for s in diff(probe_v1, new)}
    prompt = sections["Prompt"]
    assert ("add", "3. Never invent a receipt.") in [(x.op, x.text) for x in prompt.lines]
    assert ("del", "- Max 6 model turns per run.") in [(x.op, x.text) for x in prompt.lines]
    limits = [(x.op, x.text.strip()) for x in sections["Limits"].lines]
    assert ("del", '"max_steps": 6,') in limits and ("add", '"max_steps": 9,') in limits
    code = [x.text for x in sections["Tools: schemas, timeouts and code"].lines if x.op == "add"]
    assert any("_strict" in line for line in code)
    assert not sections["Models per role"].changed and not sections["Input schema"].changed


# --- the pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("manager", 200),
        ("auditor", 200),
        ("operator", 200),
        ("reviewer", 404),
        ("outsider", 404),
    ],
)
def test_the_versions_pages_by_role(client, request, probe_v1, persona, status) -> None:
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("workflow_list")).status_code == status
    assert client.get(reverse("version_list", args=["probe"])).status_code == status
    assert client.get(reverse("version_detail", args=["probe", probe_v1.pk])).status_code == status


def test_the_version_page_approves_with_four_eyes(
    client, monkeypatch, probe_v1, dual, manager
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    client.force_login(dual)
    listing = client.get(reverse("version_list", args=["probe"])).content.decode()
    pending = WorkflowVersion.objects.get(content_hash=hash_of(v2))
    assert "pending approval" in listing and "not proposed yet" in listing
    url = reverse("version_action", args=["probe", pending.pk])
    page_url = reverse("version_detail", args=["probe", pending.pk])
    assert client.get(url).status_code == 405
    page = client.get(page_url).content.decode()
    assert 'id="version-propose"' in page and "_strict" in page  # the diff against v1
    response = client.post(url, {"action": "propose", "note": "Stricter"}, follow=True)
    assert "you are its author" in response.content.decode()
    response = client.post(url, {"action": "approve"}, follow=True)
    assert "You proposed this version" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == V.PENDING and pending.author == dual
    client.force_login(manager)
    response = client.post(url, {"action": "approve", "note": "ok"}, follow=True)
    assert "serves new runs from now on" in response.content.decode()
    pending.refresh_from_db()
    assert pending.serving and pending.decided_by == manager


def test_an_auditor_sees_no_decision_form_and_cannot_post_one(
    client, monkeypatch, probe_v1, auditor, operator
) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    pending = snapshot(v2)
    version_policy.propose(pending.pk, "probe", operator)
    client.force_login(auditor)
    page = client.get(reverse("version_detail", args=["probe", pending.pk])).content.decode()
    assert 'id="version-decide"' not in page and "Only a manager" in page
    client.post(reverse("version_action", args=["probe", pending.pk]), {"action": "approve"})
    pending.refresh_from_db()
    assert pending.status == V.PENDING


def test_the_compare_form_and_a_bad_version_in_it(client, monkeypatch, probe_v1, manager) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    new = snapshot(v2)
    client.force_login(manager)
    response = client.get(
        reverse("version_list", args=["probe"]), {"to": new.pk, "against": probe_v1.pk}
    )
    assert response.status_code == 302 and response.url.endswith(
        f"/{new.pk}/?against={probe_v1.pk}"
    )
    page = client.get(
        reverse("version_detail", args=["probe", new.pk]), {"against": "nope"}
    ).content.decode()
    assert "has no version" in page
    assert client.get(reverse("version_detail", args=["probe", 999999])).status_code == 404
    assert client.get(reverse("version_list", args=["nope"])).status_code == 404


# --- manage.py propose_version ---------------------------------------------------------------------


def test_propose_version_names_the_author(monkeypatch, probe_v1, operator) -> None:
    v2 = _with_validator(PROBE, _strict)
    _deploy(monkeypatch, v2, PROBE)
    out = io.StringIO()
    call_command(
        "propose_version", "probe", "--author", "operator", "--note", "stricter", stdout=out
    )
    pending = WorkflowVersion.objects.get(content_hash=hash_of(v2))
    assert pending.author == operator and "Proposed probe v2" in out.getvalue()
    with pytest.raises(CommandError, match="already proposed"):
        call_command("propose_version", "probe", "--author", "operator", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No active user"):
        call_command("propose_version", "probe", "--author", "ghost", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Unknown workflow"):
        call_command("propose_version", "nope", "--author", "operator", stdout=io.StringIO())


def test_the_api_answers_409_when_no_approved_version_can_serve(
    client, monkeypatch, probe_v1, operator
) -> None:
    _deploy(monkeypatch, _with_validator(PROBE, _strict))
    response = call(
        client, "POST", "/api/runs", token_for(operator), body={"workflow": "probe", "input": {}}
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "version_unavailable"
    assert "no longer deployed" in response.json()["error"]["fields"]["workflow"]
    assert_documented(response, "/api/runs", "POST")
    assert Run.objects.count() == 0
