"""The run page shows the model's turn as it streams, then its first-token and total latency."""

from __future__ import annotations

import threading

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers the probe workflow
from orchestration.launch import start_run
from orchestration.models import ModelCall
from orchestration.templatetags.countersign import duration
from tests.browser.conftest import shot, sign_in


def test_the_run_page_shows_the_turn_as_it_streams(live_server, page, operator, drive, settings):
    from django.db import connection

    settings.LLM_STREAM_PERSIST_SECONDS = 0.1
    run = start_run(
        "probe",
        {"mode": "ok"},
        operator,
        options={"simulator_faults": [{"fault": "slow_stream", "turn": 0, "seconds": 8}]},
    )
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/{run.pk}/")

    def steps() -> None:
        try:
            drive(run)
        finally:
            connection.close()

    worker = threading.Thread(target=steps, daemon=True)
    worker.start()
    # The pending turn's text appears on the page (polled every 0.5 s while it streams).
    page.locator(".live-pill").wait_for(timeout=20_000)
    page.get_by_text("The answer so far").wait_for()
    pending = ModelCall.objects.get(run=run, turn=0)
    says = page.locator(f"#model-{pending.pk} .says")
    says.wait_for(timeout=20_000)  # the first text arrived, while the call is still pending
    assert page.locator(".live-pill").count() == 1
    shot(page, "run-page-streaming-turn")
    streamed = says.inner_text().strip()
    assert streamed
    worker.join(60)
    page.get_by_text("to first token").first.wait_for(timeout=20_000)
    shot(page, "run-page-first-token-latency")
    tile = page.locator("#latency-tile").inner_text()
    pending.refresh_from_db()
    assert pending.status == ModelCall.Status.OK and pending.text.startswith(streamed)
    final = ModelCall.objects.filter(run=run).order_by("-turn").first()
    assert f"{duration(final.latency_ms)} total" in tile
    assert f"{duration(final.first_token_ms)} to first token" in tile


pytestmark = pytest.mark.browser
