"""Sending work to the Celery workers by task name.

Core and Reviews start runs, resume them and resolve tickets, and each of those must send
the run's next step; the step itself lives in the engine (orchestration.tasks ->
orchestration.engine), which imports Core and Reviews. Sending by name keeps the imports one
way: this module knows the task names and the broker, never the tasks or the engine.
Routing (CELERY_TASK_ROUTES) is by name too, so a step still goes to the "llm" queue and a
fan-out job to the "fanout" queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from kombu.exceptions import OperationalError as BrokerUnavailable

logger = logging.getLogger(__name__)

ADVANCE_RUN = "orchestration.tasks.advance_run"
RUN_FANOUT_JOB = "orchestration.tasks.run_fanout_job"
NOTIFY_TICKET_OPENED = "reviews.tasks.notify_ticket_opened"


def send(task_name: str, args: tuple[Any, ...], countdown: float | None = None) -> bool:
    """Send one task; False (and a warning) when the broker could not be reached."""
    try:
        current_app.send_task(task_name, args, countdown=countdown or None)
    except BrokerUnavailable as exc:
        logger.warning("broker unavailable, %s%r not sent: %s", task_name, args, exc)
        return False
    return True


def enqueue_step(run_id: Any, countdown: float | None = None) -> bool:
    """Send the run's next step; False when the broker could not be reached.

    Callers enqueue after their commit, so the run is already queued or running without a
    lease: the reaper sends the step once the broker is back. Failing here would only turn a
    committed start, resolution or step into an error page or a failed task (the fault suite
    restarts Redis under running work to check this).
    """
    try:
        current_app.send_task(ADVANCE_RUN, (str(run_id),), countdown=countdown or None)
    except BrokerUnavailable as exc:
        logger.warning(
            "broker unavailable, step not sent; the reaper will send it: %s",
            exc,
            extra={"run_id": str(run_id)},
        )
        return False
    return True
