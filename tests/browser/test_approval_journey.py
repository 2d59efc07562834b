"""An operator starts a run estimated over $20; it waits; the operator cannot approve it; a
manager reads the calculation, approves, and the run runs to the end."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers quarter_probe in the live server's process
from orchestration.models import Run
from reviews.models import ApprovalRequest
from tests.browser.conftest import shot, sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_manager_approves_an_expensive_run_and_it_runs(live_server, page, seeded, worker):
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/new/quarter_probe/")
    page.fill("#id_quarter", "2026-Q3")
    page.click("#estimate-button")
    page.wait_for_selector("#estimate h2:has-text('Estimate: up to')")
    estimate_text = page.inner_text("#estimate")
    upper = float(
        re.search(r"Estimate: up to \$([\d,.]+)", estimate_text).group(1).replace(",", "")
    )
    assert upper > 20 and "wait for a manager's approval" in estimate_text
    shot(page, "start-form-estimate")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    assert "Waiting for a manager's approval" in page.inner_text("#live")
    run = Run.objects.get(workflow_name="quarter_probe")
    assert run.status == Run.Status.AWAITING_APPROVAL and run.model_calls.count() == 0

    # The operator has no approvals page and cannot decide through the URL either.
    assert page.locator("nav >> text=Approvals").count() == 0
    response = page.request.post(
        f"{live_server.url}/reviews/approvals/{run.approvals.get().pk}/decide/",
        form={"decision": "approve"},
    )
    assert response.status == 403
    assert ApprovalRequest.objects.get(run=run).status == "pending"
    page.click("button:has-text('Sign out')")

    sign_in(page, live_server.url, "manager")
    assert "1" in page.inner_text("nav a:has-text('Approvals')")
    page.click("nav >> text=Approvals")
    row = page.locator(f"#approval-{run.approvals.get().pk}")
    row.locator("summary:has-text('The calculation')").click()
    calculation = row.inner_text()
    assert "count_tokens on the rendered prompt" in calculation and "Upper bound" in calculation
    assert "operator" in calculation and "in 30 days" in calculation
    shot(page, "approval-queue")
    row.locator("input[name=comment]").fill("Quarter close: approved")
    row.locator("button:has-text('Approve')").click()
    page.locator(f"#approval-{run.approvals.get().pk} .status-approved").wait_for()
    assert "0 waiting" in page.inner_text("#approval-count")

    wait_for(run, (Run.Status.SUCCEEDED,), timeout=60)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    assert "Approval approved by manager" in page.inner_text("#approval-decision")
    assert "Quarter close: approved" in page.inner_text("#approval-decision")
    page.wait_for_selector(".tile .status-succeeded")
    shot(page, "approved-run-succeeded")

    run.refresh_from_db()
    page.click("nav >> text=Costs")
    assert (
        page.inner_text("#total-spend")
        == f"${run.cost_usd.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"
    )
    assert "quarter_probe" in page.inner_text("main")
    page.wait_for_function("() => document.querySelector('#spend-chart').width > 0")
    shot(page, "costs-page")
