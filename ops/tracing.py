"""Optional OpenTelemetry tracing, off by default.

With ``OTEL_ENABLED=true`` (and the ``otel`` extra installed) each engine step is a span
(``countersign.step``), each Messages API call (``countersign.model_call``), each tool call
attempt (``countersign.tool_call``), each fan-out job (``countersign.fanout_job``) and each
ticket resolution (``countersign.resolution``) too, exported by OTLP/HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT`` or printed (``OTEL_EXPORTER=console``).

One run is one trace. A span given a ``run_id`` belongs to the run's trace, whose id is the
run's UUID (128 bits, as a trace id is): every process finds it without storing anything,
a step hours after a reviewer's decision included. Inside one trace, parents come from the
context: Celery carries it from the code that enqueues a task to the task (W3C
``traceparent`` in the message headers, ``connect_celery_signals``), so a step's span is the
child of the span that queued it. A span of a run started inside another trace (a web
request's) goes in the run's trace with a link to the other one.

Log lines written inside a span carry its ``trace_id`` and ``span_id``. When tracing is off,
``span()`` costs one ``if``, and the opentelemetry packages are never imported (hence the
imports inside the functions below: the packages are an optional extra).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_tracer: Any = None


def configure(provider: Any | None) -> None:
    """Trace with this TracerProvider (None turns tracing off). Tests pass an in-memory one."""
    global _tracer
    _tracer = provider.get_tracer("countersign") if provider is not None else None


def configure_from_settings() -> None:
    if not getattr(settings, "OTEL_ENABLED", False):
        return
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ImproperlyConfigured(
            "OTEL_ENABLED=true needs the OpenTelemetry packages: pip install -e '.[otel]'."
        ) from None
    if settings.OTEL_EXPORTER == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ImproperlyConfigured(
                "OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: pip install -e '.[otel]'."
            ) from None
        exporter: Any = (
            OTLPSpanExporter()
        )  # endpoint and headers from the standard OTEL_EXPORTER_OTLP_* variables
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
    )
    # Batching exports off the request/step path; the SDK restarts its thread after a fork (prefork workers).
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    configure(provider)


def enabled() -> bool:
    return _tracer is not None


def run_trace_id(run_id: Any) -> int:
    """The trace id of a run: its UUID as a 128-bit integer."""
    return uuid.UUID(str(run_id)).int


def _run_parent(run_id: Any) -> Any:
    """A context whose (remote, never exported) parent is the run's trace root."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    trace_id = run_trace_id(run_id)
    root = SpanContext(
        trace_id=trace_id,
        span_id=(trace_id & 0xFFFF_FFFF_FFFF_FFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(root))


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around the block when tracing is on; exceptions are recorded on it. With a
    ``run_id`` attribute, the span is in that run's trace (see the module docstring)."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link

    attrs = {
        k: v if isinstance(v, str | bool | int | float) else str(v)
        for k, v in attributes.items()
        if v is not None
    }
    context, links = None, None
    run_id = attributes.get("run_id")
    if run_id:
        current = trace.get_current_span().get_span_context()
        try:
            wanted = run_trace_id(run_id)
        except ValueError:
            wanted = None
        if wanted is not None and (not current.is_valid or current.trace_id != wanted):
            context = _run_parent(run_id)
            links = [Link(current)] if current.is_valid else None
    with _tracer.start_as_current_span(
        name, context=context, attributes=attrs, links=links
    ) as current_span:
        yield current_span


def traced(
    name: str, attributes: Callable[..., dict[str, Any]]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function with a span; ``attributes(*args, **kwargs)`` gives its attributes
    (a ``run_id`` among them puts it in the run's trace). Only called when tracing is on."""

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return function(*args, **kwargs)
            with span(name, **attributes(*args, **kwargs)):
                return function(*args, **kwargs)

        return wrapper

    return decorator


# --- trace context through Celery ---------------------------------------------------------

_attached: dict[str, Any] = {}


def _inject_into_message(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish: the current trace context goes into the message's headers."""
    if _tracer is None or headers is None:
        return
    from opentelemetry.propagate import inject

    inject(headers)


def _request_getter() -> Any:
    from opentelemetry.propagators.textmap import Getter

    class RequestGetter(Getter):
        """Celery gives a message's headers to the task as attributes of ``task.request``."""

        def get(self, carrier: Any, key: str) -> list[str] | None:
            value = getattr(carrier, key, None)
            if value is None and isinstance(getattr(carrier, "headers", None), dict):
                value = carrier.headers.get(key)
            return [value] if isinstance(value, str) else None

        def keys(self, carrier: Any) -> list[str]:
            return []

    return RequestGetter()


def _attach_from_message(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """task_prerun: the task runs in the context its message carried."""
    if _tracer is None or task is None or task_id is None:
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    carried = extract(task.request, getter=_request_getter())
    _attached[task_id] = context.attach(carried)


def _detach(task_id: str | None = None, **_: Any) -> None:
    """task_postrun: back to the worker's own context."""
    token = _attached.pop(task_id, None) if task_id else None
    if token is not None:
        from opentelemetry import context

        context.detach(token)


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_inject_into_message, weak=False, dispatch_uid="ops.tracing.inject")
    task_prerun.connect(_attach_from_message, weak=False, dispatch_uid="ops.tracing.attach")
    task_postrun.connect(_detach, weak=False, dispatch_uid="ops.tracing.detach")


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span, as hex, for log lines; None when not tracing."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
