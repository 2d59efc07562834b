"""Models per role, in the browser: the start page names each role's model and prices the
estimate per model, the run page shows what each model did, the costs page the roles each
model played; a workflow on an unpriced model cannot be started, one on a deprecated model
warns."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

import tests.lineup_workflows  # noqa: F401 - registers lineup_* in the live server's process
from costs.models import ModelLifecycle
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_operator_sees_a_line_per_model_from_estimate_to_costs(live_server, page, seeded, worker):
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/new/payment_approval/")
    lineup = page.inner_text("#lineup")
    assert "classifier: claude-haiku-4-5" in lineup and "formatter: claude-sonnet-5" in lineup
    page.click("#estimate-button")
    page.wait_for_selector("table.by-model")
    by_model = page.inner_text("table.by-model")
    assert (
        "claude-haiku-4-5" in by_model
        and "claude-opus-5" in by_model
        and "claude-sonnet-5" in by_model
    )
    shot(page, "lineup-start-estimate")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    page.wait_for_selector("text=Succeeded", timeout=60_000)
    page.reload()
    rows = page.inner_text("#run-models")
    assert re.search(r"claude-haiku-4-5\s+classifier\s+2\b", rows)
    assert re.search(r"claude-opus-5\s+orchestrator\s+2\b", rows)
    assert re.search(r"claude-sonnet-5\s+formatter\s+1\b", rows)
    assert Run.objects.get().status == Run.Status.SUCCEEDED
    shot(page, "lineup-run-by-model")

    page.goto(f"{live_server.url}/runs/new/lineup_unpriced/")
    refusal = page.inner_text(".lineup-refusal")
    assert "claude-haiku-5-5" in refusal and "manage.py add_model_price claude-haiku-5-5" in refusal
    assert page.is_disabled("button:has-text('Start run')")
    shot(page, "lineup-unpriced-refused")

    today = timezone.now().astimezone(dt.UTC).date()
    ModelLifecycle.objects.filter(model="claude-opus-4-5").update(
        deprecated_on=today - dt.timedelta(days=1)
    )
    page.goto(f"{live_server.url}/runs/new/lineup_deprecated/")
    assert "is deprecated since" in page.inner_text(".lineup-warning")
    assert page.is_enabled("button:has-text('Start run')")

    page.click("button:has-text('Sign out')")
    sign_in(page, live_server.url, "manager")
    page.goto(f"{live_server.url}/costs/")
    costs = page.inner_text("body")
    assert re.search(r"claude-haiku-4-5\s+classifier", costs) and re.search(
        r"claude-sonnet-5\s+formatter", costs
    )
    shot(page, "lineup-costs-by-model")
