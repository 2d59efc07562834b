"""Shared by the tool-loop benchmarks: Django setup, real Celery workers, waiting for runs."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOP_ENV = {
    # A zero-latency, in-memory simulator: the model's part costs only the SDK and the policy.
    "SIMULATOR_LATENCY_SCALE": "0",
    "SIMULATOR_FIXED_LATENCY_SECONDS": "0",
    "SIMULATOR_STATE_URL": "",
    "SIMULATOR_FAULTS": "[]",
    "COUNTERSIGN_EXTRA_WORKFLOWS": "bench.loop_workflow",
    "LOG_LEVEL": "WARNING",
    "OTEL_ENABLED": "false",
    # The benchmarks start hundreds of runs as the demo operator; the daily start limit is not
    # what they measure.
    "RUNS_PER_USER_PER_DAY": "1000000",
    # Production settings, as a deployment runs: with DJANGO_DEBUG on (what make run and the
    # services' env give), Django records every SQL statement in connection.queries and the
    # templates keep debug information, which is not what is measured. Fixed keys, so every
    # process of a benchmark (workers included) signs alike; the audit key is the development
    # one, so chains already in the development database still verify.
    "DJANGO_DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-not-for-deployment",
    "AUDIT_SIGNING_KEY": "dev-only-insecure-audit-signing-key-change-me",
    "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",  # the test client speaks plain HTTP (TLS ends at a proxy)
}


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(LOOP_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)


def purge_queues() -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery", "llm", "fanout")


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average {load:.1f} at the start, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


class Worker:
    """One `celery worker` (prefork, `concurrency` processes) on the step queues, no beat.

    Started in its own session so stop() ends it and its children, and nothing else.
    """

    def __init__(self, concurrency: int, name: str = "bench") -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.name = f"{name}-{os.getpid()}-c{concurrency}@%h"
        env = {**os.environ, **LOOP_ENV, "PYTHONPATH": str(ROOT)}
        self.log = open(self.logdir / "worker.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                "celery,llm",
                "-c",
                str(concurrency),
                "-n",
                self.name,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(concurrency)

    def _wait_ready(self, concurrency: int, timeout: float = 90) -> None:
        """Until the worker answers a ping (all its processes forked), or fail loudly."""
        from config.celery import app

        deadline = time.monotonic() + timeout
        hostname = self.name.replace("%h", platform.node())
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: see {self.logdir / 'worker.log'}")
            replies = app.control.ping(destination=[hostname], timeout=1.0)
            if replies:
                return
        raise RuntimeError(f"worker did not answer a ping within {timeout:g} s ({self.logdir})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def start_loop_run(steps: int) -> Any:
    from django.contrib.auth import get_user_model

    from orchestration.launch import start_run

    return start_run(
        "bench_loop", {"steps": steps}, get_user_model().objects.get(username="operator")
    )


def wait_final(run_ids: list[Any], timeout: float) -> None:
    """Poll until every run is final or paused; raise with the stragglers after `timeout`."""
    from orchestration.models import Run

    deadline = time.monotonic() + timeout
    done = {*Run.FINAL, Run.Status.AWAITING_REVIEW}
    while time.monotonic() < deadline:
        left = Run.objects.filter(pk__in=run_ids).exclude(status__in=done).count()
        if not left:
            bad = list(
                Run.objects.filter(pk__in=run_ids)
                .exclude(status=Run.Status.SUCCEEDED)
                .values_list("pk", "status", "error")[:5]
            )
            if bad:
                raise RuntimeError(f"benchmark runs did not succeed: {bad}")
            return
        time.sleep(0.02)
    raise RuntimeError(f"{left} benchmark runs still not final after {timeout:g} s")
