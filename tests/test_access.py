"""The access rules of reviews/access.py, end to end: four-eyes on every path that decides
money or a sign-off, reviewers seeing tickets by the same rule as runs, the roles created by
the migration, assign_role, and seed_demo leaving existing users alone."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from orchestration import lifecycle
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from reviews import access, approvals, resolutions
from reviews.escalation import escalate
from reviews.models import ApprovalRequest, EscalationTicket
from tests.api_helpers import call, token_for

S = Run.Status
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_enqueue(monkeypatch):
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(str(run_id)),
    )
    return enqueued


def _user(django_user_model, username, *roles, **extra):
    user = django_user_model.objects.create_user(username, password=f"x-{username}-1", **extra)
    user.groups.add(*Group.objects.filter(name__in=roles))
    return user


def _paused(requester, reason, message="Paused for a human."):
    """A run of ``requester`` paused on a ticket of ``reason``."""
    run = start_run("payment_approval", {"payment_id": "PAY-1001"}, requester)
    lifecycle.transition(run.pk, S.RUNNING)
    return escalate(run.pk, reason, message)


def _unchanged(ticket):
    ticket.refresh_from_db()
    run = Run.objects.get(pk=ticket.run_id)
    assert ticket.status != EscalationTicket.Status.RESOLVED and ticket.resolved_by is None
    assert run.status == S.AWAITING_REVIEW
    assert not AuditEvent.objects.filter(kind="ticket.resolved", run=run).exists()


# --- four eyes: nobody resolves a money or sign-off ticket on a run they requested ----------


@pytest.mark.parametrize("reason", ["budget_exceeded", "regulatory_trigger"])
def test_requester_cannot_resolve_own_sensitive_ticket_on_the_page(
    client, manager, reason, no_enqueue
):
    ticket = _paused(manager, reason)
    client.force_login(manager)
    response = client.post(
        reverse("ticket_resolve", args=[ticket.pk]), {"action": "fail", "comment": "mine"}
    )
    assert response.status_code == 403
    assert "four-eyes" in response.content.decode()
    _unchanged(ticket)
    htmx = client.post(
        reverse("ticket_resolve", args=[ticket.pk]),
        {"action": "approve"},
        headers={"HX-Request": "true"},
    )
    assert htmx.status_code == 200 and "four-eyes" in htmx.content.decode()
    _unchanged(ticket)


@pytest.mark.parametrize("reason", ["budget_exceeded", "regulatory_trigger"])
def test_requester_cannot_resolve_own_sensitive_ticket_through_the_api(
    client, manager, reason, no_enqueue
):
    ticket = _paused(manager, reason)
    response = call(
        client,
        "POST",
        f"/api/tickets/{ticket.pk}/resolve",
        token_for(manager),
        {"action": "approve", "comment": "mine"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "four-eyes" in response.json()["error"]["message"]
    _unchanged(ticket)


@pytest.mark.parametrize("reason", ["budget_exceeded", "regulatory_trigger"])
def test_requester_cannot_claim_or_be_assigned_own_sensitive_ticket(
    manager, django_user_model, reason, no_enqueue
):
    ticket = _paused(manager, reason)
    other = _user(django_user_model, "manager2", "managers")
    with pytest.raises(resolutions.NotAllowed, match="four-eyes"):
        resolutions.claim(ticket.pk, manager)
    with pytest.raises(resolutions.NotAllowed, match="manager requested this run"):
        resolutions.assign(ticket.pk, other, manager)
    ticket.refresh_from_db()
    assert ticket.assignee is None and ticket.status == "open"


def test_another_manager_resolves_the_budget_ticket(manager, django_user_model, no_enqueue):
    ticket = _paused(manager, "budget_exceeded")
    other = _user(django_user_model, "manager2", "managers")
    assert not access.may_resolve_ticket(manager, ticket)
    assert access.may_resolve_ticket(other, ticket)
    resolutions.resolve(ticket.pk, other, "approve", comment="worth it")
    ticket.refresh_from_db()
    assert ticket.status == "resolved" and ticket.resolved_by == other
    assert Run.objects.get(pk=ticket.run_id).status == S.QUEUED


def test_four_eyes_holds_for_someone_with_two_roles(client, django_user_model, seeded, no_enqueue):
    """An operator who is also a reviewer starts a run, then meets its sign-off ticket."""
    both = _user(django_user_model, "opreviewer", "operators", "reviewers")
    ticket = _paused(both, "regulatory_trigger", "Sign-off required: a large payment.")
    client.force_login(both)
    # They see it (it is their run, and it is in the shared queue) ...
    assert client.get(reverse("ticket_detail", args=[ticket.pk])).status_code == 200
    # ... but may not resolve it, by any path.
    assert (
        client.post(reverse("ticket_resolve", args=[ticket.pk]), {"action": "approve"}).status_code
        == 403
    )
    api = call(
        client,
        "POST",
        f"/api/tickets/{ticket.pk}/resolve",
        token_for(both),
        {"action": "approve"},
    )
    assert api.status_code == 403
    _unchanged(ticket)
    # A ticket that decides neither money nor a sign-off stays theirs to handle.
    plain = _paused(both, "ambiguity")
    resolutions.resolve(plain.pk, both, "fail", comment="my own ambiguity")
    plain.refresh_from_db()
    assert plain.resolved_by == both


def test_a_superuser_is_held_to_four_eyes_too(django_user_model, no_enqueue):
    root = django_user_model.objects.create_superuser("root", password="x-root-1")
    ticket = _paused(root, "budget_exceeded")
    with pytest.raises(resolutions.NotAllowed, match="four-eyes"):
        resolutions.resolve(ticket.pk, root, "fail", comment="mine")
    _unchanged(ticket)


def test_requester_cannot_supply_a_final_output_that_needs_a_sign_off(
    django_user_model, settings, seeded, no_enqueue
):
    """Correcting the final output of one's own run to a result over the sign-off amount is a
    sign-off by the requester: refused. Someone else may."""
    both = _user(django_user_model, "opreviewer", "operators", "reviewers")
    ticket = _paused(both, "validation_failed", "The final answer is invalid.")
    # The sign-off rule reads the recorded decision (its amount from the payment row), never
    # the answer's words: a recorded approval over the limit that nobody signed off.
    over = float(settings.PAYMENT_SIGNOFF_AMOUNT + 1)
    mc = ModelCall.objects.create(
        run_id=ticket.run_id, turn=0, model="claude-opus-4-6", status="ok"
    )
    ToolCall.objects.create(
        run_id=ticket.run_id,
        model_call=mc,
        tool_use_id="tu_decide",
        name="record_decision",
        input={"payment_id": "PAY-1001", "decision": "approve"},
        settled=True,
        status="ok",
        output={"payment_id": "PAY-1001", "decision": "approve", "amount": over},
    )
    big = {
        "payment_id": "PAY-1001",
        "decision": "approve",
        "validator": "high_value_validator",
        "amount": float(settings.PAYMENT_SIGNOFF_AMOUNT + 1),
        "audit_entry_id": "AUD-1",
    }
    with pytest.raises(resolutions.NotAllowed, match="sign-off"):
        resolutions.resolve(ticket.pk, both, "correct", corrected=json.dumps(big))
    _unchanged(ticket)
    other = _user(django_user_model, "reviewer2", "reviewers")
    resolutions.resolve(ticket.pk, other, "correct", corrected=json.dumps(big))
    assert Run.objects.get(pk=ticket.run_id).status == S.SUCCEEDED


def test_requester_cannot_decide_own_approval_on_the_page_or_in_bulk(
    client, manager, settings, no_enqueue
):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    own = start_run("financial_reporting", {"date": "2026-11-12"}, manager)
    req = own.approvals.get()
    client.force_login(manager)
    client.post(reverse("approval_decide", args=[req.pk]), {"decision": "approve"})
    client.post(reverse("approval_bulk"), {"request": [str(req.pk)]})
    assert approvals.approve_many([req.pk], manager).refused[req.pk].startswith("You requested")
    req.refresh_from_db()
    own.refresh_from_db()
    assert req.status == ApprovalRequest.Status.PENDING and req.decided_by is None
    assert own.status == S.AWAITING_APPROVAL


@pytest.mark.parametrize("model", ["escalationticket", "approvalrequest"])
def test_the_admin_cannot_change_a_ticket_or_an_approval(
    client, django_user_model, settings, model, no_enqueue
):
    """Even a superuser's admin is read-only for decisions: they go through the checked,
    audited paths. A POST to the change page is refused and changes nothing."""
    root = django_user_model.objects.create_superuser("root", password="x-root-1")
    ticket = _paused(root, "budget_exceeded")
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    req = start_run("financial_reporting", {"date": "2026-11-12"}, root).approvals.get()
    obj = ticket if model == "escalationticket" else req
    client.force_login(root)
    url = reverse(f"admin:reviews_{model}_change", args=[obj.pk])
    assert client.get(url).status_code == 200  # they may look
    fields = (
        {"status": "resolved", "resolution": "approve", "resolved_by": root.pk}
        if model == "escalationticket"
        else {"status": "approved", "decided_by": root.pk}
    )
    assert client.post(url, fields).status_code == 403
    assert client.post(reverse(f"admin:reviews_{model}_add"), fields).status_code == 403
    assert client.post(reverse(f"admin:reviews_{model}_delete", args=[obj.pk])).status_code == 403
    changelist = client.post(
        reverse(f"admin:reviews_{model}_changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert changelist.status_code in (200, 302)
    obj.refresh_from_db()
    assert obj.status in ("open", "pending")
    _unchanged(ticket)


# --- reviewers see the tickets of the runs they may see, and no more ------------------------


@pytest.fixture
def reviewer2(django_user_model):
    return _user(django_user_model, "reviewer2", "reviewers")


def _ticket_urls(ticket):
    return {
        "page": ("get", reverse("ticket_detail", args=[ticket.pk]), {}),
        "resolve form (htmx)": (
            "post",
            reverse("ticket_resolve", args=[ticket.pk]),
            {"action": "fail"},
        ),
        "claim (htmx)": ("post", reverse("ticket_claim", args=[ticket.pk]), {}),
        "unclaim (htmx)": ("post", reverse("ticket_unclaim", args=[ticket.pk]), {}),
        "assign (htmx)": ("post", reverse("ticket_assign", args=[ticket.pk]), {}),
        "run page": ("get", reverse("run_detail", args=[ticket.run_id]), {}),
        "run download": ("get", reverse("run_download", args=[ticket.run_id]), {}),
    }


def _assert_hidden(client, user, ticket):
    client.force_login(user)
    for what, (method, url, data) in _ticket_urls(ticket).items():
        response = getattr(client, method)(url, data, headers={"HX-Request": "true"})
        assert response.status_code == 404, f"{what}: {response.status_code}"
    api = call(
        client, "POST", f"/api/tickets/{ticket.pk}/resolve", token_for(user), {"action": "fail"}
    )
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    queue = client.get(reverse("ticket_queue") + "?status=").content.decode()
    assert f'id="ticket-{ticket.pk}"' not in queue and ticket.message not in queue
    assert ticket.message not in client.get(reverse("dashboard")).content.decode()


def test_a_ticket_another_reviewer_claimed_is_404(
    client, operator, reviewer, reviewer2, manager, no_enqueue
):
    ticket = _paused(operator, "ambiguity", "Which ledger? (claimed by reviewer2)")
    client.force_login(reviewer)
    assert client.get(reverse("ticket_detail", args=[ticket.pk])).status_code == 200  # open
    resolutions.claim(ticket.pk, reviewer2)
    _assert_hidden(client, reviewer, ticket)
    ticket.refresh_from_db()
    assert ticket.assignee == reviewer2 and ticket.status == "claimed"
    # The holder and managers still see it.
    for user in (reviewer2, manager):
        client.force_login(user)
        assert client.get(reverse("ticket_detail", args=[ticket.pk])).status_code == 200


def test_a_ticket_another_reviewer_resolved_is_404(
    client, operator, reviewer, reviewer2, manager, no_enqueue
):
    ticket = _paused(operator, "ambiguity", "Which ledger? (resolved by reviewer2)")
    resolutions.resolve(ticket.pk, reviewer2, "fail", comment="not a real payment")
    _assert_hidden(client, reviewer, ticket)
    for user in (reviewer2, manager):
        client.force_login(user)
        assert client.get(reverse("ticket_detail", args=[ticket.pk])).status_code == 200


def test_the_queue_counts_only_visible_tickets(client, operator, reviewer, reviewer2, no_enqueue):
    held = _paused(operator, "ambiguity", "held by reviewer2")
    resolutions.claim(held.pk, reviewer2)
    _paused(operator, "tool_error", "open to all")
    client.force_login(reviewer)
    body = client.get(reverse("ticket_queue")).content.decode()
    assert "open to all" in body and "held by reviewer2" not in body
    assert "ambiguity <strong>" not in body and "tool error <strong>1</strong>" in body


def test_visible_tickets_follow_visible_runs(
    operator, reviewer, reviewer2, manager, auditor, no_enqueue
):
    open_ = _paused(operator, "ambiguity", "open")
    held = _paused(operator, "ambiguity", "held")
    resolutions.claim(held.pk, reviewer2)
    done = _paused(operator, "ambiguity", "done")
    resolutions.resolve(done.pk, reviewer, "fail", comment="x")
    for user in (operator, reviewer, reviewer2, manager, auditor):
        runs = set(access.visible_runs(user).values_list("pk", flat=True))
        tickets = set(access.visible_tickets(user).values_list("run_id", flat=True))
        assert tickets == runs & {t.run_id for t in (open_, held, done)}, user
    assert set(access.visible_tickets(reviewer)) == {open_, done}
    assert set(access.visible_tickets(reviewer2)) == {open_, held}


# --- roles: created by the migration, given with assign_role ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_the_roles_on_an_empty_database():
    """Migrate reviews back before the roles' migration, drop every group and permission (as a
    fresh database has none), migrate forward with the migration executor alone (no
    post_migrate, no seed_demo): the four roles are there with their permissions."""
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("reviews", "0004_ticket_counter_index")])
    Group.objects.all().delete()
    Permission.objects.all().delete()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    groups = {g.name: g for g in Group.objects.all()}
    assert set(groups) == set(access.ROLES)
    for name, role in access.ROLES.items():
        have = {f"{p.content_type.app_label}.{p.codename}" for p in groups[name].permissions.all()}
        assert set(role.permissions) <= have, name
        views = {p for p in have if p.split(".")[1].startswith("view_")}
        if role.views_everything:
            assert {
                "costs.view_budget",
                "warehouse.view_payment",
                "reviews.view_approvalrequest",
            } <= views
        else:
            assert not any(p.startswith(("costs.", "warehouse.")) for p in views), name


def test_the_migrations_roles_match_the_living_definition():
    """A change to reviews.access.ROLES must come with a migration of its own."""
    import importlib

    frozen = importlib.import_module("reviews.migrations.0015_evaluation_roles").ROLES
    assert frozen == access.ROLES


def test_seed_demo_creates_users_without_touching_roles(db):
    groups = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    assert set(groups) == set(access.ROLES)  # there before seed_demo: the migration made them
    call_command("seed_demo", stdout=io.StringIO())
    assert {
        g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()
    } == groups


def test_seed_demo_does_not_reset_a_changed_password_or_roles(django_user_model, seeded, settings):
    operator = django_user_model.objects.get(username="operator")
    operator.set_password("a-long-new-secret-9")
    operator.save()
    operator.groups.add(Group.objects.get(name="reviewers"))
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    operator.refresh_from_db()
    assert operator.check_password("a-long-new-secret-9")
    assert not operator.check_password(settings.DEMO_PASSWORD)
    assert set(operator.groups.values_list("name", flat=True)) == {"operators", "reviewers"}
    assert "0 new user(s)" in out.getvalue()


def test_seed_demo_refuses_clearly_without_the_roles(db):
    Group.objects.filter(name="auditors").delete()
    with pytest.raises(CommandError, match="auditors are missing: run `python manage.py migrate`"):
        call_command("seed_demo", stdout=io.StringIO())
    assert not Group.objects.filter(name="auditors").exists()


def test_assign_role_gives_and_takes_a_role(django_user_model):
    user = django_user_model.objects.create_user("newhire", password="x-newhire-1")
    assert not access.may_resolve(user)
    out = io.StringIO()
    call_command("assign_role", "newhire", "reviewers", stdout=out)
    assert "newhire has the role reviewers" in out.getvalue()
    user = django_user_model.objects.get(pk=user.pk)  # a fresh permission cache
    assert access.may_resolve(user) and not access.may_decide(user)
    call_command("assign_role", "newhire", "managers", stdout=io.StringIO())
    call_command("assign_role", "newhire", "reviewers", "--remove", stdout=io.StringIO())
    user = django_user_model.objects.get(pk=user.pk)
    assert set(user.groups.values_list("name", flat=True)) == {"managers"}
    assert access.may_decide(user) and access.sees_every_run(user)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", "reviewers"), "No user named 'nobody'"),
        (("newhire", "admins"), "Unknown role 'admins'; the roles are: operators, reviewers"),
    ],
)
def test_assign_role_refuses_an_unknown_user_or_role(django_user_model, args, message):
    user = django_user_model.objects.create_user("newhire", password="x-newhire-1")
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("assign_role", *args, stdout=io.StringIO())
    assert not user.groups.exists()


# --- one owner: no permission names outside reviews/access.py --------------------------------


def test_no_permission_name_outside_the_access_module():
    """Views, partials, the API and commands ask reviews.access; none names a permission."""
    pattern = re.compile(
        r"has_perm\(|permission_required|codename=[\"']|[\"'](orchestration|reviews|costs|warehouse|evaluation)"
        r"\.(start_run|view_all_runs|resolve_ticket|override_ticket|decide_approval|run_evaluation|"
        r"(view|add|change|delete)_[a-z]+)[\"']"
    )
    allowed = {
        Path("reviews/access.py"),
        Path("reviews/migrations/0006_access_roles.py"),
        Path("reviews/migrations/0009_alerts_roles.py"),
        Path("reviews/migrations/0011_schedules_roles.py"),
        Path("reviews/migrations/0015_evaluation_roles.py"),
    }
    offenders = []
    packages = (
        "orchestration",
        "reviews",
        "costs",
        "warehouse",
        "api",
        "ops",
        "config",
        "schedules",
        "evaluation",
    )
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if rel in allowed:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    for path in (ROOT / "templates").rglob("*.html"):
        if "perms." in path.read_text():
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, "\n".join(offenders)
