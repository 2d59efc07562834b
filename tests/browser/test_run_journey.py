"""An operator starts a financial report in the browser and watches it succeed live."""

from __future__ import annotations

import re

import pytest

from orchestration.launch import start_defaults
from orchestration.models import Run
from orchestration.workflows import registry
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_operator_starts_a_report_and_watches_it_succeed(live_server, page, seeded, worker):
    sign_in(page, live_server.url, "operator")
    page.click("text=Start a run")
    page.click("text=Daily financial report")
    # A manual start defaults to the previous calendar day in the workflow's time zone (issue 14 §6).
    yesterday = start_defaults(registry.get("financial_reporting"))["date"]
    assert page.input_value("#id_date") == yesterday
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    # The page polls while the run goes; it ends showing the result without a reload.
    page.wait_for_selector(".tile .status-succeeded", timeout=60_000)
    run = Run.objects.get()
    assert run.status == Run.Status.SUCCEEDED and run.result["date"] == yesterday
    timeline = page.inner_text(".timeline")
    for tool in (
        "fetch_transactions",
        "reconcile_ledger",
        "validate_apra",
        "publish_report",
        "audit_log",
    ):
        assert tool in timeline
    assert page.locator(".entry.model").count() == 6
    assert run.result["report_id"] in page.inner_text("#live")
    assert "Audit chain verified" in page.inner_text(".chain")
    assert "Updating live" not in page.inner_text("#live")  # polling stopped
    shot(page, "run-page-succeeded")


def test_bad_input_is_shown_inline_in_the_browser(live_server, page, seeded):
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/new/payment_approval/")
    page.fill("#id_payment_id", "1001")
    page.click("button:has-text('Start run')")
    assert "does not match" in page.inner_text(".field.has-error")
    assert Run.objects.count() == 0
    shot(page, "start-form-error")


def test_login_is_required_everywhere(live_server, page):
    page.goto(f"{live_server.url}/runs/")
    assert "/login/" in page.url
