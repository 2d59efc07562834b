"""Costs' beat tasks."""

from __future__ import annotations

from celery import shared_task

from costs import requester_spend


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def refresh_requester_spend() -> int:
    """Beat, every REQUESTER_SPEND_REFRESH_SECONDS: rebuild the per-requester daily spend."""
    return requester_spend.refresh()
