"""The schedules page (managers): list, create, edit, pause/resume, delete. Each action is
checked in reviews.access and carried out (validated, audited) by schedules.service."""

from __future__ import annotations

import json
import zoneinfo

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reviews import access
from schedules import service
from schedules.forms import ScheduleForm
from schedules.models import Schedule, ScheduledTick

RECENT_TICKS = 30


def _schedule(schedule_id: int) -> Schedule:
    schedule = (
        Schedule.objects.select_related("owner", "periodic_task").filter(pk=schedule_id).first()
    )
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


@require_GET
@access.required(access.may_manage_schedules)
def schedule_list(request: HttpRequest) -> HttpResponse:
    schedules = list(Schedule.objects.select_related("owner", "periodic_task__crontab"))
    for s in schedules:
        s.next_at = service.next_occurrence(s)
        if s.next_at:  # in the schedule's own zone (templates would show it in TIME_ZONE)
            local = s.next_at.astimezone(zoneinfo.ZoneInfo(s.timezone))
            s.next_local = f"{local:%a %d %b %Y, %H:%M} {local.tzname()}"
        s.template_json = json.dumps(s.input_template, ensure_ascii=False)
    ticks = list(ScheduledTick.objects.select_related("run", "schedule")[:RECENT_TICKS])
    for t in ticks:
        t.run_input = json.dumps(t.run.input, ensure_ascii=False) if t.run else ""
        if t.schedule:  # the occurrence as the schedule's owner reads it
            local = t.due_at.astimezone(zoneinfo.ZoneInfo(t.schedule.timezone))
            t.due_local = f"{local:%a %d %b %Y, %H:%M} {local.tzname()}"
    return render(request, "schedules/schedules.html", {"schedules": schedules, "ticks": ticks})


def _form_page(
    request: HttpRequest, form: ScheduleForm, schedule: Schedule | None, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "schedules/schedule_form.html",
        {"form": form, "schedule": schedule, "time_zones": ScheduleForm.time_zones()},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@access.required(access.may_manage_schedules)
def schedule_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _form_page(request, ScheduleForm(initial={"owner": request.user.pk}), None)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        return _form_page(request, form, None, status=422)
    try:
        schedule = service.create(request.user, form.as_data())
    except service.ScheduleInvalid as exc:  # e.g. the name taken meanwhile
        for field, message in exc.errors.items():
            form.add_error(None, f"{field}: {message}")
        return _form_page(request, form, None, status=422)
    messages.success(request, f"Schedule {schedule.name!r} created.")
    return redirect(f"{reverse('schedule_list')}#schedule-{schedule.pk}")


@require_http_methods(["GET", "POST"])
@access.required(access.may_manage_schedules)
def schedule_edit(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(schedule_id)
    if request.method == "GET":
        return _form_page(request, ScheduleForm(instance=schedule), schedule)
    form = ScheduleForm(request.POST, instance=_schedule(schedule_id))
    if not form.is_valid():
        return _form_page(request, form, schedule, status=422)
    try:
        schedule = service.update(request.user, schedule, form.as_data())
    except service.ScheduleInvalid as exc:
        for field, message in exc.errors.items():
            form.add_error(None, f"{field}: {message}")
        return _form_page(request, form, schedule, status=422)
    messages.success(request, f"Schedule {schedule.name!r} saved.")
    return redirect(f"{reverse('schedule_list')}#schedule-{schedule.pk}")


@require_POST
@access.required(access.may_manage_schedules)
def schedule_pause(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(schedule_id)
    paused = request.POST.get("action") != "resume"
    schedule = service.set_paused(request.user, schedule, paused)
    messages.success(
        request,
        (
            f"Schedule {schedule.name!r} paused: nothing runs until it is resumed."
            if paused
            else f"Schedule {schedule.name!r} resumed: it runs from its next occurrence; what it missed while paused is not run."
        ),
    )
    return redirect(f"{reverse('schedule_list')}#schedule-{schedule.pk}")


@require_POST
@access.required(access.may_manage_schedules)
def schedule_delete(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(schedule_id)
    service.delete(request.user, schedule)
    messages.success(request, f"Schedule {schedule.name!r} deleted. The runs it started are kept.")
    return redirect("schedule_list")
