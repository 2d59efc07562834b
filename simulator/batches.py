"""Message Batches: create, retrieve, list, cancel, delete and JSONL results.

A batch is stored in the shared `SimulatorState` with its requests. It ends
``config.batch_seconds`` after creation (0: at the next read): the first reader
after that takes a lock, answers every request through the normal message pipeline
(without latency) and stores the results, so exactly one process processes it.
Usage in batch results is full usage with ``service_tier: "batch"``; the 50 %
discount is applied by whoever prices the call, never to the token counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, invalid
from .state import SimulatorState

CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXPIRY_SECONDS = 24 * 3600
LOCK_SECONDS = 600.0

# (params, workflow, faults header) -> a batch result: {"type": "succeeded", "message": ...}
# or {"type": "errored", "error": {...}}
RunRequest = Callable[[dict[str, Any], str | None, str | None], dict[str, Any]]


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def _not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"No message batch found with id '{batch_id}'")


class BatchService:
    def __init__(
        self,
        state: SimulatorState,
        run_request: RunRequest,
        *,
        batch_seconds: Callable[[], float],
        new_id: Callable[[], str],
    ) -> None:
        self._state = state
        self._run = run_request
        self._batch_seconds = batch_seconds
        self._new_id = new_id

    # --- endpoints -------------------------------------------------------------------

    def create(
        self, body: Any, *, workflow: str | None, faults: str | None, base_url: str
    ) -> dict[str, Any]:
        requests = self._validate(body)
        now = self._state.now()
        batch_id = self._new_id()
        batch = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(requests),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": None,
            "created_at": rfc3339(now),
            "expires_at": rfc3339(now + EXPIRY_SECONDS),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        }
        record = {
            "batch": batch,
            "created_ts": now,
            "requests": requests,
            "workflow": workflow,
            "faults": faults,
            "base_url": base_url,
            "results": None,
        }
        self._state.batch_save(batch_id, record)
        return batch

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return self._current(batch_id)["batch"]

    def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", 20))
        except ValueError:
            raise invalid("limit: Input should be a valid integer") from None
        if not 1 <= limit <= 1000:
            raise invalid("limit: Input should be between 1 and 1000")
        ids = self._state.batch_ids()
        if query.get("after_id") in ids:
            ids = ids[ids.index(query["after_id"]) + 1 :]
            window = ids[:limit]
            has_more = len(ids) > limit
        elif query.get("before_id") in ids:
            ids = ids[: ids.index(query["before_id"])]
            window = ids[-limit:]
            has_more = len(ids) > limit
        else:
            window = ids[:limit]
            has_more = len(ids) > limit
        data = []
        for batch_id in window:
            record = self._state.batch_load(batch_id)
            if record is not None:
                data.append(self._finish_if_due(batch_id, record)["batch"])
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        record = self._load(batch_id)
        batch = record["batch"]
        if batch["processing_status"] == "in_progress":
            batch["processing_status"] = "canceling"
            batch["cancel_initiated_at"] = rfc3339(self._state.now())
            self._state.batch_save(batch_id, record)
        return batch

    def delete(self, batch_id: str) -> dict[str, Any]:
        record = self._current(batch_id)
        if record["batch"]["processing_status"] != "ended":
            raise invalid(
                f"Batch {batch_id} cannot be deleted while it is still processing; cancel it first."
            )
        self._state.batch_delete(batch_id)
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str) -> bytes:
        record = self._current(batch_id)
        if record["batch"]["processing_status"] != "ended" or record["results"] is None:
            raise invalid(f"Batch {batch_id} has not finished processing; results are not ready.")
        return "".join(line + "\n" for line in record["results"]).encode()

    # --- internals -------------------------------------------------------------------

    def _validate(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or "requests" not in body:
            raise invalid("requests: Field required")
        requests = body["requests"]
        if not isinstance(requests, list):
            raise invalid("requests: Input should be a valid list")
        if not requests:
            raise invalid("requests: List should have at least 1 item after validation, not 0")
        seen: set[str] = set()
        for i, item in enumerate(requests):
            if not isinstance(item, dict):
                raise invalid(f"requests.{i}: Input should be a valid dictionary")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not CUSTOM_ID_RE.match(custom_id):
                raise invalid(
                    f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                )
            if custom_id in seen:
                raise invalid(f"requests.{i}.custom_id: Duplicate custom_id '{custom_id}'")
            seen.add(custom_id)
            params = item.get("params")
            if not isinstance(params, dict):
                raise invalid(f"requests.{i}.params: Field required")
            for key in ("model", "max_tokens", "messages"):
                if key not in params:
                    raise invalid(f"requests.{i}.params.{key}: Field required")
            if params.get("stream"):
                raise invalid(f"requests.{i}.params.stream: Streaming is not supported in batches")
        return [{"custom_id": r["custom_id"], "params": r["params"]} for r in requests]

    def _load(self, batch_id: str) -> dict[str, Any]:
        record = self._state.batch_load(batch_id)
        if record is None:
            raise _not_found(batch_id)
        return record

    def _current(self, batch_id: str) -> dict[str, Any]:
        return self._finish_if_due(batch_id, self._load(batch_id))

    def _finish_if_due(self, batch_id: str, record: dict[str, Any]) -> dict[str, Any]:
        status = record["batch"]["processing_status"]
        due = self._state.now() >= record["created_ts"] + self._batch_seconds()
        if status == "ended" or (status == "in_progress" and not due):
            return record
        lock = f"batch:{batch_id}"
        if not self._state.try_lock(lock, LOCK_SECONDS):
            return record  # another process is answering it; report it as still running
        try:
            record = self._load(batch_id)  # it may have ended while we took the lock
            if record["batch"]["processing_status"] != "ended":
                self._process(record)
                self._state.batch_save(batch_id, record)
        finally:
            self._state.unlock(lock)
        return record

    def _process(self, record: dict[str, Any]) -> None:
        batch = record["batch"]
        canceled = batch["processing_status"] == "canceling"
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines = []
        for item in record["requests"]:
            if canceled:
                result: dict[str, Any] = {"type": "canceled"}
            else:
                result = self._run(item["params"], record["workflow"], record["faults"])
            counts[result["type"]] += 1
            lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}))
        batch["processing_status"] = "ended"
        batch["request_counts"] = counts
        batch["ended_at"] = rfc3339(self._state.now())
        batch["results_url"] = f"{record['base_url']}/v1/messages/batches/{batch['id']}/results"
        record["results"] = lines
