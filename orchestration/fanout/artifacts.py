"""The per-run JSONL artifact: every specialist output, appended before anything reads it.

One line per (job, attempt): ``{"job_id", "attempt", "output", "output_text", "model_call",
"at"}``. Lines are appended under an exclusive flock and fsynced, so parallel writers (threads
and processes) never interleave and a line that was acknowledged survives a crash. A worker
killed between the append and recording it may append the same (job, attempt) twice when
the job resumes; ``read_lines`` keeps the first of each.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone


def path_for(run_id: Any) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "runs" / str(run_id) / "specialist-outputs.jsonl"


def append(run_id: Any, record: dict[str, Any]) -> None:
    path = path_for(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (
        json.dumps({**record, "at": timezone.now().isoformat()}, ensure_ascii=False, default=str)
        + "\n"
    )
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_lines(run_id: Any) -> list[dict[str, Any]]:
    """Each (job, attempt) once, in the order written."""
    path = path_for(run_id)
    if not path.exists():
        return []
    seen: set[tuple[str, int]] = set()
    lines = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            record = json.loads(raw)
            key = (str(record["job_id"]), int(record["attempt"]))
            if key not in seen:
                seen.add(key)
                lines.append(record)
    return lines
