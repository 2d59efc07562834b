"""Health checks: the database, the broker, and a heartbeat from the workers of each queue.

The worker check reads heartbeat keys instead of asking the workers (``celery inspect
ping`` broadcasts and waits for every reply, which is slow and fails on a busy worker).
Beat sends ``ops.tasks.heartbeat`` to each queue in ``HEALTHZ_WORKER_QUEUES`` every
``HEARTBEAT_INTERVAL_SECONDS``; the worker that runs it stores the time in Redis. A stale
key means beat is down, the broker is not delivering, or no worker consumes that queue.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

HEARTBEAT_KEY = "countersign:heartbeat:{queue}"
CHECKS = ("database", "broker", "workers")


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def check_broker() -> dict[str, Any]:
    timeout = settings.HEALTHZ_TIMEOUT_SECONDS
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True}


def record_heartbeat(queue: str) -> None:
    # Kept for a day so /healthz can say how long ago a queue was last served.
    cache.set(HEARTBEAT_KEY.format(queue=queue), time.time(), timeout=86400)


def check_workers() -> dict[str, Any]:
    max_age = settings.HEALTHZ_HEARTBEAT_MAX_AGE_SECONDS
    now = time.time()
    keys = {q: HEARTBEAT_KEY.format(queue=q) for q in settings.HEALTHZ_WORKER_QUEUES}
    seen = cache.get_many(list(keys.values()))
    queues: dict[str, Any] = {}
    for queue, key in keys.items():
        at = seen.get(key)
        if at is None:
            queues[queue] = {
                "ok": False,
                "error": "no heartbeat recorded in the last day: is a worker consuming "
                "this queue, and is beat running?",
            }
            continue
        age = round(now - float(at), 1)
        entry: dict[str, Any] = {"ok": age <= max_age, "last_heartbeat_seconds_ago": age}
        if age > max_age:
            entry["error"] = f"last heartbeat {age:.0f}s ago (more than {max_age}s)"
        queues[queue] = entry
    return {"ok": all(q["ok"] for q in queues.values()), "queues": queues}


RUNNERS = {"database": check_database, "broker": check_broker, "workers": check_workers}


def run_checks(names: list[str] | None = None) -> dict[str, Any]:
    """Run the named checks (all by default); ``ok`` is true only when every one passed."""
    results = {name: _timed(RUNNERS[name]) for name in (names or CHECKS)}
    return {"ok": all(r["ok"] for r in results.values()), "checks": results}
