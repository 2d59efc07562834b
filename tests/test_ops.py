"""/healthz, /metrics, structured logs and tracing."""

from __future__ import annotations

import io
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from insight import rollups
from ops import health, tracing
from ops.logs import ContextFilter, JsonFormatter, TextFormatter, log_context
from orchestration import lifecycle
from orchestration.launch import start_run
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.workflows.declaration import Tool, ToolContext, Workflow
from orchestration.workflows.registry import register
from reviews.escalation import escalate

# --- a workflow whose tool logs, to see a line from inside a step --------------------------

tool_logger = logging.getLogger("tests.logged_tool")


def _noisy(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    tool_logger.warning("checking the ledger", extra={"ledger": "main"})
    return {"ok": True}


register(
    Workflow(
        name="logged",
        title="A tool that logs (tests only)",
        version="1",
        domain="testing",
        role="Call the tool once, then answer.",
        input_schema={"type": "object"},
        output_schema={
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
        },
        tools=(
            Tool(
                "noisy",
                "Logs a line.",
                {"type": "object"},
                {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                _noisy,
            ),
        ),
        rules=("Call noisy.",),
    )
)


# --- /healthz ----------------------------------------------------------------------------


@pytest.fixture
def heartbeats(settings):
    for queue in settings.HEALTHZ_WORKER_QUEUES:
        health.record_heartbeat(queue)
    yield
    from django.core.cache import cache

    cache.delete_many(
        [health.HEARTBEAT_KEY.format(queue=q) for q in settings.HEALTHZ_WORKER_QUEUES]
    )


def test_healthz_is_ok_when_every_check_passes(client, db, heartbeats):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and set(body["checks"]) == {"database", "broker", "workers"}
    assert all(c["ok"] for c in body["checks"].values())
    assert set(body["checks"]["workers"]["queues"]) == {"celery", "llm", "fanout"}
    assert body["checks"]["workers"]["queues"]["llm"]["last_heartbeat_seconds_ago"] < 5
    assert "no-cache" in response["Cache-Control"]


def test_healthz_needs_no_login_and_ignores_a_session(db, heartbeats, operator):
    client = Client()
    assert client.get("/healthz").status_code == 200
    client.force_login(operator)
    assert client.get("/healthz").status_code == 200


def test_a_missing_or_stale_heartbeat_is_503(client, db, heartbeats, settings):
    from django.core.cache import cache

    cache.delete(health.HEARTBEAT_KEY.format(queue="llm"))
    cache.set(health.HEARTBEAT_KEY.format(queue="celery"), 0, 60)  # 1970: stale
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (
        body["status"] == "fail"
        and body["checks"]["database"]["ok"]
        and body["checks"]["broker"]["ok"]
    )
    queues = body["checks"]["workers"]["queues"]
    assert "is a worker consuming this queue" in queues["llm"]["error"]
    assert queues["celery"]["ok"] is False and "last heartbeat" in queues["celery"]["error"]


def test_an_unreachable_broker_is_503_quickly(client, db, heartbeats, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.HEALTHZ_TIMEOUT_SECONDS = 0.5
    response = client.get("/healthz?check=broker")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert (
        broker["ok"] is False
        and "ConnectionError" in broker["error"]
        and broker["latency_ms"] < 2000
    )


def test_a_failing_database_check_is_reported(client, db, heartbeats, monkeypatch):
    def broken():
        raise RuntimeError("connection refused")

    monkeypatch.setitem(health.RUNNERS, "database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {
        "ok": False,
        "error": "RuntimeError: connection refused",
        "latency_ms": response.json()["checks"]["database"]["latency_ms"],
    }


def test_healthz_can_run_only_some_checks(client, db):
    """A web liveness probe asks only for the database, so a worker outage does not restart web pods."""
    response = client.get("/healthz?check=database")
    assert response.status_code == 200 and list(response.json()["checks"]) == ["database"]
    bad = client.get("/healthz?check=disk")
    assert bad.status_code == 400 and "Unknown check disk" in bad.json()["error"]["message"]
    assert client.post("/healthz").status_code == 405


def test_the_heartbeat_task_records_the_queue_it_came_from(db, settings):
    from ops.tasks import heartbeat

    heartbeat.apply(args=("llm",))
    assert health.check_workers()["queues"]["llm"]["ok"]
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["heartbeat-llm"]["options"]["queue"] == "llm"
    assert schedule["heartbeat-celery"]["task"] == "ops.tasks.heartbeat"


@pytest.mark.worker
def test_a_real_worker_and_beat_make_healthz_green(client, monkeypatch, settings, worker_factory):
    import time

    monkeypatch.setenv("HEARTBEAT_INTERVAL_SECONDS", "1")
    from django.core.cache import cache

    cache.delete_many(
        [health.HEARTBEAT_KEY.format(queue=q) for q in settings.HEALTHZ_WORKER_QUEUES]
    )
    assert client.get("/healthz").status_code == 503
    worker_factory()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get("/healthz")
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["workers"]["ok"]


# --- /metrics ----------------------------------------------------------------------------


SCRAPE_TOKEN = "test-scrape-token-1"


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    """Requests in tests run with debug off, as in production: /metrics needs its token."""
    settings.METRICS_TOKEN = SCRAPE_TOKEN


def _scrape(client, **headers) -> dict[str, Any]:
    headers.setdefault("Authorization", f"Bearer {SCRAPE_TOKEN}")
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.fixture
def activity(operator):
    """One run with known model calls and tool calls, and two tickets."""
    run = start_run("payment_approval", {"payment_id": "PAY-1001"}, operator)
    calls = [
        ModelCall.objects.create(
            run=run,
            turn=0,
            attempt=1,
            model="claude-opus-4-6",
            status="ok",
            request_content=[],
            latency_ms=400,
            cost_usd=Decimal("0.010000"),
            sdk_attempts=1,
            finished_at=timezone.now(),
        ),
        ModelCall.objects.create(
            run=run,
            turn=1,
            attempt=1,
            model="claude-opus-4-6",
            status="error",
            request_content=[],
            latency_ms=3000,
            cost_usd=Decimal("0"),
            sdk_attempts=3,
            finished_at=timezone.now(),
        ),
        ModelCall.objects.create(
            run=run,
            turn=1,
            attempt=2,
            model="claude-opus-4-6",
            status="ok",
            request_content=[],
            latency_ms=45000,
            cost_usd=Decimal("0.025500"),
            sdk_attempts=1,
            finished_at=timezone.now(),
        ),
    ]
    for i, status in enumerate(["ok", "ok", "ok", "timeout", "error", "corrected"]):
        ToolCall.objects.create(
            run=run,
            model_call=calls[0],
            tool_use_id=f"tu_{i}",
            name="get_payment",
            status=status,
            input={},
            latency_ms=100,
            finished_at=timezone.now(),
        )
    ToolCall.objects.create(
        run=run,
        model_call=calls[0],
        tool_use_id="tu_x",
        name="check_sanctions",
        status="ok",
        input={},
        latency_ms=100,
        finished_at=timezone.now(),
    )
    lifecycle.transition(run.pk, Run.Status.RUNNING)
    escalate(run.pk, "ambiguity", "unsure")
    other = start_run("payment_approval", {"payment_id": "PAY-1002"}, operator)
    lifecycle.transition(other.pk, Run.Status.RUNNING)
    escalate(other.pk, "ambiguity", "again")
    return run


def test_metrics_come_from_the_rollups(client, activity):
    """Counters and histograms are the roll-ups' all-time rows: nothing until a fold, then
    exactly the rows; a row added after the fold shows after the next fold, not before."""
    wf, model = ("workflow", "payment_approval"), ("model", "claude-opus-4-6")
    before = _scrape(client)
    assert not [k for k in before if k[0].startswith("countersign_tool_calls")]
    rollups.fold()
    m = _scrape(client)
    assert m[("countersign_cost_usd_total", (model, wf))] == pytest.approx(0.0355)

    hist = (model, ("role", "orchestrator"), wf)
    assert m[("countersign_model_call_duration_seconds_count", hist)] == 3
    assert m[("countersign_model_call_duration_seconds_sum", hist)] == pytest.approx(48.4)
    assert m[("countersign_model_call_duration_seconds_bucket", (("le", "0.5"), *hist))] == 1
    assert m[("countersign_model_call_duration_seconds_bucket", (("le", "5.0"), *hist))] == 2
    assert m[("countersign_model_call_duration_seconds_bucket", (("le", "25.0"), *hist))] == 2
    assert m[("countersign_model_call_duration_seconds_bucket", (("le", "50.0"), *hist))] == 3
    assert m[("countersign_model_call_duration_seconds_bucket", (("le", "+Inf"), *hist))] == 3
    assert (
        m[
            (
                "countersign_model_calls_total",
                (model, ("role", "orchestrator"), ("status", "error"), wf),
            )
        ]
        == 1
    )

    tool = (("status", "ok"), ("tool", "get_payment"), wf)
    assert m[("countersign_tool_calls_total", tool)] == 3
    assert (
        m[("countersign_tool_calls_total", (("status", "timeout"), ("tool", "get_payment"), wf))]
        == 1
    )
    assert m[("countersign_tool_call_duration_seconds_count", (("tool", "get_payment"), wf))] == 6
    assert m[
        ("countersign_tool_call_duration_seconds_sum", (("tool", "get_payment"), wf))
    ] == pytest.approx(0.6)

    assert m[("countersign_escalations_total", (("reason", "ambiguity"), wf))] == 2
    assert m[("countersign_escalations_open", (("reason", "ambiguity"),))] == 2
    # Retries: one re-attempted turn, and two SDK retries inside one call.
    assert m[("countersign_retries_total", (("reason", "model_error"), wf))] == 1
    assert m[("countersign_retries_total", (("reason", "sdk_http"), wf))] == 2
    assert m[("countersign_runs_active", (("status", "awaiting_review"),))] == 2
    assert m[("countersign_rollup_folded_timestamp_seconds", ())] == pytest.approx(
        rollups.watermark().timestamp()
    )

    # A tool call recorded after the fold: not in the scrape until the next fold.
    ToolCall.objects.create(
        run=activity,
        model_call=activity.model_calls.first(),
        tool_use_id="tu_late",
        name="get_payment",
        status="ok",
        input={},
        latency_ms=100,
        finished_at=timezone.now(),
    )
    assert _scrape(client)[("countersign_tool_calls_total", tool)] == 3
    rollups.fold()
    assert _scrape(client)[("countersign_tool_calls_total", tool)] == 4


def test_queue_depth_counts_each_queue_with_its_priority_lists(client, db, settings):
    import redis

    settings.HEALTHZ_WORKER_QUEUES = ["depth-test-a", "depth-test-b"]
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = ["depth-test-a", "depth-test-a\x06\x163", "depth-test-b"]
    try:
        broker.rpush(keys[0], "m1", "m2")
        broker.rpush(keys[1], "m3")
        m = _scrape(client)
        assert m[("countersign_queue_depth", (("queue", "depth-test-a"),))] == 3
        assert m[("countersign_queue_depth", (("queue", "depth-test-b"),))] == 0
    finally:
        broker.delete(*keys)
        broker.close()


def test_queue_depth_is_absent_when_the_broker_does_not_answer(client, db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.HEALTHZ_TIMEOUT_SECONDS = 0.2
    m = _scrape(client)
    assert not [k for k in m if k[0] == "countersign_queue_depth"]
    assert (
        "countersign_escalations_open",
        (("reason", "ambiguity"),),
    ) not in m  # no ticket, no series


def test_metrics_answer_only_loopback_without_a_token_and_only_in_debug(db, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = True
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert refused.status_code == 403 and b"only loopback" in refused.content


def test_metrics_are_off_in_production_without_a_token(db, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    for client in (Client(REMOTE_ADDR="127.0.0.1"), Client(REMOTE_ADDR="10.1.2.3")):
        refused = client.get("/metrics")
        assert refused.status_code == 404 and b"set METRICS_TOKEN" in refused.content
        assert b"countersign_" not in refused.content
        # A made-up token does not open it either.
        assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


@pytest.mark.parametrize("debug", [False, True])
def test_metrics_need_the_token_when_one_is_set(db, settings, debug):
    settings.METRICS_TOKEN = "scrape-secret-1"
    settings.DEBUG = debug
    remote = Client(REMOTE_ADDR="10.1.2.3")
    assert remote.get("/metrics").status_code == 403
    assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        remote.get("/metrics", headers={"Authorization": "Basic scrape-secret-1"}).status_code
        == 403
    )
    assert Client().get("/metrics").status_code == 403  # loopback is not enough any more
    ok = remote.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
    assert (
        ok.status_code == 200
        and b"# TYPE countersign_model_call_duration_seconds histogram" in ok.content
    )


def test_metrics_need_no_login(db):
    response = Client().get(reverse("metrics"), headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert (
        response.status_code == 200
        and b"# TYPE countersign_model_call_duration_seconds histogram" in response.content
    )


# --- structured logs ------------------------------------------------------------------------


@pytest.fixture
def json_lines():
    """Root logging through the production handler shape: the context filter and the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_every_line_inside_a_step_carries_the_run_and_step(operator, drive, json_lines):
    run = drive(start_run("logged", {}, operator))
    assert run.status == Run.Status.SUCCEEDED
    lines = json_lines()
    starts = [entry for entry in lines if entry["message"] == "step started"]
    assert [entry["step"] for entry in starts] == list(range(1, run.steps_taken + 1))
    assert all(
        entry["run_id"] == str(run.pk) and entry["logger"] == "orchestration.engine"
        for entry in starts
    )
    # The tool ran in its own thread and its line still carries the run and the step.
    tool_line = next(entry for entry in lines if entry["message"] == "checking the ledger")
    assert tool_line["run_id"] == str(run.pk) and tool_line["step"] >= 1
    assert tool_line["ledger"] == "main" and tool_line["level"] == "WARNING"
    # Outside a step, nothing leaks.
    logging.getLogger("tests").warning("after the run")
    assert "run_id" not in json_lines()[-1]


def test_json_formatter_output():
    record = logging.LogRecord(
        "orchestration.engine", logging.ERROR, __file__, 1, "failed %s", ("x",), None
    )
    with log_context(run_id="r-1", step=3):
        ContextFilter().filter(record)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert (
        entry["message"] == "failed x"
        and entry["level"] == "ERROR"
        and entry["logger"] == "orchestration.engine"
    )
    assert entry["run_id"] == "r-1" and entry["step"] == 3 and entry["ts"].endswith("+00:00")
    assert "ValueError: boom" in entry["exc_info"]
    text = TextFormatter().format(record)
    assert (
        text.splitlines()[0].endswith("failed x [run_id=r-1 step=3]") and "ValueError: boom" in text
    )


def test_log_format_setting_is_validated():
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']="
            "'config.settings'; django.setup()",
        ],
        env={**__import__("os").environ, "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "LOG_FORMAT must be 'json' or 'text'" in result.stderr


# --- tracing ------------------------------------------------------------------------------------


def test_tracing_is_off_by_default(settings):
    assert settings.OTEL_ENABLED is False and not tracing.enabled()
    with tracing.span("anything", run_id="x") as span:
        assert span is None


def test_with_tracing_on_steps_and_model_calls_are_spans(operator, drive, json_lines):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        run = drive(start_run("logged", {}, operator))
    finally:
        tracing.configure(None)
    spans = exporter.get_finished_spans()
    steps = [s for s in spans if s.name == "countersign.step"]
    calls = [s for s in spans if s.name == "countersign.model_call"]
    assert len(steps) == run.steps_taken and len(calls) == run.model_calls.count() == 2
    assert all(s.attributes["run_id"] == str(run.pk) for s in steps + calls)
    assert (
        calls[0].attributes["model"] == run.model_calls.first().model
        and calls[0].attributes["turn"] == 0
    )
    step_ids = {s.context.span_id for s in steps}
    assert all(c.parent is not None and c.parent.span_id in step_ids for c in calls)
    # Log lines inside a span carry its trace id.
    start = next(e for e in json_lines() if e["message"] == "step started")
    assert start["trace_id"] == format(steps[0].context.trace_id, "032x")
