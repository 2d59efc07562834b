"""Admin for inspecting runs and their records. Runs are read-only here: their status only
changes through the state machine, so the admin never edits it."""

from __future__ import annotations

from django.contrib import admin

from orchestration.models import AuditEvent, ModelCall, Run, ToolCall, WorkflowVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "version",
        "status",
        "serving",
        "author",
        "decided_by",
        "content_hash",
        "created_at",
    )
    list_filter = ("name", "status", "serving")
    search_fields = ("name", "content_hash")


class ModelCallInline(admin.TabularInline):
    model = ModelCall
    fields = (
        "turn",
        "attempt",
        "model",
        "status",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class ToolCallInline(admin.TabularInline):
    model = ToolCall
    fields = ("name", "tool_use_id", "attempt", "status", "settled", "latency_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("id", "workflow_name", "status", "requested_by", "cost_usd", "created_at")
    list_filter = ("status", "workflow_name")
    search_fields = ("id", "workflow_name", "requested_by__username")
    date_hierarchy = "created_at"
    list_select_related = ("requested_by",)
    inlines = (ModelCallInline, ToolCallInline)
    exclude = ("search_vector",)  # the generated full-text document: noise on the page


@admin.register(ModelCall)
class ModelCallAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "turn",
        "attempt",
        "model",
        "status",
        "stop_reason",
        "cost_usd",
        "latency_ms",
    )
    list_filter = ("status", "model", "stop_reason")
    list_select_related = ("run",)


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnlyAdmin):
    list_display = ("run", "name", "tool_use_id", "attempt", "status", "settled", "latency_ms")
    list_filter = ("status", "name")
    list_select_related = ("run",)
    exclude = ("search_vector",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "kind", "actor_label", "run", "created_at")
    list_filter = ("kind",)
    search_fields = ("kind", "actor_label")
