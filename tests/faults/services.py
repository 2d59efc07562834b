"""Crash and restart the fault suite's own Postgres and Redis (scripts/faults.sh started them).

Only the services under COUNTERSIGN_DEV_DIR are touched, and only when the test database
really is on that cluster's port (`require_own_services`), so a mistake can never restart
`make test`'s or `make run`'s services.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.db import connections

DEV_DIR = Path(os.environ.get("COUNTERSIGN_DEV_DIR", ""))


def require_own_services() -> None:
    """Refuse to run unless Postgres and Redis are the ones scripts/faults.sh started."""
    if not os.environ.get("COUNTERSIGN_DEV_DIR") or not (DEV_DIR / "postgres.base").exists():
        raise RuntimeError("the fault suite runs through `make faults` (scripts/faults.sh) only")
    pg_port = str(settings.DATABASES["default"]["PORT"])
    if pg_port != os.environ.get("COUNTERSIGN_PG_PORT"):
        raise RuntimeError(
            f"the test database is on port {pg_port}, not the fault suite's Postgres"
        )
    if f":{os.environ.get('COUNTERSIGN_REDIS_PORT')}/" not in settings.CELERY_BROKER_URL:
        raise RuntimeError("the broker is not the fault suite's Redis")


def _pg_bin() -> Path:
    for candidate in [
        Path("/usr/lib/postgresql/15/bin"),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True),
    ]:
        if (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError("pg_ctl not found")


def _as_pg(args: list[str]) -> list[str]:
    # Postgres refuses to run as root; scripts/services.sh runs it as the postgres OS user.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _pg_paths() -> tuple[Path, Path]:
    base = Path((DEV_DIR / "postgres.base").read_text().strip())
    return base / "postgres", base / "log" / "postgres.log"


def crash_postgres() -> None:
    """Stop Postgres the hard way (`-m immediate`: no checkpoint, clients cut off), as a crash."""
    data, _ = _pg_paths()
    subprocess.run(
        _as_pg(
            [
                str(_pg_bin() / "pg_ctl"),
                "stop",
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
            ]
        ),
        check=True,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=90,
    )


def start_postgres() -> None:
    """Start it again (crash recovery replays the WAL); returns once it accepts connections."""
    data, log = _pg_paths()
    subprocess.run(
        _as_pg(
            [str(_pg_bin() / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        ),
        check=True,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=90,
    )
    # This process's connections died with the server; the next query opens a new one.
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None and not conn.is_usable():
            conn.close()


def _redis_dir() -> Path:
    return DEV_DIR / "redis"


def _redis_pid() -> int:
    return int((_redis_dir() / "redis.pid").read_text().strip())


def crash_redis() -> None:
    """SIGKILL redis-server: whatever the append-only file had not synced yet is lost."""
    pid = _redis_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server {pid} survived SIGKILL")


def start_redis() -> None:
    import redis

    (_redis_dir() / "redis.pid").unlink(missing_ok=True)
    subprocess.run(
        ["redis-server", str(_redis_dir() / "redis.conf")],
        check=True,
        cwd=_redis_dir(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=30,
    )
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError("redis-server did not come back within 60s")


def ensure_running() -> None:
    """Start whichever of the two is down (after a scenario that failed mid-outage)."""
    import redis

    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        start_redis()
    data, _ = _pg_paths()
    status = subprocess.run(
        _as_pg([str(_pg_bin() / "pg_ctl"), "status", "-D", str(data)]),
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=30,
    )
    if status.returncode != 0:
        start_postgres()
