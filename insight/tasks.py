"""Beat's work for the roll-ups and the daily digest."""

from __future__ import annotations

from celery import shared_task

from insight import digest, rollups


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def fold_rollups() -> int:
    """Fold rows finished since the last fold into the roll-ups; the hours recomputed."""
    return rollups.fold().hours


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def send_daily_digests() -> list[str]:
    return digest.send_daily_digests()
