"""Dashboard pages at 100,000 runs, 1,000,000 tool calls and 10,000 open tickets.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/dashboard.py [--runs 100000] [--requests 30]
    bash scripts/with-services.sh -- python bench/dashboard.py --quick

Creates a throw-away database (``<NAME>_dash``, dropped afterwards), runs a real 500-step
run of bench/loop_workflow.py through the engine in-process (real model calls, tool calls
and hash-chained audit events), then bulk-loads runs in SQL (INSERT ... SELECT over
generate_series, cloning one ORM-made row of each table so every column gets its real
default). Each run has one model call asking for ten tools in one turn and ten tool calls;
10% of runs are awaiting review with an open ticket, 1% await approval with a pending
request. The pages are measured at two sizes (10% of ``--runs``, then ``--runs``) through
the real views with Django's test client as the manager (who may see every page): the full
middleware stack, template rendering. For each page: p50 and p95 of ``--requests``
requests and the number of SQL queries, next to the Django admin changelist of the same
table. The operations page and /metrics read roll-ups: after each load the roll-ups are
folded from scratch (the backfill a first deploy does), then the time of an incremental
fold is measured (nothing new, and after 50 runs finished). Results go to
bench/RESULTS.md, section "Dashboard pages".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import reproduce, write_section  # noqa: E402
from bench._workers import LOOP_ENV, ROOT, machine  # noqa: E402

SECTION = "## Dashboard pages"
TOOLS_PER_RUN = 10
PAGE_SECONDS = 15  # sampling budget per page and size, after MIN_REQUESTS requests
MIN_REQUESTS = 5
METRICS_TOKEN = "bench-scrape-token"  # noqa: S105 - a throw-away database's scrape token


def setup() -> None:
    os.environ.update(LOOP_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    settings.METRICS_TOKEN = METRICS_TOKEN
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_dash"


# --- data ---------------------------------------------------------------------------------


def long_run(steps: int) -> Any:
    """A real run of `steps` tool-loop steps, executed in-process one step at a time."""
    from django.contrib.auth import get_user_model

    from orchestration import dispatch, engine
    from orchestration.launch import start_run
    from orchestration.models import Run

    user = get_user_model().objects.get(username="operator")
    with mock.patch.object(dispatch, "enqueue_step", lambda *a, **k: None):
        run = start_run("bench_loop", {"steps": steps}, user)
        for _ in range(steps + 2):
            engine.run_step(run.pk)
            run.refresh_from_db()
            if run.is_final:
                break
    assert run.status == Run.Status.SUCCEEDED, (run.status, run.error)
    return run


def _columns(table: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as c:
        c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_generated = 'NEVER' AND is_identity = 'NO' ORDER BY ordinal_position",
            [table],
        )
        return [r[0] for r in c.fetchall()]


def _clone(
    table: str, template_id: Any, overrides: dict[str, str], source: str, params: list
) -> tuple[str, list]:
    """INSERT ... SELECT copying the template row, with SQL expressions for some columns."""
    cols = _columns(table)
    exprs = [overrides.get(c, f"tpl.{c}") for c in cols]
    unknown = set(overrides) - set(cols)
    assert not unknown, f"{table} has no column(s) {unknown}"
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "  # noqa: S608 - our own names
        f"FROM {table} AS tpl, {source} WHERE tpl.id = %s",
        [*params, template_id],
    )


def templates(run: Any) -> dict[str, Any]:
    """One ORM-made row per table to clone: the long run's own rows, plus a ticket and an approval."""
    from django.utils import timezone

    from reviews.models import ApprovalRequest, EscalationTicket

    mc = run.model_calls.order_by("turn").first()
    tc = run.tool_calls.order_by("pk").first()
    ticket = EscalationTicket.objects.create(
        run=run,
        reason="validation_failed",
        message="tpl",
        context={},
        due_at=timezone.now(),
        status="resolved",
        resolution="fail",
    )
    approval = ApprovalRequest.objects.create(
        run=run,
        estimate_usd=25,
        threshold_usd=20,
        calculation=[],
        status="approved",
        requested_by=run.requested_by,
        expires_at=timezone.now(),
    )
    return {"run": run.pk, "mc": mc.pk, "tc": tc.pk, "ticket": ticket.pk, "approval": approval.pk}


def load(tpl: dict[str, Any], start: int, end: int) -> float:
    """Add runs start+1..end (and their calls, tickets and approvals); seconds taken."""
    from django.db import connection, transaction

    began = time.perf_counter()
    statuses = ["succeeded", "succeeded", "succeeded", "failed", "succeeded", "cancelled"]
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "CREATE TEMP TABLE new_runs (id uuid, status text, created_at timestamptz) ON COMMIT DROP"
        )
        sql, params = _clone(
            "orchestration_run",
            tpl["run"],
            {
                "id": "gen_random_uuid()",
                "workflow_name": "CASE WHEN i %% 4 = 0 THEN 'payment_approval' ELSE 'financial_reporting' END",
                "input": "jsonb_build_object('steps', 10, 'i', i)",
                "status": "CASE WHEN i %% 100 = 50 THEN 'awaiting_approval' WHEN i %% 10 = 1 THEN 'awaiting_review' "
                "ELSE (%s::text[])[1 + (i / 4) %% 6] END",
                "result": "jsonb_build_object('count', 10)",
                "cost_usd": "round((random() * 3)::numeric, 6)",
                "created_at": "now() - (i || ' minutes')::interval",
                "updated_at": "now() - (i || ' minutes')::interval",
                "queued_at": "now() - (i || ' minutes')::interval",
                "started_at": "now() - (i || ' minutes')::interval",
                "finished_at": "CASE WHEN i %% 10 = 1 OR i %% 100 = 50 THEN NULL ELSE now() - (i || ' minutes')::interval END",
                "idempotency_key": "NULL",
            },
            "generate_series(%s, %s) AS i",
            [statuses, start + 1, end],
        )
        c.execute(
            f"WITH ins AS ({sql} RETURNING id, status, created_at) INSERT INTO new_runs SELECT * FROM ins",  # noqa: S608
            params,
        )
        sql, params = _clone(
            "orchestration_modelcall",
            tpl["mc"],
            {
                "run_id": "r.id",
                "turn": "0",
                "attempt": "1",
                "created_at": "r.created_at",
                "finished_at": "r.created_at",
                "cost_usd": "0.05",
            },
            "new_runs AS r",
            [],
        )
        c.execute(sql, params)
        sql, params = _clone(
            "orchestration_toolcall",
            tpl["tc"],
            {
                "run_id": "mc.run_id",
                "model_call_id": "mc.id",
                "tool_use_id": "'tu_' || mc.id || '_' || k",
                "input": "jsonb_build_object('n', k)",
                "output": "jsonb_build_object('n', k + 1)",
                "raw_output": "jsonb_build_object('n', k + 1)",
                "created_at": "mc.created_at",
                "finished_at": "mc.created_at",
            },
            "orchestration_modelcall AS mc JOIN new_runs r ON r.id = mc.run_id, generate_series(1, %s) AS k",
            [TOOLS_PER_RUN],
        )
        c.execute(sql, params)
        sql, params = _clone(
            "reviews_escalationticket",
            tpl["ticket"],
            {
                "run_id": "r.id",
                "status": "'open'",
                "resolution": "''",
                "reason": "(ARRAY['validation_failed','retries_exhausted','ambiguity','tool_error','timeout'])"
                "[1 + (extract(epoch from r.created_at)::bigint / 60) %% 5]",
                "priority": "1 + (extract(epoch from r.created_at)::bigint / 60) %% 4",
                "message": "'The output failed validation: record_count does not match.'",
                "context": "jsonb_build_object('input', jsonb_build_object('steps', 10))",
                "created_at": "r.created_at",
                "due_at": "r.created_at + interval '2 hours'",
                "resolved_at": "NULL",
                "resolved_by_id": "NULL",
                "assignee_id": "NULL",
            },
            "new_runs AS r",
            [],
        )
        c.execute(
            sql.replace("WHERE tpl.id", "WHERE r.status = 'awaiting_review' AND tpl.id"), params
        )
        sql, params = _clone(
            "reviews_approvalrequest",
            tpl["approval"],
            {
                "run_id": "r.id",
                "status": "'pending'",
                "created_at": "r.created_at",
                "expires_at": "now() + (extract(epoch from r.created_at)::bigint %% 1440 || ' minutes')::interval",
                "decided_at": "NULL",
                "decided_by_id": "NULL",
            },
            "new_runs AS r",
            [],
        )
        c.execute(
            sql.replace("WHERE tpl.id", "WHERE r.status = 'awaiting_approval' AND tpl.id"), params
        )
    with connection.cursor() as c:
        for table in (
            "orchestration_run",
            "orchestration_modelcall",
            "orchestration_toolcall",
            "reviews_escalationticket",
            "reviews_approvalrequest",
            "orchestration_auditevent",
        ):
            c.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - began


def fold_times() -> dict[str, float]:
    """Seconds for a fold from scratch (every hour with data), a fold with nothing new, and a
    fold after 50 runs finished (their hour is recomputed)."""
    from django.utils import timezone

    from insight import rollups
    from insight.models import FoldWatermark
    from orchestration.models import Run

    out = {}
    FoldWatermark.objects.all().delete()
    began = time.perf_counter()
    result = rollups.fold()
    out["backfill"] = time.perf_counter() - began
    out["backfill hours"] = result.hours
    began = time.perf_counter()
    rollups.fold()
    out["nothing new"] = time.perf_counter() - began
    recent = list(
        Run.objects.filter(finished_at__isnull=False)
        .order_by("-created_at")
        .values_list("pk", flat=True)[:50]
    )
    Run.objects.filter(pk__in=recent).update(finished_at=timezone.now())
    began = time.perf_counter()
    rollups.fold()
    out["50 runs finished"] = time.perf_counter() - began
    return out


def counts() -> dict[str, int]:
    from orchestration.models import Run, ToolCall
    from reviews.models import ApprovalRequest, EscalationTicket

    return {
        "runs": Run.objects.count(),
        "tool calls": ToolCall.objects.count(),
        "open tickets": EscalationTicket.objects.exclude(status="resolved").count(),
        "pending approvals": ApprovalRequest.objects.filter(status="pending").count(),
    }


def rollups() -> None:
    """What beat keeps in production: the requesters' daily spend (approval queue) and the
    audit chain anchored and signed (the run page verifies from the signed checkpoint)."""
    from costs import requester_spend
    from orchestration import audit

    requester_spend.refresh()
    audit.sign_checkpoint()


# --- measuring ----------------------------------------------------------------------------


def pages(long_run_id: Any, steps: int) -> list[tuple[str, str, str]]:
    """(label, URL, what it is next to): our pages, then the admin changelists of the same tables."""
    from django.urls import reverse

    run_page = reverse("run_detail", args=[long_run_id])
    return [
        ("dashboard", reverse("dashboard"), "ours"),
        ("operations, 7 days", reverse("operations"), "ours"),
        (
            "operations, 90 days, one workflow",
            reverse("operations") + "?days=90&workflow=payment_approval",
            "ours",
        ),
        ("/metrics (a Prometheus scrape)", reverse("metrics"), "ours"),
        ("approvals queue", reverse("approval_queue"), "ours"),
        ("escalation queue", reverse("ticket_queue"), "ours"),
        (
            "escalation queue, filtered (reason, unassigned)",
            reverse("ticket_queue") + "?reason=timeout&assignee=nobody",
            "ours",
        ),
        (
            "runs list, filtered (status + workflow + cost)",
            reverse("run_list") + "?status=failed&workflow=payment_approval&cost_min=1",
            "ours",
        ),
        (
            "runs list, a filter matching nothing (status + workflow)",
            reverse("run_list") + "?status=halted&workflow=payment_approval",
            "ours",
        ),
        ("runs list sorted by cost", reverse("run_list") + "?sort=cost", "ours"),
        (f"run page, {steps} steps", run_page, "ours"),
        ("run page live partial (polled)", reverse("run_live", args=[long_run_id]), "ours"),
        (
            "admin: approval requests, pending",
            "/admin/reviews/approvalrequest/?status__exact=pending",
            "admin",
        ),
        (
            "admin: escalation tickets, open",
            "/admin/reviews/escalationticket/?status__exact=open",
            "admin",
        ),
        (
            "admin: runs, filtered (status + workflow)",
            "/admin/orchestration/run/?status__exact=failed&workflow_name=payment_approval",
            "admin",
        ),
        (
            f"admin: one run's change page ({steps} steps)",
            f"/admin/orchestration/run/{long_run_id}/change/",
            "admin",
        ),
        ("admin: tool calls", "/admin/orchestration/toolcall/", "admin"),
    ]


def _selected(label: str, only: str) -> bool:
    return any(part.strip() and part.strip() in label for part in only.split(","))


def profile(long_run_id: Any, steps: int, only: str) -> None:
    """Where a page's time goes: its SQL (each statement's time, EXPLAIN ANALYZE of the
    slowest) and the Python functions (cProfile, top 15 by cumulative time)."""
    import cProfile
    import pstats

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="manager"))
    for label, url, _kind in pages(long_run_id, steps):
        if not _selected(label, only):
            continue
        client.get(url)
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            client.get(url)
            total = (time.perf_counter() - began) * 1000
        queries = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
        sql_ms = sum(float(q["time"]) for q in queries) * 1000
        print(f"\n== {label}: {total:.0f} ms, {len(queries)} queries, {sql_ms:.0f} ms in SQL")
        for q in queries[:5]:
            print(f"  {float(q['time']) * 1000:6.1f} ms  {q['sql'][:160]}")
        if queries and queries[0]["sql"].lstrip().upper().startswith("SELECT"):
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + queries[0]["sql"])
                print("  slowest, EXPLAIN ANALYZE:")
                plan = [line for (line,) in cursor.fetchall()]
                for line in plan[:25]:
                    print("   ", line)
            if any("Gather" in line for line in plan):
                # Parallel workers start in milliseconds each: on a small busy machine that
                # can cost more than the scans they share. The same query without them:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                    cursor.execute("EXPLAIN (ANALYZE) " + queries[0]["sql"])
                    print("  the same without parallel workers:", cursor.fetchall()[-1][0])
        prof = cProfile.Profile()
        prof.enable()
        client.get(url)
        prof.disable()
        # Our code only (the Django and middleware wrappers are the top of every profile).
        stats = pstats.Stats(prof)
        stats.sort_stats("cumulative").print_stats(
            r"/(orchestration|reviews|costs|insight|templates)/", 25
        )
        # Everything, by own time: template rendering, the ORM, JSON (Django's own functions).
        stats.sort_stats("tottime").print_stats(15)


def measure(
    long_run_id: Any, requests: int, steps: int, only: str = ""
) -> dict[str, dict[str, float]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from orchestration.audit import verify_run, verify_run_live
    from orchestration.models import AuditEvent

    client = Client()
    client.force_login(get_user_model().objects.get(username="manager"))
    out = {}
    for label, url, kind in pages(long_run_id, steps):
        if only and not _selected(label, only):
            continue
        client.get(
            url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )  # warm: templates, caches
        times, queries, size = [], 0, 0
        deadline = time.perf_counter() + PAGE_SECONDS
        for i in range(requests):
            if i >= MIN_REQUESTS and time.perf_counter() > deadline:
                break  # a slow page (the admin's run page) gets fewer samples, not minutes
            headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if url == "/metrics" else {}
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(url, headers=headers)
                times.append((time.perf_counter() - began) * 1000)
            assert response.status_code in (200, 286), (
                url,
                response.status_code,
            )  # 286: stop polling
            queries, size = len(captured.captured_queries), len(response.content)
        times.sort()
        out[label] = {
            "kind": kind,
            "p50": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "queries": queries,
            "kb": size / 1024,
            "n": len(times),
        }
    # The part of the run page that grew with the run: re-hashing its whole audit chain (what
    # verify_audit and the download still do), next to what the page now does: continue from
    # its signed run checkpoint after comparing the run's row versions. Interleaved, so load
    # from elsewhere hits both alike.
    full, signed = [], []
    assert verify_run_live(long_run_id, check_versions=True).ok  # leaves the signed checkpoint
    for _ in range(max(MIN_REQUESTS, requests // 3)):
        for times, check in (
            (full, lambda: verify_run(long_run_id)),
            (signed, lambda: verify_run_live(long_run_id, check_versions=True)),
        ):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                assert check().ok
                times.append((time.perf_counter() - began) * 1000)
            n = len(captured.captured_queries)
        if times is signed:
            signed_queries = n
    events = AuditEvent.objects.filter(run_id=long_run_id).count()
    for label, times, queries in (
        (f"(inside the run page) full chain check, {events:,} events", full, None),
        ("(inside the run page) check from the signed run checkpoint", signed, signed_queries),
    ):
        times.sort()
        out[label] = {
            "kind": "part",
            "p50": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "queries": queries if queries is not None else "-",
            "kb": 0,
            "n": len(times),
        }
    return out


def table(small: dict, large: dict, sizes: tuple[dict, dict]) -> list[str]:
    s, b = sizes
    lines = [
        f"| page | p50 (ms) | p95 (ms) | queries | p95 at {s['runs']:,} runs (ms) | queries at {s['runs']:,} | HTML (KB) | p95 < 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    large_n = max(r["n"] for r in large.values() if r["kind"] != "part")
    for label, r in large.items():
        sm = small.get(label, r)
        grows = " (grows)" if r["queries"] != sm["queries"] else ""
        ok = "yes" if r["p95"] < 100 else "**no**"
        verdict = ok if r["kind"] == "ours" else f"({r['kind']})"
        if r["n"] != large_n and r["kind"] != "part":
            label = f"{label} ({r['n']} requests)"
        lines.append(
            f"| {label} | {r['p50']:.0f} | {r['p95']:.0f} | {r['queries']}{grows} | {sm['p95']:.0f} | "
            f"{sm['queries']} | {r['kb']:.0f} | {verdict} |"
        )
    return lines


def fold_line(small: dict[str, float], large: dict[str, float], sizes: tuple[dict, dict]) -> str:
    s, b = sizes
    return (
        f"Roll-ups (what the operations page and /metrics read): a fold from scratch took "
        f"{large['backfill']:.1f} s at {b['runs']:,} runs ({large['backfill hours']:,} hours with data; "
        f"{small['backfill']:.1f} s at {s['runs']:,}); an incremental fold {large['nothing new'] * 1000:.0f} ms "
        f"with nothing new and {large['50 runs finished'] * 1000:.0f} ms after 50 runs finished "
        f"({small['nothing new'] * 1000:.0f} ms and {small['50 runs finished'] * 1000:.0f} ms at {s['runs']:,})."
    )


def write_results(
    lines: list[str], command: str, host: str, sizes: tuple, load_s: float, long_s: float
) -> None:
    b = sizes[1]
    text_lines = [
        SECTION,
        "",
        reproduce(command, host),
        "",
        f"Data: {b['runs']:,} runs, {b['tool calls']:,} tool calls, {b['open tickets']:,} open tickets, "
        f"{b['pending approvals']:,} pending approvals (bulk load {load_s:.0f} s); the 500-step run was "
        f"executed by the engine in {long_s:.0f} s.",
        "",
        *lines,
        "",
    ]
    write_section(SECTION, "\n".join(text_lines), keep_analysis=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=100_000, help="runs at the large size (default 100,000)"
    )
    parser.add_argument("--requests", type=int, default=30, help="requests per page (default 30)")
    parser.add_argument(
        "--steps", type=int, default=500, help="steps of the long run (default 500)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5,000 runs, 50 steps, 5 requests; RESULTS.md untouched",
    )
    parser.add_argument("--no-results", action="store_true", help="print the table only")
    parser.add_argument(
        "--pages",
        default="",
        help="only the pages whose label contains one of these comma-separated texts "
        "(e.g. 'run page,approvals'); RESULTS.md untouched",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print, per page measured, its SQL (EXPLAIN ANALYZE of the slowest) and a cProfile",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.requests, args.steps = 5_000, 5, 50
    if (
        not 1_000 <= args.runs <= 1_000_000
        or not 1 <= args.requests <= 200
        or not 1 <= args.steps <= 500
    ):
        parser.error("--runs must be 1,000..1,000,000, --requests 1..200, --steps 1..500")
    host = machine()
    setup()
    from django.core.management import call_command
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        call_command("seed_demo", verbosity=0)
        began = time.perf_counter()
        run = long_run(args.steps)
        long_s = time.perf_counter() - began
        tpl = templates(run)
        small_n = args.runs // 10
        load_s = load(tpl, 0, small_n)
        rollups()
        small_counts = counts()
        print(f"small: {small_counts} (loaded in {load_s:.0f} s)", flush=True)
        small_folds = fold_times()
        print(f"small folds: {small_folds}", flush=True)
        small = measure(run.pk, args.requests, args.steps, args.pages)
        load_s += load(tpl, small_n, args.runs)
        rollups()
        large_counts = counts()
        print(f"large: {large_counts} (loaded in {load_s:.0f} s in all)", flush=True)
        large_folds = fold_times()
        print(f"large folds: {large_folds}", flush=True)
        large = measure(run.pk, args.requests, args.steps, args.pages)
        if args.profile:
            profile(run.pk, args.steps, args.pages)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    lines = table(small, large, (small_counts, large_counts))
    lines += ["", fold_line(small_folds, large_folds, (small_counts, large_counts))]
    print("\n".join(lines))
    if not (args.quick or args.no_results or args.pages):
        command = f"bash scripts/with-services.sh -- python bench/dashboard.py --runs {args.runs} --requests {args.requests}"
        write_results(lines, command, host, (small_counts, large_counts), load_s, long_s)
        print(f"written to {ROOT / 'bench' / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
