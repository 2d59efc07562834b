"""The hostile-data harness's invariants and its tally.

Every answer is checked as it comes (``answer_ok``): no 5xx; a 4xx carries a JSON error
(``{"error": {"code", "message"}}``) or an HTML page, either naming the field. After the runs
of a test, ``runs_sound`` checks that no run is left running with no step in flight, that the
audit chain verifies, and that every page, download and export renders every stored run.
The tally counts what was tried and what answered 5xx, per entry point and class; ``make
fuzz`` writes it out (``write_results``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from django.test import Client

TRIED: Counter[tuple[str, str]] = Counter()
SERVER_ERRORS: Counter[tuple[str, str]] = Counter()
REFUSED: Counter[tuple[str, str]] = Counter()  # 4xx answers (each naming the field)


def budget(default: int) -> int:
    """Examples per fuzz test: HOSTILE_FUZZ_EXAMPLES (make fuzz) or the small default (make test)."""
    return int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", default))


def client_for(user: Any = None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


def body_of(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def answer_ok(entry: str, cls: str, response: Any, names: tuple[str, ...]) -> int:
    """Check one answer; returns its status. ``names``: any of them names the field."""
    TRIED[(entry, cls)] += 1
    body = body_of(response)
    status = response.status_code
    if status >= 500:
        SERVER_ERRORS[(entry, cls)] += 1
        raise AssertionError(f"{entry} [{cls}] answered {status}: {body[:300]!r}")
    if 400 <= status < 500 and status not in (401, 403, 404, 405, 409, 429):
        REFUSED[(entry, cls)] += 1
        text = body.decode("utf-8")
        if response["Content-Type"].startswith("application/json"):
            error = json.loads(text)["error"]
            assert error["code"] and error["message"], text
        else:
            assert "<html" in text.lower() or "<" in text or text.startswith("Cannot"), text[:200]
        if not any(n.lower() in text.lower() for n in names):
            Path("/tmp/hostile-last-refusal.html").write_text(text)
            raise AssertionError(f"{entry} [{cls}] {status} names none of {names}: {text[:300]}")
    return status


def runs_sound(user: Any) -> None:
    """The invariants over every stored run (see the module docstring)."""
    from orchestration.audit import verify_chain
    from orchestration.models import Run
    from reviews.models import EscalationTicket

    stuck = Run.objects.filter(status=Run.Status.RUNNING, lease_expires_at__isnull=True)
    assert not stuck.exists(), (
        f"runs left running with no step in flight: {list(stuck.values_list('pk', flat=True))}"
    )
    report = verify_chain()
    assert report.ok, f"audit chain broken: {report.problem}"
    client = client_for(user)
    for run in Run.objects.all():
        for path in (f"/runs/{run.pk}/", f"/runs/{run.pk}/live/", f"/runs/{run.pk}/download.json"):
            answer_ok("stored run pages", "every stored run", client.get(path), ())
        download = body_of(client.get(f"/runs/{run.pk}/download.json"))
        assert str(run.pk) in json.dumps(json.loads(download))  # parses: every value kept as JSON
    for ticket in EscalationTicket.objects.all():
        answer_ok(
            "stored run pages", "every stored run", client.get(f"/reviews/tickets/{ticket.pk}/"), ()
        )
    for fmt in ("csv", "jsonl"):
        answer_ok("stored run pages", "every stored run", client.get(f"/runs/export.{fmt}"), ())


def write_results(path: str) -> None:
    """The tally as a markdown section, replacing the one already in ``path`` (if any)."""
    entries = sorted({e for e, _ in TRIED})
    lines = [
        "## Hostile data fuzzing (`make fuzz`)",
        "",
        f"Examples per fuzz test: {budget(0) or 'default'}; generators in tests/hostile/strategies.py.",
        f"Tried {sum(TRIED.values()):,} requests, commands and model/tool outputs; "
        f"**{sum(SERVER_ERRORS.values())} answered 5xx**; "
        f"{sum(REFUSED.values()):,} refused with a 4xx naming the field.",
        "",
        "| entry point | class | tried | 4xx | 5xx |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in entries:
        for (e, cls), n in sorted(TRIED.items()):
            if e == entry:
                lines.append(
                    f"| {e} | {cls} | {n} | {REFUSED[(e, cls)]} | {SERVER_ERRORS[(e, cls)]} |"
                )
    section = "\n".join(lines) + "\n"
    target = Path(path)
    old = target.read_text() if target.exists() else ""
    pattern = re.compile(r"## Hostile data fuzzing \(`make fuzz`\)\n.*?(?=\n## |\Z)", re.DOTALL)
    new = (
        pattern.sub(lambda _: section.rstrip("\n") + "\n", old)
        if pattern.search(old)
        else (old.rstrip("\n") + "\n\n" + section if old else section)
    )
    target.write_text(new)
