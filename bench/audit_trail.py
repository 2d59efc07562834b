"""The audit trail page at 1,000,000 events: keyset pages and every filter under 100 ms p95.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/audit_trail.py [--events 1000000] [--requests 30]
    bash scripts/with-services.sh -- python bench/audit_trail.py --quick
    # profiling: load once, then measure, explain and profile again and again
    bash scripts/with-services.sh -- python bench/audit_trail.py --keep-db --pages search --explain --profile

Creates a throw-away database (``<NAME>_trail``, dropped afterwards), runs a real run of
bench/loop_workflow.py through the engine in-process (real model calls, tool calls and
hash-chained events, whose tool outputs the search must find), bulk-loads 10,000 runs with
their calls and tickets (bench/dashboard.py's loader), then ``--events`` audit events in SQL
(INSERT ... SELECT over generate_series): spread over those runs, twelve kinds, four actors,
payloads naming tickets and approval requests, two seconds apart, with a handful holding a
rare token. The pages are measured through the real views with Django's test client as the
auditor: p50 and p95 of ``--requests`` requests and the number of SQL queries. The bulk
events' hashes are not a valid chain (no page checks them; ``verify_audit`` would fail).
Results go to bench/RESULTS.md, section "Audit trail page".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dashboard  # noqa: E402
from bench._results import reproduce, write_section  # noqa: E402
from bench._workers import LOOP_ENV, machine  # noqa: E402

SECTION = "## Audit trail page"
RUNS = 10_000
KINDS = [
    "model.called", "tool.called", "tool.called", "tool.called", "run.running", "run.queued",
    "run.succeeded", "ticket.opened", "ticket.claimed", "ticket.resolved", "approval.decided",
    "estimate.made",
]  # fmt: skip
RARE = "TX-BENCH-RARE-7"
TOOL_TX = "TX-BENCH-TOOL-1"
PAGE_SECONDS = 15
MIN_REQUESTS = 5


def setup() -> None:
    os.environ.update(LOOP_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_trail"


def load_events(total: int) -> float:
    """Add events until the trail holds ``total``; seconds taken."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    began = time.perf_counter()
    users = dict(get_user_model().objects.values_list("username", "pk"))
    actors = ["engine", "operator", "reviewer", "manager"]
    with transaction.atomic(), connection.cursor() as c:
        c.execute("SELECT COALESCE(MAX(seq), 0) FROM orchestration_auditevent")
        base = c.fetchone()[0]
        c.execute(
            "CREATE TEMP TABLE bench_runs ON COMMIT DROP AS "
            "SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM orchestration_run"
        )
        c.execute("SELECT count(*) FROM bench_runs")
        runs = c.fetchone()[0]
        c.execute(
            """
            INSERT INTO orchestration_auditevent
                (seq, run_id, kind, actor_id, actor_label, payload, created_at, prev_hash, hash,
                 run_seq, run_prev_hash, payload_digest, payload_purged_at, key_id, mac, chain_hash, format)
            SELECT %(base)s + i, r.id,
                   (%(kinds)s::text[])[1 + i %% %(nkinds)s],
                   (%(actor_ids)s::int[])[1 + i %% 4],
                   (%(actors)s::text[])[1 + i %% 4],
                   CASE
                     WHEN i %% %(nkinds)s IN (7, 8, 9) THEN jsonb_build_object('ticket', i %% 50000, 'reason', 'tool_error', 'message', 'bench event ' || i)
                     WHEN i %% %(nkinds)s = 10 THEN jsonb_build_object('request', i %% 20000, 'decision', 'approved', 'comment', 'bench')
                     WHEN i %% %(nkinds)s IN (1, 2, 3) THEN jsonb_build_object('tool_use_id', 'tu_bench_' || i, 'name', 'fetch_transactions', 'attempt', 1)
                     ELSE jsonb_build_object('i', i)
                   END || jsonb_build_object('note', CASE WHEN i %% 99991 = 7 THEN %(rare)s ELSE 'routine step ' || (i %% 997) END),
                   now() - ((%(total)s - i) * interval '2 seconds'),
                   md5(i::text || 'p') || md5(i::text || 'q'), md5(i::text) || md5(i::text || 'h'),
                   1000000 + i / %(runs)s, '', md5(i::text || 'd') || md5(i::text || 'e'), NULL, '', '',
                   md5(i::text || 'c') || md5(i::text || 'k'), 2
            FROM generate_series(1, %(count)s) AS i
            JOIN bench_runs r ON r.n = i %% %(runs)s
            """,
            {
                "base": base,
                "kinds": KINDS,
                "nkinds": len(KINDS),
                "actor_ids": [users.get(a) for a in actors],
                "actors": actors,
                "rare": RARE,
                "total": total,
                "runs": runs,
                "count": max(0, total - base),
            },
        )
        # One bulk tool call holds a transaction id, and one bulk tool.called event records it
        # (same run, same tool_use_id), as the engine writes them.
        c.execute(
            "UPDATE orchestration_toolcall SET output = jsonb_build_object('txn_id', %s) "
            "WHERE id = (SELECT tc.id FROM orchestration_toolcall tc JOIN orchestration_auditevent e "
            "ON e.run_id = tc.run_id AND e.kind = 'tool.called' ORDER BY tc.id LIMIT 1) "
            "RETURNING run_id, tool_use_id",
            [TOOL_TX],
        )
        run_id, tool_use_id = c.fetchone()
        c.execute(
            "UPDATE orchestration_auditevent SET payload = payload || jsonb_build_object('tool_use_id', %s) "
            "WHERE id = (SELECT id FROM orchestration_auditevent WHERE run_id = %s "
            "AND kind = 'tool.called' ORDER BY id LIMIT 1)",
            [tool_use_id, run_id],
        )
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE orchestration_auditevent")
        c.execute("VACUUM ANALYZE orchestration_toolcall")
    return time.perf_counter() - began


def pages(long_run: Any) -> list[tuple[str, str]]:
    from django.urls import reverse

    from orchestration.models import AuditEvent, Run

    trail = reverse("audit_trail")
    total = AuditEvent.objects.count()
    middle = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)[total // 2]
    bulk_run = Run.objects.exclude(pk=long_run.pk).order_by("pk").values_list("pk", flat=True)[77]
    day = (
        AuditEvent.objects.order_by("seq").values_list("created_at", flat=True)[total // 4]
    ).date()
    return [
        ("first page", trail),
        ("a page deep in the trail (keyset cursor)", f"{trail}?after={middle}"),
        ("kind", f"{trail}?kind=ticket.resolved"),
        ("kind prefix", f"{trail}?kind=ticket.*"),
        ("actor", f"{trail}?actor=reviewer"),
        ("actor + kind", f"{trail}?actor=reviewer&kind=approval.decided"),
        ("actor + kind, matching nothing", f"{trail}?actor=manager&kind=approval.decided"),
        ("workflow", f"{trail}?workflow=payment_approval"),
        ("one run", f"{trail}?run={bulk_run}"),
        ("one ticket", f"{trail}?ticket=4243"),
        ("one approval", f"{trail}?approval=4242"),
        ("a day, long ago", f"{trail}?since={day}&until={day}"),
        ("search, a rare word in payloads", f"{trail}?q={RARE}"),
        ("search, a transaction id in a tool's output", f"{trail}?q={TOOL_TX}"),
        ("search, a common word (many matches)", f"{trail}?q=routine"),
        ("what one person did, 30 days", reverse("person_activity", args=["manager"])),
    ]


def _selected(label: str, only: str) -> bool:
    return not only or any(part.strip() and part.strip() in label for part in only.split(","))


def profile(urls: list[tuple[str, str]]) -> None:
    """Where a page's Python time goes: cProfile of one request, our code only."""
    import cProfile
    import pstats

    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="auditor"))
    for label, url in urls:
        client.get(url)
        prof = cProfile.Profile()
        prof.enable()
        client.get(url)
        prof.disable()
        print(f"\n== {label}")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(
            r"/(orchestration|reviews|costs|templates|template)/", 25
        )


def measure(urls: list[tuple[str, str]], requests: int) -> dict[str, dict[str, float]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="auditor"))
    out = {}
    for label, url in urls:
        client.get(url)
        times, queries, rows, sql_ms, slowest = [], 0, 0, [], ""
        deadline = time.perf_counter() + PAGE_SECONDS
        for i in range(requests):
            if i >= MIN_REQUESTS and time.perf_counter() > deadline:
                break
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = len(captured.captured_queries)
            sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))["sql"]
            rows = response.content.count(b'class="trail-event"')
        times.sort()
        out[label] = {
            "p50": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "queries": queries,
            "rows": rows,
            "sql_p50": statistics.median(sql_ms),
            "slowest": slowest,
            "n": len(times),
        }
    return out


def export_seconds(run_id: Any) -> tuple[float, int]:
    """Time to stream one run's JSONL export (with its proof), and its lines."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(get_user_model().objects.get(username="auditor"))
    began = time.perf_counter()
    response = client.get(reverse("audit_trail_export", args=["jsonl"]) + f"?run={run_id}")
    lines = sum(1 for _ in response.streaming_content)
    return time.perf_counter() - began, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=30, help="requests per page (default 30)")
    parser.add_argument(
        "--quick", action="store_true", help="100,000 events, 5 requests; RESULTS.md untouched"
    )
    parser.add_argument("--no-results", action="store_true", help="print the table only")
    parser.add_argument(
        "--explain", action="store_true", help="print each page's slowest query's plan"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print, per page, a cProfile of one request (our code, top 25 by cumulative time)",
    )
    parser.add_argument(
        "--pages",
        default="",
        help="only the pages whose label contains one of these comma-separated texts",
    )
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="reuse <NAME>_trail when it already holds the data (new migrations applied) and keep it "
        "afterwards: for profiling round after round; drop it with a run without --keep-db",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.requests = 100_000, 5
    if not 10_000 <= args.events <= 5_000_000 or not 1 <= args.requests <= 200:
        parser.error("--events must be 10,000..5,000,000 and --requests 1..200")
    host = machine()
    setup()
    from django.core.management import call_command
    from django.db import connection

    from orchestration.models import AuditEvent, Run

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep_db)
    try:
        run = Run.objects.filter(workflow_name="bench_loop").order_by("created_at").first()
        if run is None or AuditEvent.objects.count() < args.events:
            if args.keep_db:  # a kept database without (all) the data: start afresh
                connection.creation.destroy_test_db(old_name, verbosity=0)
                connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
            call_command("seed_demo", verbosity=0)
            run = dashboard.long_run(20)
            runs_s = dashboard.load(dashboard.templates(run), 0, RUNS)
            events_s = load_events(args.events)
        else:
            runs_s = events_s = 0.0
            print("reusing the kept database", flush=True)
        total = AuditEvent.objects.count()
        print(
            f"{total:,} events over {RUNS:,} runs (runs {runs_s:.0f} s, events {events_s:.0f} s)",
            flush=True,
        )
        urls = [(label, url) for label, url in pages(run) if _selected(label, args.pages)]
        results = measure(urls, args.requests)
        if args.profile:
            profile(urls)
        if args.explain:
            with connection.cursor() as c:
                for label, r in results.items():
                    c.execute("EXPLAIN (ANALYZE, BUFFERS) " + r["slowest"])
                    plan = "\n".join(row[0] for row in c.fetchall())
                    print(f"--- {label}\n{r['slowest'][:300]}\n{plan}")
        export_s, export_lines = export_seconds(run.pk)
    finally:
        if args.keep_db:
            connection.close()
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    lines = [
        "| page | p50 (ms) | p95 (ms) | SQL p50 (ms) | queries | rows | p95 < 100 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        ok = "yes" if r["p95"] < 100 else "**no**"
        lines.append(
            f"| {label} | {r['p50']:.0f} | {r['p95']:.0f} | {r['sql_p50']:.0f} | {r['queries']} | {r['rows']} | {ok} |"
        )
    print("\n".join(lines))
    print(
        f"one run's JSONL export with its proof: {export_lines} lines in {export_s * 1000:.0f} ms"
    )
    if not (args.quick or args.no_results or args.pages or args.keep_db):
        command = f"bash scripts/with-services.sh -- python bench/audit_trail.py --events {args.events} --requests {args.requests}"
        text = [
            SECTION,
            "",
            reproduce(command, host),
            "",
            f"Data: {total:,} audit events over {RUNS:,} runs; as the auditor, through the real "
            "views. Rows: events on the page (50 at most).",
            "",
            *lines,
            "",
            f"One run's JSONL export with its proof: {export_lines} lines in {export_s * 1000:.0f} ms.",
            "",
        ]
        write_section(SECTION, "\n".join(text), keep_analysis=True)


if __name__ == "__main__":
    main()
