"""The step core: streamed calls (time to first token, the answer so far on the pending row and
the run page), consecutive steps in one task under one lease, the one-statement claim, and
the per-process caches of workflow versions and prices."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

import tests.workflows_for_tests  # noqa: F401 - registers the probe workflow
from costs import pricing
from costs.models import ModelPrice
from orchestration import engine, model_calls
from orchestration.launch import start_run
from orchestration.models import ModelCall, Run

S = Run.Status
FR = {"date": "2026-11-20"}


def test_every_call_streams_and_records_its_time_to_first_token(operator, drive) -> None:
    run = drive(start_run("financial_reporting", FR, operator))
    assert run.status == S.SUCCEEDED
    calls = list(ModelCall.objects.filter(run=run))
    assert len(calls) == 6
    # Only a streamed answer has a first token to time: every call was streamed.
    assert all(
        c.first_token_ms is not None and 0 <= c.first_token_ms <= c.latency_ms for c in calls
    )


def test_a_long_answer_streams_past_the_read_timeout(operator, drive, settings) -> None:
    """The timeout applies to silence: a 3 s answer whose tokens keep coming gets through a
    1 s read timeout (a non-streamed request would time out, thrice, and fail)."""
    from orchestration.llm import reset_clients

    settings.LLM_TIMEOUT_SECONDS = 1.0
    reset_clients()
    run = drive(
        start_run(
            "probe",
            {"mode": "ok"},
            operator,
            options={"simulator_faults": [{"fault": "slow_stream", "turn": 0, "seconds": 3}]},
        )
    )
    assert run.status == S.SUCCEEDED
    first = ModelCall.objects.get(run=run, turn=0)
    assert first.attempt == 1 and first.sdk_attempts == 1 and first.latency_ms >= 2900


def test_a_call_streaming_longer_than_the_lease_keeps_its_step(operator, drive, settings) -> None:
    """A 3 s streamed answer under a 1 s step lease: the step keeps pushing its lease out as
    tokens arrive, so when the call ends the lease is still ahead and the reaper would not have
    taken the step (and sent a second, duplicate call) meanwhile."""
    settings.RUN_STEP_LEASE_SECONDS = 1
    leases = []
    real_send = model_calls.send

    def watching_send(mc, params, client, **kwargs):
        outcome = real_send(mc, params, client, **kwargs)
        lease = Run.objects.values_list("lease_expires_at", flat=True).get(pk=mc.run_id)
        leases.append((lease, timezone.now()))
        return outcome

    run = start_run(
        "probe",
        {"mode": "ok"},
        operator,
        options={"simulator_faults": [{"fault": "slow_stream", "turn": 0, "seconds": 3}]},
    )
    with mock.patch.object(model_calls, "send", watching_send):
        run = drive(run)
    assert run.status == S.SUCCEEDED
    lease, call_ended = leases[0]
    assert lease is not None and lease > call_ended  # still ours when the 3 s call ended
    assert ModelCall.objects.filter(run=run, turn=0).count() == 1


def test_the_pending_row_and_the_run_page_show_the_answer_as_it_arrives(
    operator, drive, settings, client
) -> None:
    settings.LLM_STREAM_PERSIST_SECONDS = 0.05
    run = start_run(
        "probe",
        {"mode": "ok"},
        operator,
        options={"simulator_faults": [{"fault": "slow_stream", "turn": 0, "seconds": 4}]},
    )
    client.force_login(operator)
    client.get(reverse("run_live", args=[run.pk]))  # warm: the first render compiles templates
    done = threading.Event()

    def step() -> None:
        try:
            drive(run)
        finally:
            connection.close()
            done.set()

    threading.Thread(target=step, daemon=True).start()
    seen: list[Any] = []
    page = ""
    deadline = time.monotonic() + 30
    while not done.is_set() and time.monotonic() < deadline:
        partial = (
            ModelCall.objects.filter(run=run, turn=0, status=ModelCall.Status.PENDING)
            .values_list("response_content", flat=True)
            .first()
        )
        if partial:
            seen.append(partial)
            if not page:
                page = client.get(reverse("run_live", args=[run.pk])).content.decode()
        time.sleep(0.05)
    done.wait(30)
    final = ModelCall.objects.get(run=run, turn=0)
    assert final.status == ModelCall.Status.OK
    assert seen, "the pending row never showed the answer so far"
    # What was shown while pending is a beginning of the final answer.
    first_text = next(b["text"] for b in final.response_content if b["type"] == "text")
    shown = next((b.get("text", "") for b in seen[0] if b.get("type") == "text"), "")
    assert first_text.startswith(shown)
    assert len(str(seen[0])) < len(str(final.response_content))
    # The live part of the run page showed it, marked as streaming, and polled faster.
    assert "streaming" in page and 'hx-trigger="every 500ms"' in page
    if shown:
        assert shown.split()[0] in page
    # Once the call is over, the page shows first-token and total latency.
    after = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "to first token" in after and f"{final.latency_ms} ms" in after


def test_consecutive_steps_run_in_one_task_under_one_lease(operator, drive, monkeypatch) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: sent.append(countdown)
    )
    run = start_run("financial_reporting", FR, operator)
    sent.clear()  # the start's own enqueue
    engine.run_step(run.pk)  # one task
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert ModelCall.objects.filter(run=run).count() == 6 and run.steps_taken == 6
    assert sent == [] and run.lease_expires_at is None


def test_a_spent_time_slice_hands_the_run_back_to_the_queue(
    operator, drive, monkeypatch, settings
) -> None:
    settings.ENGINE_TASK_SLICE_SECONDS = 0
    sent: list[Any] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: sent.append(countdown)
    )
    run = start_run("financial_reporting", FR, operator)
    sent.clear()  # the start's own enqueue
    engine.run_step(run.pk)
    run.refresh_from_db()
    assert run.status == S.RUNNING and run.steps_taken == 1 and run.lease_expires_at is None
    assert ModelCall.objects.filter(run=run).count() == 1
    assert sent == [0]  # the next step, enqueued at once


def test_the_claim_is_one_statement_and_refuses_a_held_lease(operator, drive) -> None:
    from django.test.utils import CaptureQueriesContext

    run = start_run("probe", {"mode": "ok"}, operator)
    claimed = engine.claim_step(run.pk)  # queued: becomes running, then claimed
    assert claimed is not None and claimed.status == S.RUNNING and claimed.steps_taken == 1
    assert engine.claim_step(run.pk) is None  # a redelivered task finds the run held
    engine.release_step(run.pk, None)
    with CaptureQueriesContext(connection) as captured:
        again = engine.claim_step(run.pk)
    assert again is not None and again.steps_taken == 2 and again.lease_expires_at > timezone.now()
    assert len(captured.captured_queries) == 1
    assert captured.captured_queries[0]["sql"].lstrip().startswith("UPDATE")


# --- per-process caches ----------------------------------------------------------------------


def _insert_elsewhere(**fields: Any) -> int:
    """A price row added by another process: no signal reaches this one."""
    (row,) = ModelPrice.objects.bulk_create([ModelPrice(**fields)])
    return row.pk


def _haiku(effective_from: dt.datetime, input_price: str) -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "effective_from": effective_from,
        "input_per_mtok": Decimal(input_price),
        "output_per_mtok": Decimal("5"),
        "cache_write_5m_per_mtok": Decimal("1.25"),
        "cache_write_1h_per_mtok": Decimal("2"),
        "cache_read_per_mtok": Decimal("0.1"),
    }


@pytest.mark.django_db
def test_the_price_cache_answers_from_memory_and_never_serves_a_stale_price(
    settings, seeded
) -> None:
    from django.test.utils import CaptureQueriesContext

    settings.PRICE_CACHE_SECONDS = 30
    pricing.clear_price_cache()
    now = timezone.now()
    assert pricing.price_for("claude-haiku-4-5").input_per_mtok == Decimal("1")
    with CaptureQueriesContext(connection) as captured:
        assert pricing.price_for("claude-haiku-4-5").input_per_mtok == Decimal("1")
    assert not captured.captured_queries  # from memory

    # Another process schedules a change (at least COST_CHANGE_MIN_DELAY_MINUTES ahead): a
    # lookup now still gets the old price; one at its effective time reads the new row.
    later = now + dt.timedelta(minutes=settings.COST_CHANGE_MIN_DELAY_MINUTES)
    future_pk = _insert_elsewhere(**_haiku(later, "3"))
    assert pricing.price_for("claude-haiku-4-5").input_per_mtok == Decimal("1")
    assert pricing.price_for("claude-haiku-4-5", at=later).input_per_mtok == Decimal("3")

    # That scheduled row is now cached; another process withdraws it before it takes effect:
    # a lookup at its time does not trust the cache, and finds the old price again.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ModelPrice._meta.db_table} WHERE id = %s", [future_pk])
    assert pricing.price_for("claude-haiku-4-5", at=later).input_per_mtok == Decimal("1")

    # A row saved in this process empties the cache at once.
    ModelPrice.objects.create(**_haiku(now - dt.timedelta(seconds=1), "4"))
    assert pricing.price_for("claude-haiku-4-5").input_per_mtok == Decimal("4")


def test_workflow_versions_are_read_once_per_process(operator, drive) -> None:
    from django.test.utils import CaptureQueriesContext

    run = start_run("probe", {"mode": "ok"}, operator)
    engine._versions.clear()
    first = engine._version(Run.objects.get(pk=run.pk))
    with CaptureQueriesContext(connection) as captured:
        again = engine._version(Run.objects.get(pk=run.pk))
    assert again is first and len(captured.captured_queries) == 1  # the run, not the version
