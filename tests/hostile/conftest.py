"""Fixtures of the hostile-data harness; the tally is written out when HOSTILE_FUZZ_RESULTS is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

import tests.hostile.workflow  # noqa: F401 - registers hostile_echo
import tests.workflows_for_tests  # noqa: F401 - registers probe


@pytest.fixture(scope="session", autouse=True)
def _hostile_results() -> Iterator[None]:
    yield
    path = os.environ.get("HOSTILE_FUZZ_RESULTS")
    if path:
        from tests.hostile.harness import write_results

        write_results(path)


@pytest.fixture
def no_enqueue(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    enqueued: list[str] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(str(run_id)),
    )
    return enqueued


@pytest.fixture
def paused(operator: Any, no_enqueue: list[str]) -> Any:
    """A probe run of the operator's, paused on an open ticket (what resolutions act on)."""
    from orchestration import lifecycle
    from orchestration.launch import start_run
    from orchestration.models import Run
    from reviews.escalation import escalate

    run = start_run("probe", {"mode": "ok"}, operator)
    lifecycle.transition(run.pk, Run.Status.RUNNING)
    return escalate(
        run.pk,
        "validation_failed",
        "The final answer is still invalid.",
        details={"proposed_result": {"value": 1, "receipt": "r"}},
    )
