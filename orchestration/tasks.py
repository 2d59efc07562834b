"""Celery tasks: thin, taking ids, calling domain functions.

``advance_run`` runs one bounded step (orchestration.engine). It is acknowledged late and
rejected on worker loss, so a step killed mid-way is redelivered; the engine's lease and
per-tool_use idempotency make the redelivery harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerUnavailable

from orchestration import audit, engine

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def advance_run(run_id: str) -> None:
    engine.run_step(run_id)


def enqueue_step(run_id: Any, countdown: float | None = None) -> bool:
    """Send the run's next step; False when the broker could not be reached.

    Callers enqueue after their commit, so the run is already queued or running without a
    lease: the reaper sends the step once the broker is back. Failing here would only turn a
    committed start, resolution or step into an error page or a failed task (the fault suite
    restarts Redis under running work to check this).
    """
    try:
        advance_run.apply_async((str(run_id),), countdown=countdown or None)
    except BrokerUnavailable as exc:
        logger.warning("broker unavailable, step not sent; the reaper will send it: %s", exc,
                       extra={"run_id": str(run_id)})
        return False
    return True


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def reap_stalled_runs() -> int:
    return engine.reap_stalled_runs()


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def poll_batches() -> int:
    return engine.poll_batches()


@shared_task(ignore_result=True, soft_time_limit=1800, time_limit=1900)
def purge_old_payloads() -> str:
    """Beat: the retention purge (PAYLOAD_RETENTION_DAYS); idempotent, batched."""
    from orchestration.retention import purge_payloads

    return str(purge_payloads())


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def sign_audit_head() -> str:
    """Beat, every AUDIT_ANCHOR_SECONDS: the sequencer. Anchor the events appended since the
    last pass into the global chain (``audit.anchor``), then sign a checkpoint of the new head."""
    checkpoint = audit.sign_checkpoint()
    return f"checkpoint #{checkpoint.pk} at event #{checkpoint.seq}" if checkpoint else "no new events"


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_fanout_job(job_pk: int) -> None:
    """One fan-out job (specialist, JSONL, validation, one retry); routed to the threads-pool
    "fanout" queue. Its lease and conditional writes make a redelivery harmless."""
    from orchestration.fanout import jobs

    jobs.run_job(job_pk)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def reap_fanout_jobs() -> int:
    from orchestration.fanout import coordinator

    return coordinator.reap()
