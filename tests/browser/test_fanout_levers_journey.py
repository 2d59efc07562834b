"""The fan-out levers in the browser: the start page offers batch where it applies and shows
the cache lines; a reviewer's ticket shows what the escalation reviewer decided and why; the
job page says how the reviewer settled a job; the costs page shows batch and cache savings."""

from __future__ import annotations

import pytest

from orchestration.fanout.models import FanoutJob
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in
from tests.test_fanout_levers import _fanout_settings, drive  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_the_start_page_offers_batch_where_it_applies_and_prices_the_cache(
    live_server, page, seeded
):
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/new/payment_approval/")
    assert page.locator("input[name=mode]").count() == 0  # answers in real time
    page.goto(f"{live_server.url}/runs/new/security_scan/")
    page.click("#estimate-button")
    page.wait_for_selector("#estimate table.calc")
    estimate = page.inner_text("#estimate")
    assert (
        "Specialist prefix: cache write (5m)" in estimate
        and "Specialist prefix: cache reads" in estimate
    )
    assert "the plan must have exactly 200" in estimate
    page.check("input[name=mode][value=batch]")
    page.click("#estimate-button")
    page.wait_for_selector("text=Batch mode (specialists and validators)")
    estimate = page.inner_text("#estimate")
    assert "Specialist prefix: cache write (1h)" in estimate  # a batch run may wait minutes
    shot(page, "fanout-levers-start-batch-estimate")


def test_a_reviewer_sees_what_the_escalation_reviewer_decided(live_server, page, seeded, drive):  # noqa: F811
    run = drive(
        drive.start(
            {"n": 6, "fail_twice": ["j001"], "edge": ["j000"], "review": {"j001": "escalate"}}
        )
    )
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    sign_in(page, live_server.url, "reviewer")
    page.goto(f"{live_server.url}/reviews/tickets/{ticket.pk}/")
    section = page.inner_text("#fanout-review")
    assert "Job j001: what the escalation reviewer decided" in section
    assert "claude-opus-5: escalate" in section and "the brief is unclear" in section
    assert "Approve accepts attempt 2's output" in section
    assert "Attempt 1 · validator FAIL: planted FAIL of j001 attempt 1" in section
    shot(page, "fanout-levers-reviewer-ticket")
    edge = FanoutJob.objects.get(run=run, job_id="j000")  # the first job: it ran alone, first
    assert (edge.status, edge.verdict, edge.review) == ("succeeded", "EDGE", "accept")
    page.goto(f"{live_server.url}/runs/{run.pk}/jobs/{edge.pk}/")
    banner = page.inner_text("#job-review")
    assert (
        "Escalation reviewer: accept (attempt 1)." in banner and "the validator was wrong" in banner
    )
    shot(page, "fanout-levers-job-accepted-by-reviewer")


def test_the_costs_page_shows_batch_and_cache_savings(live_server, page, seeded, drive):  # noqa: F811
    drive(drive.start({"n": 5}, batch=True))
    drive(drive.start({"n": 5}))
    sign_in(page, live_server.url, "manager")
    page.goto(f"{live_server.url}/costs/")
    body = page.inner_text("body").lower()  # headers are upper-cased by the style sheet
    assert "batch saved" in body and "fanout_review_probe" in body
    assert "$0.00" not in page.inner_text(".tiles .tile:nth-child(3) .big")  # batch savings
    shot(page, "fanout-levers-costs")
