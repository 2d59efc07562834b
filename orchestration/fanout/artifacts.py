"""The per-run JSONL artifact: every specialist output, appended before anything reads it.

One line per (job, attempt): ``{"job_id", "attempt", "output", "output_text", "model_call",
"at"}``. Lines are appended under an exclusive flock and fsynced (after the lock is released,
so writers do not queue behind each other's flush), so parallel writers (threads and
processes) never interleave and a line that was acknowledged survives a crash. A worker
killed between the append and recording it may append the same (job, attempt) twice when
the job resumes; ``read_lines`` keeps the first of each.

With ``PAYLOAD_ENCRYPTION_KEYS`` set, everything but ``job_id``, ``attempt`` and ``at`` is
sealed into one field, ``{"job_id", "attempt", "sealed": "$countersign_encrypted:<token>",
"at"}``: the file holds no more plaintext than the database. ``read_lines`` opens such lines
(a line it cannot decrypt comes back as ``{"job_id", "attempt", "_undecryptable": why}``)
and reads plaintext lines written before encryption was on as they are;
``reencrypt(run_id)`` (``manage.py reencrypt_payloads``) rewrites a file with the first key.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from orchestration import privacy

CLEAR_KEYS = ("job_id", "attempt", "at")
SEALED_KEY = "sealed"


def path_for(run_id: Any) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "runs" / str(run_id) / "specialist-outputs.jsonl"


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """The line as stored: its payload sealed when a key is set, as it is otherwise."""
    if privacy.fernet() is None:
        return record
    clear = {k: record[k] for k in CLEAR_KEYS if k in record}
    body = {k: v for k, v in record.items() if k not in CLEAR_KEYS}
    text = json.dumps(body, ensure_ascii=False, default=str)
    return {**clear, SEALED_KEY: privacy.encrypt_text(text)}


def _open(record: dict[str, Any]) -> dict[str, Any]:
    """The line's payload; PayloadKeyError when it cannot be decrypted."""
    if SEALED_KEY not in record:
        return record
    body = json.loads(privacy.decrypt_text(record[SEALED_KEY]))
    return {**{k: v for k, v in record.items() if k != SEALED_KEY}, **body}


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def append(run_id: Any, record: dict[str, Any]) -> None:
    """Append the line under the file's lock, then fsync it after the lock is released: the
    lock only keeps writers from interleaving, and 50 jobs of a run each holding it through
    their own fsync queued behind one another (seconds per wave on a busy disk). The line is
    durable when this returns either way; concurrent fsyncs of one file share the flush."""
    path = path_for(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _line(seal({**record, "at": timezone.now().isoformat()}))
    while True:
        with open(path, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if os.fstat(fh.fileno()).st_ino != os.stat(path).st_ino:
                    continue  # re-encrypted (replaced) while this waited: append to the new file
                fh.write(line)
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
            # A re-encryption that replaced the file since read it (with this line) under the
            # lock and fsynced its copy; this flushes the file the line was written to.
            os.fsync(fh.fileno())
            return


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
                try:
                    lines.append(_open(record))
                except (privacy.PayloadKeyError, ValueError) as exc:
                    lines.append(
                        {
                            "job_id": record["job_id"],
                            "attempt": record["attempt"],
                            privacy.UNDECRYPTABLE_KEY: f"This line cannot be decrypted: {exc}",
                        }
                    )
    return lines


def reencrypt(run_id: Any) -> tuple[int, int]:
    """Rewrite the run's artifact with every line sealed with the first key.

    Returns (lines rewritten, lines left as they were because they cannot be decrypted).
    Written to a temporary file and renamed over the original under the same lock that
    appends take, so a concurrent append is neither lost nor interleaved.
    """
    path = path_for(run_id)
    if privacy.fernet() is None or not path.exists():
        return 0, 0
    rewritten = kept = 0
    with open(path, "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            out: list[str] = []
            with open(path, encoding="utf-8") as fh:
                for raw in fh:
                    record = json.loads(raw)
                    try:
                        out.append(_line(seal(_open(record))))
                        rewritten += 1
                    except (privacy.PayloadKeyError, ValueError):
                        out.append(raw if raw.endswith("\n") else raw + "\n")
                        kept += 1
            tmp = path.with_suffix(".jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(out)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return rewritten, kept
