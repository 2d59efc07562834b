"""Who may see and do what in Countersign: the one owner of the access rules.

Every page, partial, download, export, API endpoint and management command asks this module;
no other module names a permission or decides who sees a row. It holds, in order:

1. the permission names, as constants (``START_RUN`` ...);
2. the roles: the four groups and the permissions each holds (created by the migration
   ``reviews/0006_access_roles``; ``reviews.roles`` creates and assigns them);
3. what a user may do at all (``may_start``, ``may_resolve``, ``may_override``,
   ``may_decide``, ``may_view_approvals``, ``may_see_costs``, ``may_browse_trail``,
   ``may_see_operations``, ``may_manage_schedules``,
   ``sees_every_run``);
4. four-eyes: who may decide on one object (``may_resolve_ticket``, ``may_decide_request``,
   ``may_sign_off``); 4b. who may re-run, fork or cancel a run (``rerun_refusal``,
   ``fork_refusal``, ``cancel_refusal``). Money and sign-off decisions are never taken by the person who requested
   the run, whatever roles they hold. A new decision on a run (raising a spend ceiling, say)
   gets its check here, next to these;
5. who sees which rows (``visible_runs``, ``visible_tickets``, ``visible_approvals``) and one
   getter per object (``get_run_for_user``, ``get_ticket_for_user``,
   ``get_approval_for_user``, ``get_job_for_user``) that answers 404 for a row the user may
   not see, so ids do not leak.

Who sees which runs (tickets follow their run, with the same rule):
- superusers, managers and auditors (``view_all_runs``): every run;
- reviewers (``resolve_ticket``): their own runs, plus the runs behind *their* tickets: a
  ticket still open in the shared queue (any reviewer may claim it), one claimed by or
  assigned to them, or one they resolved. A run whose ticket another reviewer holds or
  resolved is not theirs, and neither is that ticket. Sub-agent runs count as one family:
  a ticket of theirs on a sub-agent's run also shows them the runs it is a sub-agent of (the
  parent that delegated the work, up to the root), and one on a parent shows them its
  sub-agents' runs, so the whole context of the escalation can be inspected; not the
  siblings of the ticket's run, nor their tickets;
- everyone else (operators): the runs they requested.

It lives in Reviews, not in Core: which runs a reviewer sees depends on tickets, and Core must
not import Reviews (docs/architecture.md, "Access").
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from orchestration.models import FanoutJob, Run, WorkflowVersion
from reviews.models import ApprovalRequest, EscalationTicket

# --- 1. permission names -------------------------------------------------------------------

START_RUN = "orchestration.start_run"
VIEW_ALL_RUNS = "orchestration.view_all_runs"
RESOLVE_TICKET = "reviews.resolve_ticket"
OVERRIDE_TICKET = "reviews.override_ticket"
DECIDE_APPROVAL = "reviews.decide_approval"
VIEW_APPROVALS = "reviews.view_approvalrequest"
VIEW_COSTS = "costs.view_modelprice"
# The read-only admin's permission on audit events, held by managers and auditors (their roles
# view everything): the audit trail page, its exports and the per-person activity view.
VIEW_TRAIL = "orchestration.view_auditevent"
VIEW_ALERTS = "alerts.view_alert"
HANDLE_ALERTS = "alerts.handle_alert"
LIFT_PAUSE = "alerts.lift_pause"
MANAGE_SCHEDULES = "schedules.manage_schedule"
# Evaluations (the evaluation app): managers edit datasets and run evaluations; auditors and
# managers read them (its view_* permissions, through views_everything).
RUN_EVALUATIONS = "evaluation.run_evaluation"
VIEW_EVALUATIONS = "evaluation.view_evaluation"


# --- 2. roles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A group: its permissions, and whether it also gets every ``view_*`` permission of the
    domain apps (the read-only admin pages)."""

    permissions: tuple[str, ...]
    views_everything: bool = False


# The apps whose every view_* permission "views_everything" grants.
DOMAIN_APPS = (
    "orchestration",
    "reviews",
    "costs",
    "warehouse",
    "alerts",
    "schedules",
    "evaluation",
)
_SEE_OWN_RUNS = (
    "orchestration.view_run",
    "orchestration.view_modelcall",
    "orchestration.view_toolcall",
    "orchestration.view_workflowversion",
)
ROLES: dict[str, Role] = {
    "operators": Role((START_RUN, *_SEE_OWN_RUNS)),
    "reviewers": Role((RESOLVE_TICKET, "reviews.view_escalationticket", *_SEE_OWN_RUNS)),
    "managers": Role(
        (
            START_RUN,
            VIEW_ALL_RUNS,
            DECIDE_APPROVAL,
            RESOLVE_TICKET,
            OVERRIDE_TICKET,
            HANDLE_ALERTS,
            LIFT_PAUSE,
            MANAGE_SCHEDULES,
            RUN_EVALUATIONS,
        ),
        views_everything=True,
    ),
    "auditors": Role((VIEW_ALL_RUNS,), views_everything=True),
}


# --- 3. what a user may do at all ----------------------------------------------------------


def sees_every_run(user: Any) -> bool:
    return bool(user.is_superuser or user.has_perm(VIEW_ALL_RUNS))


def may_start(user: Any) -> bool:
    return user.has_perm(START_RUN)


def may_resolve(user: Any) -> bool:
    """Claim and resolve escalation tickets (reviewers and managers)."""
    return user.has_perm(RESOLVE_TICKET)


def may_override(user: Any) -> bool:
    """Act on a ticket someone else holds (managers)."""
    return user.has_perm(OVERRIDE_TICKET)


def may_decide(user: Any) -> bool:
    """Approve or reject runs estimated over the threshold (managers)."""
    return user.has_perm(DECIDE_APPROVAL)


def may_view_approvals(user: Any) -> bool:
    return may_decide(user) or user.has_perm(VIEW_APPROVALS)


def may_see_costs(user: Any) -> bool:
    return user.has_perm(VIEW_COSTS)


def may_browse_trail(user: Any) -> bool:
    """The audit trail across runs, its exports and what each person did (managers, auditors
    and superusers). Everyone else gets a 404 (``trail_required``): the page is not there."""
    return bool(user.is_authenticated and user.has_perm(VIEW_TRAIL))


def may_see_operations(user: Any) -> bool:
    """The operations page and the daily digest (managers, auditors, superusers): figures
    over every run and their cost, so only those who see every run and the costs."""
    return sees_every_run(user) and may_see_costs(user)


def users_who_may_resolve() -> QuerySet[Any]:
    """Everyone a ticket can be assigned to: members of a group with ``resolve_ticket``, and
    superusers."""
    app_label, codename = RESOLVE_TICKET.split(".")
    return (
        get_user_model()
        .objects.filter(
            Q(
                groups__permissions__codename=codename,
                groups__permissions__content_type__app_label=app_label,
            )
            | Q(is_superuser=True),
            is_active=True,
        )
        .distinct()
        .order_by("username")
    )


def users_who_manage() -> QuerySet[Any]:
    """The managers: members of a group with ``override_ticket``, and superusers (late P1
    tickets are escalated to them, reviews.sla)."""
    return users_with(OVERRIDE_TICKET)


def users_who_get_digests() -> QuerySet[Any]:
    """Who receives a workflow's daily digest when it names no recipients: active members of
    a group with ``decide_approval`` (managers) who have an email address."""
    return users_with(DECIDE_APPROVAL, superusers=False).exclude(email="")


def required(check: Callable[[Any], bool]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: 403 unless ``check(request.user)``. (Signing in is the login
    middleware's job, before this runs.)"""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def trail_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view decorator: 404 unless ``may_browse_trail``: to an operator or a reviewer the
    trail does not exist (they see the events of their own runs on the run page)."""

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if not may_browse_trail(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


# --- 3a. workflow versions ----------------------------------------------------------------


def may_view_versions(user: Any) -> bool:
    """The workflows' versions pages and their diffs: managers and auditors (who see every
    run), and operators (who define workflows and propose their changes). Reviewers get a 404:
    the page is not there for them."""
    return bool(user.is_authenticated and (sees_every_run(user) or may_start(user)))


def versions_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view decorator: 404 unless ``may_view_versions``."""

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if not may_view_versions(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


def may_act_on_versions(user: Any) -> bool:
    """Propose, approve, reject or roll back versions at all (operators propose; managers
    decide); auditors only look."""
    return propose_version_refusal(user) is None or may_decide(user)


def propose_version_refusal(user: Any) -> str | None:
    """Why ``user`` may not propose a pending version (and so become its author), or None:
    those who start runs (operators, managers) propose changes."""
    if not (user.is_authenticated and may_start(user)):
        return "Only operators and managers may propose a workflow version."
    return None


def may_view_evaluations(user: Any) -> bool:
    """Datasets, evaluations, their reports and comparisons (managers, auditors, superusers):
    a report lists the runs of whoever started the evaluation, so only those who see every run."""
    return sees_every_run(user) and user.has_perm(VIEW_EVALUATIONS)


def may_run_evaluations(user: Any) -> bool:
    """Edit, import and delete datasets and start evaluations (managers, superusers). An
    evaluation starts real runs, so it also needs ``may_start``."""
    return may_view_evaluations(user) and may_start(user) and user.has_perm(RUN_EVALUATIONS)


# --- 3b. alerts, and who is told about approvals and alerts -------------------------------


def may_view_alerts(user: Any) -> bool:
    """The alerts page (managers and auditors)."""
    return user.has_perm(VIEW_ALERTS)


def may_handle_alerts(user: Any) -> bool:
    """Acknowledge or resolve an alert (managers)."""
    return user.has_perm(HANDLE_ALERTS)


def may_lift_pause(user: Any) -> bool:
    """Let a user paused by an anomaly alert start runs again (managers)."""
    return user.has_perm(LIFT_PAUSE)


def users_who_may_decide() -> QuerySet[Any]:
    """Everyone told about a new approval request: managers (``decide_approval``) and superusers."""
    return users_with(DECIDE_APPROVAL)


def users_who_may_handle_alerts() -> QuerySet[Any]:
    """Everyone told about a new alert."""
    return users_with(HANDLE_ALERTS)


def users_with(permission: str, *, superusers: bool = True) -> QuerySet[Any]:
    """Active members of a group holding ``permission``, and (unless ``superusers=False``)
    active superusers."""
    app_label, codename = permission.split(".")
    holds = Q(
        groups__permissions__codename=codename,
        groups__permissions__content_type__app_label=app_label,
    )
    return (
        get_user_model()
        .objects.filter(holds | Q(is_superuser=True) if superusers else holds, is_active=True)
        .distinct()
        .order_by("username")
    )


# --- 3c. schedules ---------------------------------------------------------------------------


def may_manage_schedules(user: Any) -> bool:
    """The schedules page and every change to a schedule, there or in the admin (managers).
    Everyone else gets a 403, as on the costs and alerts pages; auditors read schedules in
    the read-only admin and their changes in the audit trail."""
    return bool(user.is_authenticated and user.has_perm(MANAGE_SCHEDULES))


def schedule_refusal(user: Any) -> str | None:
    """Why ``user`` may not create, change, pause or delete a schedule, or None."""
    if not may_manage_schedules(user):
        return "Only a manager may create, change, pause or delete schedules."
    return None


def schedule_owner_refusal(owner: Any) -> str | None:
    """Why a schedule's runs may not be started as ``owner``, or None: an active user who may
    start runs (checked when the schedule is saved and again at every tick)."""
    if owner is None or not owner.is_active:
        return "The owner must be an active user: scheduled runs are started as them."
    if not may_start(owner):
        return f"{owner.get_username()} may not start runs, so cannot own a schedule."
    return None


def users_who_may_own_schedules() -> QuerySet[Any]:
    """The users a schedule's runs may be started as: whoever may start runs."""
    return users_with(START_RUN)


# --- 4. four-eyes: decisions on one object -------------------------------------------------

# Tickets that decide money or give a sign-off: never resolved by the run's requester.
# budget_exceeded: spending past a limit; regulatory_trigger: the sign-off tickets (the
# workflow's ``regulatory_trigger``, e.g. a payment over PAYMENT_SIGNOFF_AMOUNT, and the
# escalation rules of that reason, e.g. APRA violations or a validator asking for review).
FOUR_EYES_REASONS = frozenset(
    {EscalationTicket.Reason.BUDGET_EXCEEDED, EscalationTicket.Reason.REGULATORY_TRIGGER}
)


def requested(user: Any, run: Run) -> bool:
    return user.pk is not None and run.requested_by_id == user.pk


def ticket_refusal(user: Any, ticket: EscalationTicket) -> str | None:
    """Why ``user`` may not act on (claim, unclaim, assign, resolve) this ticket, or None."""
    if not may_resolve(user):
        return "Only reviewers and managers may act on escalation tickets."
    if ticket.reason == EscalationTicket.Reason.BUDGET_EXCEEDED and not may_decide(user):
        return "Only a manager may decide whether a run may spend past its budget."
    if ticket.assignee_id and ticket.assignee_id != user.pk and not may_override(user):
        return (
            f"This ticket is claimed by {ticket.assignee.get_username()}; "
            "only they or a manager may act on it."
        )
    return None


def four_eyes_refusal(user: Any, ticket: EscalationTicket, *, actor: Any = None) -> str | None:
    """Why ``user`` may not hold or resolve this ticket under the four-eyes rule, or None.
    ``actor``: who is acting, when it is not ``user`` (a manager assigning the ticket)."""
    if ticket.reason in FOUR_EYES_REASONS and requested(user, ticket.run):
        who = "You" if actor is None or actor == user else user.get_username()
        return (
            f"{who} requested this run: a {ticket.get_reason_display()} ticket must be resolved "
            "by someone else (four-eyes rule). Nothing was changed."
        )
    return None


def may_resolve_ticket(user: Any, ticket: EscalationTicket) -> bool:
    return ticket_refusal(user, ticket) is None and four_eyes_refusal(user, ticket) is None


def sign_off_refusal(user: Any, run: Run) -> str | None:
    """A result that needs a sign-off is never signed off by the run's requester (used when a
    reviewer supplies a final output that the workflow's sign-off rule flags)."""
    if requested(user, run):
        return (
            "You requested this run and this result needs a sign-off: someone else must give it "
            "(four-eyes rule). Nothing was changed."
        )
    return None


def may_sign_off(user: Any, run: Run) -> bool:
    return sign_off_refusal(user, run) is None


def decide_refusal(user: Any, req: ApprovalRequest | None) -> str | None:
    """Why ``user`` may not approve or reject this request (any request, for None), or None."""
    if not may_decide(user):
        return "Only managers may approve or reject runs."
    if req is not None and req.requested_by_id == user.pk:
        return "You requested this run: another manager must decide it (four-eyes rule)."
    return None


def ceiling_refusal(user: Any, run: Run) -> str | None:
    """Why ``user`` may not raise this run's spend ceiling, or None: a manager who did not
    request the run (four eyes on money). ``costs.accounting.raise_ceiling`` asks it under the
    run's row lock."""
    if not (user.is_authenticated and may_decide(user)):
        return "Only a manager may raise a run's spend ceiling."
    if requested(user, run):
        return "You requested this run: another manager must raise its ceiling (four-eyes rule)."
    return None


def may_raise_ceiling(user: Any, run: Run) -> bool:
    return ceiling_refusal(user, run) is None


def may_decide_request(user: Any, req: ApprovalRequest) -> bool:
    return decide_refusal(user, req) is None


def version_decide_refusal(user: Any, version: WorkflowVersion | None) -> str | None:
    """Why ``user`` may not approve or reject this workflow version (or roll a workflow back,
    for None), or None: a manager, and for a pending version not its author, whatever other
    roles they hold (four eyes on a change of agent logic)."""
    if not (user.is_authenticated and may_decide(user)):
        return "Only a manager may approve, reject or roll back a workflow version."
    if version is not None and version.author_id is not None and version.author_id == user.pk:
        return "You proposed this version: another manager must approve it (four-eyes rule)."
    return None


def alert_refusal(user: Any) -> str | None:
    """Why ``user`` may not acknowledge or resolve alerts, or None."""
    if not (user.is_authenticated and may_handle_alerts(user)):
        return "Only a manager may acknowledge or resolve alerts."
    return None


def lift_pause_refusal(user: Any, paused_user: Any) -> str | None:
    """Why ``user`` may not lift the pause on ``paused_user``'s runs, or None: a manager other
    than the paused user (the anomaly was theirs: someone else decides it is over)."""
    if not (user.is_authenticated and may_lift_pause(user)):
        return "Only a manager may lift a pause."
    if user.pk == paused_user.pk:
        return "Your own runs are paused: another manager must lift the pause (four-eyes rule)."
    return None


# --- 4b. actions on a whole run: re-run, fork, cancel (orchestration.run_actions) -----------
# Each assumes the run is one the user sees (``get_run_for_user``: 404 otherwise); the role
# part is also a page decorator (``may_*_runs``), checked before the run is looked up.


def may_rerun_runs(user: Any) -> bool:
    """A re-run starts a run and spends like one: those who may start runs."""
    return may_start(user)


def rerun_refusal(user: Any, run: Run) -> str | None:
    if not may_rerun_runs(user):
        return "Only those who may start runs may re-run one."
    return None


def may_fork_runs(user: Any) -> bool:
    """A fork starts a run (operators, managers) or carries a reviewer's correction forward
    (reviewers and managers)."""
    return may_start(user) or may_resolve(user)


def fork_refusal(
    user: Any, run: Run, *, corrects: bool, four_eyes_ticket: EscalationTicket | None = None
) -> str | None:
    """Why ``user`` may not fork ``run``, or None. A corrected tool output is a reviewer's
    decision, as on a ticket: an operator may fork (another version, another step) but not
    type what a tool returned; and on a run that ever paused for a four-eyes reason
    (``four_eyes_ticket``, e.g. a regulatory trigger) not its requester, or a fork would let
    them decide what the ticket forbids them to."""
    if not may_fork_runs(user):
        return "Only those who may start runs, and reviewers, may fork a run."
    if corrects and not may_resolve(user):
        return "Only reviewers and managers may supply a corrected tool output; fork without one, or ask a reviewer."
    if (
        corrects
        and four_eyes_ticket is not None
        and (why := four_eyes_refusal(user, four_eyes_ticket))
    ):
        return why.replace(
            "resolved by someone else",
            "resolved, or its output corrected in a fork, by someone else",
        )
    return None


def may_cancel_runs(user: Any) -> bool:
    return may_start(user) or may_resolve(user) or may_override(user) or bool(user.is_superuser)


def cancel_refusal(user: Any, run: Run, open_ticket: EscalationTicket | None = None) -> str | None:
    """Why ``user`` may not cancel ``run``, or None: its requester (if they may start runs), a
    manager or superuser, or a reviewer who may act on its open ticket (``ticket_refusal``)."""
    if user.is_superuser or may_override(user):
        return None
    if requested(user, run) and may_start(user):
        return None
    if open_ticket is not None and may_resolve(user) and ticket_refusal(user, open_ticket) is None:
        return None
    return (
        "Only the person who started this run, a manager, or a reviewer who may act on its open "
        "ticket may cancel it. Nothing was changed."
    )


# --- 5. who sees which rows, and one getter per object -------------------------------------


def _theirs(user: Any) -> Q:
    """A ticket that is the reviewer's: open in the shared queue, claimed by or assigned to
    them, or resolved by them."""
    return Q(status=EscalationTicket.Status.OPEN) | Q(assignee=user) | Q(resolved_by=user)


def _ticket_in_family(user: Any, run: str = "") -> Q:
    """A ticket of the reviewer's (``_theirs``) on the run, on one of its sub-agents' runs
    (any depth) or on a run it is a sub-agent of. ``run``: the path from the filtered model to
    the run ("" on Run itself, "run" on a ticket). One EXISTS per relation (each an index
    lookup) rather than a join, so lists need no DISTINCT and keep their keyset order.
    Sub-agents nest at most SUBAGENT_MAX_DEPTH deep."""
    depth = settings.SUBAGENT_MAX_DEPTH
    theirs = EscalationTicket.objects.filter(_theirs(user))
    this = f"{run}_id" if run else "pk"
    parent = "__".join(filter(None, [run, "parent"]))
    relations = [Q(Exists(theirs.filter(run=OuterRef(this))))]
    for d in range(1, depth + 1):
        ancestor = "__".join([parent, *["parent"] * (d - 1)])
        relations.append(Q(Exists(theirs.filter(**{"run" + "__parent" * d: OuterRef(this)}))))
        # A top-level run (most of them) skips these on its own column, without a lookup.
        relations.append(
            Q(**{f"{parent}__isnull": False}) & Q(Exists(theirs.filter(run=OuterRef(ancestor))))
        )
    return functools.reduce(operator.or_, relations)


def visible_runs(user: Any) -> QuerySet[Run]:
    runs = Run.objects.all()
    if not user.is_authenticated:
        return runs.none()
    if sees_every_run(user):
        return runs
    conditions = Q(requested_by=user)
    if may_resolve(user):
        conditions |= _ticket_in_family(user)
    return runs.filter(conditions)


def visible_tickets(user: Any) -> QuerySet[EscalationTicket]:
    """The tickets of the runs ``visible_runs`` gives, written on the ticket table."""
    tickets = EscalationTicket.objects.all()
    if not user.is_authenticated:
        return tickets.none()
    if sees_every_run(user):
        return tickets
    conditions = Q(run__requested_by=user)
    if may_resolve(user):
        conditions |= _ticket_in_family(user, "run")
    return tickets.filter(conditions)


def visible_approvals(user: Any) -> QuerySet[ApprovalRequest]:
    """Managers and those who may view the approval queue see every request; anyone else
    the requests of runs they see."""
    requests = ApprovalRequest.objects.all()
    if not user.is_authenticated:
        return requests.none()
    if may_view_approvals(user) or sees_every_run(user):
        return requests
    return requests.filter(run__in=visible_runs(user).values("pk"))


def get_run_for_user(user: Any, run_id: Any) -> Run:
    run = (
        visible_runs(user)
        .select_related("workflow_version", "requested_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    return run


def get_ticket_for_user(user: Any, ticket_id: Any) -> EscalationTicket:
    ticket = (
        visible_tickets(user)
        .select_related(
            "run",
            "run__requested_by",
            "assignee",
            "resolved_by",
            "failing_tool_call",
            "failing_model_call",
        )
        .filter(pk=ticket_id)
        .first()
    )
    if ticket is None:
        raise Http404("No such ticket.")
    return ticket


def get_approval_for_user(user: Any, request_id: Any) -> ApprovalRequest:
    req = (
        visible_approvals(user)
        .select_related("run", "requested_by", "decided_by")
        .filter(pk=request_id)
        .first()
    )
    if req is None:
        raise Http404("No such approval request.")
    return req


def get_job_for_user(user: Any, run_id: Any, job_pk: Any) -> FanoutJob:
    run = get_run_for_user(user, run_id)
    job = FanoutJob.objects.filter(run=run, pk=job_pk).first()
    if job is None:
        raise Http404("No such job.")
    job.run = run
    return job
