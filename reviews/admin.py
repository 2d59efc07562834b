"""Admin views of approvals and tickets: read-only, since decisions go through the
review pages (and the state machine), where they are checked and audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction

from orchestration import audit
from orchestration.admin import ReadOnlyAdmin
from reviews.models import ApprovalRequest, EscalationTicket, SlaTarget


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "estimate_usd",
        "status",
        "requested_by",
        "decided_by",
        "created_at",
        "expires_at",
    )
    list_filter = ("status",)
    list_select_related = ("run", "requested_by", "decided_by")


@admin.register(EscalationTicket)
class EscalationTicketAdmin(ReadOnlyAdmin):
    list_display = ("run", "reason", "status", "priority", "due_at", "assignee", "resolution")
    list_filter = ("status", "reason", "resolution")
    list_select_related = ("run", "assignee")


@admin.register(SlaTarget)
class SlaTargetAdmin(admin.ModelAdmin):
    """Priority and time to due per escalation reason (reviews.sla). Superusers edit them;
    managers and auditors see them (their roles view everything). Each change is audited and
    applies to tickets opened after it. A reason is never deleted: without a row it would fall
    back to the built-in default, silently."""

    list_display = ("reason", "priority", "due_minutes", "updated_at")
    list_editable = ()
    ordering = ("priority", "reason")

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        return ("reason", "updated_at") if obj is not None else ("updated_at",)

    def save_model(self, request: Any, obj: SlaTarget, form: Any, change: bool) -> None:
        before = (
            SlaTarget.objects.filter(pk=obj.pk).values("priority", "due_minutes").first()
            if change
            else None
        )
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit.record(
                "sla.changed",
                actor=request.user,
                payload={
                    "reason": obj.reason,
                    "priority": obj.priority,
                    "due_minutes": obj.due_minutes,
                    "before": before,
                },
            )
