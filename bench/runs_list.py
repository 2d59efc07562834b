"""Runs list and export at 100,000 runs.

Creates a throw-away database (``<NAME>_bench``), bulk-inserts N runs (default 100,000) with
one model call and one tool call each (tool outputs carry transaction ids, so search has
something to find), then measures through the real views (Django test client, the full
middleware stack, as the auditor):

- the first page, a deep keyset page (~90% in) by created and by cost, a filtered page
  (workflow + date range + cost range), a full-text search for one transaction id;
- the streamed CSV export of every run: wall time, peak Python heap (tracemalloc) and the
  growth of the process's peak RSS.

Run: ``make bench`` or ``bash scripts/with-services.sh -- python -m bench runs_list``.
``BENCH_RUNS=20000`` for a quicker pass. Results are printed as a Markdown table.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
import tracemalloc

import django

N_RUNS = int(os.environ.get("BENCH_RUNS", "100000"))


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench"


def _insert(n: int) -> None:
    from django.db import connection

    from orchestration.models import WorkflowVersion

    user_id = _user().pk
    wv = WorkflowVersion.objects.create(
        name="financial_reporting",
        version="bench",
        content_hash="bench",
        title="Bench",
        system_prompt="p",
        tools=[],
        input_schema={},
        output_schema={},
        model_roles={},
        constraints={},
    )
    wv2 = WorkflowVersion.objects.create(
        name="payment_approval",
        version="bench",
        content_hash="bench2",
        title="Bench",
        system_prompt="p",
        tools=[],
        input_schema={},
        output_schema={},
        model_roles={},
        constraints={},
    )
    statuses = ["succeeded", "succeeded", "succeeded", "failed", "awaiting_review", "cancelled"]
    with connection.cursor() as c:
        c.execute(
            """
            INSERT INTO orchestration_run (id, workflow_version_id, workflow_name, requested_by_id, input, options,
                status, result, error, cost_usd, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
                pending_note, steps_taken, created_at, updated_at, finished_at)
            SELECT gen_random_uuid(), CASE WHEN i %% 4 = 0 THEN %s ELSE %s END,
                   CASE WHEN i %% 4 = 0 THEN 'payment_approval' ELSE 'financial_reporting' END, %s,
                   jsonb_build_object('date', to_char(now() - (i || ' minutes')::interval, 'YYYY-MM-DD')),
                   '{}', (%s::text[])[1 + i %% 6],
                   jsonb_build_object('report_id', 'RPT-' || i, 'status', 'success'), '',
                   round((random() * 3)::numeric, 6), 9000 + i %% 500, 400, 0, 0, '', 6,
                   now() - (i || ' minutes')::interval, now(), now() - (i || ' minutes')::interval
            FROM generate_series(1, %s) AS i
            """,
            [wv2.pk, wv.pk, user_id, statuses, n],
        )
        c.execute(
            """
            INSERT INTO orchestration_modelcall (run_id, turn, attempt, role, model, status, request_content,
                response_content, stop_reason, input_tokens, output_tokens, cache_write_5m_tokens,
                cache_write_1h_tokens, cache_read_tokens, cost_usd, is_batch, sdk_attempts, request_id, error,
                created_at)
            SELECT id, 0, 1, 'orchestrator', 'claude-opus-4-6', 'ok', '[{"type": "text", "text": "{}"}]',
                   '[{"type": "tool_use", "id": "tu", "name": "fetch_transactions", "input": {}}]', 'tool_use',
                   9000, 400, 0, 0, 0, cost_usd, false, 1, '', '', created_at
            FROM orchestration_run
            """
        )
        c.execute(
            """
            INSERT INTO orchestration_toolcall (run_id, model_call_id, tool_use_id, name, tool_version, attempt,
                status, settled, input, output, raw_output, validation_errors, error, created_at)
            SELECT mc.run_id, mc.id, 'tu_' || mc.id, 'fetch_transactions', '2', 1, 'ok', true,
                   jsonb_build_object('date', r.input->>'date'),
                   jsonb_build_object('record_count', 3, 'transactions', jsonb_build_array(
                       jsonb_build_object('txn_id', 'TX-' || mc.id || '-001', 'amount', 120.5,
                                          'counterparty', 'Acme Supplies', 'description', 'demo transaction'),
                       jsonb_build_object('txn_id', 'TX-' || mc.id || '-002', 'amount', 99.0,
                                          'counterparty', 'Koala Energy', 'description', 'demo transaction'),
                       jsonb_build_object('txn_id', 'TX-' || mc.id || '-003', 'amount', 12.0,
                                          'counterparty', 'Reef Insurance', 'description', 'demo transaction'))),
                   NULL, '[]', '', mc.created_at
            FROM orchestration_modelcall mc JOIN orchestration_run r ON r.id = mc.run_id
            """
        )
        c.execute(
            "ANALYZE orchestration_run; ANALYZE orchestration_toolcall; ANALYZE orchestration_modelcall"
        )


def _user():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    user, _ = get_user_model().objects.get_or_create(username="bench_auditor")
    group, _ = Group.objects.get_or_create(name="auditors")
    group.permissions.add(Permission.objects.get(codename="view_all_runs"))
    user.groups.add(group)
    return user


def _timed(client, url: str, params: dict, repeat: int = 5) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, params)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
        rows = response.content.decode().count('<td><a href="/runs/')
    return statistics.median(times), rows


def _measure() -> list[tuple[str, str, str]]:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from orchestration.models import Run, ToolCall
    from orchestration.run_search import encode_cursor, parse_filters

    client = Client()
    client.force_login(_user())
    url = reverse("run_list")
    results = []
    ms, rows = _timed(client, url, {})
    results.append(("runs page 1 (newest first)", f"{ms:.0f} ms", f"{rows} rows"))
    deep = Run.objects.order_by("-created_at", "-id")[int(N_RUNS * 0.9)]
    ms, rows = _timed(client, url, {"after": encode_cursor(deep, parse_filters({}))})
    results.append(
        (f"deep keyset page (after row {int(N_RUNS * 0.9):,})", f"{ms:.0f} ms", f"{rows} rows")
    )
    cost_filters = parse_filters({"sort": "cost"})
    deep_cost = Run.objects.order_by("-cost_usd", "-id")[int(N_RUNS * 0.9)]
    ms, rows = _timed(
        client, url, {"sort": "cost", "after": encode_cursor(deep_cost, cost_filters)}
    )
    results.append(("deep keyset page sorted by cost", f"{ms:.0f} ms", f"{rows} rows"))
    days = max(2, N_RUNS // 1440 // 2)
    from django.utils import timezone

    params = {
        "workflow": "payment_approval",
        "cost_min": "1",
        "cost_max": "2",
        "date_from": str(timezone.localdate() - timezone.timedelta(days=days)),
        "date_to": str(timezone.localdate() - timezone.timedelta(days=1)),
    }
    ms, rows = _timed(client, url, params)
    results.append(("filtered: workflow + date range + cost range", f"{ms:.0f} ms", f"{rows} rows"))
    mc_id = ToolCall.objects.order_by("id")[N_RUNS // 2].model_call_id
    ms, rows = _timed(client, url, {"q": f"TX-{mc_id}-002"})
    results.append(("full-text search for one transaction id", f"{ms:.0f} ms", f"{rows} rows"))
    ms, rows = _timed(client, url, {"q": "Koala", "workflow": "financial_reporting"})
    results.append(
        ("full-text search matching every run (+ workflow)", f"{ms:.0f} ms", f"{rows} rows")
    )

    connection.close()  # the export opens its own server-side cursor
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    response = client.get(reverse("run_export", args=["csv"]))
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += 1
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    results.append(
        (
            f"CSV export of all {lines - 1:,} runs",
            f"{elapsed:.1f} s",
            f"{size / 1e6:.1f} MB streamed",
        )
    )
    results.append(("export peak Python heap (tracemalloc)", f"{peak / 1e6:.1f} MB", ""))
    results.append(("export growth of peak RSS", f"{rss_growth / 1024:.1f} MB", ""))
    return results


def main() -> None:
    _setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        start = time.perf_counter()
        _insert(N_RUNS)
        inserted = time.perf_counter() - start
        results = _measure()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(
        f"\n{N_RUNS:,} runs, {N_RUNS:,} model calls and {N_RUNS:,} tool calls inserted in {inserted:.1f} s\n"
    )
    print("| measurement | time / size | rows |")
    print("|---|---|---|")
    for name, value, extra in results:
        print(f"| {name} | {value} | {extra} |")


if __name__ == "__main__":
    main()
