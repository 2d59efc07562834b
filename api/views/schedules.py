"""Schedules through the JSON API: list, create, update, pause, resume, delete.

Every change calls ``schedules.service`` (create, update, set_paused, delete), the functions
the schedules page calls: one validation (``service.validate``: the cron expression, the zone,
the owner, the template resolved for the next tick and checked against the workflow's input
schema), the manager-only rule and the audit event per change. Behind the page's role check
(``reviews.access.may_manage_schedules``, 403). Changes are POSTs, like the page's forms.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest
from ninja import Router, Status

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from reviews import access
from schedules import service
from schedules.models import Schedule

router = Router()
MANAGER = "Only a manager may list, create, change, pause or delete schedules."
ERRORS = s.errors(*s.AUTH_ERRORS, 403)
CHANGE_ERRORS = ERRORS | s.errors(*s.BODY_ERRORS, 404)


def _auth() -> BearerToken:
    return BearerToken(access.may_manage_schedules, MANAGER)


def _schedule(schedule_id: int) -> Schedule:
    schedule = Schedule.objects.select_related("owner").filter(pk=schedule_id).first()
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


def schedule_out(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.pk,
        "name": schedule.name,
        "workflow": schedule.workflow_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "input_template": schedule.input_template,
        "owner": schedule.owner.get_username(),
        "enabled": schedule.enabled,
        "next_at": rep.iso(service.next_occurrence(schedule)) if schedule.enabled else None,
        "created_at": rep.iso(schedule.created_at),
        "updated_at": rep.iso(schedule.updated_at),
    }


def _data(payload: s.ScheduleIn) -> dict[str, Any]:
    owner = get_user_model().objects.filter(username=payload.owner).first()
    return {
        "name": payload.name,
        "workflow_name": payload.workflow,
        "cron": payload.cron,
        "timezone": payload.timezone,
        "input_template": payload.input_template,
        "owner": owner,  # None: service.validate names the owner field
        "enabled": payload.enabled,
    }


def _call(action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except service.ScheduleInvalid as exc:
        errors = {"workflow" if k == "workflow_name" else k: v for k, v in exc.errors.items()}
        raise ApiError(
            422, "invalid_input", "The schedule was not valid; see fields.", fields=errors
        ) from None
    except service.ScheduleRefused as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


@router.get(
    "schedules",
    operation_id="listSchedules",
    url_name="schedules",
    summary="Schedules",
    auth=_auth(),
    response={200: s.ScheduleList} | ERRORS,
)
def list_schedules(request: HttpRequest) -> dict[str, Any]:
    schedules = Schedule.objects.select_related("owner").order_by("name", "pk")
    return {"results": [schedule_out(x) for x in schedules]}


@router.post(
    "schedules",
    operation_id="createSchedule",
    url_name="schedule_create",
    summary="Create a schedule",
    auth=_auth(),
    response={201: s.ScheduleOut} | ERRORS | s.errors(*s.BODY_ERRORS),
)
def create_schedule(request: HttpRequest, payload: s.ScheduleIn) -> Status[dict[str, Any]]:
    schedule = _call(service.create, request.user, _data(payload))
    return Status(201, schedule_out(_schedule(schedule.pk)))


@router.post(
    "schedules/{int:schedule_id}",
    operation_id="updateSchedule",
    url_name="schedule_update",
    summary="Change a schedule (every field, as on the page's form)",
    auth=_auth(),
    response={200: s.ScheduleOut} | CHANGE_ERRORS,
)
def update_schedule(
    request: HttpRequest, schedule_id: int, payload: s.ScheduleIn
) -> dict[str, Any]:
    schedule = _call(service.update, request.user, _schedule(schedule_id), _data(payload))
    return schedule_out(_schedule(schedule.pk))


@router.post(
    "schedules/{int:schedule_id}/pause",
    operation_id="pauseSchedule",
    url_name="schedule_pause",
    summary="Pause a schedule (beat stops firing it)",
    auth=_auth(),
    response={200: s.ScheduleOut} | ERRORS | s.errors(404),
)
def pause_schedule(request: HttpRequest, schedule_id: int) -> dict[str, Any]:
    schedule = _call(service.set_paused, request.user, _schedule(schedule_id), True)
    return schedule_out(_schedule(schedule.pk))


@router.post(
    "schedules/{int:schedule_id}/resume",
    operation_id="resumeSchedule",
    url_name="schedule_resume",
    summary="Resume a schedule from now on (ticks missed while paused are not run)",
    auth=_auth(),
    response={200: s.ScheduleOut} | ERRORS | s.errors(404),
)
def resume_schedule(request: HttpRequest, schedule_id: int) -> dict[str, Any]:
    schedule = _call(service.set_paused, request.user, _schedule(schedule_id), False)
    return schedule_out(_schedule(schedule.pk))


@router.post(
    "schedules/{int:schedule_id}/delete",
    operation_id="deleteSchedule",
    url_name="schedule_delete",
    summary="Delete a schedule (its ticks and runs stay)",
    auth=_auth(),
    response={204: None} | ERRORS | s.errors(404),
)
def delete_schedule(request: HttpRequest, schedule_id: int) -> Status[None]:
    _call(service.delete, request.user, _schedule(schedule_id))
    return Status(204, None)
