"""Fault injection, driven through the real SDK and its retry loop."""

from __future__ import annotations

import json
import time

import anthropic
import httpx2
import jsonschema
import pytest
from sim_helpers import SONNET, sdk_client

from simulator import SimulatorTransport, parse_faults

TOOLS = [
    {
        "name": "route_request",
        "description": "Route a request to an agent.",
        "input_schema": {
            "type": "object",
            "properties": {"agent": {"type": "string"}, "priority": {"type": "integer"}},
            "required": ["agent", "priority"],
        },
    },
    {
        "name": "archive",
        "description": "Archive.",
        "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
]
PARAMS = {
    "model": SONNET,
    "max_tokens": 300,
    "tools": TOOLS,
    "messages": [{"role": "user", "content": "go"}],
}


def faults(*specs):
    return {"x-simulator-faults": json.dumps(list(specs))}


def answered(api):
    return [(r.status, r.retry_count) for r in api.requests]


def test_rate_limit_twice_is_retried_and_the_third_attempt_succeeds(api):
    client = sdk_client(api, max_retries=2)
    message = client.messages.create(
        **PARAMS, extra_headers=faults({"fault": "rate_limit", "turn": 0, "times": 2})
    )
    assert message.stop_reason == "tool_use"
    assert answered(api) == [(429, 0), (429, 1), (200, 2)]
    assert api.requests[0].faults == ("rate_limit",)


def test_rate_limit_response_carries_retry_after(api):
    raw = httpx2.Client(transport=SimulatorTransport(api), base_url="http://simulator.local")
    headers = {"x-api-key": "k", **faults({"fault": "rate_limit", "seconds": 2.5})}
    response = raw.post("/v1/messages", json=PARAMS, headers=headers)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert float(response.headers["retry-after-ms"]) == 2500
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_rate_limit_storm_exhausts_retries(api):
    client = sdk_client(api, max_retries=3)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**PARAMS, extra_headers=faults({"fault": "rate_limit", "times": 99}))
    assert caught.value.status_code == 429
    assert answered(api) == [(429, 0), (429, 1), (429, 2), (429, 3)]


def test_server_error_storm_raises_internal_server_error(make_api):
    # No retry-after on 500s: the SDK backs off 0.5s, 1s...; one retry keeps the test quick.
    api = make_api()
    client = sdk_client(api, max_retries=1)
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(
            **PARAMS, extra_headers=faults({"fault": "server_error", "times": 99})
        )
    assert caught.value.status_code == 500
    assert caught.value.type == "api_error"
    assert [s for s, _ in answered(api)] == [500, 500]


def test_overloaded_raises_overloaded_error(api):
    client = sdk_client(api, max_retries=0)
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(**PARAMS, extra_headers=faults({"fault": "overloaded"}))
    assert caught.value.status_code == 529
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_turn_scoped_faults_only_hit_that_turn(api):
    client = sdk_client(api, max_retries=0)
    headers = faults({"fault": "overloaded", "turn": 1})
    first = client.messages.create(**PARAMS, extra_headers=headers)
    assert first.stop_reason == "tool_use"
    messages = [
        *PARAMS["messages"],
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": first.content[1].id, "content": "ok"}
            ],
        },
    ]
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**{**PARAMS, "messages": messages}, extra_headers=headers)


def test_global_random_faults_are_reproducible_with_a_seed(make_api):
    def outcomes():
        api = make_api(faults=[{"fault": "overloaded", "rate": 0.5}], seed=7)
        client = sdk_client(api, max_retries=0)
        seen = []
        for _ in range(20):
            try:
                client.messages.create(**PARAMS)
                seen.append(200)
            except anthropic.OverloadedError:
                seen.append(529)
        return seen

    first, second = outcomes(), outcomes()
    assert first == second
    assert 3 <= first.count(529) <= 17  # both outcomes happen at rate 0.5


def test_malformed_tool_input_violates_the_schema(api):
    message = sdk_client(api).messages.create(
        **PARAMS, extra_headers=faults({"fault": "malformed_tool_input"})
    )
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "route_request"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(call.input, TOOLS[0]["input_schema"])
    clean = sdk_client(api).messages.create(**PARAMS)
    jsonschema.validate(
        next(b for b in clean.content if b.type == "tool_use").input, TOOLS[0]["input_schema"]
    )


def test_hallucinated_tool_names_an_undeclared_tool(api):
    message = sdk_client(api).messages.create(
        **PARAMS, extra_headers=faults({"fault": "hallucinated_tool"})
    )
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "route_request_v2"
    assert call.name not in {t["name"] for t in TOOLS}
    assert message.stop_reason == "tool_use"


def test_ambiguity_ends_the_turn_saying_so(api):
    message = sdk_client(api).messages.create(
        **PARAMS, extra_headers=faults({"fault": "ambiguity"})
    )
    assert message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"]
    assert "ambiguous" in message.content[0].text
    assert message.content[0].text.startswith("I'm not sure which agent to call")


def test_slow_answer_times_out_in_the_sdk(api):
    client = sdk_client(api, max_retries=0, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(**PARAMS, extra_headers=faults({"fault": "slow", "seconds": 30}))
    assert time.monotonic() - started < 5
    assert answered(api) == [(0, 0)]


def test_slow_with_times_one_succeeds_on_retry(api):
    client = sdk_client(api, max_retries=1, timeout=0.2)
    message = client.messages.create(
        **PARAMS, extra_headers=faults({"fault": "slow", "seconds": 30, "times": 1})
    )
    assert message.type == "message"
    assert answered(api) == [(0, 0), (200, 1)]


def test_latency_is_modelled_per_model(make_api):
    slept = []
    from simulator import SimulatedAPI, SimulatorConfig

    api = SimulatedAPI(
        SimulatorConfig(latency={"claude-sonnet": (0.5, 10.0)}, latency_scale=2.0),
        sleep=slept.append,
    )
    message = sdk_client(api).messages.create(**PARAMS)
    assert slept == [pytest.approx((0.5 + message.usage.output_tokens / 10.0) * 2.0)]


def test_invalid_fault_header_is_a_400(api):
    with pytest.raises(anthropic.BadRequestError, match="x-simulator-faults"):
        sdk_client(api).messages.create(
            **PARAMS, extra_headers={"x-simulator-faults": '[{"fault": "gremlins"}]'}
        )


def test_parse_faults_accepts_one_object_and_rejects_unknown_keys():
    (spec,) = parse_faults('{"fault": "rate_limit", "turn": 0, "times": 2}')
    assert (spec.fault, spec.turn, spec.times, spec.rate) == ("rate_limit", 0, 2, None)
    with pytest.raises(ValueError, match="unknown fault keys"):
        parse_faults([{"fault": "slow", "tunr": 1}])


def test_slow_stream_in_process_waits_unless_a_gap_exceeds_the_timeout(api):
    client = sdk_client(api, max_retries=0, timeout=0.5)
    began = time.monotonic()
    message = client.messages.create(
        **PARAMS, extra_headers=faults({"fault": "slow_stream", "seconds": 0.8})
    )
    assert time.monotonic() - began >= 0.8
    assert message.stop_reason == "tool_use"
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(
            **PARAMS, extra_headers=faults({"fault": "slow_stream", "seconds": 8})
        )
    assert parse_faults({"fault": "slow_stream", "seconds": 1})[0].seconds == 1.0


def test_stream_cut_times_holds_across_api_instances_sharing_a_state(make_api):
    """Worker processes each have their own simulator; the cut count is in the shared state,
    so a retry answered by another process is not cut again (it was, and the fault suite saw
    three attempts of a turn cut once)."""
    one, two = make_api(), make_api()  # two processes, one store (Redis in a deployment)
    cut = {**faults({"fault": "stream_cut", "turn": 0, "times": 1}), "x-countersign-run": "r1"}

    def stream(api, headers=cut):
        with sdk_client(api, max_retries=0).messages.stream(**PARAMS, extra_headers=headers) as s:
            return s.get_final_message()

    with pytest.raises(httpx2.RemoteProtocolError):
        stream(one)
    assert stream(two).stop_reason == "tool_use"  # the second stream of run r1's turn 0
    assert stream(one).stop_reason == "tool_use"
    with pytest.raises(httpx2.RemoteProtocolError):  # counted per run
        stream(two, {**cut, "x-countersign-run": "r2"})
