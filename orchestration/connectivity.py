"""Whether this thread's database connection is gone (a Postgres restart or failover, a cut
network), as opposed to a statement that failed on a live connection (a deadlock, a cancel).

A step or a fan-out job that loses the database mid-way is not at fault: what it committed
stands, and it is resumed later; a failure on a live connection is the step's or job's own.
"""

from __future__ import annotations

from django.db import connection


def database_went_away() -> bool:
    try:
        return connection.connection is None or not connection.is_usable()
    except Exception:  # noqa: BLE001 - any failure to even ask means it is gone
        return True
