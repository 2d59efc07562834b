"""Throughput: tool-loop steps per second through the workers, at 1, 2 and 4 worker processes.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/throughput.py [--runs 40] [--steps 10]
        [--processes 1,2,4] [--repeat 3]
    bash scripts/with-services.sh -- python bench/throughput.py --quick

The simulated Messages API answers at zero latency (in-process, in-memory state), so the
workers spend their time on the engine itself: Postgres round trips, the audit chain, the
SDK and the policy. For each worker size, `--runs` runs of bench/loop_workflow.py
(`--steps` tool calls and one final answer each) are started at once on a real
`celery worker` (prefork, `-c 1` then `-c 2`), and we wait until every run succeeded.
Steps per second = model calls / (last finished_at - first queued_at). A warm-up run
before each size is not counted. ``--repeat`` measures each size that many times, in turn
(1, 2, 4, 1, 2, 4, ...) so a burst of load from elsewhere hits every size alike, and reports
the median. The audit sequencer runs as beat would (``audit.anchor()`` every
AUDIT_ANCHOR_SECONDS in a thread of this process), and lock waits are sampled from
pg_stat_activity and pg_locks every 0.1 s (bench/_locks.py): the table says how often a
session waited on a lock, and how often on the audit lock, which every append used to take.
After each size the whole audit trail is verified. The CPU time the worker, Postgres and
Redis used (bench/_cpu.py, from /proc) is divided by the steps made: on N cores the steps per
second cannot exceed N / that CPU per step, whatever the number of workers; how busy the
rest of the machine was meanwhile (this script, other processes) is reported beside it. Results go to
bench/RESULTS.md, section "Throughput".
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cpu import CpuMeter, postmaster_pid, redis_pid  # noqa: E402
from bench._locks import AUDIT_LOCK, LockWaits  # noqa: E402
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
CORES = os.cpu_count() or 1


class Sequencer:
    """The audit sequencer as beat runs it: anchor, then sign, every AUDIT_ANCHOR_SECONDS."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from django.conf import settings
        from django.db import connection

        from orchestration import audit

        try:
            while not self._stop.wait(settings.AUDIT_ANCHOR_SECONDS):
                audit.sign_checkpoint()  # anchors first
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def measure(processes: int, runs: int, steps: int) -> dict[str, float]:
    from django.conf import settings
    from django.db import connection
    from django.db.models import Max, Min

    from orchestration import audit
    from orchestration.models import ModelCall, Run, ToolCall

    purge_queues()
    worker = Worker(concurrency=processes, name="throughput")
    sequencer = Sequencer()
    try:
        warm = start_loop_run(2)
        wait_final([warm.pk], timeout=60)
        with connection.cursor() as cursor:
            postmaster = postmaster_pid(cursor)
        meter = CpuMeter(worker.proc.pid, postmaster, redis_pid(settings.CELERY_BROKER_URL))
        ids = [start_loop_run(steps).pk for _ in range(runs)]
        db = settings.DATABASES["default"]
        url = os.environ.get("DATABASE_URL") or (
            f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
        locks = LockWaits(url, interval=0.1)
        try:
            wait_final(ids, timeout=120 + runs * steps * 2)
        finally:
            locks.stop()
            cpu = meter.stop()
    finally:
        sequencer.stop()
        worker.stop()
    span = Run.objects.filter(pk__in=ids).aggregate(start=Min("queued_at"), end=Max("finished_at"))
    seconds = (span["end"] - span["start"]).total_seconds()
    calls = ModelCall.objects.filter(run_id__in=ids).count()
    tools = ToolCall.objects.filter(run_id__in=ids, status="ok").count()
    assert calls == runs * (steps + 1), calls
    assert tools == runs * steps, tools
    audit.sign_checkpoint()
    report = audit.verify_chain()
    assert report.ok and not report.pending, report.problem
    return {
        "processes": processes,
        "runs": runs,
        "calls": calls,
        "seconds": seconds,
        "steps_per_s": calls / seconds,
        "lock_samples": locks.samples,
        "waiting_samples": locks.waiting_samples,
        "audit_lock": locks.kinds.get(AUDIT_LOCK, 0),
        "kinds": locks.kinds.most_common(3),
        # CPU per step of the parts (ms), and how busy the rest of the machine was meanwhile.
        "cpu_worker": cpu.worker * 1000 / calls,
        "cpu_postgres": cpu.postgres * 1000 / calls,
        "cpu_redis": cpu.redis * 1000 / calls,
        "cpu_others": max(0.0, cpu.machine - cpu.ours) / (seconds * CORES),
    }


def median_rows(trials: list[dict]) -> dict:
    """The trial with the median steps/s, with every trial's steps/s beside it."""
    ordered = sorted(trials, key=lambda r: r["steps_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["all"] = [r["steps_per_s"] for r in trials]
    row["audit_lock"] = sum(r["audit_lock"] for r in trials)
    return row


def cpu_per_step(r: dict) -> float:
    return r["cpu_worker"] + r["cpu_postgres"] + r["cpu_redis"]


def table(rows: list[dict]) -> list[str]:
    base = rows[0]["steps_per_s"]
    lines = [
        "| worker processes | runs x model calls | wall (s) | steps / s (median) | each trial | speed-up | CPU per step: worker + Postgres + Redis (ms) | at most, on this machine's cores | rest of the machine busy (this script, other processes) | samples with a lock wait | audit lock waits | waited most on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        trials = ", ".join(f"{v:.1f}" for v in r.get("all", [r["steps_per_s"]]))
        kinds = "; ".join(f"{k} ({n})" for k, n in r["kinds"]) or "-"
        cpu = cpu_per_step(r)
        lines.append(
            f"| {r['processes']} | {r['runs']} x {r['calls'] // r['runs']} | {r['seconds']:.1f} | "
            f"**{r['steps_per_s']:.1f}** | {trials} | {r['steps_per_s'] / base:.2f}x | "
            f"{r['cpu_worker']:.1f} + {r['cpu_postgres']:.1f} + {r['cpu_redis']:.1f} = {cpu:.1f} | "
            f"{CORES * 1000 / cpu:.1f} steps/s ({CORES * 1000 / cpu / base:.2f}x) | "
            f"{r['cpu_others']:.0%} | "
            f"{r['waiting_samples']} of {r['lock_samples']} | {r['audit_lock']} | {kinds} |"
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
        "--processes", default="1,2,4", help="worker sizes, comma-separated (default 1,2,4)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="trials per size; the median counts (default 3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="10 runs of 3 steps, once; RESULTS.md untouched"
    )
    parser.add_argument("--no-results", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.repeat = 10, 3, 1
    try:
        sizes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error("--processes must be numbers separated by commas, e.g. 1,2,4")
    if not 1 <= args.runs <= 500 or not 1 <= args.steps <= 200:
        parser.error("--runs must be 1..500 and --steps 1..200")
    if not sizes or not all(1 <= p <= 16 for p in sizes) or not 1 <= args.repeat <= 9:
        parser.error("--processes must each be 1..16 and --repeat 1..9")
    host = machine()
    setup_django()
    trials: dict[int, list[dict]] = {p: [] for p in sizes}
    for _ in range(args.repeat):
        for processes in sizes:
            trials[processes].append(measure(processes, args.runs, args.steps))
            print(
                f"{processes} processes: {trials[processes][-1]['steps_per_s']:.1f} steps/s",
                flush=True,
            )
    rows = [median_rows(trials[p]) for p in sizes]
    print("\n".join(table(rows)))
    if not (args.quick or args.no_results):
        command = (
            f"bash scripts/with-services.sh -- python bench/throughput.py --runs {args.runs} "
            f"--steps {args.steps} --processes {args.processes} --repeat {args.repeat}"
        )
        write_results(rows, command, host)
        print(f"written to {ROOT / 'bench' / 'RESULTS.md'}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
