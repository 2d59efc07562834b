"""Resolving an escalation ticket through the JSON API.

The same rules as the ticket page: only reviewers and managers (``reviews.access.may_resolve``,
403 otherwise); a ticket the user may not see (``reviews.access.get_ticket_for_user``: someone
else's claimed or resolved ticket, or no such ticket) is 404; a four-eyes refusal is 403; and
the resolution goes through ``reviews.resolutions.resolve``, which locks the ticket, checks
who may act and moves the run through the state machine.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from api import representation as rep
from api.http import ApiError, api_view, json_body, require_perm
from orchestration.storable import dumps
from reviews import access, resolutions
from reviews.models import EscalationTicket

Res = EscalationTicket.Resolution


@api_view("POST")
def resolve(request: HttpRequest, ticket_id: int) -> JsonResponse:
    require_perm(request, access.may_resolve, "resolve escalation tickets")
    ticket = access.get_ticket_for_user(request.user, ticket_id)
    body = json_body(request)
    fields: dict[str, str] = {
        k: "unknown field" for k in sorted(set(body) - {"action", "comment", "note", "corrected"})
    }
    action = body.get("action")
    if action not in Res.values:
        fields["action"] = f"required: one of {', '.join(Res.values)}"
    for name in ("comment", "note"):
        if not isinstance(body.get(name, ""), str):
            fields[name] = "must be a string"
    corrected = None
    if action == Res.CORRECT:
        if "corrected" not in body:
            fields["corrected"] = "required for 'correct': the corrected output as a JSON value"
        else:
            # Already parsed within the limits (api.http.json_body): sent on as JSON text.
            corrected = dumps(body["corrected"])
    elif "corrected" in body:
        fields["corrected"] = "only allowed with action 'correct'"
    if action == Res.RESUME and not (
        str(body.get("note") or "").strip() or str(body.get("comment") or "").strip()
    ):
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
            comment=body.get("comment", ""),
            note=body.get("note", ""),
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
    return JsonResponse(
        {
            "ticket": {
                **rep.ticket(request, ticket),
                "resolution": ticket.resolution,
                "resolved_by": request.user.get_username(),
                "resolved_at": rep.iso(ticket.resolved_at),
            },
            "run": {"id": str(run.pk), "status": run.status, "links": rep.links(request, run)},
        }
    )
