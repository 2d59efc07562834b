"""Optional OpenTelemetry tracing, off by default.

With ``OTEL_ENABLED=true`` (and the ``otel`` extra installed) each engine step is a span
(``countersign.step``) and each Messages API call a child span (``countersign.model_call``),
exported by OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` or printed (``OTEL_EXPORTER=console``).
Log lines written inside a span carry its ``trace_id`` and ``span_id``. When tracing is off,
``span()`` costs one ``if``, and the opentelemetry packages are never imported.
"""

from __future__ import annotations

from collections.abc import Iterator
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


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around the block when tracing is on; exceptions are recorded on it."""
    if _tracer is None:
        yield None
        return
    attrs = {
        k: v if isinstance(v, str | bool | int | float) else str(v)
        for k, v in attributes.items()
        if v is not None
    }
    with _tracer.start_as_current_span(name, attributes=attrs) as current:
        yield current


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span, as hex, for log lines; None when not tracing."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
