"""Schedules in the admin: the same form, validation, access rule and audit events as the
schedules page (every save and delete goes through schedules.service). django-celery-beat's
own admin pages are removed: its PeriodicTask rows are owned by the schedules (or, for the
maintenance tasks, by CELERY_BEAT_SCHEDULE), and an edit there would bypass the audit trail."""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.http import HttpRequest
from django_celery_beat import models as beat_models

from orchestration.admin import ReadOnlyAdmin
from reviews import access
from schedules import service
from schedules.forms import ScheduleForm
from schedules.models import Schedule, ScheduledTick

for _model in (
    beat_models.PeriodicTask,
    beat_models.IntervalSchedule,
    beat_models.CrontabSchedule,
    beat_models.SolarSchedule,
    beat_models.ClockedSchedule,
):
    with contextlib.suppress(NotRegistered):
        admin.site.unregister(_model)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "workflow_name", "cron", "timezone", "owner", "enabled", "updated_at")
    list_filter = ("enabled", "workflow_name")
    search_fields = ("name", "workflow_name")
    readonly_fields = ("active_since", "created_by", "created_at", "updated_at")
    actions = ["pause_selected", "resume_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.may_manage_schedules(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.may_manage_schedules(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.may_manage_schedules(request.user)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            saved = service.update(request.user, obj, form.as_data())
        else:
            saved = service.create(request.user, form.as_data())
        obj.pk = saved.pk
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """No related rows: service.create/update wrote everything (form.save_m2m is not
        wanted: the form never saved the instance itself)."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        service.delete(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for schedule in queryset:
            service.delete(request.user, schedule)

    @admin.action(description="Pause the selected schedules")
    def pause_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume the selected schedules")
    def resume_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._set_paused(request, queryset, False)

    def _set_paused(self, request: HttpRequest, queryset: Any, paused: bool) -> None:
        try:
            for schedule in queryset:
                service.set_paused(request.user, schedule, paused)
        except service.ScheduleRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(ScheduledTick)
class ScheduledTickAdmin(ReadOnlyAdmin):
    list_display = ("schedule_name", "due_at", "outcome", "run", "claimed_at")
    list_filter = ("outcome", "schedule_name")
