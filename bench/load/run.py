"""Load test: reviewers and managers on the running app while 200 runs execute.

    make load
    bash scripts/with-services.sh --name load -- python bench/load/run.py [--users 50] [--runs 200]
        [--run-time 150] [--latency-scale 0.1] [--port 8014] [--no-results]

Inside scripts/with-services.sh (Postgres and Redis on the .env ports), this script:

1. creates a throw-away database ``<name>_load`` on the same cluster (dropped at the end) and uses
   Redis database 3 (flushed before and after), so a ``make run`` in the same checkout is untouched;
2. migrates, runs ``seed_demo``, adds one account per simulated person (the demo ``reviewer`` and
   ``manager`` plus ``load-reviewer-NN`` / ``load-manager-NN`` in the same groups) and an API
   token for ``operator``;
3. starts the standalone simulator (``manage.py simulate_api --port 0``, the realistic latency
   model scaled by --latency-scale), the app under gunicorn (gthread workers, TLS with a
   throw-away self-signed certificate, DJANGO_DEBUG=false: production settings, secure cookies),
   a Celery worker (prefork, 4 processes, queues celery and llm, as in the Procfile), a
   threads-pool worker for the fan-out jobs (queue fanout, 20 threads) and beat;
4. starts --prestart runs through ``POST /api/runs`` so the queues have work, then runs locust
   headless (bench/load/locustfile.py: --users people, 60% reviewers, 40% managers) for
   --run-time seconds while the remaining runs are started at an even pace over the first
   two thirds of it;
5. waits (at most --drain seconds) until every run is final or paused (awaiting review or
   approval), then checks: no 5xx in locust's stats, the API calls or gunicorn's access log; no
   other locust failure; every run settled; the audit chain verifies;
6. writes the "Load" section of bench/RESULTS.md (p50/p95 per page from locust's stats CSV, and
   the server-side time per page from gunicorn's access log), stops everything it started and
   drops the database. Exit status 0 only if every check passed.

Approvals: APPROVAL_THRESHOLD_USD is set to $0.15 for the test, between the upper estimates of
payment_approval (~$0.09) and financial_reporting (~$0.19), so every financial_reporting run
waits for a manager. Logs and the CSVs stay in .dev/load/<timestamp>/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench._locks import LockWaits  # noqa: E402
from bench.load.report import access_log, locust_stats, pct, write_results  # noqa: E402

LOAD_REDIS_DB = 3
APPROVAL_THRESHOLD = "0.15"
WORKER_PROCESSES = 4
FANOUT_THREADS = 20
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4
# 200 runs: (workflow, input, how many). Every branch the demo data reaches: straight through,
# escalations a reviewer resolves (manual review, sign-off, discrepancy, compliance guard,
# ambiguity, no data), runs over the approval threshold (all financial_reporting, and the
# fan-out runs) and fan-out runs (security_scan, ad_variants: 20 jobs each).
MIX = (
    ("payment_approval", {"payment_id": "PAY-1001"}, 29),  # routine: succeeds
    ("payment_approval", {"payment_id": "PAY-1002"}, 20),  # high value: succeeds
    ("payment_approval", {"payment_id": "PAY-1003"}, 20),  # watchlisted payee: manual review
    ("payment_approval", {"payment_id": "PAY-1004"}, 10),  # watchlisted payee: manual review
    ("payment_approval", {"payment_id": "PAY-1005"}, 15),  # over the sign-off limit
    ("financial_reporting", {"date": "2026-11-20"}, 25),  # approval, then succeeds
    ("financial_reporting", {"date": "2026-11-18"}, 10),  # approval, then $250 discrepancy
    ("financial_reporting", {"date": "2026-11-19"}, 10),  # approval, then APRA violation
    ("financial_reporting", {"date": "2026-11-21"}, 5),  # approval, then no transactions
    (
        "customer_router",
        {"customer_account": "ACC-100", "question": "How much could I borrow?"},
        25,
    ),
    ("customer_router", {"customer_account": "ACC-900", "question": "Where is my payment?"}, 15),
    ("customer_router", {"customer_account": "ACC-101", "question": "Hello, can you help?"}, 10),
    # Fan-out (the fanout queue's threads worker): approval, then 20 jobs each, one or two of
    # which fail twice; succeeds.
    ("security_scan", {"repository": "demo-scan-tree", "limit": 20}, 3),
    ("ad_variants", {"catalog": "demo", "skus": 20, "tone": "friendly"}, 3),
)
PAUSED = ("awaiting_review", "awaiting_approval")


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", flush=True)


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1, so production settings (secure cookies) work."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Processes:
    """Every process this script starts, each in its own session, stopped in reverse order."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env, self.procs = workdir, env, []

    def start(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        out = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(  # noqa: S603 - our own argv
            argv,
            cwd=ROOT,
            env={**self.env, **kw.pop("env", {})},
            stdout=kw.pop("stdout", out),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
        self.procs.append((name, proc, out))
        return proc

    def check_alive(self) -> None:
        for name, proc, _ in self.procs:
            if name != "locust" and proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}: see {self.workdir}/{name}.log"
                )

    def stop(self) -> None:
        for _name, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _name, proc, out in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            out.close()


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(reviewers: int, managers: int) -> tuple[list[str], list[str], str]:
    """Demo data, one account per simulated person, and the operator's API token."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from api.models import ApiToken

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    User = get_user_model()
    accounts: dict[str, list[str]] = {"reviewers": ["reviewer"], "managers": ["manager"]}
    for group, count, prefix, staff in (
        ("reviewers", reviewers, "load-reviewer", False),
        ("managers", managers, "load-manager", True),
    ):
        for i in range(1, count):
            username = f"{prefix}-{i:02d}"
            user = User(username=username, email=f"{username}@example.com", is_staff=staff)
            user.set_password(settings.DEMO_PASSWORD)
            user.save()
            user.groups.set([Group.objects.get(name=group)])
            accounts[group].append(username)
    _, secret = ApiToken.issue(User.objects.get(username="operator"), "load test")
    return accounts["reviewers"][:reviewers], accounts["managers"][:managers], secret


class RunStarter:
    """Starts the runs through the JSON API, as an operator's script would, and times each call."""

    def __init__(self, base_url: str, token: str, runs: list[tuple[str, dict]], ca: Path) -> None:
        import requests

        self.session = requests.Session()
        self.ca = str(ca)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.base_url, self.runs = base_url, runs
        self.started: list[str] = []
        self.times_ms: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._next = 0

    def start(self, count: int) -> None:
        for workflow, value in self.runs[self._next : self._next + count]:
            t0 = time.monotonic()
            response = self.session.post(
                f"{self.base_url}/api/runs",
                json={"workflow": workflow, "input": value},
                headers={"Idempotency-Key": secrets.token_hex(16)},
                timeout=60,
                verify=self.ca,  # per request: REQUESTS_CA_BUNDLE would override session.verify
            )
            self.times_ms.append((time.monotonic() - t0) * 1000)
            self.statuses[response.status_code] += 1
            if response.status_code == 201:
                self.started.append(response.json()["id"])
            else:
                self.errors.append(f"POST /api/runs {response.status_code}: {response.text[:200]}")
        self._next += count

    def start_paced(self, count: int, seconds: float, stop: threading.Event) -> None:
        """One run every seconds/count, on a fixed schedule (a slow call does not push it back)."""
        t0, interval = time.monotonic(), seconds / max(count, 1)
        for i in range(count):
            if stop.wait(max(0.0, t0 + i * interval - time.monotonic())):
                return
            self.start(1)


def status_counts(run_ids: list[str]) -> Counter[str]:
    from orchestration.models import Run

    return Counter(Run.objects.filter(pk__in=run_ids).values_list("status", flat=True))


def settled(counts: Counter[str]) -> bool:
    from orchestration.models import Run

    return all(status in Run.FINAL or status in PAUSED for status in counts)


def wait_healthy(base_url: str, seconds: float, procs: Processes, ca: Path) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            if requests.get(f"{base_url}/healthz?check=database", verify=str(ca), timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer /healthz within {seconds:.0f} s")


def read_simulator_url(proc: subprocess.Popen, logfile: Path) -> str:
    """The URL from the simulator's first line; the rest of its output is copied to its log."""
    assert proc.stdout is not None
    stream = proc.stdout
    line = stream.readline().decode()
    found = re.search(r"listening on (http://\S+)", line)
    if not found:
        raise RuntimeError(
            f"the simulator did not start: {line or '(no output)'} ... see {logfile}"
        )

    def drain() -> None:  # an unread pipe would block the simulator once it filled
        with open(logfile, "ab") as out:
            for chunk in iter(stream.readline, b""):
                out.write(chunk)
                out.flush()

    threading.Thread(target=drain, daemon=True).start()
    return found.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--prestart", type=int, default=40, help="runs started before locust")
    parser.add_argument(
        "--run-time", type=int, default=180, help="locust seconds (the first --users are sign-ins)"
    )
    parser.add_argument(
        "--drain", type=int, default=120, help="max seconds to wait for runs after locust"
    )
    parser.add_argument("--latency-scale", type=float, default=0.1)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8014")))
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--keep-db", action="store_true", help="keep the <name>_load database")
    args = parser.parse_args()
    if args.users < 2 or args.runs < 1 or not 0 <= args.prestart <= args.runs:
        parser.error("need --users >= 2, --runs >= 1 and 0 <= --prestart <= --runs")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            parser.error(f"{name} is not set: run through `make load` (scripts/with-services.sh)")
    if not port_free(args.port):
        parser.error(f"127.0.0.1:{args.port} is in use; pick another with --port")
    reviewers = round(args.users * 0.6)
    managers = args.users - reviewers

    db_name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") + "_load"
    admin_url = with_path(os.environ["DATABASE_URL"], "/postgres")
    database_url = with_path(os.environ["DATABASE_URL"], f"/{db_name}")
    redis_url = with_path(os.environ["REDIS_URL"], f"/{LOAD_REDIS_DB}")
    workdir = ROOT / ".dev" / "load" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True)
    base_url = f"https://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SIMULATOR_STATE_URL": redis_url,
        "DJANGO_DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PUBLIC_BASE_URL": base_url,
        "APPROVAL_THRESHOLD_USD": APPROVAL_THRESHOLD,
        # One operator starts every run; the default limit (100 a day) would refuse half of them.
        "RUNS_PER_USER_PER_DAY": "10000",
        # Likewise the per-token API limit (120 a minute): the script's one token starts them all.
        "API_RATE_LIMIT": "1000000/m",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import redis

    log(f"database {db_name}, redis db {LOAD_REDIS_DB}, logs in {workdir}")
    create_database(admin_url, db_name)
    redis.Redis.from_url(redis_url).flushdb()
    procs = Processes(workdir, env)
    stop_starting = threading.Event()
    started_at = time.monotonic()
    try:
        import django

        django.setup()
        review_accounts, manager_accounts, token = seed(reviewers, managers)
        cert, key = self_signed_cert(workdir)
        manage = [sys.executable, "manage.py"]
        simulator = procs.start(
            "simulator",
            [
                *manage,
                "simulate_api",
                "--port",
                "0",
                "--latency-scale",
                str(args.latency_scale),
                "--seed",
                str(args.seed),
            ],
            stdout=subprocess.PIPE,
        )
        sim_url = read_simulator_url(simulator, workdir / "simulator.log")
        procs.env["ANTHROPIC_BASE_URL"] = sim_url
        log(f"simulator at {sim_url}")
        procs.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{args.port}",
                "--worker-class",
                "gthread",
                "--workers",
                str(GUNICORN_WORKERS),
                "--threads",
                str(GUNICORN_THREADS),
                "--certfile",
                str(cert),
                "--keyfile",
                str(key),
                "--timeout",
                "60",
                # Longer than any pause between a simulated person's requests (as a reverse
                # proxy would keep it): with gunicorn's 2 s default the server closes idle
                # connections just as the client reuses them ("Remote end closed connection").
                "--keep-alive",
                "30",
                "--access-logfile",
                str(workdir / "access.log"),
                "--access-logformat",
                "%(m)s %(U)s %(q)s %(s)s %(D)s",
            ],
        )
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        procs.start(
            "worker",
            [
                *celery,
                "worker",
                "-l",
                "warning",
                "-Q",
                "celery,llm",
                "-c",
                str(WORKER_PROCESSES),
                "-n",
                "load@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        # Fan-out job calls, as in the Procfile: one threads-pool worker on the fanout queue.
        procs.start(
            "fanout",
            [
                *celery,
                "worker",
                "-l",
                "warning",
                "-P",
                "threads",
                "-c",
                str(FANOUT_THREADS),
                "-Q",
                "fanout",
                "-n",
                "load-fanout@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        procs.start("beat", [*celery, "beat", "-l", "warning", "--schedule", str(workdir / "beat")])
        wait_healthy(base_url, 60, procs, cert)
        log(f"app up at {base_url}")

        rng = random.Random(args.seed)
        plan = [(wf, value) for wf, value, n in MIX for _ in range(n)]
        rng.shuffle(plan)  # then cut or repeat: --runs other than 200 keeps the same mix
        plan = (plan * (args.runs // len(plan) + 1))[: args.runs]
        starter = RunStarter(base_url, token, plan, cert)
        locks = LockWaits(database_url)
        runs_started_at = time.monotonic()
        starter.start(args.prestart)
        log(f"{len(starter.started)} runs started; waiting for the queues to fill")
        prestart_deadline = time.monotonic() + 45
        while time.monotonic() < prestart_deadline:
            procs.check_alive()
            counts = status_counts(starter.started)
            if sum(counts[s] for s in PAUSED) >= args.prestart // 2 or settled(counts):
                break
            time.sleep(1)
        log(f"before locust: {dict(status_counts(starter.started))}")

        pacer = threading.Thread(
            target=starter.start_paced,
            args=(args.runs - args.prestart, args.run_time * 2 / 3, stop_starting),
            daemon=True,
        )
        pacer.start()
        csv_prefix = workdir / "locust"
        locust = procs.start(
            "locust",
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "bench" / "load" / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                # People sign in over time: each sign-in is a deliberately slow password hash
                # (PBKDF2), and 10 a second would starve the 2 cores for the first seconds.
                "--spawn-rate",
                "1",
                # The stats cover the steady state, once everyone is signed in; the sign-ins
                # are in the server-side table (gunicorn's access log covers the whole test).
                "--reset-stats",
                "--run-time",
                f"{args.run_time}s",
                "--stop-timeout",
                "15",
                "--host",
                base_url,
                "--csv",
                str(csv_prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env={
                "LOAD_REVIEWERS": ",".join(review_accounts),
                "LOAD_MANAGERS": ",".join(manager_accounts),
                "LOAD_REVIEWER_USERS": str(reviewers),
                "LOAD_MANAGER_USERS": str(managers),
                "LOAD_CA_BUNDLE": str(cert),  # locust's sessions verify the app's certificate
                "LOAD_FAILURES_FILE": str(workdir / "failures.json"),
            },
        )
        locust_deadline = time.monotonic() + args.run_time + 60
        while locust.poll() is None:
            procs.check_alive()
            if time.monotonic() > locust_deadline:
                raise RuntimeError("locust ran past --run-time + 60 s")
            time.sleep(1)
        locust_done = time.monotonic()
        pacer.join(timeout=60)
        log(f"locust done (exit {locust.returncode}); {len(starter.started)} runs started")

        drain_deadline = time.monotonic() + args.drain
        counts = status_counts(starter.started)
        while not settled(counts) and time.monotonic() < drain_deadline:
            procs.check_alive()
            time.sleep(1)
            counts = status_counts(starter.started)
        settle_time = time.monotonic()
        locks.stop()
        log(f"runs: {dict(counts)}")
        time.sleep(1)  # the access log is written after each response: let the last lines land
        return check_and_report(
            args,
            workdir,
            csv_prefix,
            starter,
            counts,
            runs_started_at,
            settle_time,
            locust_done,
            reviewers,
            managers,
            locks,
        )
    finally:
        stop_starting.set()
        procs.stop()
        redis.Redis.from_url(redis_url).flushdb()
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_database(admin_url, db_name)
        log(f"stopped everything after {time.monotonic() - started_at:.0f} s; logs in {workdir}")


def check_and_report(
    args,
    workdir: Path,
    csv_prefix: Path,
    starter: RunStarter,
    counts: Counter[str],
    runs_started_at: float,
    settle_time: float,
    locust_done: float,
    reviewers: int,
    managers: int,
    locks: LockWaits,
) -> int:
    from orchestration.audit import verify_chain
    from orchestration.models import Run
    from reviews.models import ApprovalRequest, EscalationTicket

    problems: list[str] = []
    stats = locust_stats(csv_prefix)
    failures_file = workdir / "failures.json"
    failures = json.loads(failures_file.read_text()) if failures_file.exists() else None
    server_times, server_statuses, server_error_lines = access_log(workdir / "access.log")
    locust_failures_total = sum((failures or {}).values())
    server_errors = sum(n for status, n in server_statuses.items() if status >= 500)
    api_5xx = sum(n for status, n in starter.statuses.items() if status >= 500)
    if server_errors or api_5xx:
        problems.append(
            f"{server_errors} server errors in the access log: {server_error_lines[:5]}"
        )
    if failures is None:
        problems.append("locust wrote no failures.json (it did not quit cleanly): see locust.log")
    for what, n in (failures or {}).items():
        problems.append(f"locust: {n} x {what}")
    if starter.errors:
        problems.append(f"{len(starter.errors)} runs not started: {starter.errors[:3]}")
    if len(starter.started) != args.runs:
        problems.append(f"{len(starter.started)} of {args.runs} runs started")
    unsettled = {s: n for s, n in counts.items() if s not in Run.FINAL and s not in PAUSED}
    if unsettled:
        problems.append(f"runs not final or paused after the drain: {unsettled}")
    chain = verify_chain(None)
    audit = (
        f"verified, {chain.checked:,} events"
        if chain.ok
        else f"BROKEN at #{chain.broken_at}: {chain.problem}"
    )
    if not chain.ok:
        problems.append(f"audit chain: {audit}")
    tickets = EscalationTicket.objects.filter(run_id__in=starter.started)
    approvals = ApprovalRequest.objects.filter(run_id__in=starter.started)
    api = starter.times_ms or [0.0]
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "users": args.users,
        "reviewers": reviewers,
        "managers": managers,
        "run_time": args.run_time,
        "runs": args.runs,
        "prestart": args.prestart,
        "latency_scale": args.latency_scale,
        "passed": not problems,
        "server_errors": server_errors + api_5xx,
        "server_requests": sum(server_statuses.values()),
        "locust_failures": locust_failures_total,
        "run_statuses": dict(counts),
        "settle_seconds": round(settle_time - runs_started_at),
        "settled_after_locust": max(0, round(settle_time - locust_done)),
        "tickets_opened": tickets.count(),
        "tickets_resolved": tickets.filter(status=EscalationTicket.Status.RESOLVED).count(),
        "approvals": approvals.count(),
        "approvals_decided": approvals.exclude(status=ApprovalRequest.Status.PENDING).count(),
        "audit": audit,
        "api_ms": {"p50": statistics.median(api), "p95": pct(api, 0.95), "max": max(api)},
        "api_errors": len(starter.errors),
        "worker_processes": WORKER_PROCESSES,
        "gunicorn_workers": GUNICORN_WORKERS,
        "gunicorn_threads": GUNICORN_THREADS,
        "lock_waits": locks.as_dict(),
        "notes": [f"Problems: {p}" for p in problems],
    }
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    log(json.dumps({k: v for k, v in report.items() if k != "notes"}, default=str))
    if not args.no_results:
        write_results(
            report,
            stats,
            server_times,
            "bash scripts/with-services.sh --name load -- "
            f"python bench/load/run.py --users {args.users} --runs {args.runs} "
            f"--run-time {args.run_time}",
        )
        log("wrote the Load section of bench/RESULTS.md")
    for p in problems:
        log(f"PROBLEM: {p}")
    log("PASS" if not problems else f"FAIL: {len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
