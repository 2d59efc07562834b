"""The reviewers' queue and the ticket page, with HTMX actions that update in place.

Every ticket comes from ``reviews.access``: the queue lists ``visible_tickets`` and each page,
partial and action opens its ticket with ``get_ticket_for_user``, so a reviewer sees the
tickets of the runs they may see (the shared queue, theirs, the ones they resolved) and gets
404 for any other, as on the run page."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from costs import accounting
from orchestration import untrusted
from orchestration.models import WorkflowVersion
from orchestration.timeline import build_timeline
from reviews import access, resolutions, sla
from reviews.models import EscalationTicket

T = EscalationTicket.Status
resolver_required = access.required(access.may_resolve)
PAGE_SIZE = 25
MAX_AGE_HOURS = 100 * 366 * 24


def _filtered(request, user):
    tickets = access.visible_tickets(user).select_related("run", "assignee")
    status = request.GET.get("status", "unresolved")
    if status == "unresolved":
        tickets = tickets.exclude(status=T.RESOLVED)
    elif status in T.values:
        tickets = tickets.filter(status=status)
    if (reason := request.GET.get("reason")) in EscalationTicket.Reason.values:
        tickets = tickets.filter(reason=reason)
    if workflow := request.GET.get("workflow"):
        tickets = tickets.filter(run__workflow_name=workflow)
    assignee = request.GET.get("assignee", "")
    if assignee == "me":
        tickets = tickets.filter(assignee=user)
    elif assignee == "nobody":
        tickets = tickets.filter(assignee__isnull=True)
    if request.GET.get("overdue") == "1":
        tickets = tickets.exclude(status=T.RESOLVED).filter(due_at__lt=timezone.now())
    if (priority := request.GET.get("priority", "")) in ("1", "2", "3"):
        tickets = tickets.filter(priority=int(priority))
    if age := request.GET.get("older_than_hours", ""):
        try:
            # At most a century back: a longer span overflows a timedelta (and means the same).
            hours = untrusted.whole_number(
                age, "older_than_hours", maximum=MAX_AGE_HOURS, clamp=True
            )
            tickets = tickets.filter(created_at__lt=timezone.now() - dt.timedelta(hours=hours))
        except untrusted.Rejected as exc:
            messages.error(request, f"Older than (hours): {exc.fields['older_than_hours']}.")
    return tickets.order_by("priority", "due_at", "pk")


def _counts(user) -> dict:
    rows = (
        access.visible_tickets(user)
        .exclude(status=T.RESOLVED)
        .values("reason")
        .annotate(n=Count("pk"), overdue=Count("pk", filter=Q(due_at__lt=timezone.now())))
        .order_by("reason")
    )
    labels = dict(EscalationTicket.Reason.choices)
    return {
        "by_reason": [
            {"reason": r["reason"], "label": labels.get(r["reason"], r["reason"]), "n": r["n"]}
            for r in rows
        ],
        "total": sum(r["n"] for r in rows),
        "overdue": sum(r["overdue"] for r in rows),
        # SLA breaches per priority (reviews.sla), P1 first; every priority shown, 0 included.
        "breaches": sorted(
            sla.breaches_by_priority(access.visible_tickets(user), timezone.now()).items()
        ),
    }


@resolver_required
@require_GET
def queue(request):
    tickets = _filtered(request, request.user)
    page = Paginator(tickets, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "reviews/queue.html",
        {
            "page": page,
            "counts": _counts(request.user),
            "reasons": EscalationTicket.Reason.choices,
            "now": timezone.now(),
            # From the (small) snapshot table: a DISTINCT over every ticket joined to its run grew
            # with the history (bench/RESULTS.md, "Dashboard pages").
            "workflows": sorted(set(WorkflowVersion.objects.values_list("name", flat=True))),
            "filters": request.GET,
            "query": query.urlencode(),
            "reviewers": access.users_who_may_resolve(),
        },
    )


def _row_response(request, ticket: EscalationTicket, error: str = "") -> HttpResponse:
    """The updated row, plus the counters out of band, for an in-place HTMX swap."""
    ticket.refresh_from_db()
    return render(
        request,
        "reviews/queue.html#row_swap",
        {
            "t": ticket,
            "counts": _counts(request.user),
            "now": timezone.now(),
            "reviewers": access.users_who_may_resolve(),
            "error": error,
        },
    )


def _act(request, ticket_id: int, action) -> HttpResponse:
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    error = ""
    try:
        action(ticket)
    except resolutions.ReviewError as exc:
        error = str(exc)
    if request.htmx:
        return _row_response(request, ticket, error)
    if error:
        messages.error(request, error)
    return redirect(request.POST.get("next") or reverse("ticket_queue"))


@resolver_required
@require_POST
def claim(request, ticket_id: int):
    return _act(request, ticket_id, lambda t: resolutions.claim(t.pk, request.user))


@resolver_required
@require_POST
def unclaim(request, ticket_id: int):
    return _act(request, ticket_id, lambda t: resolutions.unclaim(t.pk, request.user))


@resolver_required
@require_POST
def assign(request, ticket_id: int):
    def do(ticket):
        assignee = (
            access.users_who_may_resolve().filter(pk=request.POST.get("assignee") or 0).first()
        )
        if assignee is None:
            raise resolutions.ReviewError("Pick a reviewer to assign the ticket to.")
        resolutions.assign(ticket.pk, request.user, assignee)

    return _act(request, ticket_id, do)


def _detail_context(ticket: EscalationTicket) -> dict:
    run = ticket.run
    target = resolutions.correction_target(ticket)
    return {
        "ticket": ticket,
        "run": run,
        "timeline": build_timeline(run),
        "earlier": run.tickets.filter(status=T.RESOLVED)
        .exclude(pk=ticket.pk)
        .select_related("resolved_by"),
        "target": target,
        "model_words": (ticket.context.get("details") or {}).get("model_words", ""),
        "failing_tool_id": ticket.failing_tool_call_id,
        "failing_model_id": ticket.failing_model_call_id,
        "now": timezone.now(),
        "ceiling_form": {},
    }


def _with_ceiling(context: dict, user) -> dict:
    """Whether this user may raise the run's ceiling here (a budget ticket, still open)."""
    ticket = context["ticket"]
    context["may_raise_ceiling"] = (
        ticket.reason == EscalationTicket.Reason.BUDGET_EXCEEDED
        and ticket.status != T.RESOLVED
        and access.may_raise_ceiling(user, context["run"])
    )
    return context


@resolver_required
@require_GET
def detail(request, ticket_id: int):
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    context = _with_ceiling(_detail_context(ticket), request.user)
    context["form"] = {"corrected": resolutions.pretty(context["target"]["current"])}
    return render(request, "reviews/ticket.html", context)


@resolver_required
@require_POST
def raise_ceiling(request, ticket_id: int):
    """A manager who did not request the run adds what they typed to its spend ceiling."""
    if not access.may_decide(request.user):  # the role first (403), then the row (404)
        raise PermissionDenied("Only a manager may raise a run's spend ceiling.")
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    if not access.may_raise_ceiling(request.user, ticket.run):
        raise PermissionDenied("Only a manager who did not request the run may raise its ceiling.")
    form = {k: request.POST.get(k, "") for k in ("add_usd", "add_tokens", "comment")}
    try:
        run = accounting.raise_ceiling(
            ticket.run_id,
            request.user,
            refusal=access.ceiling_refusal,
            usd=form["add_usd"],
            tokens=form["add_tokens"],
            comment=form["comment"],
        )
    except accounting.CeilingError as exc:
        ticket.run.refresh_from_db()
        context = _with_ceiling(_detail_context(ticket), request.user)
        context.update(
            {
                "form": {"corrected": resolutions.pretty(context["target"]["current"])},
                "ceiling_form": form,
                "ceiling_error": str(exc),
            }
        )
        template = "reviews/ticket.html#ceiling" if request.htmx else "reviews/ticket.html"
        return render(request, template, context, status=200 if request.htmx else 422)
    messages.success(
        request,
        f"Ceiling raised to ${run.ceiling_usd:.2f}. Resume the ticket to let the run go on.",
    )
    target = reverse("ticket_detail", args=[ticket.pk])
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


@resolver_required
@require_POST
def resolve(request, ticket_id: int):
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    form = {k: request.POST.get(k, "") for k in ("action", "comment", "note", "corrected")}
    try:
        resolutions.resolve(
            ticket.pk,
            request.user,
            form["action"],
            comment=form["comment"],
            note=form["note"],
            corrected=form["corrected"] if form["action"] == "correct" else None,
        )
    except resolutions.InvalidCorrection as exc:
        errors, error, status = (
            exc.errors,
            "The corrected output was not accepted; nothing was changed.",
            422,
        )
    except resolutions.NotAllowed as exc:
        errors, error, status = [], str(exc), 403
    except resolutions.ReviewError as exc:
        errors, error, status = [], str(exc), 422
    else:
        target = reverse("run_detail", args=[ticket.run_id])
        messages.success(request, f"Ticket resolved: {form['action']}. Watch the run below.")
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    ticket.refresh_from_db()
    context = {
        **_with_ceiling(_detail_context(ticket), request.user),
        "form": form,
        "error": error,
        "errors": errors,
    }
    template = "reviews/ticket.html#resolve_form" if request.htmx else "reviews/ticket.html"
    return render(request, template, context, status=200 if request.htmx else status)
