"""An auditor searches the audit trail for a transaction id, opens the run, exports the filtered
trail with its proof and runs the offline verifier (downloaded from the page, run by a Python
with nothing but its standard library) on the download."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.postgres.search import SearchQuery

from orchestration.launch import start_run
from orchestration.models import AuditEvent, Run, ToolCall
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


@pytest.fixture
def history(seeded, drive, operator, manager):
    report = drive(start_run("financial_reporting", {"date": "2026-11-20"}, operator))
    other = drive(
        start_run("financial_reporting", {"date": "2026-11-16"}, manager)
    )  # (the 17th escalates now: issue 14 §6)
    assert report.status == other.status == Run.Status.SUCCEEDED
    return {"report": report, "other": other}


def test_auditor_searches_the_trail_opens_the_run_exports_and_verifies(
    live_server, page, history, tmp_path
):
    report = history["report"]
    # Only the 20 November report's tool calls carry this transaction id.
    tx = SearchQuery("TX-20261120-003", search_type="websearch", config="simple")
    assert ToolCall.objects.filter(run=report, search_vector=tx).exists()
    assert not ToolCall.objects.filter(run=history["other"], search_vector=tx).exists()
    sign_in(page, live_server.url, "auditor")
    page.click("nav >> text=Audit trail")
    page.wait_for_url("**/audit/")
    assert page.locator("#results tr.trail-event").count() > 10

    # 1. Search the trail for the transaction id.
    page.fill("input[name=q]", "TX-20261120-003")
    page.click("button:has-text('Apply')")
    page.wait_for_url("**/audit/?q=TX-20261120-003**")
    page.wait_for_function("() => document.querySelectorAll('#results tr.trail-event').length < 10")
    rows = page.locator("#results tr.trail-event")
    found = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert found and all("tool.called" in r and str(report.pk)[:8] in r for r in found), found
    shot(page, "audit-trail-search")
    page.screenshot(
        path=str(Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "audit-trail.png"),
        full_page=True,
    )

    # 2. Open the run it concerns; the run page leads back to the run's events in the trail.
    page.click("#results a.to-run")
    page.wait_for_url(f"**/runs/{report.pk}/")
    assert "Audit chain verified" in page.inner_text(".chain")
    page.click("#run-trail")
    page.wait_for_url(f"**/audit/?run={report.pk}")
    run_events = AuditEvent.objects.filter(run=report).count()
    assert page.locator("#results tr.trail-event").count() == min(50, run_events)

    # 3. Export the filtered trail (this run's events) as JSONL with its proof; download the
    # verifier and the installation's public key from the same page.
    with page.expect_download() as export:
        page.click("#export-jsonl")
    export_path = tmp_path / export.value.suggested_filename
    export.value.save_as(export_path)
    assert export_path.name.startswith("audit-trail-") and export_path.suffix == ".jsonl"
    with page.expect_download() as verifier:
        page.click("#results a:has-text('verifier')")
    script = tmp_path / "verify_audit_export.py"
    verifier.value.save_as(script)
    with page.expect_download() as key_download:
        page.click("#results a:has-text('public key')")
    key_path = tmp_path / "countersign.pub"
    key_download.value.save_as(key_path)
    lines = export_path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["filters"] == {"run": str(report.pk)}
    assert len(lines) == run_events + 2  # header, every event of the run, proof

    # 4. The offline verifier: a bare Python (-I -S: no site-packages, no project), the
    # download, the public key file.
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(export_path), "--public-key", str(key_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {run_events} event(s)")
    assert f"{run_events - 1} run link(s)" in done.stdout and "WARNING" not in done.stdout
