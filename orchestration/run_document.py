"""A whole run as one JSON document, and one row per run for the list exports.

Both are redacted (``orchestration.privacy.redact``) on the way out: what leaves the
system never carries what the redaction policy matches, whatever is stored.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from orchestration.audit import verify_run
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from orchestration.privacy import redact
from orchestration.serialize import iso, model_call_dict, tool_call_dict, usd_string
from reviews.models import ApprovalRequest, EscalationTicket

DOCUMENT_VERSION = 1


def run_summary(run: Run) -> dict[str, Any]:
    """The run's own fields (no children), as exported per row."""
    return {
        "id": str(run.pk),
        "workflow": run.workflow_name,
        "workflow_version": run.workflow_version.version if run.workflow_version_id else None,
        "status": run.status,
        "requested_by": run.requested_by.get_username() if run.requested_by_id else None,
        "parent": str(run.parent_id) if run.parent_id else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "estimate_usd": usd_string(run.estimate_usd),
        "cost_usd": usd_string(run.cost_usd),
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cache_write_tokens": run.cache_write_tokens,
        "cache_read_tokens": run.cache_read_tokens,
        "steps_taken": run.steps_taken,
        "error": run.error,
        "input": run.input,
        "result": run.result,
    }


def _event(ev: AuditEvent) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "run_seq": ev.run_seq,
        "kind": ev.kind,
        "actor": ev.actor_label,
        "payload": ev.payload,
        "payload_digest": ev.payload_digest,
        "payload_purged_at": iso(ev.payload_purged_at),
        "created_at": iso(ev.created_at),
        "prev_hash": ev.prev_hash,
        "run_prev_hash": ev.run_prev_hash,
        "hash": ev.hash,
        # The global link, set when the sequencer anchors the event (docs/architecture.md).
        "chain_hash": ev.chain_hash,
        "format": ev.format,
    }


def run_document(run: Run) -> dict[str, Any]:
    """Everything recorded about one run, redacted, with its chain verification."""
    wv = run.workflow_version
    # A payload that cannot be decrypted is in the document as {"_undecryptable": why}.
    tool_calls = [
        tool_call_dict(tc)
        for tc in ToolCall.objects.filter(run=run).order_by("created_at", "attempt")
    ]
    doc = {
        "document": "countersign.run",
        "version": DOCUMENT_VERSION,
        "exported_at": iso(timezone.now()),
        "run": run_summary(run),
        "workflow_version": {
            "name": wv.name,
            "version": wv.version,
            "content_hash": wv.content_hash,
            "title": wv.title,
            "system_prompt": wv.system_prompt,
            "tools": wv.tools,
            "input_schema": wv.input_schema,
            "output_schema": wv.output_schema,
            "model_roles": wv.model_roles,
            "constraints": wv.constraints,
        },
        "model_calls": [
            model_call_dict(mc)
            for mc in ModelCall.objects.filter(run=run).order_by("turn", "attempt")
        ],
        "tool_calls": tool_calls,
        "audit_events": [
            _event(ev) for ev in AuditEvent.objects.filter(run=run).order_by("run_seq")
        ],
        "tickets": [
            {
                "id": t.pk,
                "reason": t.reason,
                "message": t.message,
                "status": t.status,
                "priority": t.priority,
                "assignee": t.assignee.get_username() if t.assignee_id else None,
                "resolution": t.resolution,
                "resolved_by": t.resolved_by.get_username() if t.resolved_by_id else None,
                "comment": t.comment,
                "created_at": iso(t.created_at),
                "due_at": iso(t.due_at),
                "claimed_at": iso(t.claimed_at),
                "resolved_at": iso(t.resolved_at),
            }
            for t in EscalationTicket.objects.filter(run=run)
            .select_related("assignee", "resolved_by")
            .order_by("created_at")
        ],
        "approvals": [
            {
                "id": a.pk,
                "status": a.status,
                "estimate_usd": usd_string(a.estimate_usd),
                "threshold_usd": usd_string(a.threshold_usd),
                "calculation": a.calculation,
                "requested_by": a.requested_by.get_username(),
                "decided_by": a.decided_by.get_username() if a.decided_by_id else None,
                "comment": a.comment,
                "created_at": iso(a.created_at),
                "decided_at": iso(a.decided_at),
            }
            for a in ApprovalRequest.objects.filter(run=run)
            .select_related("requested_by", "decided_by")
            .order_by("created_at")
        ],
        "chain": verify_run(run.pk).as_dict(),
    }
    return redact(doc)
