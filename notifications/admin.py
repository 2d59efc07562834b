"""Webhook endpoints and workflow recipients are configured here (superusers, or staff given
the change permissions); the delivery log is read-only, with a "send again" action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from notifications import channels
from notifications.models import WebhookDelivery, WebhookEndpoint, WorkflowRecipient
from orchestration import audit
from orchestration.admin import ReadOnlyAdmin


class _AuditedAdmin(admin.ModelAdmin):
    """Who changed where notifications go is recorded in the audit chain (secrets are not)."""

    audited_fields: tuple[str, ...] = ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            f"notifications.{obj._meta.model_name}.{'changed' if change else 'added'}",
            actor=request.user,
            payload={"id": obj.pk, **{f: getattr(obj, f) for f in self.audited_fields}},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit.record(
            f"notifications.{obj._meta.model_name}.deleted",
            actor=request.user,
            payload={"id": obj.pk, **{f: getattr(obj, f) for f in self.audited_fields}},
        )
        super().delete_model(request, obj)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_AuditedAdmin):
    list_display = ("name", "url", "events", "workflow_name", "max_ticket_priority", "active")
    list_filter = ("active",)
    audited_fields = ("name", "url", "events", "workflow_name", "max_ticket_priority", "active")


@admin.register(WorkflowRecipient)
class WorkflowRecipientAdmin(_AuditedAdmin):
    list_display = ("workflow_name", "email", "events", "active")
    list_filter = ("workflow_name", "active")
    audited_fields = ("workflow_name", "email", "events", "active")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event", "endpoint")
    list_select_related = ("endpoint",)
    actions = ["send_again"]

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    @admin.action(description="Send the selected failed deliveries again", permissions=["send"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = list(
            queryset.filter(status=WebhookDelivery.Status.FAILED).values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=WebhookDelivery.Status.RETRYING, next_attempt_at=timezone.now()
        )
        for delivery_id in ids:
            channels.enqueue_delivery(delivery_id)
        self.message_user(request, f"{len(ids)} failed deliverie(s) queued again.")
