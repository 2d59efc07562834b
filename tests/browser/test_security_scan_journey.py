"""The security_scan demo as shipped, 200 files, followed to the end in the browser with the
simulator's realistic latency model scaled down (SIMULATOR_LATENCY_SCALE): the plan is two job
kinds the engine expands over the files, 200 jobs run 50 at a time, six fail twice, and the
aggregate the engine accepted reports every finding of the 194 passing files."""

from __future__ import annotations

import re

import pytest

from demo import security_scan
from orchestration.fanout.models import FanoutJob
from orchestration.models import ModelCall, Run
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_operator_follows_the_200_file_security_scan_to_the_end(
    live_server, page, seeded, worker_factory, tmp_path
):
    worker_factory(
        # The default latency model (Opus 1.5 s + 40 tokens/s, Sonnet 0.8 s + 70 tokens/s) at a
        # twentieth: the ~4,300-token aggregate takes ~5 s instead of ~108 s.
        # The test workers' 4 s step lease would expire during the ~5 s aggregate call and the
        # reaper would send the step again: a lease longer than any call here.
        env={
            "SIMULATOR_LATENCY_SCALE": "0.05",
            "ARTIFACTS_DIR": str(tmp_path),
            "RUN_STEP_LEASE_SECONDS": "60",
        },
        pool="threads",
        concurrency=60,
    )
    sign_in(page, live_server.url, "operator")
    page.click("text=Start a run")
    page.click("text=Security scan (fan-out, 200 files)")
    assert page.input_value("#id_limit") == "200"
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    run = Run.objects.get()
    assert run.status in (Run.Status.QUEUED, Run.Status.RUNNING)  # under $20: no approval

    # The plan is two job kinds, written once, expanded by the engine over the 200 files.
    page.wait_for_function(
        "() => /of 200 jobs settled/.test(document.querySelector('#fanout-progress h2')?.textContent)",
        timeout=60_000,
    )
    timeline = page.inner_text(".timeline")
    assert "job_kinds" in timeline and "money and identity" in timeline
    plan = ModelCall.objects.get(run=run, job__isnull=True, turn=0)
    assert plan.output_tokens < 200
    page.wait_for_function(
        "() => Number(document.querySelector('[data-count=succeeded]')?.textContent) >= 50",
        timeout=120_000,
    )
    assert "(at most 50)" in page.inner_text("#fanout-progress")
    shot(page, "security-scan-200-running")

    page.wait_for_selector(".tile .status-succeeded", timeout=240_000)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    # The orchestrator was asked twice in all: the plan and the aggregate.
    orchestrator = ModelCall.objects.filter(run=run, job__isnull=True)
    assert list(orchestrator.order_by("turn").values_list("turn", "attempt", "status")) == [
        (0, 1, "ok"),
        (1, 1, "ok"),
    ]
    progress = page.inner_text("#fanout-progress")
    assert "200 of 200 jobs settled" in progress
    # The job grid's counts are their own poll: they catch up within one refresh.
    page.wait_for_function(
        "() => document.querySelector('[data-count=succeeded]')?.textContent === '194'",
        timeout=30_000,
    )
    assert page.inner_text("[data-count=failed]") == "6"
    shot(page, "security-scan-200-succeeded")

    jobs = FanoutJob.objects.filter(run=run)
    assert [j.job_id for j in jobs.order_by("seq")] == security_scan.items({})
    # Every job ran on the prompt of its kind, and every file's own source.
    assert "look hard for secrets" in jobs.get(job_id="src/billing/handler_000.py").prompt
    assert "look hard" not in jobs.get(job_id="src/reports/handler_002.py").prompt
    assert run.result["jobs_total"] == 200 and run.result["jobs_passed"] == 194
    assert sorted(f["file"] for f in run.result["not_scanned"]) == sorted(
        security_scan.items({})[i] for i in security_scan.OBFUSCATED
    )
    passed = jobs.filter(status=FanoutJob.Status.SUCCEEDED)
    assert sorted((f["file"], f["line"], f["rule"]) for f in run.result["findings"]) == sorted(
        (j.job_id, f["line"], f["rule"]) for j in passed for f in j.output["findings"]
    )
    # The split secrets (files ending in 3) were missed once, named by the validator, found.
    retried = jobs.filter(attempts=2, status=FanoutJob.Status.SUCCEEDED)
    assert retried.count() == 19 and all(j.job_id.endswith("3.py") for j in retried)
    assert run.cost_usd <= run.estimate_usd

    # The grid filters to the six files that could not be scanned.
    page.select_option("#job-filter select[name=status]", "failed")
    page.wait_for_function("() => document.querySelectorAll('#job-grid tbody tr').length == 6")
    grid = page.inner_text("#job-grid")
    assert "handler_017.py" in grid and "handler_199.py" in grid
    shot(page, "security-scan-200-failed-jobs")
