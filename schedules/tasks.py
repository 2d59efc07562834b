"""The task beat sends for each occurrence of a schedule (its PeriodicTask's task)."""

from __future__ import annotations

from celery import shared_task

from schedules import service


@shared_task(name=service.TICK_TASK)
def tick(schedule_id: int) -> str:
    row = service.tick(schedule_id)
    return (
        "nothing due"
        if row is None
        else f"{row.schedule_name} @ {row.due_at.isoformat()}: {row.outcome}"
    )
