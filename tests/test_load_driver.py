"""The load test's own bookkeeping (bench/load/run.py): what it counts as a server error, how it
groups pages, the run mix, and the RESULTS.md section it rewrites. The load test itself runs
with `make load` (about 5 minutes), not in this suite."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.load import report
from bench.load import run as load


def test_access_log_groups_pages_and_counts_server_errors(tmp_path):
    log = tmp_path / "access.log"
    run_id = "0b3c1f9e-6a0e-4a57-9a38-2f6f3c1d2e4a"
    log.write_text(
        "\n".join(
            [
                f"GET /runs/{run_id}/  200 12000",
                f"GET /runs/{run_id}/live/  286 8000",
                "POST /reviews/tickets/17/claim/  200 30000",
                "POST /reviews/tickets/18/resolve/  200 50000",
                "GET /reviews/tickets/ reason=ambiguity 200 20000",
                "GET /reviews/tickets/  502 1000",
                "[2026-11-23 19:00:00] a gunicorn line that is not an access line",
            ]
        )
    )
    times, statuses, errors = report.access_log(log)
    assert times["GET /runs/[id]/"] == [12.0]
    assert times["GET /runs/[id]/live/"] == [8.0]
    assert times["POST /reviews/tickets/[id]/claim/"] == [30.0]
    assert times["POST /reviews/tickets/[id]/resolve/"] == [50.0]
    assert times["GET /reviews/tickets/"] == [20.0, 1.0]
    assert statuses == Counter({200: 4, 286: 1, 502: 1})
    assert errors == ["GET /reviews/tickets/  502 1000"]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert report.pct(values, 0.5) == 51.0
    assert report.pct(values, 0.95) == 95.0
    assert report.pct([7.0], 0.95) == 7.0


def test_the_mix_is_200_runs_of_demo_inputs_that_validate():
    from orchestration.launch import validate_input

    assert sum(n for _, _, n in load.MIX) == 200
    for workflow, value, _ in load.MIX:
        assert validate_input(workflow, value) == value
    # Fan-out runs are in the mix (their jobs need the fanout queue's worker, which it starts).
    fanout = {w: n for w, _, n in load.MIX if w in ("security_scan", "ad_variants")}
    assert fanout == {"security_scan": 3, "ad_variants": 3}
    assert '"fanout",' in Path(load.__file__).read_text()


def _report(passed: bool) -> dict:
    return {
        "when": "2026-11-23 19:00 UTC",
        "users": 50,
        "reviewers": 30,
        "managers": 20,
        "run_time": 180,
        "runs": 200,
        "prestart": 40,
        "latency_scale": 0.1,
        "passed": passed,
        "server_errors": 0,
        "server_requests": 10,
        "locust_failures": 0,
        "run_statuses": {"succeeded": 150, "failed": 50},
        "settle_seconds": 190,
        "tickets_opened": 80,
        "tickets_resolved": 80,
        "approvals": 50,
        "approvals_decided": 50,
        "audit": "verified, 10 events",
        "api_ms": {"p50": 1.0, "p95": 2.0, "max": 3.0},
        "api_errors": 0,
        "worker_processes": 4,
        "gunicorn_workers": 2,
        "gunicorn_threads": 4,
        "lock_waits": {
            "samples": 4,
            "with_waiters": 1,
            "peak": 1,
            "top": [("SELECT 1", 1)],
            "holders": [("[idle] x", 1)],
        },
    }


def test_results_section_is_replaced_not_appended(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Fan-out\n\nkept\n")
    stats = [
        {
            "Type": "GET",
            "Name": "/runs/",
            "Request Count": "10",
            "50%": "20",
            "95%": "40",
            "99%": "50",
            "Max Response Time": "60.2",
            "Requests/s": "1.0",
        },
        {
            "Type": "",
            "Name": "Aggregated",
            "Request Count": "10",
            "50%": "20",
            "95%": "40",
            "99%": "50",
            "Max Response Time": "60.2",
            "Requests/s": "1.0",
        },
    ]
    server = {"GET /runs/": [5.0, 9.0], "POST /login/": [300.0]}
    report.write_results(_report(False), stats, server, "cmd", path)
    report.write_results(_report(True), stats, server, "cmd", path)
    text = path.read_text()
    assert text.count("## Load") == 1 and "## Fan-out\n\nkept" in text
    assert "**Outcome: PASS.**" in text and "FAIL" not in text
    assert "| `GET /runs/` | 10 | 20 | 40 | 50 | 60 |" in text
    assert "| `GET /runs/` | 2 | 5 | 9 | 9 |" in text


def test_lock_waits_name_what_was_waited_for(tmp_path):
    """The load report says which lock sessions waited on; the audit lock is named."""
    from bench._locks import AUDIT_LOCK, lock_kind

    assert lock_kind("advisory", 0x636F756E, None) == AUDIT_LOCK
    assert lock_kind("advisory", 7, None) == "advisory: 0x7"
    assert lock_kind("tuple", None, "orchestration_run") == "tuple: orchestration_run"
    assert lock_kind("transactionid", None, None) == "transactionid"
    data = _report(True)
    data["lock_waits"] |= {"kinds": [("transactionid", 3)], "audit_lock": 0}
    path = tmp_path / "RESULTS.md"
    aggregated = {
        "Type": "",
        "Name": "Aggregated",
        "Request Count": "1",
        "50%": "20",
        "95%": "40",
        "99%": "50",
        "Max Response Time": "60.2",
        "Requests/s": "1.0",
    }
    server = {"GET /runs/": [5.0, 9.0], "POST /login/": [300.0]}
    report.write_results(data, [aggregated], server, "cmd", path)
    text = path.read_text()
    assert "- 3 x transactionid" in text
    assert "The audit sequencer's advisory lock was waited on in 0 session-samples" in text
