"""One ordered story of a run: model turns, tool calls and status changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Count, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.template.defaultfilters import linebreaksbr
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from orchestration.privacy import undecryptable_reason
from orchestration.templatetags.countersign import fallback_of, json_size, pretty_json, spaced, usd
from orchestration.untrusted import printable

# Audit events shown in the timeline (model and tool calls appear as their own rows).
# Per-job fan-out events (fanout.job.*) are shown in the job grid, not here.
_STORY_EVENTS = (
    "run.",
    "ticket.",
    "approval.",
    "final.rejected",
    "estimate.made",
    "fanout.decomposed",
    "fanout.plan_rejected",
    "fanout.jobs_done",
    "fanout.halted",
    "subagent.",  # handoffs to sub-agent runs, their results, refusals
)
# The run page shows the story's latest entries: a 500-step run has ~1,500 of them, and
# rendering them all on every page view and every live poll took ~200 ms (bench/RESULTS.md,
# "Dashboard pages"). The whole story is one click away (?timeline=all) and in the download.
TIMELINE_WINDOW = 100
_ORDER = {"event": 0, "model": 1, "tool": 2}


@dataclass
class Entry:
    kind: str  # "model", "tool" or "event"
    at: datetime
    obj: Any


@dataclass
class Timeline:
    """The entries shown (oldest first) and how many the whole story has."""

    entries: list[Entry]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.entries)

    def __iter__(self):  # templates and callers iterate it like the list it used to be
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _sources(run: Run) -> dict[str, Any]:
    story = reduce(or_, (Q(kind__startswith=prefix) for prefix in _STORY_EVENTS))
    return {
        "model": ModelCall.objects.filter(run=run, job__isnull=True),
        "tool": ToolCall.objects.filter(run=run),
        "event": AuditEvent.objects.filter(story, run=run),
    }


def _sort(entries: list[Entry]) -> list[Entry]:
    entries.sort(key=lambda e: (e.at, _ORDER[e.kind], e.obj.pk))
    return entries


def build_timeline(run: Run) -> list[Entry]:
    """The whole story, oldest first."""
    return _sort(
        [
            Entry(kind, obj.created_at, obj)
            for kind, qs in _sources(run).items()
            for obj in qs.order_by("created_at", "pk")
        ]
    )


def _counted(qs: Any) -> Coalesce:
    """How many rows `qs` (rows of one run) has, as a subquery."""
    return Coalesce(Subquery(qs.order_by().values("run_id").annotate(n=Count("pk")).values("n")), 0)


def timeline_window(run: Run, last: int | None = TIMELINE_WINDOW) -> Timeline:
    """The story's latest `last` entries (all of them when `last` is None), oldest first.

    Whatever the run's length: one query for the keys (kind, id, time) of the latest `last`
    entries (the latest `last` of each source, merged), one for the sources' counts, and one
    per source for the rows shown, so only the entries shown are read and decrypted.
    """
    if last is None:
        entries = build_timeline(run)
        return Timeline(entries, len(entries))
    sources = _sources(run)
    keys = [
        qs.order_by()
        .annotate(source=Value(_ORDER[kind]))
        .values_list("source", "id", "created_at")
        .order_by("-created_at", "-id")[:last]
        for kind, qs in sources.items()
    ]
    latest = keys[0].union(*keys[1:], all=True).order_by("-created_at", "-source", "-id")[:last]
    chosen: dict[int, list[int]] = {n: [] for n in _ORDER.values()}
    for source, pk, _at in latest:
        chosen[source].append(pk)
    entries = _sort(
        [
            Entry(kind, obj.created_at, obj)
            for kind, qs in sources.items()
            for obj in qs.filter(pk__in=chosen[_ORDER[kind]])
        ]
    )
    counts = (
        Run.objects.filter(pk=run.pk)
        .annotate(**{kind: _counted(qs) for kind, qs in sources.items()})
        .values_list(*sources)
        .get()
    )
    return Timeline(entries, sum(counts))


# --- the entries as HTML ----------------------------------------------------------------------
# Built here rather than in templates, as the audit trail's rows are (orchestration/views/
# trail.py): 100 entries of a dozen variables, filters and {% url %} tags each were most of the
# 500-step run page's time and of every live poll (bench/RESULTS.md, "Dashboard pages").
# Every value goes through escape() (or a function that escapes, such as linebreaksbr); the
# run page, its live poll and the ticket page all render entries with entry_html().


def _visible(value: Any) -> str:
    return "" if value is None else printable(value)


def _get(value: Any, key: str) -> Any:
    """A template's ``value.key`` on JSON: the key of a dict, else "" (as a missing variable)."""
    return value.get(key, "") if isinstance(value, dict) else ""


def _status(status: Any) -> str:
    return f'<span class="status status-{escape(status)}">{escape(spaced(status) or "?")}</span>'


def _day(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d")


def _json_block(value: Any) -> str:
    return f'<pre class="json">{escape(pretty_json(value))}</pre>'


def _notes(
    error: str,
    payloads: dict[str, Any],
    purged_at: datetime | None,
    purged: str,
    validation_errors: Any = (),
) -> str:
    """What a model or tool call's entry says under its head: its error (and validation
    errors), which payloads cannot be decrypted and why, and when they were purged."""
    out = []
    if error:
        out.append(f'  <p class="error">{escape(_visible(error))}</p>\n')
    if validation_errors:
        items = "".join(f"<li>{escape(_visible(e))}</li>" for e in validation_errors)
        out.append(f'  <ul class="error">{items}</ul>\n')
    for label, value in payloads.items():
        if reason := undecryptable_reason(value):
            out.append(f'  <p class="error undecryptable">{label}: {escape(reason)}</p>\n')
    if purged_at:
        out.append(
            f'  <p class="muted">{purged} purged {_day(purged_at)} (retention policy).</p>\n'
        )
    return "".join(out)


def _model_html(obj: ModelCall, failing: bool) -> str:
    pk = obj.pk
    out = [
        f'<li class="entry model {"failed" if obj.status == "error" else ""}'
        f'{" failing" if failing else ""}" id="model-{pk}">\n  <div class="entry-head">\n'
        f'    <span class="kind">Model</span>\n    <strong>{escape(obj.model)}</strong> · turn {obj.turn}'
    ]
    if obj.attempt > 1:
        out.append(f" · attempt {obj.attempt}")
    if obj.stop_reason:
        out.append(f'\n    <span class="pill">{escape(_visible(obj.stop_reason))}</span>')
    if obj.is_batch:
        out.append(
            f'\n    <span class="pill" title="Message Batches API, {escape(obj.batch_id)}">batch</span>'
        )
    if failing:
        out.append('\n    <span class="pill failing-pill">failing step</span>')
    if obj.copied:
        out.append(
            '\n    <span class="pill copied-pill" title="Copied from the run this one forked; '
            'paid by that run, not counted here">copied</span>'
        )
    meta = []
    if obj.copied:
        meta.append("copied from the original run, which paid for it")
    elif obj.status == "ok":
        meta.append(f"{obj.input_tokens} in · {obj.output_tokens} out")
        if obj.cache_read_tokens or obj.cache_write_tokens:
            meta.append(f" · cache {obj.cache_write_tokens}w/{obj.cache_read_tokens}r")
        meta.append(f" · {escape(usd(obj.cost_usd))}")
    if obj.first_token_ms is not None:
        meta.append(f" · first token {obj.first_token_ms} ms")
    if obj.latency_ms is not None:
        meta.append(f" · {obj.latency_ms} ms")
    if obj.sdk_attempts > 1:
        meta.append(f" · {obj.sdk_attempts} HTTP attempts")
    out.append(f'\n    <span class="meta">{"".join(meta)}</span>\n  </div>\n')
    if obj.status == "pending":
        if obj.batch_id:
            waiting = (
                f"Submitted in batch <code>{escape(obj.batch_id)}</code>; waiting for it to end…"
            )
        elif obj.response_content:
            waiting = (
                '<span class="pill live-pill">streaming</span> The answer so far, as it arrives:'
            )
        else:
            waiting = "Waiting for the model…"
        out.append(f'  <p class="muted">{waiting}</p>\n')
    if obj.status == "error" and obj.response_content:
        out.append(
            '  <p class="muted">What had arrived before the stream broke (charged as the API '
            f"reported it: {obj.input_tokens} in · {obj.output_tokens} out · "
            f"{escape(usd(obj.cost_usd))}):</p>\n"
        )
    out.append(
        _notes(
            obj.error,
            {"Response": obj.response_content, "Request": obj.request_content},
            obj.payload_purged_at,
            "Request and response",
        )
    )
    blocks = obj.response_content if isinstance(obj.response_content, list) else ()
    for block in blocks:
        kind, text = _get(block, "type"), _get(block, "text")
        if kind == "text" and isinstance(text, str) and len(text) > 3000:
            shown = _visible(text)
            out.append(
                f'<blockquote class="says">{escape(Truncator(shown).chars(600))}</blockquote>'
                f'<details class="raw"><summary>Whole answer ({len(text)} characters)</summary>'
                f'<pre class="json">{escape(shown)}</pre></details>\n'
            )
        elif kind == "text" and text:
            out.append(
                f'<blockquote class="says">{linebreaksbr(_visible(text), autoescape=True)}'
                "</blockquote>\n"
            )
        elif kind == "tool_use":
            name = Truncator(_visible(_get(block, "name"))).chars(120)
            tool_use_id = Truncator(_visible(_get(block, "id"))).chars(120)
            out.append(
                f"<details><summary>asks for <code>{escape(name)}</code> "
                f'<span class="muted">{escape(tool_use_id)}</span></summary>'
                f"{_json_block(_get(block, 'input'))}</details>\n"
            )
    if not obj.payload_purged_at:
        out.append(
            f'  <details class="raw"><summary>Request turn ({json_size(obj.request_content)} '
            f"bytes)</summary>{_json_block(obj.request_content)}</details>\n"
        )
    out.append("</li>\n")
    return "".join(out)


def _tool_html(obj: ToolCall, failing: bool) -> str:
    pk = obj.pk
    out = [
        f'<li class="entry tool tool-{escape(obj.status)}{" failing" if failing else ""}" '
        f'id="tool-{pk}">\n  <div class="entry-head">\n    <span class="kind">Tool</span>\n'
        f"    <strong><code>{escape(_visible(obj.name))}</code></strong>"
    ]
    if obj.tool_version:
        out.append(f" v{escape(obj.tool_version)}")
    if obj.attempt > 1:
        out.append(f" · attempt {obj.attempt}")
    out.append(f"\n    {_status(obj.status)}")
    if failing:
        out.append('\n    <span class="pill failing-pill">failing step</span>')
    if obj.copied:
        out.append(
            '\n    <span class="pill copied-pill" title="Copied from the run this one forked; '
            'not executed again">copied</span>'
        )
    if fallback := fallback_of(obj.output):
        cached_at = _get(fallback, "cached_at")
        cached_at = cached_at[:19] if isinstance(cached_at, str | list) else cached_at
        out.append(
            '\n    <span class="pill fallback-pill">fallback: last cached result, cached '
            f"{escape(cached_at)}</span>"
        )
    latency = f"{obj.latency_ms} ms" if obj.latency_ms is not None else ""
    out.append(f'\n    <span class="meta">{latency}</span>\n  </div>\n')
    out.append(
        _notes(
            obj.error,
            {"Input": obj.input, "Output": obj.output},
            obj.payload_purged_at,
            "Input and output",
            obj.validation_errors,
        )
    )
    if not obj.payload_purged_at:
        out.append(f"  <details><summary>Input</summary>{_json_block(obj.input)}</details>\n")
        if obj.output is not None:
            size = json_size(obj.output)
            opened = "open" if size < 400 else ""
            out.append(
                f"  <details {opened}><summary>Output ({size} bytes)</summary>"
                f"{_json_block(obj.output)}</details>\n"
            )
        if obj.raw_output is not None and obj.raw_output != obj.output:
            out.append(
                "  <details><summary>Raw output (before cutting to the schema)</summary>"
                f"{_json_block(obj.raw_output)}</details>\n"
            )
    out.append("</li>\n")
    return "".join(out)


def _run_link(run_id: Any) -> str:
    return (
        f'<a href="{escape(reverse("run_detail", args=[run_id]))}">run '
        f"<code>{escape(str(run_id)[:8])}</code></a>"
    )


def _event_html(obj: AuditEvent) -> str:
    when = timezone.localtime(obj.created_at).strftime("%H:%M:%S")
    where = (
        f"#{obj.seq}"
        if obj.seq
        else f'<span title="not yet anchored in the global chain">run event {obj.run_seq}</span>'
    )
    out = [
        '<li class="entry event">\n  <div class="entry-head">\n'
        f'    <span class="kind">Event</span> <strong>{escape(obj.kind)}</strong> '
        f'<span class="muted">by {escape(obj.actor_label)}</span>\n'
        f'    <span class="meta">{where} · {when}</span>\n  </div>\n'
    ]
    payload = obj.payload
    if message := _get(payload, "message"):
        out.append(f"  <p>{escape(_visible(message))}</p>\n")
    if obj.kind in ("subagent.handoff", "subagent.returned"):
        status = _get(payload, "status")
        ended = f" ended {escape(spaced(status))}" if status else ""
        out.append(
            f"  <p>Sub-agent {escape(_get(payload, 'agent'))}: "
            f"{_run_link(_get(payload, 'child'))}{ended}</p>\n"
        )
    elif obj.kind == "run.requested" and (parent := _get(payload, "parent")):
        agent = _get(payload, "agent")
        out.append(
            f"  <p>Sub-agent run of {_run_link(parent)}"
            f"{f' ({escape(agent)})' if agent else ''}</p>\n"
        )
    out.append("</li>\n")
    return "".join(out)


def entry_html(
    entry: Entry, failing_tool_id: Any = None, failing_model_id: Any = None
) -> SafeString:
    """One entry of the timeline as an ``<li>`` (the ticket page marks its failing step)."""
    obj = entry.obj
    if entry.kind == "model":
        html = _model_html(obj, failing_model_id is not None and obj.pk == failing_model_id)
    elif entry.kind == "tool":
        html = _tool_html(obj, failing_tool_id is not None and obj.pk == failing_tool_id)
    else:
        html = _event_html(obj)
    return mark_safe(html)  # noqa: S308 - every value above is escaped


def timeline_html(
    entries: Any, failing_tool_id: Any = None, failing_model_id: Any = None
) -> SafeString:
    """The entries' ``<li>`` rows, oldest first."""
    return mark_safe(  # noqa: S308 - each row escapes its values
        "".join(entry_html(e, failing_tool_id, failing_model_id) for e in entries)
    )
