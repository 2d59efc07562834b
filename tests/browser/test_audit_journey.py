"""An auditor narrows the runs list by workflow and date, searches a transaction id, exports
the CSV, opens the run and sees its audit chain verified."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from django.utils import timezone

from orchestration.launch import start_run
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


@pytest.fixture
def history(seeded, drive, operator, manager):
    today = drive(start_run("financial_reporting", {"date": "2026-11-20"}, operator))
    other_day = drive(
        start_run("financial_reporting", {"date": "2026-11-16"}, operator)
    )  # (the 17th escalates now: issue 14 §6)
    last_month = drive(start_run("financial_reporting", {"date": "2026-11-20"}, manager))
    payment = drive(start_run("payment_approval", {"payment_id": "PAY-1001"}, manager))
    Run.objects.filter(pk=last_month.pk).update(created_at=timezone.now() - dt.timedelta(days=30))
    assert today.status == other_day.status == Run.Status.SUCCEEDED
    return {"today": today, "other_day": other_day, "last_month": last_month, "payment": payment}


def test_auditor_filters_searches_exports_and_checks_the_chain(live_server, page, history):
    sign_in(page, live_server.url, "auditor")
    page.click("nav >> text=Runs")
    assert page.locator("#results tbody tr").count() == 4
    shot(page, "runs-list-all")

    # Workflow and date: last month's report and the payment drop out.
    week_ago = (timezone.localdate() - dt.timedelta(days=7)).isoformat()
    page.select_option("select[name=workflow]", "financial_reporting")
    page.fill("input[name=date_from]", week_ago)
    page.click("button:has-text('Apply')")
    page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 2")
    assert "workflow=financial_reporting" in page.url and f"date_from={week_ago}" in page.url
    rows = page.inner_text("#results tbody")
    assert str(history["today"].pk)[:8] in rows and str(history["other_day"].pk)[:8] in rows
    assert str(history["last_month"].pk)[:8] not in rows

    # A transaction id that only the 20 November report's tool calls carry.
    page.fill("input[name=q]", "TX-20261120-003")
    page.click("button:has-text('Apply')")
    page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 1")
    assert str(history["today"].pk)[:8] in page.inner_text("#results tbody")
    shot(page, "runs-list-search")

    with page.expect_download() as download_info:
        page.click("#results a:has-text('CSV')")
    download = download_info.value
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [r["id"] for r in rows] == [str(history["today"].pk)]
    assert rows[0]["status"] == "succeeded" and rows[0]["workflow"] == "financial_reporting"

    page.click(f"#results a:has-text('{str(history['today'].pk)[:8]}')")
    page.wait_for_url(f"**/runs/{history['today'].pk}/")
    chain = page.inner_text(".chain")
    assert "Audit chain verified" in chain
    assert page.locator(".entry.tool").count() >= 5
    shot(page, "run-page-chain-verified")

    with page.expect_download() as json_download:
        page.click("text=Download run (JSON)")
    assert json_download.value.suggested_filename == f"run-{history['today'].pk}.json"
