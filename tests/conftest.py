"""Shared fixtures: personas, prices, a real Celery worker subprocess, a browser.

Everything runs against the real Postgres and Redis that `make test` starts. Worker
tests start `celery -A config worker` as a subprocess pointed at the test database, so
steps really go through Redis and a separate process (no eager mode).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# tests/faults restarts Postgres and Redis under running work: it runs only through
# `make faults` (scripts/faults.sh), on services of its own, never inside `make test`.
collect_ignore = [] if os.environ.get("COUNTERSIGN_FAULTS") == "1" else ["faults"]


@pytest.fixture(autouse=True)
def _fast_simulator(settings: Any) -> Iterator[None]:
    """No simulated latency in tests, a cache state of its own, short backoffs."""
    from orchestration.llm import reset_clients
    from simulator.django import reset_api

    settings.SIMULATOR = {
        **settings.SIMULATOR,
        "latency_scale": 0.0,
        "state_url": "",
        "retry_after_seconds": 0.01,
    }
    settings.LLM_BACKOFF_BASE_SECONDS = 0.01
    settings.TOOL_BACKOFF_BASE_SECONDS = 0.01
    reset_api()
    reset_clients()
    yield
    reset_api()
    reset_clients()


@pytest.fixture
def seeded(db: Any) -> None:
    """Roles, demo users, prices and demo data (transactional tests lose migration data); not
    the demo schedules (tests/test_schedules.py seeds those itself)."""
    call_command("seed_demo", "--no-schedules", stdout=io.StringIO())


def _user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


@pytest.fixture
def operator(seeded: None) -> Any:
    return _user("operator")


@pytest.fixture
def reviewer(seeded: None) -> Any:
    return _user("reviewer")


@pytest.fixture
def manager(seeded: None) -> Any:
    return _user("manager")


@pytest.fixture
def auditor(seeded: None) -> Any:
    return _user("auditor")


@pytest.fixture
def outsider(seeded: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("outsider", password="x-outsider-1")


@pytest.fixture
def drive(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run a run's steps in this process, in order, until it stops (no worker needed).

    Transactional: tool handlers run in their own threads (for timeouts) and only see
    committed rows, exactly as in a worker.
    """
    from orchestration import engine
    from orchestration.models import Run

    queued: list[str] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: queued.append(str(run_id)),
    )

    def _drive(run: Any, max_steps: int = 40) -> Any:
        for _ in range(max_steps):
            run.refresh_from_db()
            if run.status == Run.Status.AWAITING_SUBAGENT:
                # A parent waiting on its sub-agents: drive them (a child's end queues it).
                children = list(
                    Run.objects.filter(
                        parent=run, status__in=(Run.Status.QUEUED, Run.Status.RUNNING)
                    )
                )
                if not children:
                    return run  # a child is paused for review, or waits for approval
                for child in children:
                    _drive(child, max_steps)
                continue
            if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
                return run
            engine.run_step(run.pk)
        raise AssertionError(
            f"run {run.pk} did not stop within {max_steps} steps (status {run.status})"
        )

    return _drive


# --- a real worker ------------------------------------------------------------------------


class Worker:
    """A `celery -A config worker` subprocess on the test database."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        queues: str = "celery,llm,fanout",
    ) -> None:
        self.env, self.log, self.proc = env, log, None
        self.pool, self.concurrency, self.queues = pool, concurrency, queues

    def start(self) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        name = f"test-{uuid.uuid4().hex[:6]}@%h"
        self._out = open(self.log, "ab")  # noqa: SIM115 - closed in stop(), outlives this call
        # Several workers of one test share the log: only this worker's "ready." counts.
        offset = self._out.tell()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-B",
                "-Q",
                self.queues,
                "-P",
                self.pool,
                "-c",
                str(self.concurrency),
                "-l",
                "info",
                "-n",
                name,
                "--without-gossip",
                "--without-mingle",
                "--schedule",
                str(self.log.parent / f"beat-{uuid.uuid4().hex[:6]}"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log}")
            if b"ready." in self.log.read_bytes()[offset:]:
                return self
            time.sleep(0.2)
        # A worker that never got ready (no broker, say) must not linger and join a later test.
        self.kill()
        self._out.close()
        raise RuntimeError(f"worker not ready after 60s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()


def _worker_env(db_name: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{db_name}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SIMULATOR_LATENCY_SCALE": "0",
        "SIMULATOR_STATE_URL": "",
        "SIMULATOR_RETRY_AFTER_SECONDS": "0.01",
        "LLM_BACKOFF_BASE_SECONDS": "0.01",
        "TOOL_BACKOFF_BASE_SECONDS": "0.01",
        "RUN_STEP_LEASE_SECONDS": "4",
        "REAPER_INTERVAL_SECONDS": "1",
        "COUNTERSIGN_EXTRA_WORKFLOWS": "tests.workflows_for_tests",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="session")
def _purged_broker() -> None:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture
def worker_factory(
    transactional_db: Any, _purged_broker: None, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Worker]]:
    from django.db import connection

    started: list[Worker] = []
    log = ARTIFACTS / "workers" / f"{request.node.name}.log"

    def factory(env: dict[str, str] | None = None, **options: Any) -> Worker:
        """A worker; ``env`` adds settings, ``options`` pick pool, concurrency and queues."""
        worker = Worker(
            {**_worker_env(connection.settings_dict["NAME"]), **(env or {})}, log, **options
        ).start()
        started.append(worker)
        return worker

    yield factory
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(worker_factory: Callable[[], Worker]) -> Worker:
    return worker_factory()


def wait_for(run: Any, statuses: tuple[str, ...], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(
        f"run {run.pk} is {run.status} after {timeout}s, expected one of {statuses}"
    )
