"""Resolving an escalation ticket through the JSON API.

The same rules as the ticket page: only reviewers and managers (``reviews.access.may_resolve``,
403 otherwise); a ticket the user may not see (``reviews.access.get_ticket_for_user``: someone
else's claimed or resolved ticket, or no such ticket) is 404; a four-eyes refusal is 403; and
the resolution goes through ``reviews.resolutions.resolve``, which locks the ticket, checks
who may act and moves the run through the state machine.
"""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Query, Router

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from orchestration.storable import dumps
from reviews import access, resolutions
from reviews.models import EscalationTicket

Res = EscalationTicket.Resolution
router = Router()


@router.post(
    "tickets/{int:ticket_id}/resolve",
    operation_id="resolveTicket",
    url_name="ticket_resolve",
    summary="Resolve an escalation ticket",
    auth=BearerToken(
        access.may_resolve,
        "Your account may not resolve escalation tickets.",
        row=access.get_ticket_for_user,
    ),
    response={200: s.Resolved} | s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 404, 409),
)
def resolve(request: HttpRequest, ticket_id: int, payload: s.Resolve) -> dict[str, Any]:
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    action = payload.action
    sent = payload.model_fields_set
    fields: dict[str, str] = {}
    corrected = None
    if action == Res.CORRECT:
        if "corrected" not in sent:
            fields["corrected"] = "required for 'correct': the corrected output as a JSON value"
        else:
            # Already parsed within the limits (api.http.json_body): sent on as JSON text.
            corrected = dumps(payload.corrected)
    elif "corrected" in sent:
        fields["corrected"] = "only allowed with action 'correct'"
    if action == Res.RESUME and not (payload.note.strip() or payload.comment.strip()):
        fields["note"] = "required for 'resume': say what the model should do next"
    if fields:
        raise ApiError(
            422, "invalid_input", "The resolution was not valid; see fields.", fields=fields
        )
    try:
        resolutions.resolve(
            ticket.pk,
            request.user,
            action,
            comment=payload.comment,
            note=payload.note,
            corrected=corrected,
        )
    except resolutions.InvalidInput as exc:
        raise ApiError(
            422, "invalid_input", "The resolution was not valid; see fields.", fields=exc.fields
        ) from None
    except resolutions.InvalidCorrection as exc:
        raise ApiError(
            422,
            "invalid_correction",
            "The corrected output was not accepted; nothing was changed.",
            fields={"corrected": "; ".join(exc.errors)},
        ) from None
    except resolutions.NotAllowed as exc:
        # The four-eyes rule, a budget ticket for a non-manager, a ticket someone else holds.
        raise ApiError(403, "forbidden", str(exc)) from None
    except resolutions.ReviewError as exc:
        # Already resolved, claimed by someone else, or the run moved on: the ticket's state
        # refuses the action, and the message says why.
        raise ApiError(409, "conflict", str(exc)) from None
    ticket.refresh_from_db()
    run = ticket.run
    run.refresh_from_db()
    return {
        "ticket": {
            **rep.ticket(request, ticket),
            "resolution": ticket.resolution,
            "resolved_by": request.user.get_username(),
            "resolved_at": rep.iso(ticket.resolved_at),
        },
        "run": {"id": str(run.pk), "status": run.status, "links": rep.links(request, run)},
    }


TicketFilter = Literal["unresolved", "open", "claimed", "resolved"]
MAX_LIMIT = 100


@router.get(
    "tickets",
    operation_id="listTickets",
    url_name="tickets",
    summary="Escalation tickets the token's user may see, most urgent first",
    auth=BearerToken(access.may_resolve, "Your account may not resolve escalation tickets."),
    response={200: s.TicketList} | s.errors(*s.AUTH_ERRORS, 403, 422),
)
def list_tickets(
    request: HttpRequest,
    status: TicketFilter = "unresolved",
    assignee: Literal["anyone", "me", "nobody"] = "anyone",
    limit: int = Query(25, ge=1, le=MAX_LIMIT),
) -> dict[str, Any]:
    """The queue page's list (``reviews.access.visible_tickets``: the shared queue and the
    user's own; another reviewer's claimed ticket is not listed), in its order."""
    tickets = access.visible_tickets(request.user).select_related("assignee")
    if status == "unresolved":
        tickets = tickets.exclude(status=EscalationTicket.Status.RESOLVED)
    else:
        tickets = tickets.filter(status=status)
    if assignee == "me":
        tickets = tickets.filter(assignee=request.user)
    elif assignee == "nobody":
        tickets = tickets.filter(assignee__isnull=True)
    page = tickets.order_by("priority", "due_at", "pk")[:limit]
    return {"results": [rep.ticket(request, t) for t in page]}


@router.post(
    "tickets/{int:ticket_id}/claim",
    operation_id="claimTicket",
    url_name="ticket_claim",
    summary="Take an escalation ticket nobody holds",
    auth=BearerToken(
        access.may_resolve,
        "Your account may not resolve escalation tickets.",
        row=access.get_ticket_for_user,
    ),
    response={200: s.Ticket} | s.errors(*s.AUTH_ERRORS, 403, 404, 409),
)
def claim(request: HttpRequest, ticket_id: int) -> dict[str, Any]:
    """Calls ``reviews.resolutions.claim``, as the queue's Claim button: a ticket someone else
    holds is 409 (a manager takes it over on the page, with assign), a four-eyes refusal 403."""
    try:
        ticket = resolutions.claim(ticket_id, request.user)
    except resolutions.NotAllowed as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except resolutions.ReviewError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return rep.ticket(request, access.get_ticket_for_user(request.user, ticket.pk))
