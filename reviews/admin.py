"""Admin views of approvals and tickets: read-only, since decisions go through the
review pages (and the state machine), where they are checked and audited."""

from __future__ import annotations

from django.contrib import admin

from orchestration.admin import ReadOnlyAdmin
from reviews.models import ApprovalRequest, EscalationTicket


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("run", "estimate_usd", "status", "requested_by", "decided_by", "created_at", "expires_at")
    list_filter = ("status",)
    list_select_related = ("run", "requested_by", "decided_by")


@admin.register(EscalationTicket)
class EscalationTicketAdmin(ReadOnlyAdmin):
    list_display = ("run", "reason", "status", "priority", "due_at", "assignee", "resolution")
    list_filter = ("status", "reason", "resolution")
    list_select_related = ("run", "assignee")
