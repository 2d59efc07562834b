"""A reviewer forks a paused run from its failing step with a corrected tool output, watches
the fork finish, compares it with the original, then cancels the original."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model

from orchestration.launch import start_run
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_reviewer_forks_a_paused_run_from_the_failing_step(live_server, page, seeded, worker):
    operator = get_user_model().objects.get(username="operator")
    run = start_run("financial_reporting", {"date": "2026-11-19"}, operator)
    wait_for(run, (Run.Status.AWAITING_REVIEW,))
    failing = run.tickets.get().failing_tool_call
    assert failing.name == "validate_apra"

    sign_in(page, live_server.url, "reviewer")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.click("#run-fork")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/fork/")
    # The failing step is chosen already: its turn and its tool call.
    assert page.input_value("#id_turn") == str(failing.model_call.turn)
    assert page.input_value("#id_tool_use_id") == failing.tool_use_id
    assert "failing step" in page.inner_text(f"#fork-turn-{failing.model_call.turn}")
    # An output that fails the tool's schema is refused on the page, and nothing starts.
    page.fill("#id_corrected", '{"compliant": "yes"}')
    page.click("button:has-text('Start the fork')")
    page.wait_for_selector(".banner.error")
    assert "not accepted" in page.inner_text(".banner.error")
    assert page.input_value("#id_corrected") == '{"compliant": "yes"}'
    shot(page, "fork-form-invalid-correction")
    assert not Run.objects.filter(origin=run).exists()

    page.fill(
        "#id_corrected", json.dumps({"compliant": True, "violations": [], "rules_version": "1"})
    )
    page.click("button:has-text('Start the fork')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    fork = Run.objects.get(origin=run)
    assert page.url.endswith(f"/runs/{fork.pk}/")
    page.wait_for_selector(".tile .status-succeeded", timeout=60_000)
    page.reload()  # the origin banner and the copied history as a fresh page shows them
    assert "Fork of" in page.inner_text("#run-origin")
    assert "paid by the original" in page.inner_text("#run-origin")
    timeline = page.inner_text(".timeline")
    assert "publish_report" in timeline and "audit_log" in timeline
    assert page.locator(".entry .copied-pill").count() >= 4  # copied model and tool calls
    assert "Audit chain verified" in page.inner_text(".chain")
    shot(page, "fork-run-page")
    fork.refresh_from_db()
    assert fork.status == Run.Status.SUCCEEDED and fork.result["report_id"].startswith(
        "RPT-2026-11-19"
    )

    page.click("#run-compare")
    page.wait_for_url(re.compile(r"/runs/compare/\?a="))
    assert "Same input." in page.inner_text("#compare-input-verdict")
    assert "corrected" in page.inner_text("#compare-path")
    assert page.locator("#compare-path tr.differs").count() >= 1
    shot(page, "compare-runs")

    # The original still waits on its ticket; the reviewer cancels it, confirming first.
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    assert "fork from turn" in page.inner_text("#run-derived")
    assert page.locator("#run-rerun").count() == 0  # a reviewer may not start runs
    shot(page, "run-page-actions")
    page.click("#run-cancel")
    page.wait_for_selector("text=Cancel this run?")
    shot(page, "cancel-confirm")
    page.fill("#id_reason", "Superseded by the fork")
    page.click("button:has-text('Yes, cancel the run')")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/")
    assert "Run cancelled" in page.inner_text(".messages")
    assert page.locator(".tile .status-cancelled").count() == 1
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.tickets.get().resolution == "cancelled"

    # From the runs list: two runs by the short ids the list shows.
    page.click("nav >> text=Runs")
    page.fill("#runs-compare input[name=a]", str(run.pk)[:8])
    page.fill("#runs-compare input[name=b]", str(fork.pk)[:8])
    page.click("#runs-compare button")
    page.wait_for_selector("#compare-summary")
    assert "is a fork of" in page.inner_text("main")
    shot(page, "runs-list-compare")
