"""The retention purge: drop payload bodies of old, finished runs; keep the facts and the chain.

For every run that is final and finished more than ``PAYLOAD_RETENTION_DAYS`` ago (runs
that never finished count from their creation), and for audit events without a run older
than that, the purge sets to NULL (and stamps ``payload_purged_at``):

- ModelCall ``request_content`` and ``response_content``;
- ToolCall ``input``, ``output`` and ``raw_output``;
- AuditEvent ``payload`` (to ``{}``, keeping only its ``evidence`` digests), except decision
  events (``audit.kept_by_retention``: approvals, ticket claims and resolutions, who
  corrected what, and earlier purges), which are kept whole;
- the ``context`` snapshot of the run's resolved escalation tickets (to ``{"purged_at": ...}``).

Each purged run gets a ``payload.purged`` event (and the run-less trail one) whose hashed
payload carries the stamp: verification accepts an emptied payload or evidence field only
with the stamp of a later purge event of its run (``orchestration.audit``).

What stays: the run row (input, result, status, costs, tokens, timestamps), every call's
metadata (model, tokens, cost, status, latency, errors) and every audit event's kind, actor,
time, payload digest, evidence digests, hashes and signature. The chain hashes the payload's
digest, not the payload (``orchestration.audit``), so it still verifies after the purge. Runs that are not final
are never purged: the engine needs their conversation to continue.

Idempotent and batched: each batch is one transaction over at most ``batch_size`` runs, so
a purge of years of history never holds long locks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, JSONField, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from orchestration import audit
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from reviews.models import EscalationTicket


@dataclass
class PurgeReport:
    cutoff: dt.datetime
    runs: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    events: int = 0
    tickets: int = 0
    dry_run: bool = False
    counted: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        verb = "Would purge" if self.dry_run else "Purged"
        return (
            f"{verb} payloads older than {self.cutoff:%Y-%m-%d %H:%M} UTC: {self.runs} runs, "
            f"{self.model_calls} model calls, {self.tool_calls} tool calls, {self.events} audit events, "
            f"{self.tickets} ticket snapshots."
        )


def purgeable_runs(cutoff: dt.datetime):
    return Run.objects.filter(status__in=Run.FINAL).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    )


def purge_payloads(
    days: int | None = None,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 500,
) -> PurgeReport:
    days = settings.PAYLOAD_RETENTION_DAYS if days is None else days
    if days < 1:
        raise ValueError("The retention period must be at least one day.")
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run)
    stamp = timezone.now()
    # Runs with something left to purge (a run already purged has no unpurged calls or events
    # but its decision events and its payload.purged event, which are kept).
    unpurged = {
        "model_calls": ModelCall.objects.filter(run=OuterRef("pk"), payload_purged_at__isnull=True),
        "tool_calls": ToolCall.objects.filter(run=OuterRef("pk"), payload_purged_at__isnull=True),
        "events": _purgeable_events().filter(run=OuterRef("pk")),
    }
    candidates = purgeable_runs(cutoff).filter(
        Exists(unpurged["model_calls"])
        | Exists(unpurged["tool_calls"])
        | Exists(unpurged["events"])
    )
    run_ids = list(candidates.values_list("pk", flat=True))
    for start in range(0, len(run_ids), batch_size):
        batch = run_ids[start : start + batch_size]
        mcs = ModelCall.objects.filter(run_id__in=batch, payload_purged_at__isnull=True)
        tcs = ToolCall.objects.filter(run_id__in=batch, payload_purged_at__isnull=True)
        evs = _purgeable_events().filter(run_id__in=batch)
        tks = EscalationTicket.objects.filter(
            run_id__in=batch, status=EscalationTicket.Status.RESOLVED
        ).exclude(context__has_key="purged_at")
        report.runs += len(batch)
        if dry_run:
            report.model_calls += mcs.count()
            report.tool_calls += tcs.count()
            report.events += evs.count()
            report.tickets += tks.count()
            continue
        with transaction.atomic():
            # The runs' rows first, in one order: each purge event below locks its run's row
            # then the chain, and a run locked after the chain could deadlock (audit.record).
            runs = list(Run.objects.locked().filter(pk__in=batch).order_by("pk").only("pk"))
            report.model_calls += mcs.update(
                request_content=None, response_content=None, payload_purged_at=stamp
            )
            report.tool_calls += tcs.update(
                input=None, output=None, raw_output=None, payload_purged_at=stamp
            )
            report.events += evs.update(payload=_EVIDENCE_ONLY, payload_purged_at=stamp)
            report.tickets += tks.update(context={"purged_at": stamp.isoformat()})
            for run in runs:
                audit.record(
                    audit.PURGE_KIND,
                    run=run,
                    actor="system",
                    payload={"purged_at": stamp.isoformat()},
                )
    runless = _purgeable_events().filter(run__isnull=True, created_at__lt=cutoff)
    if dry_run:
        report.events += runless.count()
    else:
        with transaction.atomic():
            purged = runless.update(payload=_EVIDENCE_ONLY, payload_purged_at=stamp)
            if purged:
                audit.record(
                    audit.PURGE_KIND, actor="system", payload={"purged_at": stamp.isoformat()}
                )
            report.events += purged
    return report


def _purgeable_events():
    """Unpurged events whose payload the purge may drop: every one but the decisions."""
    return AuditEvent.objects.filter(payload_purged_at__isnull=True).exclude(
        audit.kept_by_retention()
    )


# A purged payload keeps only its evidence digests (hashed on their own, see orchestration.audit).
_EVIDENCE_ONLY = RawSQL(
    "CASE WHEN jsonb_exists(payload, 'evidence') "
    "THEN jsonb_build_object('evidence', payload->'evidence') ELSE '{}'::jsonb END",
    [],
    output_field=JSONField(),
)
