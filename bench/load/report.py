"""The load test's bookkeeping: locust's stats CSV, gunicorn's access log, percentiles, and the
"Load" section of bench/RESULTS.md. Kept apart from run.py (which starts and stops things) so
it can be tested without starting anything (tests/test_load_driver.py)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from bench._results import write_section

ROOT = Path(__file__).resolve().parent.parent.parent


def locust_stats(csv_prefix: Path) -> list[dict[str, str]]:
    import csv

    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        return list(csv.DictReader(f))


# Access log lines are "<method> <path> <query> <status> <microseconds>" (see --access-logformat).
PAGE_PATTERNS = (
    (re.compile(r"^/runs/[0-9a-f-]{36}/live/$"), "/runs/[id]/live/"),
    (re.compile(r"^/runs/[0-9a-f-]{36}/$"), "/runs/[id]/"),
    (re.compile(r"^/reviews/tickets/\d+/(\w+)/$"), "/reviews/tickets/[id]/{0}/"),
    (re.compile(r"^/reviews/tickets/\d+/$"), "/reviews/tickets/[id]/"),
    (re.compile(r"^/reviews/approvals/\d+/decide/$"), "/reviews/approvals/[id]/decide/"),
    (re.compile(r"^/static/.*"), "/static/..."),
)


def access_log(path: Path) -> tuple[dict[str, list[float]], Counter[int], list[str]]:
    times: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[int] = Counter()
    server_errors = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) != 5 or not parts[3].isdigit():
            continue
        method, url, _query, status, micros = parts
        for pattern, name in PAGE_PATTERNS:
            if m := pattern.match(url):
                url = name.format(*m.groups())
                break
        statuses[int(status)] += 1
        times[f"{method} {url}"].append(int(micros) / 1000)
        if int(status) >= 500:
            server_errors.append(line)
    return times, statuses, server_errors


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def write_results(
    report: dict,
    stats: list[dict[str, str]],
    server: dict[str, list[float]],
    command: str,
    path: Path = ROOT / "bench" / "RESULTS.md",
) -> None:
    r = report
    locks = r["lock_waits"]
    lines = [
        "## Load",
        "",
        f"Measured {r['when']} on the shared 2-core development machine, **while other work shared "
        "the 2 cores** (other engineers' test suites and benchmarks): the absolute times are noisy "
        "and pessimistic; rerun on a quiet machine for reference numbers. Everything ran on "
        "this one machine: Postgres, Redis, the simulator, gunicorn, the Celery worker and beat, "
        "and locust itself.",
        "",
        f"Reproduce: `make load` (or `{command}`). What it starts and what each simulated person "
        'does: docs/operations.md, "Load test".',
        "",
        f"- {r['users']} locust users for {r['run_time']} s: {r['reviewers']} reviewers and "
        f"{r['managers']} managers, each signed in as their own account (one a second), 1-3 s "
        "between actions;",
        f"- {r['runs']} runs started through `POST /api/runs` ({r['prestart']} before locust, the "
        "rest on a fixed schedule over the first two thirds of it), executing through the "
        f"standalone simulator (its latency model x {r['latency_scale']:g}) on one Celery worker "
        f"({r['worker_processes']} prefork processes) and beat;",
        f"- the app under gunicorn ({r['gunicorn_workers']} gthread workers x "
        f"{r['gunicorn_threads']} threads, TLS, DJANGO_DEBUG=false).",
        "",
        f"**Outcome: {'PASS' if r['passed'] else 'FAIL'}.** Server errors (5xx): "
        f"{r['server_errors']} in {r['server_requests']:,} requests (gunicorn's access log); "
        f"locust failures: {r['locust_failures']}. Runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(r["run_statuses"].items()))
        + f" (every run final or paused); the last settled {r['settle_seconds']} s after the "
        f"first was started. Tickets: {r['tickets_opened']} opened, {r['tickets_resolved']} "
        f"resolved; approval requests: {r['approvals']}, {r['approvals_decided']} decided. Audit "
        f"chain: {r['audit']}. Lock waits (pg_stat_activity every 0.5 s): sessions waiting on a "
        f"lock in {locks['with_waiters']} of {locks['samples']} samples, at most "
        f"{locks['peak']} at once.",
        "",
        "Per page, as locust saw it, once all users were signed in (client time: includes TLS, "
        "queueing for a gunicorn thread, and locust's own share of the CPU):",
        "",
        "| page | requests | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in stats:
        name = row["Name"] if row["Name"] != "Aggregated" else "**all pages**"
        label = f"`{row['Type']} {row['Name']}`" if row["Type"] else name
        lines.append(
            f"| {label} | {int(row['Request Count']):,} | {row['50%']} | {row['95%']} | "
            f"{row['99%']} | {float(row['Max Response Time']):.0f} |"
        )
    total = next(row for row in stats if row["Name"] == "Aggregated")
    lines += [
        "",
        f"Throughput: {float(total['Requests/s']):.1f} requests/s.",
        "",
        "Server time per page (gunicorn's request time, the whole test, sign-ins included; "
        "filtered and HTMX variants of a page are one row, since the log has the path only):",
        "",
        "| page | requests | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for key, times in sorted(server.items()):
        if key.endswith("/healthz"):
            continue
        lines.append(
            f"| `{key}` | {len(times):,} | {pct(times, 0.5):.0f} | {pct(times, 0.95):.0f} | "
            f"{max(times):.0f} |"
        )
    api = r["api_ms"]
    lines += [
        "",
        f"`POST /api/runs` as the run starter saw it: p50 {api['p50']:.0f} ms, p95 "
        f"{api['p95']:.0f} ms, max {api['max']:.0f} ms ({r['api_errors']} refused).",
        "",
    ]
    if locks.get("kinds"):
        lines += ["What they waited for (pg_locks, the lock not granted; sessions x samples):", ""]
        lines += [f"- {n} x {kind}" for kind, n in locks["kinds"]]
        lines.append("")
    if locks["top"]:
        lines += ["Statements seen waiting on a lock (samples):", ""]
        lines += [f"- {n} x `{q}`" for q, n in locks["top"]]
        lines += ["", "Lock holders they waited for (state and last statement, samples):", ""]
        lines += [f"- {n} x `{q}`" for q, n in locks["holders"]]
        lines.append("")
    login = server.get("POST /login/", [0.0])
    steady = [t for key, ts in server.items() if key != "POST /login/" for t in ts]
    lines += [
        "Reading it:",
        "",
        f"- Zero server errors is the goal; this run: {r['server_errors']}. Every run ended final "
        "or paused, and the audit chain verified after the test.",
        f"- Signing in is the slowest request (server p50 {pct(login, 0.5):.0f} ms): Django's "
        "PBKDF2 password hash (1,000,000 iterations) is slow on purpose, and 50 of them in 50 s "
        "take a large share of 2 cores. That is why users sign in one a second and the client "
        "table starts once everyone is in.",
        f"- The gap between the client and the server columns (server p95 of every other page: "
        f"{pct(steady, 0.95):.0f} ms) is waiting for a CPU: locust, gunicorn, the Celery worker, "
        "the simulator and Postgres share 2 cores with other engineers' work. A load generator "
        "on another machine and more cores for the web processes would close most of it.",
        (
            f"- The audit sequencer's advisory lock was waited on in {locks['audit_lock']} "
            "session-samples. Audit appends of a run lock only that run's head row; the "
            "advisory lock is taken by the sequencer's pass and by run-less events (exports, "
            "price changes), never on the step path (docs/architecture.md, Audit hash chain)."
            if "audit_lock" in locks
            else "- (This report predates the lock-kind sampling.)"
        ),
        "",
    ]
    lines += r.get("notes", [])
    write_section("## Load", "\n".join(lines).rstrip() + "\n", path=path)
