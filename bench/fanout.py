"""Fan-out benchmark: Countersign's fan-out against the seed's reference code, same simulator.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/fanout.py [--sizes 50,1000] [--latency 2]

The simulator answers every /v1/messages call in exactly --latency seconds. Countersign runs
on real Celery workers (a prefork worker for the run's steps with beat, a threads-pool worker
with -c 60 for the job calls) against the dev Postgres and Redis. The ideal critical path is
decompose + ceil(N/50) waves x (specialist + validator) + aggregate calls. The seed's code
(asyncio.gather over coroutines that call the synchronous client, so the calls run one after
another) is run in-process against the same simulator. The results are written to
bench/RESULTS.md, section "Fan-out".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench._results import write_section  # noqa: E402

os.environ.setdefault("COUNTERSIGN_EXTRA_WORKFLOWS", "bench.fanout_workflow")
# Benchmarks start many runs as the demo operator: the daily start limit is not what they measure.
os.environ.setdefault("RUNS_PER_USER_PER_DAY", "1000000")


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path("/proc").glob("[0-9]*"):
        try:
            if int(Path(child, "stat").read_text().split(") ", 1)[1].split()[1]) in pids:
                pids.append(int(child.name))
        except (OSError, IndexError, ValueError):
            pass
    return pids


def start_workers(env: dict[str, str], logdir: Path) -> list[subprocess.Popen]:
    common = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
    ]
    procs = []
    for args, name in (
        (["-Q", "celery,llm", "-c", "2", "-B", "--schedule", str(logdir / "beat")], "steps"),
        (["-Q", "fanout", "-P", "threads", "-c", "60"], "fanout"),
    ):
        out = open(logdir / f"{name}.log", "wb")  # noqa: SIM115
        command = [*common, *args, "-n", f"bench-{name}@%h"]
        procs.append(
            subprocess.Popen(  # noqa: S603 - our own argv
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    time.sleep(6)
    return procs


class Workers:
    """Both workers for the whole benchmark, with their peak RSS sampled every 0.5 s."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.procs = start_workers(env, logdir)
        self.peak = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(rss_mb(tree(p.pid)) for p in self.procs))
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()
        for p in self.procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.wait(30)


def breakdown(run_id: object, latency: float, per_run: int = 50) -> dict:
    """Where the wall time of one fan-out run went, from its rows (seconds, rounded).

    The critical path is: run created -> decompose call -> jobs -> aggregate call -> run
    finished. Each gap between two of those is the engine's (a Celery hop, a transaction);
    inside the jobs, ``pre_call`` (claim to the specialist's request), ``between_calls``
    (specialist answer to validator request), ``post_call`` (verdict to the job settled) and
    ``refill`` (a job settled to the next job claimed in its slot) are the per-job averages,
    and ``call_overhead`` is the mean time a call took beyond the simulator's fixed latency.
    """
    from orchestration.fanout.models import FanoutJob
    from orchestration.models import ModelCall, Run

    def sec(a: object, b: object) -> float:
        return round((b - a).total_seconds(), 3)  # type: ignore[operator]

    run = Run.objects.get(pk=run_id)
    orchestrator = list(
        ModelCall.objects.filter(run=run, job__isnull=True, status="ok").order_by("turn")
    )
    jobs = list(FanoutJob.objects.filter(run=run).order_by("started_at"))
    calls = list(ModelCall.objects.filter(run=run, job__isnull=False, status="ok"))
    first: dict[int, dict[str, ModelCall]] = {}
    for c in sorted(calls, key=lambda c: c.created_at):
        first.setdefault(c.job_id, {}).setdefault(c.role, c)
    last: dict[int, dict[str, ModelCall]] = {}
    for c in sorted(calls, key=lambda c: c.created_at):
        last.setdefault(c.job_id, {})[c.role] = c
    out: dict = {}
    if len(orchestrator) >= 2 and jobs and run.finished_at:
        decompose, agg = orchestrator[0], orchestrator[-1]
        first_call = min(c.created_at for c in calls)
        last_job = max(j.finished_at for j in jobs)
        waves = math.ceil(len(jobs) / per_run)
        out = {
            "start_to_decompose": sec(run.created_at, decompose.created_at),
            "decompose_call": sec(decompose.created_at, decompose.finished_at),
            "decompose_to_first_job_call": sec(decompose.finished_at, first_call),
            "jobs_phase": sec(first_call, last_job),
            "jobs_phase_ideal": round(waves * 2 * latency, 3),
            "last_job_to_aggregate": sec(last_job, agg.created_at),
            "aggregate_call": sec(agg.created_at, agg.finished_at),
            "aggregate_to_finished": sec(agg.finished_at, run.finished_at),
        }
        pre = [sec(j.started_at, first[j.pk]["specialist"].created_at) for j in jobs]
        between = [
            sec(last[j.pk]["specialist"].finished_at, last[j.pk]["validator"].created_at)
            for j in jobs
            if "validator" in last.get(j.pk, {})
        ]
        post = [
            sec(last[j.pk]["validator"].finished_at, j.finished_at)
            for j in jobs
            if "validator" in last.get(j.pk, {})
        ]
        starts = sorted(j.started_at for j in jobs)
        ends = sorted(j.finished_at for j in jobs)
        refill = [sec(ends[i], starts[i + per_run]) for i in range(len(jobs) - per_run)]
        first_wave = starts[: min(per_run, len(starts))]
        mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else 0.0  # noqa: E731
        out.update(
            {
                "pre_call": mean(pre),
                "between_calls": mean(between),
                "post_call": mean(post),
                "refill": mean(refill),
                "first_wave_spread": sec(first_wave[0], first_wave[-1]),
                "call_overhead": mean([sec(c.created_at, c.finished_at) - latency for c in calls]),
            }
        )
    return out


def countersign(n: int, latency: float) -> dict:
    from django.contrib.auth import get_user_model

    from orchestration.launch import start_run
    from orchestration.models import ModelCall, Run

    started = time.monotonic()
    run = start_run("bench_fanout", {"n": n}, get_user_model().objects.get(username="operator"))
    while run.status not in Run.FINAL and run.status != Run.Status.AWAITING_REVIEW:
        time.sleep(0.05)
        run.refresh_from_db()
    elapsed = time.monotonic() - started
    waves = math.ceil(n / 50)
    ideal = latency * (2 + 2 * waves)
    return {
        "n": n,
        "status": run.status,
        "seconds": round(elapsed, 2),
        "ideal": ideal,
        "ratio": round(elapsed / ideal, 3),
        "calls": ModelCall.objects.filter(run=run).count(),
        "breakdown": breakdown(run.pk, latency) if run.status == Run.Status.SUCCEEDED else {},
    }


def security_scan_200() -> dict:
    """The shipped security_scan demo, 200 files, with the simulator's default latency model
    (what `make run` does): wall time from start to success, and where it went."""
    from django.contrib.auth import get_user_model

    from orchestration.launch import start_run
    from orchestration.models import ModelCall, Run

    started = time.monotonic()
    run = start_run(
        "security_scan",
        {"repository": "demo-scan-tree", "limit": 200},
        get_user_model().objects.get(username="operator"),
    )
    while run.status not in Run.FINAL and run.status != Run.Status.AWAITING_REVIEW:
        time.sleep(0.2)
        run.refresh_from_db()
    elapsed = time.monotonic() - started
    orchestrator = ModelCall.objects.filter(run=run, job__isnull=True, status="ok").order_by("turn")
    return {
        "status": run.status,
        "seconds": round(elapsed, 1),
        "calls": ModelCall.objects.filter(run=run).count(),
        "plan_output_tokens": orchestrator[0].output_tokens if orchestrator else None,
        "aggregate_output_tokens": orchestrator[1].output_tokens if len(orchestrator) > 1 else None,
        "cost_usd": str(run.cost_usd.quantize(Decimal("0.0001"))),
        "estimate_usd": str(run.estimate_usd.quantize(Decimal("0.0001"))),
        "breakdown": breakdown(run.pk, 0.0) if run.status == Run.Status.SUCCEEDED else {},
    }


def seed_reference(n: int, latency: float) -> dict:
    """The seed's enterprise_orchestrate, verbatim in shape, against the same simulator."""
    import anthropic

    from bench.fanout_workflow import items as bench_items
    from simulator import SimulatorTransport
    from simulator.django import make_api_from_settings

    api = make_api_from_settings(fixed_latency_seconds=latency, state_url="")
    client = anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=2,
        http_client=anthropic.DefaultHttpxClient(transport=SimulatorTransport(api)),
        default_headers={"x-countersign-workflow": "bench_fanout"},
    )
    from orchestration.fanout.prompts import SPECIALIST_MARK, VALIDATOR_MARK

    async def run_specialist(job: dict) -> dict:
        response = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=2048,
            system=SPECIALIST_MARK,
            messages=[
                {
                    "role": "user",
                    "content": json.dumps({"job_id": job["job_id"], "task": job["prompt"]}),
                }
            ],
        )
        return {"job_id": job["job_id"], "output": response.content[0].text}

    async def enterprise_orchestrate(n_specialists: int) -> list[dict]:
        decomposition = client.messages.create(
            model="claude-opus-4-5",
            max_tokens=4096,
            system="Orchestrator",
            messages=[
                {
                    "role": "user",
                    "content": json.dumps(
                        {
                            "phase": "decompose",
                            "input": {"n": n_specialists},
                            "items": bench_items({"n": n_specialists}),
                        }
                    ),
                }
            ],
        )
        plan = json.loads(decomposition.content[0].text)
        jobs = plan["jobs"] if isinstance(plan, dict) else plan  # {"jobs": [...]} or the list
        results = await asyncio.gather(*[run_specialist(job) for job in jobs])
        validated = []
        for result in results:
            validation = client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=1024,
                system=VALIDATOR_MARK,
                messages=[{"role": "user", "content": json.dumps(result)}],
            )
            validated.append(json.loads(validation.content[0].text))
        return validated

    started = time.monotonic()
    validated = asyncio.run(enterprise_orchestrate(n))
    elapsed = time.monotonic() - started
    assert len(validated) == n
    return {"n": n, "seconds": round(elapsed, 2), "calls": 1 + 2 * n, "no_aggregate": True}


def write_results(
    rows: list[dict], seed: list[dict], latency: float, command: str, scan: dict | None
) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "## Fan-out",
        "",
        f"Simulator at a fixed {latency:g} s per /v1/messages call; {os.cpu_count()} CPUs ({cpu}); "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Reproduce: `{command}`",
        "",
        "Ideal critical path = decompose + ceil(N/50) waves x (specialist + validator) + aggregate.",
        "",
        "| N | Countersign (s) | ideal (s) | ratio | target | model calls | peak worker RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['seconds']} | {r['ideal']:g} | {r['ratio']} | <= 1.25 | {r['calls']:,} | "
            f"{r['peak_rss_mb']} |"
        )
    lines += [
        "",
        "Where the time went (seconds; per-job figures are means over the run's jobs; "
        "`refill` is a job settled to the next job claimed in its slot):",
        "",
        "| N | start->decompose | decompose->1st job call | jobs phase (ideal) | pre-call | between calls "
        "| post-call | refill | 1st wave spread | call overhead | last job->aggregate | aggregate->done |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r.get("breakdown") or {}
        if b:
            lines.append(
                f"| {r['n']:,} | {b['start_to_decompose']} | {b['decompose_to_first_job_call']} | "
                f"{b['jobs_phase']} ({b['jobs_phase_ideal']:g}) | {b['pre_call']} | {b['between_calls']} | "
                f"{b['post_call']} | {b['refill']} | {b['first_wave_spread']} | {b['call_overhead']} | "
                f"{b['last_job_to_aggregate']} | {b['aggregate_to_finished']} |"
            )
    if scan:
        b = scan.get("breakdown") or {}
        lines += [
            "",
            "The shipped `security_scan` demo, 200 files, with the simulator's default latency model "
            "(Opus 1.5 s + 40 tokens/s, Sonnet 0.8 s + 70 tokens/s; what `make run` does), same workers: "
            f"**{scan['seconds']} s** from start to {scan['status']}, {scan['calls']} model calls, "
            f"${scan['cost_usd']} (estimate up to ${scan['estimate_usd']}). The plan (job kinds) is "
            f"{scan['plan_output_tokens']} output tokens ({b.get('decompose_call', '?')} s), the jobs "
            f"phase {b.get('jobs_phase', '?')} s, the aggregate ({scan['aggregate_output_tokens']} output "
            f"tokens: every finding of 194 files) {b.get('aggregate_call', '?')} s.",
        ]
    lines += [
        "",
        "The seed's reference code (asyncio.gather over the synchronous client: the calls run one after "
        "another; it has no aggregate step), same simulator, same run:",
        "",
        "| N | seed reference (s) | model calls | measured? |",
        "|---|---|---|---|",
    ]
    for s in seed:
        lines.append(
            f"| {s['n']:,} | {s['seconds']} | {s['calls']:,} | {s.get('how', 'measured')} |"
        )
    lines += [
        "",
        "Peak worker RSS is the sum of VmRSS over both worker processes (the prefork worker's "
        "children included), sampled every 0.5 s, peak so far in the session. Both workers run for the "
        "whole benchmark; a warm-up fan-out of 50 jobs runs first and is not reported (cold workers spend "
        "~2 s importing code, starting threads and opening database connections).",
        "",
    ]
    write_section("## Fan-out", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,1000")
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument(
        "--seed-sizes", default="50", help="seed reference sizes to measure (it is sequential)"
    )
    parser.add_argument(
        "--no-scan",
        action="store_true",
        help="skip the 200-file security_scan at the default latency model (~3 min)",
    )
    args = parser.parse_args()
    env = {
        **os.environ,
        "SIMULATOR_FIXED_LATENCY_SECONDS": str(args.latency),
        "SIMULATOR_STATE_URL": "",
        "FANOUT_REAPER_INTERVAL_SECONDS": "5",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(
        {"SIMULATOR_FIXED_LATENCY_SECONDS": str(args.latency), "SIMULATOR_STATE_URL": ""}
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(
        "celery", "llm", "fanout", settings.FANOUT_SLOT_KEY
    )
    logdir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    rows = []
    workers = Workers(env, logdir)
    try:
        # Warm-up (not reported): the workers' first tasks import code, start 60 threads and
        # open their database connections. The measured runs are steady state.
        print(json.dumps({"warm_up": countersign(50, args.latency)}), flush=True)
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append({**countersign(n, args.latency), "peak_rss_mb": 0})
            rows[-1]["peak_rss_mb"] = round(workers.peak, 1)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        workers.stop()
    scan = None
    if not args.no_scan:
        # The simulator runs in the workers: new workers, with the default latency model.
        scan_env = {**env, "SIMULATOR_FIXED_LATENCY_SECONDS": "0", "SIMULATOR_LATENCY_SCALE": "1"}
        workers = Workers(scan_env, logdir)
        try:
            scan = security_scan_200()
            print(json.dumps({"security_scan_200": scan}), flush=True)
        finally:
            workers.stop()
    seed = []
    for n in (int(x) for x in args.seed_sizes.split(",") if x):
        seed.append(seed_reference(n, args.latency))
        print(json.dumps(seed[-1]), flush=True)
    for n in (r["n"] for r in rows):
        if n not in {s["n"] for s in seed} and seed:
            per_call = seed[0]["seconds"] / seed[0]["calls"]
            seed.append(
                {
                    "n": n,
                    "seconds": round(per_call * (1 + 2 * n)),
                    "calls": 1 + 2 * n,
                    "how": f"computed: {1 + 2 * n:,} sequential calls x {per_call:.3f} s measured above",
                }
            )
    write_results(
        rows,
        seed,
        args.latency,
        f"bash scripts/with-services.sh -- python bench/fanout.py --sizes {args.sizes} --latency {args.latency:g}",
        scan,
    )
    print((ROOT / "bench" / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
