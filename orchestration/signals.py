"""Signals Core sends so higher layers can react without Core importing them.

``run_status_changed`` is sent once per run transition, after the transaction that made it
commits (``orchestration.lifecycle.transition``), with ``run_id``, ``previous`` and
``target``. Receivers must be quick and must not raise into the sender: they enqueue work
(reviews.notifications enqueues the people's notifications). Sent with ``send_robust``, so a
failing receiver is logged and never undoes or breaks the step that moved the run.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

run_status_changed = Signal()


def send_run_status_changed(run_id: Any, previous: str, target: str) -> None:
    for receiver, result in run_status_changed.send_robust(
        sender=None, run_id=str(run_id), previous=previous, target=target
    ):
        if isinstance(result, Exception):
            logger.error(
                "run_status_changed receiver %r failed for run %s: %s", receiver, run_id, result
            )
