"""Celery tasks: thin, taking ids, calling domain functions.

``advance_run`` runs one bounded step (orchestration.engine). It is acknowledged late and
rejected on worker loss, so a step killed mid-way is redelivered; the engine's lease and
per-tool_use idempotency make the redelivery harmless.

Nothing below the engine imports this module: Core and Reviews send these tasks by name
(orchestration.dispatch), so a step's data never walks back up the layers.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from orchestration import audit, engine
from orchestration.fanout import coordinator, jobs
from orchestration.retention import purge_payloads


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def advance_run(run_id: str) -> None:
    engine.run_step(run_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def reap_stalled_runs() -> int:
    return engine.reap_stalled_runs()


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def poll_batches() -> int:
    return engine.poll_batches()


@shared_task(ignore_result=True, soft_time_limit=1800, time_limit=1900)
def purge_old_payloads() -> str:
    """Beat: the retention purge (PAYLOAD_RETENTION_DAYS); idempotent, batched."""
    return str(purge_payloads())


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def sign_audit_head() -> str:
    """Beat, every AUDIT_ANCHOR_SECONDS: the sequencer. Anchor the events appended since the
    last pass into the global chain (``audit.anchor``), then sign a checkpoint of the new head."""
    checkpoint = audit.sign_checkpoint()
    return (
        f"checkpoint #{checkpoint.pk} at event #{checkpoint.seq}" if checkpoint else "no new events"
    )


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_fanout_job(job_pk: int) -> None:
    """One fan-out job (specialist, JSONL, validation, one retry); routed to the threads-pool
    "fanout" queue. Its lease and conditional writes make a redelivery harmless. A job that
    settled lets its run go on (the coordinator's fan-in), and the thread goes straight on with
    the job its freed slot was given, for up to FANOUT_JOB_CHAIN_SECONDS (no trip through the
    broker between two jobs of a run; see coordinator.job_settled)."""
    deadline = time.monotonic() + settings.FANOUT_JOB_CHAIN_SECONDS
    next_pk: int | None = job_pk
    while next_pk is not None:
        settled_run = jobs.run_job(next_pk)
        if settled_run is None:
            return
        next_pk = coordinator.job_settled(settled_run, take_one=time.monotonic() < deadline)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def reap_fanout_jobs() -> int:
    return coordinator.reap()
