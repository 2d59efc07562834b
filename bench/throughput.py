"""Throughput: tool-loop steps per second through the workers, 1 and then 2 worker processes.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/throughput.py [--runs 40] [--steps 10]
    bash scripts/with-services.sh -- python bench/throughput.py --quick

The simulated Messages API answers at zero latency (in-process, in-memory state), so the
workers spend their time on the engine itself: Postgres round trips, the audit chain, the
SDK and the policy. For each worker size, `--runs` runs of bench/loop_workflow.py
(`--steps` tool calls and one final answer each) are started at once on a real
`celery worker` (prefork, `-c 1` then `-c 2`), and we wait until every run succeeded.
Steps per second = model calls / (last finished_at - first queued_at). A warm-up run
before each size is not counted. Results go to bench/RESULTS.md, section "Throughput".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import reproduce, write_section  # noqa: E402
from bench._workers import (  # noqa: E402
    ROOT,
    Worker,
    machine,
    purge_queues,
    setup_django,
    start_loop_run,
    wait_final,
)

SECTION = "## Throughput"


def measure(processes: int, runs: int, steps: int) -> dict[str, float]:
    from django.db.models import Max, Min

    from orchestration.models import ModelCall, Run, ToolCall

    purge_queues()
    worker = Worker(concurrency=processes, name="throughput")
    try:
        warm = start_loop_run(2)
        wait_final([warm.pk], timeout=60)
        ids = [start_loop_run(steps).pk for _ in range(runs)]
        wait_final(ids, timeout=120 + runs * steps * 2)
    finally:
        worker.stop()
    span = Run.objects.filter(pk__in=ids).aggregate(start=Min("queued_at"), end=Max("finished_at"))
    seconds = (span["end"] - span["start"]).total_seconds()
    calls = ModelCall.objects.filter(run_id__in=ids).count()
    tools = ToolCall.objects.filter(run_id__in=ids, status="ok").count()
    assert calls == runs * (steps + 1), calls
    assert tools == runs * steps, tools
    return {
        "processes": processes,
        "runs": runs,
        "calls": calls,
        "seconds": seconds,
        "steps_per_s": calls / seconds,
    }


def table(rows: list[dict[str, float]]) -> list[str]:
    base = rows[0]["steps_per_s"]
    lines = [
        "| worker processes | runs x model calls | wall (s) | steps / s | speed-up |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['runs']} x {r['calls'] // r['runs']} | {r['seconds']:.1f} | "
            f"**{r['steps_per_s']:.1f}** | {r['steps_per_s'] / base:.2f}x |"
        )
    return lines


def write_results(rows: list[dict[str, float]], command: str, host: str) -> None:
    lines = [
        SECTION,
        "",
        reproduce(command, host),
        "",
        *table(rows),
        "",
    ]
    write_section(SECTION, "\n".join(lines), keep_analysis=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=40, help="concurrent runs per size (default 40)"
    )
    parser.add_argument("--steps", type=int, default=10, help="tool calls per run (default 10)")
    parser.add_argument(
        "--quick", action="store_true", help="10 runs of 3 steps; RESULTS.md untouched"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps = 10, 3
    if not 1 <= args.runs <= 500 or not 1 <= args.steps <= 200:
        parser.error("--runs must be 1..500 and --steps 1..200")
    host = machine()
    setup_django()
    rows = [measure(processes, args.runs, args.steps) for processes in (1, 2)]
    print("\n".join(table(rows)))
    if not args.quick:
        command = f"bash scripts/with-services.sh -- python bench/throughput.py --runs {args.runs} --steps {args.steps}"
        write_results(rows, command, host)
        print(f"written to {ROOT / 'bench' / 'RESULTS.md'}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
