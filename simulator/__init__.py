"""A faithful simulated Anthropic Messages API (framework-free; see django.py for settings).

Use it in-process through the real SDK::

    api = SimulatedAPI(SimulatorConfig(latency_scale=0), policy_resolver=registry)
    client = anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        http_client=anthropic.DefaultHttpxClient(transport=SimulatorTransport(api)),
    )

or over loopback with `serve(host, port, api)` / ``manage.py simulate_api``.

Request headers the simulator reads
-----------------------------------
``x-countersign-workflow: NAME``
    picks the policy that plays the model (``policy_resolver(NAME)``; unknown or
    absent: `generic_policy`).
``x-simulator-faults: JSON``
    faults for this request, a JSON list (or one object) of specs::

        [{"fault": "rate_limit", "turn": 0, "times": 2},
         {"fault": "hallucinated_tool", "turn": 1},
         {"fault": "overloaded", "rate": 0.3},
         {"fault": "slow", "seconds": 12}]

    ``fault``: rate_limit (429 + retry-after), overloaded (529), server_error (500),
    slow (extra delay: ``seconds``, default config.slow_seconds; beyond the client's
    read timeout it becomes a timeout), slow_stream (status and headers at once, then
    the body paced over ``seconds``: 8 pieces, or SSE events at most 0.25 s apart; the
    read timeout applies to each gap, so the client waits it out), stream_cut (a streamed answer's connection drops after
    message_start and half of its content; ``times`` counts the streams cut per run and turn,
    since the SDK never retries a broken stream), malformed_tool_input (the first tool_use's
    input violates its input_schema), hallucinated_tool (the first tool_use names a
    tool that was not declared: original name + "_v2"), ambiguity (end_turn with text
    saying the request is ambiguous). A streamed answer (``"stream": true``) always
    arrives paced: its first event after the modelled time to first token, the rest over
    the modelled generation time.
    ``turn``: only when the request's assistant-turn index equals it (omitted: any).
    ``times``: only while the SDK's ``x-stainless-retry-count`` < times (times=2 fails
    the first two attempts, the third succeeds; times=99 is a storm).
    ``rate``: probability per matching request, drawn from the simulator's RNG
    (seeded by config.seed). ``seconds`` on rate_limit overrides retry-after.
    Without ``rate`` the header is stateless and deterministic. The same specs in
    config.faults apply to every request (typically with ``rate``).
``x-stainless-retry-count``
    sent by the SDK on every attempt; used by ``times``.
``x-api-key`` or ``Authorization: Bearer``
    either is required (any value); ``anthropic-version`` is accepted whatever it is.
"""

from __future__ import annotations

from .api import RequestRecord, SimulatedAPI, new_id
from .caching import CacheUsage, compute_cache_usage
from .config import MODELS, ModelInfo, SimulatorConfig, config_from_mapping, resolve_model
from .errors import ApiError, SimulatedTimeout
from .faults import FaultSpec, parse_faults
from .policy import (
    Conversation,
    Hostile,
    Policy,
    PolicyRegistry,
    PolicyResolver,
    Turn,
    extract_output_schema,
    final,
    generic_policy,
    hostile,
    scripted,
    text,
    tool_use,
)
from .schemas import schema_instance
from .server import SimulatorServer, make_server, serve, serve_in_thread
from .state import InMemoryState, RedisState, SimulatorState, state_from_url
from .tokens import input_tokens, output_tokens
from .transport import SimulatorTransport

__all__ = [
    "MODELS",
    "ApiError",
    "CacheUsage",
    "Conversation",
    "FaultSpec",
    "Hostile",
    "InMemoryState",
    "ModelInfo",
    "Policy",
    "PolicyRegistry",
    "PolicyResolver",
    "RedisState",
    "RequestRecord",
    "SimulatedAPI",
    "SimulatedTimeout",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "SimulatorTransport",
    "Turn",
    "compute_cache_usage",
    "config_from_mapping",
    "extract_output_schema",
    "final",
    "generic_policy",
    "hostile",
    "input_tokens",
    "make_server",
    "new_id",
    "output_tokens",
    "parse_faults",
    "resolve_model",
    "schema_instance",
    "scripted",
    "serve",
    "serve_in_thread",
    "state_from_url",
    "text",
    "tool_use",
]
