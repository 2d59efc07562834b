"""A reviewer claims the newest ticket, corrects the failing output, resolves, and watches
the run resume to success."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from orchestration.launch import start_run
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_reviewer_corrects_an_output_and_the_run_resumes(live_server, page, seeded, worker):
    operator = get_user_model().objects.get(username="operator")
    older = start_run("financial_reporting", {"date": "2026-11-21"}, operator)
    wait_for(older, (Run.Status.AWAITING_REVIEW,))
    run = start_run("financial_reporting", {"date": "2026-11-19"}, operator)
    wait_for(run, (Run.Status.AWAITING_REVIEW,))
    newest = run.tickets.get()

    sign_in(page, live_server.url, "reviewer")
    page.click("nav >> text=Escalations")
    assert page.locator("tr.ticket-row").count() == 2
    assert "2 " in page.inner_text(".count-total")
    shot(page, "escalation-queue")
    row = page.locator(f"#ticket-{newest.pk}")
    row.locator("button:has-text('Claim')").click()
    page.locator(f"#ticket-{newest.pk} button:has-text('Unclaim')").wait_for()  # swapped in place
    assert page.url.endswith("/reviews/tickets/")
    assert "reviewer" in page.inner_text(f"#ticket-{newest.pk}")

    page.click(f"#ticket-{newest.pk} td a[href$='/reviews/tickets/{newest.pk}/']")
    assert "failing step" in page.inner_text(".entry.failing")
    page.check("input[value=correct]")
    # A schema violation is refused inline and nothing changes.
    page.fill("#id_corrected", '{"compliant": "yes"}')
    page.click("button:has-text('Resolve')")
    page.wait_for_selector("#resolve .banner.error")
    assert "nothing was changed" in page.inner_text("#resolve")
    shot(page, "ticket-page-invalid-correction")
    run.refresh_from_db()
    assert run.status == Run.Status.AWAITING_REVIEW

    page.fill(
        "#id_corrected", json.dumps({"compliant": True, "violations": [], "rules_version": "1"})
    )
    page.fill("#id_comment", "Customer KYC completed offline; see case 4411")
    page.click("button:has-text('Resolve')")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_selector(".tile .status-succeeded", timeout=60_000)
    assert "corrected" in page.inner_text(".timeline")
    assert "publish_report" in page.inner_text(".timeline")
    shot(page, "run-resumed-after-correction")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.result["report_id"].startswith(
        "RPT-2026-11-19"
    )
