"""Fixtures of the fault suite, and its summary table (printed, and written to test-artifacts).

Run it with `make faults`: scripts/faults.sh gives it a Postgres (synchronous_commit on) and a
Redis of its own, which these tests crash and restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers probe and pair here, as in the workers
from tests.conftest import ARTIFACTS
from tests.faults import services
from tests.faults.invariants import SUMMARY

pytestmark = pytest.mark.worker

# Worker settings for every scenario: a short step lease and a reaper every second, so a
# killed step is picked up within seconds, not the production 15 minutes. The lease must stay
# longer than any step can take (the slowest fault here is a 3 s answer), or the reaper would
# re-queue a live step: production keeps it above the task's hard time limit for that reason.
# A task hands its run back after 0.5 s of consecutive steps (production: 10 s), so the
# scenarios also find runs between two tasks.
FAST_RECOVERY = {
    "ENGINE_TASK_SLICE_SECONDS": "0.5",
    "RUN_STEP_LEASE_SECONDS": "8",
    "REAPER_INTERVAL_SECONDS": "1",
    "FANOUT_JOB_LEASE_SECONDS": "8",
}


def worker_log(request: pytest.FixtureRequest) -> Path:
    """Where tests/conftest.worker_factory writes this test's workers' output."""
    return ARTIFACTS / "workers" / f"{request.node.name}.log"


@pytest.fixture(autouse=True)
def _own_services(transactional_db: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    services.require_own_services()
    # The scenario's worker log (tests/conftest.worker_factory) starts empty: check() counts
    # the recoveries in it.
    worker_log(request).unlink(missing_ok=True)
    yield
    # A scenario that failed half-way must not leave the next one without its services.
    services.ensure_running()


@pytest.fixture
def operator_user(seeded: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="operator")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded; fails with ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"not reached within {timeout:g}s: {what}")


COLUMNS = [
    ("scenario", "scenario"),
    ("runs", "runs"),
    ("succeeded", "succeeded"),
    ("paused", "paused"),
    ("failed", "failed"),
    ("sdk_retries", "SDK retries"),
    ("model_retries", "model re-attempts"),
    ("tool_retries", "tool re-attempts"),
    ("interrupted", "interrupted calls"),
    ("tools_executed", "tools executed"),
    ("side_effects", "side effects"),
    ("reaped", "re-queued by the reaper"),
    ("broker_unavailable", "steps not sent (broker down)"),
    ("database_away", "steps cut by the database"),
    ("duplicates", "duplicates"),
    ("chain_ok", "chain OK"),
    ("stuck", "stuck"),
    ("seconds", "seconds"),
]


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = [
            ("yes" if row[k] else "NO") if k == "chain_ok" else str(row[k]) for k, _ in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [
        f"- {row['scenario']}: {row['faults']}"
        + (f"; paused: {row['pause_reasons']}" if row["pause_reasons"] else "")
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SUMMARY:
        return
    rows = [t.as_dict() for t in SUMMARY]
    out = ARTIFACTS / "faults"
    out.mkdir(parents=True, exist_ok=True)
    table = summary_markdown(rows)
    (out / "summary.md").write_text(table)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    terminalreporter.section("fault scenarios")
    terminalreporter.write(table)
    terminalreporter.write_line(f"(written to {out / 'summary.md'})")
