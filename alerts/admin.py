"""Thresholds are set here, per workflow (a row with a blank workflow holds the defaults);
every change is an audit event. Alerts and pauses are read-only here: people act on them on
the alerts page, where the access rules and the audit trail apply."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms.models import model_to_dict
from django.http import HttpRequest

from alerts.models import Alert, AlertThresholds, UserPause
from orchestration import audit
from orchestration.admin import ReadOnlyAdmin


@admin.register(AlertThresholds)
class AlertThresholdsAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "cost_spike_ratio",
        "latency_ratio",
        "error_rate_percent",
        "retry_count",
        "retry_window_seconds",
        "escalation_count",
        "escalation_window_seconds",
        "budget_percent",
    )
    fieldsets = (
        (None, {"fields": ("workflow_name",)}),
        (
            "Cost spike",
            {
                "fields": (
                    "cost_spike_ratio",
                    "cost_baseline_ratio",
                    "cost_baseline_days",
                    "cost_min_usd",
                )
            },
        ),
        ("Latency", {"fields": ("latency_ratio", "latency_min_calls")}),
        ("Error rate", {"fields": ("error_rate_percent", "error_min_runs", "error_window_hours")}),
        (
            "Retries and escalations",
            {
                "fields": (
                    "retry_count",
                    "retry_window_seconds",
                    "pause_user_on_retry_burst",
                    "escalation_count",
                    "escalation_window_seconds",
                )
            },
        ),
        ("Budgets and the breaker", {"fields": ("budget_percent", "breaker_alerts")}),
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "alert.thresholds_changed" if change else "alert.thresholds_added",
            actor=request.user,
            payload={k: str(v) for k, v in model_to_dict(obj).items()},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit.record(
            "alert.thresholds_deleted",
            actor=request.user,
            payload={"workflow_name": obj.workflow_name},
        )
        super().delete_model(request, obj)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "opened_at",
        "rule",
        "title",
        "status",
        "occurrences",
        "notified_at",
        "acknowledged_by",
        "resolved_by",
    )
    list_filter = ("status", "rule")
    list_select_related = ("acknowledged_by", "resolved_by")


@admin.register(UserPause)
class UserPauseAdmin(ReadOnlyAdmin):
    list_display = ("user", "created_at", "lifted_by", "lifted_at")
    list_select_related = ("user", "lifted_by")
