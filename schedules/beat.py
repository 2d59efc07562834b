"""The beat scheduler (CELERY_BEAT_SCHEDULER): django-celery-beat's DatabaseScheduler, so the
schedule store is the database (PeriodicTask rows), with two changes.

1. Every enabled task is loaded, whatever its hour. DatabaseScheduler 2.9 loads a crontab task
   with a single numeric hour only within two hours of the current one; a daily occurrence
   missed while beat was down longer than that would then be caught up only the next day.
   Countersign has tens of periodic tasks, not thousands: loading them all costs nothing, and
   beat, once back, fires each missed task once (celery's crontab is due when its next
   occurrence after ``last_run_at`` has passed).
2. The relative ``expires`` of a CELERY_BEAT_SCHEDULE entry (seconds) is kept as the row's
   ``expire_seconds``: DatabaseScheduler drops an ``expires`` option it is given, and a
   heartbeat or sequencer pass that waited past its interval must still expire as before.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django_celery_beat.schedulers import DatabaseScheduler


def with_expire_seconds(entry: dict[str, Any]) -> dict[str, Any]:
    options = dict(entry.get("options") or {})
    expires = options.pop("expires", None)
    if isinstance(expires, int | float) and "expire_seconds" not in options:
        options["expire_seconds"] = expires
    return {**entry, "options": options}


class Scheduler(DatabaseScheduler):
    def _get_crontab_exclude_query(self) -> Q:
        return Q(pk__in=[])  # exclude nothing

    def update_from_dict(self, mapping: dict[str, Any]) -> None:
        super().update_from_dict({name: with_expire_seconds(e) for name, e in mapping.items()})
