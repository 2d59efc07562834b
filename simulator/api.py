"""`SimulatedAPI`: the Messages API surface, independent of any HTTP framework.

``handle(method, path, headers, body) -> (status, headers, body)`` serves

* ``POST /v1/messages`` (JSON, or SSE with ``"stream": true``)
* ``POST /v1/messages/count_tokens``
* ``POST /v1/messages/batches``, ``GET /v1/messages/batches``,
  ``GET|DELETE /v1/messages/batches/{id}``, ``POST /v1/messages/batches/{id}/cancel``,
  ``GET /v1/messages/batches/{id}/results``
* ``GET /v1/models`` and ``GET /v1/models/{id}``

Pipeline of one message: auth -> size -> JSON -> validation (validation.py) ->
HTTP faults (faults.py) -> policy (policy.py) -> content faults -> stop sequences
and max_tokens -> prompt-cache usage (caching.py) -> modelled latency -> answer.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import faults as fault_kit
from .batches import BatchService
from .caching import breakpoints, compute_cache_usage, with_request_cache_control
from .config import MODELS, SimulatorConfig
from .errors import ApiError, SimulatedTimeout, invalid
from .policy import Conversation, Policy, PolicyResolver, Turn, generic_policy
from .state import SimulatorState, state_from_url
from .streaming import cut_point, message_events
from .tokens import block_tokens, input_tokens, output_tokens, prompt_segments
from .validation import validate_messages_request

logger = logging.getLogger(__name__)

WORKFLOW_HEADER = "x-countersign-workflow"
FAULTS_HEADER = "x-simulator-faults"
RETRY_COUNT_HEADER = "x-stainless-retry-count"
RUN_HEADER = "x-countersign-run"
_BASE62 = string.digits + string.ascii_letters
JSON_HEADERS = {"content-type": "application/json"}


def new_id(prefix: str) -> str:
    """An id like the API's: prefix + "01" + 22 base62 characters (from os.urandom,
    so processes sharing a Redis state never collide even with a fixed seed)."""
    return prefix + "01" + "".join(secrets.choice(_BASE62) for _ in range(22))


@dataclass(frozen=True)
class RequestRecord:
    """What the API saw: for tests and load reports. status 0 means timed out."""

    method: str
    path: str
    status: int
    retry_count: int
    workflow: str | None
    faults: tuple[str, ...]
    request_id: str


class SimulatedAPI:
    """The simulated Messages API. Thread-safe; share one instance per process."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        policy_resolver: PolicyResolver | None = None,
        state: SimulatorState | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.policy_resolver = policy_resolver
        self.state = state if state is not None else state_from_url(self.config.state_url)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)  # noqa: S311 - fault dice, not crypto
        self._global_faults = fault_kit.parse_faults(self.config.faults)
        self._log: deque[RequestRecord] = deque(maxlen=10_000)
        # /v1/messages requests being answered right now, and the most seen at once (the
        # fan-out's concurrency caps are measured against this).
        self.in_flight = 0
        self.peak_in_flight = 0
        self.batches = BatchService(
            self.state,
            self._run_batch_request,
            batch_seconds=lambda: self.config.batch_seconds,
            new_id=lambda: new_id("msgbatch_"),
        )

    # --- public ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests answered so far (newest last, at most 10,000)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request.

        `path` may carry a query string. `timeout` is the caller's read timeout: when
        the modelled latency exceeds it, the call sleeps `timeout` seconds and raises
        SimulatedTimeout (the in-process transport turns that into a read timeout).
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = new_id("req_")
        ctx = _Context(method.upper(), path, lowered, body or b"", timeout)
        try:
            status, out_headers, payload = self._route(ctx)
        except ApiError as exc:
            status, out_headers, payload = (
                exc.status,
                {**JSON_HEADERS, **exc.headers},
                exc.encode(request_id),
            )
        except SimulatedTimeout:
            self._record(ctx, 0, request_id)
            raise
        except Exception as exc:  # a bug in a policy or in the simulator: answer like a 500
            logger.exception("simulated API failed on %s %s", method, path)
            error = ApiError(500, f"Internal server error (simulator: {type(exc).__name__}: {exc})")
            status, out_headers, payload = 500, dict(JSON_HEADERS), error.encode(request_id)
        out_headers["request-id"] = request_id
        self._record(ctx, status, request_id)
        return status, out_headers, payload

    # --- routing ---------------------------------------------------------------------

    def _record(self, ctx: _Context, status: int, request_id: str) -> None:
        record = RequestRecord(
            method=ctx.method,
            path=ctx.route,
            status=status,
            retry_count=ctx.retry_count,
            workflow=ctx.headers.get(WORKFLOW_HEADER),
            faults=tuple(ctx.applied_faults),
            request_id=request_id,
        )
        with self._lock:
            self._log.append(record)

    def _route(self, ctx: _Context) -> tuple[int, dict[str, str], bytes]:
        if not (ctx.headers.get("x-api-key") or ctx.headers.get("authorization", "").strip()):
            raise ApiError(
                401,
                "x-api-key header is required (or Authorization: Bearer <key>)",
            )
        if len(ctx.body) > self.config.max_request_bytes:
            raise ApiError(
                413,
                "Request exceeds the maximum allowed number of bytes. "
                f"The maximum request size is {self.config.max_request_bytes // (1024 * 1024)} MB.",
            )
        parts = [p for p in ctx.route.split("/") if p]
        method = ctx.method
        if parts[:2] != ["v1", "messages"] and parts[:2] != ["v1", "models"]:
            raise ApiError(404, f"Not found: {ctx.route}")
        if parts == ["v1", "messages"] and method == "POST":
            return self._messages(ctx)
        if parts == ["v1", "messages", "count_tokens"] and method == "POST":
            return _json(200, self._count_tokens(ctx))
        if parts[:3] == ["v1", "messages", "batches"]:
            return self._batches(ctx, parts[3:])
        if parts == ["v1", "models"] and method == "GET":
            return _json(200, _models_page())
        if len(parts) == 3 and parts[1] == "models" and method == "GET":
            if parts[2] not in MODELS:
                raise ApiError(404, f"model: {parts[2]}")
            return _json(200, _model_object(parts[2]))
        raise ApiError(404, f"Not found: {method} {ctx.route}")

    def _batches(self, ctx: _Context, rest: list[str]) -> tuple[int, dict[str, str], bytes]:
        method = ctx.method
        if not rest and method == "POST":
            batch = self.batches.create(
                _parse_json(ctx.body),
                workflow=ctx.headers.get(WORKFLOW_HEADER),
                faults=ctx.headers.get(FAULTS_HEADER),
                base_url=self._base_url(ctx),
            )
            return _json(200, batch)
        if not rest and method == "GET":
            return _json(200, self.batches.list(ctx.query))
        if len(rest) == 1 and method == "GET":
            return _json(200, self.batches.retrieve(rest[0]))
        if len(rest) == 1 and method == "DELETE":
            return _json(200, self.batches.delete(rest[0]))
        if len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            return _json(200, self.batches.cancel(rest[0]))
        if len(rest) == 2 and rest[1] == "results" and method == "GET":
            return 200, {"content-type": "application/x-jsonl"}, self.batches.results(rest[0])
        raise ApiError(404, f"Not found: {method} {ctx.route}")

    def _base_url(self, ctx: _Context) -> str:
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        host = ctx.headers.get("host")
        if not host:
            return ""  # a relative results_url; the SDK joins it to its base_url
        scheme = ctx.headers.get("x-forwarded-proto", "http")
        return f"{scheme}://{host}"

    # --- messages --------------------------------------------------------------------

    def _count_tokens(self, ctx: _Context) -> dict[str, int]:
        body = _parse_json(ctx.body)
        validate_messages_request(body, count_tokens=True)
        # cache_control is validated like /v1/messages would, but nothing is cached.
        breakpoints(with_request_cache_control(prompt_segments(body), body.get("cache_control")))
        return {"input_tokens": input_tokens(body)}

    def _messages(self, ctx: _Context) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._answer_messages(ctx)
        finally:
            with self._lock:
                self.in_flight -= 1

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_in_flight = self.in_flight

    def _answer_messages(self, ctx: _Context) -> tuple[int, dict[str, str], bytes]:
        body = _parse_json(ctx.body)
        specs = self._request_faults(ctx.headers)
        message, extra_delay = self.create_message(
            body,
            workflow=ctx.headers.get(WORKFLOW_HEADER),
            specs=specs,
            retry_count=ctx.retry_count,
            applied=ctx.applied_faults,
        )
        delay = self.config.delay_seconds(message["model"], message["usage"]["output_tokens"])
        paced = 0.0
        if body.get("stream"):
            # Streamed as the real API does: silence until the first token, then the answer
            # as it is generated (a read timeout applies to each gap, not to the whole).
            first = min(delay, self.config.first_token_seconds(message["model"]))
            self._wait(first + extra_delay, ctx.timeout)
            paced = delay - first
            status, headers, payload = (
                200,
                {"content-type": "text/event-stream"},
                message_events(message),
            )
            if "stream_cut" in ctx.applied_faults and self._cut_now(ctx, body, specs):
                headers[fault_kit.CUT_HEADER] = str(cut_point(payload))
        else:
            self._wait(delay + extra_delay, ctx.timeout)
            status, headers, payload = _json(200, message)
        if "slow_stream" in ctx.applied_faults:
            spec = next(f for f in specs if f.fault == "slow_stream")
            paced += spec.seconds if spec.seconds is not None else self.config.slow_seconds
        if paced > 0:
            headers = {**headers, fault_kit.TRICKLE_HEADER: f"{paced:g}"}
        return status, headers, payload

    def _cut_now(
        self, ctx: _Context, body: dict[str, Any], specs: list[fault_kit.FaultSpec]
    ) -> bool:
        """Whether this stream is one of the first ``times`` of its run and turn to be cut."""
        spec = next(f for f in specs if f.fault == "stream_cut")
        turn_index = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        if spec.times is None:
            return True
        # Counted in the shared state: a retry answered by another worker process (or another
        # simulator server) must not be cut again.
        return self.state.count(f"cut:{ctx.headers.get(RUN_HEADER, '')}:{turn_index}") <= spec.times

    def _request_faults(self, headers: Mapping[str, str]) -> list[fault_kit.FaultSpec]:
        try:
            header_specs = fault_kit.parse_faults(headers.get(FAULTS_HEADER))
        except ValueError as exc:
            raise invalid(f"{FAULTS_HEADER}: {exc}") from None
        return [*self._global_faults, *header_specs]

    def create_message(
        self,
        body: Any,
        *,
        workflow: str | None = None,
        specs: list[fault_kit.FaultSpec] | None = None,
        retry_count: int = 0,
        service_tier: str = "standard",
        applied: list[str] | None = None,
    ) -> tuple[dict[str, Any], float]:
        """Validate, apply faults, play the policy and price the cache.

        Returns (Messages API response, extra delay from a "slow" fault). Raises
        ApiError for anything the API would refuse. No latency sleep happens here.
        """
        info = validate_messages_request(body)
        turn_index = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        with self._lock:
            chosen = fault_kit.select_faults(
                specs or [], turn_index=turn_index, retry_count=retry_count, rng=self._rng
            )
        kinds = {spec.fault: spec for spec in chosen}
        if applied is not None:
            applied.extend(kinds)
        for kind in fault_kit.HTTP_FAULTS:
            if kind in kinds:
                raise fault_kit.http_fault_error(kinds[kind], self.config.retry_after_seconds)
        segments = with_request_cache_control(prompt_segments(body), body.get("cache_control"))
        breakpoints(segments)  # cache_control errors come before inference, as in the API

        conv = Conversation(body, workflow)
        content, stop_reason = self._play(conv, workflow)
        if "ambiguity" in kinds:
            content, stop_reason = fault_kit.ambiguity_content(conv.tools), "end_turn"
        if "hallucinated_tool" in kinds:
            fault_kit.hallucinate_tool(content, conv.tools)
        if "malformed_tool_input" in kinds:
            fault_kit.corrupt_tool_input(content, conv.tools)
        for block in content:
            if block.get("type") == "tool_use":
                block.setdefault("id", new_id("toolu_"))
        if any(b.get("type") == "tool_use" for b in content):
            stop_reason = "tool_use"
        content, stop_reason, stop_sequence, out_tokens = _limit_output(
            content, stop_reason, body["max_tokens"], body.get("stop_sequences") or []
        )
        usage = compute_cache_usage(
            segments, model=info.name, min_tokens=info.min_cache_tokens, state=self.state
        )
        message = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage.as_usage(out_tokens, service_tier),
        }
        slow = kinds.get("slow")
        extra = 0.0
        if slow is not None:
            extra = slow.seconds if slow.seconds is not None else self.config.slow_seconds
        return message, extra

    def _play(self, conv: Conversation, workflow: str | None) -> tuple[list[dict[str, Any]], str]:
        policy: Policy | None = None
        if self.policy_resolver is not None:
            policy = self.policy_resolver(workflow)
        policy = policy or generic_policy
        try:
            turn = policy(conv)
        except ApiError:
            raise
        except Exception as exc:
            logger.exception("simulator policy for workflow %r failed", workflow)
            raise ApiError(
                500, f"Internal server error (simulator policy {workflow!r}: {exc!r})"
            ) from exc
        if not isinstance(turn, Turn):
            raise ApiError(500, f"simulator policy {workflow!r} returned {type(turn).__name__}")
        content = copy.deepcopy(turn.content)
        for block in content:
            if block.get("type") == "tool_use":
                block.setdefault("input", {})
            elif block.get("type") == "text":
                block["text"] = str(block.get("text", ""))
        return content, turn.stop_reason

    def _wait(self, seconds: float, timeout: float | None) -> None:
        if seconds <= 0:
            return
        if timeout is not None and seconds > timeout:
            self._sleep(timeout)
            raise SimulatedTimeout(f"answer would take {seconds:.1f}s > timeout {timeout:.1f}s")
        self._sleep(seconds)

    def _run_batch_request(
        self, params: dict[str, Any], workflow: str | None, faults_header: str | None
    ) -> dict[str, Any]:
        try:
            specs = self._request_faults({FAULTS_HEADER: faults_header or ""})
            message, _ = self.create_message(
                params, workflow=workflow, specs=specs, service_tier="batch"
            )
        except ApiError as exc:
            return {"type": "errored", "error": exc.body(None)}
        return {"type": "succeeded", "message": message}


class _Context:
    """One request as the router sees it."""

    def __init__(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> None:
        split = urlsplit(path)
        self.method = method
        self.route = split.path or "/"
        self.query = dict(parse_qsl(split.query))
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.applied_faults: list[str] = []
        try:
            self.retry_count = int(headers.get(RETRY_COUNT_HEADER, "0"))
        except ValueError:
            self.retry_count = 0


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise invalid(f"Request body is not valid JSON: {exc}") from None


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, dict(JSON_HEADERS), json.dumps(payload).encode()


def _limit_output(
    content: list[dict[str, Any]], stop_reason: str, max_tokens: int, stop_sequences: list[str]
) -> tuple[list[dict[str, Any]], str, str | None, int]:
    """Apply stop sequences, then max_tokens. Returns content, stop_reason,
    stop_sequence and output tokens."""
    stop_sequence = None
    for index, block in enumerate(content):
        if block.get("type") != "text":
            continue
        hits = [(block["text"].find(s), s) for s in stop_sequences if s in block["text"]]
        if hits:
            position, stop_sequence = min(hits)
            block["text"] = block["text"][:position]
            content = content[: index + 1]
            stop_reason = "stop_sequence"
            break
    budget = max_tokens
    kept: list[dict[str, Any]] = []
    for block in content:
        cost = block_tokens(block)
        if cost <= budget:
            kept.append(block)
            budget -= cost
            continue
        # Over budget: cut text to what fits; an incomplete tool_use is dropped.
        if block.get("type") == "text" and budget > 0:
            kept.append({**block, "text": block["text"][: budget * 4]})
        return kept, "max_tokens", None, max_tokens
    return kept, stop_reason, stop_sequence, min(output_tokens(kept), max_tokens)


def _model_object(name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": name,
        "display_name": name.replace("claude-", "Claude ").replace("-", " ").title(),
        "created_at": "2025-09-29T00:00:00Z",
    }


def _models_page() -> dict[str, Any]:
    data = [_model_object(name) for name in MODELS]
    return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
