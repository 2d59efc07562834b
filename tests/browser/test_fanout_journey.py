"""An operator starts a 50-file security scan and watches the fan-out progress to the end."""

from __future__ import annotations

import re

import pytest

from orchestration.fanout.models import FanoutJob
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_operator_watches_a_50_job_fanout_to_the_end(
    live_server, page, seeded, worker_factory, settings, tmp_path
):
    worker_factory(
        env={"SIMULATOR_FIXED_LATENCY_SECONDS": "0.6", "ARTIFACTS_DIR": str(tmp_path)},
        pool="threads",
        concurrency=60,
    )
    sign_in(page, live_server.url, "operator")
    page.click("text=Start a run")
    page.click("text=Security scan (fan-out, 200 files)")
    page.fill("#id_limit", "50")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    # While it runs: the bar and the counts move without a reload.
    page.wait_for_selector("#fanout-progress .progress", timeout=60_000)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-count=succeeded]')?.textContent) > 0",
        timeout=60_000,
    )
    running = page.inner_text("#fanout-progress")
    assert "of 50 jobs settled" in running
    shot(page, "fanout-running")
    page.wait_for_selector(".tile .status-succeeded", timeout=90_000)
    run = Run.objects.get()
    assert run.status == Run.Status.SUCCEEDED
    progress = page.inner_text("#fanout-progress")
    assert "50 of 50 jobs settled" in progress
    assert (
        page.inner_text("[data-count=succeeded]") == "49"
        and page.inner_text("[data-count=failed]") == "1"
    )
    assert "Updating live" not in page.inner_text("#live")  # polling stopped
    assert run.result["jobs_passed"] == 49
    # The report the engine accepted has every finding of every passing file, and no other.
    passed = FanoutJob.objects.filter(run=run, status=FanoutJob.Status.SUCCEEDED)
    assert sorted((f["file"], f["line"], f["rule"]) for f in run.result["findings"]) == sorted(
        (j.job_id, f["line"], f["rule"]) for j in passed for f in j.output["findings"]
    )
    assert [f["file"] for f in run.result["not_scanned"]] == ["src/webhooks/handler_017.py"]
    shot(page, "fanout-succeeded")
    # The grid filters to the failed jobs; a job's page shows its prompt, output, verdict, attempts.
    page.select_option("#job-filter select[name=status]", "failed")
    page.wait_for_function("() => document.querySelectorAll('#job-grid tbody tr').length == 1")
    grid = page.inner_text("#job-grid")
    assert "handler_017.py" in grid and "Failed validation twice" in grid
    shot(page, "fanout-grid-failed")
    page.click("#job-grid a >> nth=0")
    page.wait_for_selector("h1:has-text('Job')")
    body = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
    assert "Review this file for security issues" in body and "Retried with" in body
    assert FanoutJob.objects.get(job_id__endswith="handler_017.py").attempts == 2
    shot(page, "fanout-job")
