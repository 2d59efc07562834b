"""Structured logs: every line inside a step carries the run id and the step number.

``log_context(run_id=..., step=...)`` sets fields in a contextvar for the duration of a
block (the engine wraps each step in one; a Celery signal adds the task name and id to
every task); ``ContextFilter`` copies them onto each log record, and ``JsonFormatter``
writes one JSON object per line. ``LOG_FORMAT=text`` keeps the fields, readable, for a
developer's terminal.

Threads do not inherit contextvars: code that hands work to a thread copies the context
(``contextvars.copy_context().run``), as the tool execution does.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

# The value is never mutated, only replaced, so one read-only empty mapping is a safe default.
_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "countersign_log_fields", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else on a record came from `extra=` or the context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# The fields the text format shows, in this order, when present.
_TEXT_FIELDS = ("run_id", "step", "task", "task_id", "trace_id")


def current() -> dict[str, Any]:
    return dict(_fields.get())


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (nested blocks add to them)."""
    token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def bind(**fields: Any) -> None:
    """Add fields until the enclosing ``log_context`` ends (e.g. the step number once it is known)."""
    _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the context's fields onto the record, without overwriting an explicit ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            from ops import tracing

            ids = tracing.current_ids()
            if ids:
                record.trace_id, record.span_id = ids
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the run, step and task appended when a line has them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(
            f"{k}={getattr(record, k)}"
            for k in _TEXT_FIELDS
            if getattr(record, k, None) is not None
        )
        if not tags:
            return line
        head, sep, tail = line.partition(
            "\n"
        )  # keep the tags on the first line, before a traceback
        return f"{head} [{tags}]{sep}{tail}"


# --- Celery: every task's lines carry the task's name and id ---------------------------------

_task_tokens: dict[str, contextvars.Token[Mapping[str, Any]]] = {}


def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    _task_tokens[task_id] = _fields.set(
        {**_fields.get(), "task": getattr(task, "name", None), "task_id": task_id}
    )


def _task_finished(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            _fields.reset(token)
        except ValueError:  # set in another context (a pool that switched threads): drop it
            _fields.set({})


def connect_celery_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_started, weak=False, dispatch_uid="ops.logs.task_started")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="ops.logs.task_finished")
