"""Celery tasks for operations: the heartbeat /healthz reads."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from ops.health import record_heartbeat


@shared_task(bind=True, ignore_result=True, soft_time_limit=10, time_limit=20)
def heartbeat(self: Any, queue: str) -> None:
    """Sent by beat to each queue; whichever worker runs it proves the queue is served.

    The queue the message really came from wins over the argument, so a routing mistake
    shows up as a stale queue rather than a healthy one.
    """
    delivered = (self.request.delivery_info or {}).get("routing_key")
    record_heartbeat(delivered or queue)
