"""OpenTelemetry spans: tool calls, fan-out jobs and resolutions; one run is one trace,
and the trace context travels through Celery (a real message, published to the broker)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis
from celery.signals import task_postrun, task_prerun

from ops import tracing
from orchestration import lifecycle
from orchestration.launch import start_run
from orchestration.models import Run
from orchestration.workflows.declaration import Tool, ToolContext, Workflow
from orchestration.workflows.registry import register
from reviews import resolutions
from reviews.escalation import escalate
from tests.test_fanout import _fanout_settings, drive_fanout  # noqa: F401 - fixtures used here


def _ok(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"ok": True}


register(
    Workflow(
        name="traced",
        title="A tool to trace (tests only)",
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
                "check",
                "Checks.",
                {"type": "object"},
                {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                _ok,
            ),
        ),
        rules=("Call check.",),
    )
)


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    exporter.provider = provider
    yield exporter
    tracing.configure(None)


def test_a_run_is_one_trace_and_its_tool_calls_are_spans_of_their_step(operator, drive, spans):
    run = drive(start_run("traced", {}, operator))
    assert run.status == Run.Status.SUCCEEDED, run.error
    finished = spans.get_finished_spans()
    tools = [s for s in finished if s.name == "countersign.tool_call"]
    steps = [s for s in finished if s.name == "countersign.step"]
    assert len(tools) == run.tool_calls.count() == 1
    assert tools[0].attributes["tool"] == "check" and tools[0].attributes["attempt"] == 1
    assert tools[0].parent.span_id in {s.context.span_id for s in steps}
    # Every span of the run, in every step, is in the trace whose id is the run's.
    assert {s.context.trace_id for s in finished} == {uuid.UUID(str(run.pk)).int}


def test_a_resolution_is_a_span_in_the_runs_trace(operator, reviewer, drive, spans):
    run = start_run("traced", {}, operator)
    lifecycle.transition(run.pk, Run.Status.RUNNING)
    ticket = escalate(run.pk, "ambiguity", "unsure")
    ticket_id = ticket.pk if ticket else run.tickets.get().pk

    # Inside some other trace (a web request's): the resolution still joins the run's trace.
    with spans.provider.get_tracer("test").start_as_current_span("http request") as outer:
        resolutions.resolve(ticket_id, reviewer, "fail", comment="no")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "countersign.resolution"]
    assert span.attributes["action"] == "fail" and span.attributes["ticket_id"] == ticket_id
    assert span.context.trace_id == uuid.UUID(str(run.pk)).int
    assert [link.context.span_id for link in span.links] == [outer.get_span_context().span_id]


def test_the_trace_context_travels_in_the_celery_message(operator, settings, spans):
    """Publish a real advance_run message inside a span; run the task's start as a worker does
    (the message headers become task.request); the step span is the publisher's child."""
    from orchestration import tasks

    run = start_run("traced", {}, operator)
    queue = f"tracing-test-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        with tracing.span("countersign.resolution", run_id=str(run.pk)) as publisher:
            tasks.advance_run.apply_async(args=[str(run.pk)], queue=queue)
        message = json.loads(broker.lpop(queue))
    finally:
        broker.delete(queue)
        broker.close()
    headers = message["headers"]
    assert headers["traceparent"].split("-")[1] == format(uuid.UUID(str(run.pk)).int, "032x")
    body = json.loads(base64.b64decode(message["body"]))

    task = tasks.advance_run
    task.push_request(**headers, args=body[0], kwargs=body[1])
    try:
        task_prerun.send(
            sender=task, task_id=headers["id"], task=task, args=body[0], kwargs=body[1]
        )
        with tracing.span("countersign.step", run_id=str(run.pk)) as step:
            pass
        task_postrun.send(
            sender=task, task_id=headers["id"], task=task, args=body[0], kwargs=body[1]
        )
    finally:
        task.pop_request()
    assert step.parent.span_id == publisher.get_span_context().span_id
    assert step.context.trace_id == publisher.get_span_context().trace_id
    # Detached after the task: the next task starts from nothing.
    from opentelemetry import trace

    assert not trace.get_current_span().get_span_context().is_valid


def test_fanout_jobs_are_spans_of_the_runs_trace(seeded, drive_fanout, spans):  # noqa: F811
    run = drive_fanout(drive_fanout.start({"n": 3}))
    assert run.status == Run.Status.SUCCEEDED, run.error
    jobs = [s for s in spans.get_finished_spans() if s.name == "countersign.fanout_job"]
    assert sorted(s.attributes["job"] for s in jobs) == ["j000", "j001", "j002"]
    assert {s.context.trace_id for s in jobs} == {uuid.UUID(str(run.pk)).int}


def test_spans_cost_nothing_when_tracing_is_off(operator, drive):
    assert not tracing.enabled()
    run = drive(start_run("traced", {}, operator))
    assert run.status == Run.Status.SUCCEEDED
