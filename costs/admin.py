"""Prices and budgets in the admin: read-only for staff; superusers add future rows.

Every add and withdraw goes through ``costs.changes`` (who may, how far ahead, the audit
event). Rows are never edited; a row not yet in force may be withdrawn (deleted) one at a time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from costs import changes
from costs.models import Budget, ModelLifecycle, ModelPrice


class _FutureRowForm(forms.ModelForm):
    """Refuses an effective_from sooner than the change delay, with the earliest allowed time."""

    def clean_effective_from(self) -> Any:
        value = self.cleaned_data.get("effective_from")
        problem = changes.timing_error(value)
        if problem:
            raise forms.ValidationError(problem)
        return value


class _CostRowAdmin(admin.ModelAdmin):
    form = _FutureRowForm
    kind = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return changes.may_change(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # History: never edited in place (the change page is read-only for everyone).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only a row not yet in force may be withdrawn, and only by who may add one.
        return changes.may_change(request.user) and (obj is None or not obj.in_force)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The bulk delete would skip the per-row checks and the audit events.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        # The earliest allowed time, rounded up to the next minute.
        earliest = changes.earliest_effective().replace(second=0, microsecond=0)
        initial.setdefault("effective_from", earliest + dt.timedelta(minutes=1))
        return initial

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if isinstance(obj, ModelPrice):
            changes.add_price(obj, request.user)
        else:
            changes.add_budget(obj, request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        changes.withdraw(obj, request.user)

    @admin.display(description="Status")
    def status(self, obj: Any) -> str:
        if not obj.in_force:
            return "scheduled"
        return "superseded" if changes.superseded(obj) else "in force"


@admin.register(ModelPrice)
class ModelPriceAdmin(_CostRowAdmin):
    list_display = (
        "model",
        "input_per_mtok",
        "cache_write_5m_per_mtok",
        "cache_write_1h_per_mtok",
        "cache_read_per_mtok",
        "output_per_mtok",
        "batch_discount",
        "effective_from",
        "status",
    )
    list_filter = ("model",)


@admin.register(Budget)
class BudgetAdmin(_CostRowAdmin):
    list_display = (
        "scope",
        "workflow_name",
        "user",
        "period",
        "limit_usd",
        "hard",
        "effective_from",
        "status",
    )
    list_filter = ("scope", "period", "hard")


@admin.register(ModelLifecycle)
class ModelLifecycleAdmin(admin.ModelAdmin):
    """Deprecation and end-of-life dates: data, edited as Anthropic announces them. Only who
    may change prices may change them (a date decides whether runs may start); every save and
    delete is an audit event (costs.changes)."""

    list_display = ("model", "deprecated_on", "end_of_life", "replacement", "source", "updated_at")
    search_fields = ("model",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return changes.may_change(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return changes.may_change(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return changes.may_change(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each audited
        return actions

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes.save_lifecycle(obj, request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        changes.delete_lifecycle(obj, request.user)
