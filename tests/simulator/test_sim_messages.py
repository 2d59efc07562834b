"""/v1/messages through the real SDK: tool-use loop, validation, auth, limits, streaming."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from sim_helpers import HAIKU, SONNET, sdk_client

from simulator import (
    PolicyRegistry,
    SimulatorTransport,
    Turn,
    final,
    scripted,
    text,
    tool_use,
)

TOOLS = [
    {
        "name": "fetch_ledger",
        "description": "Fetch ledger rows for a day.",
        "input_schema": {
            "type": "object",
            "properties": {"day": {"type": "string", "format": "date"}},
            "required": ["day"],
        },
    },
    {
        "name": "summarise",
        "description": "Summarise rows.",
        "input_schema": {
            "type": "object",
            "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
            "required": ["rows"],
        },
    },
]


def ledger_policy(conv):
    """A scripted workflow: fetch, then summarise what was fetched, then answer."""
    if not conv.called("fetch_ledger"):
        return Turn([tool_use("fetch_ledger", {"day": conv.input["day"]})])
    if not conv.called("summarise"):
        rows = conv.last_result("fetch_ledger")["content"]["rows"]
        return Turn([text("Summarising."), tool_use("summarise", {"rows": rows})])
    summary = conv.last_result("summarise")["content"]
    return final({"total": summary["total"], "notes": conv.notes})


def run_tools(message):
    """Play the tools for one assistant turn; results as a user message."""
    results = []
    for block in message.content:
        if block.type != "tool_use":
            continue
        if block.name == "fetch_ledger":
            output = {"rows": [{"amount": 5}, {"amount": 7}]}
        else:
            output = {"total": sum(r["amount"] for r in block.input["rows"])}
        results.append(
            {"type": "tool_result", "tool_use_id": block.id, "content": json.dumps(output)}
        )
    return {"role": "user", "content": results}


def test_tool_use_round_trip_with_a_scripted_policy(make_api):
    registry = PolicyRegistry()
    registry.register("ledger", ledger_policy)
    api = make_api(resolver=registry)
    client = sdk_client(api, default_headers={"x-countersign-workflow": "ledger"})
    messages = [{"role": "user", "content": json.dumps({"day": "2025-03-01"})}]

    first = client.messages.create(model=SONNET, max_tokens=500, tools=TOOLS, messages=messages)
    assert first.stop_reason == "tool_use"
    assert first.id.startswith("msg_01") and len(first.id) == len("msg_01") + 22
    (call,) = first.content
    assert call.name == "fetch_ledger" and call.input == {"day": "2025-03-01"}
    assert call.id.startswith("toolu_01") and len(call.id) == len("toolu_01") + 22

    messages += [{"role": "assistant", "content": first.content}, run_tools(first)]
    second = client.messages.create(model=SONNET, max_tokens=500, tools=TOOLS, messages=messages)
    assert second.stop_reason == "tool_use"
    assert [b.type for b in second.content] == ["text", "tool_use"]
    assert second.content[1].input == {"rows": [{"amount": 5}, {"amount": 7}]}

    tool_results = run_tools(second)
    tool_results["content"].append({"type": "text", "text": "Reviewer: double-check totals."})
    messages += [{"role": "assistant", "content": second.content}, tool_results]
    third = client.messages.create(model=SONNET, max_tokens=500, tools=TOOLS, messages=messages)
    assert third.stop_reason == "end_turn"
    assert json.loads(third.content[0].text) == {
        "total": 12,
        "notes": ["Reviewer: double-check totals."],
    }
    assert third.usage.input_tokens > second.usage.input_tokens > first.usage.input_tokens
    assert [r.workflow for r in api.requests] == ["ledger"] * 3


def test_unknown_workflow_falls_back_to_the_generic_policy(make_api):
    api = make_api(resolver=PolicyRegistry())
    client = sdk_client(api, default_headers={"x-countersign-workflow": "nope"})
    message = client.messages.create(
        model=SONNET, max_tokens=200, messages=[{"role": "user", "content": "hello"}]
    )
    assert json.loads(message.content[0].text) == {"status": "success"}


def test_missing_tool_result_is_a_400(client):
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01A", "name": "fetch_ledger", "input": {}},
                {"type": "tool_use", "id": "toolu_01B", "name": "summarise", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "ok"},
                {"type": "text", "text": "and here is B"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "late"},
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=SONNET, max_tokens=100, tools=TOOLS, messages=messages)
    err = caught.value
    assert err.status_code == 400
    assert err.type == "invalid_request_error"
    assert "tool_use ids were found without `tool_result` blocks immediately after" in (
        err.api_message.replace("`tool_use` ids", "tool_use ids")
    )
    assert err.api_message.split("immediately after: ")[1].startswith("toolu_01B.")
    assert err.request_id and err.request_id.startswith("req_")
    assert err.body["request_id"] == err.request_id


def test_tool_use_as_last_message_is_a_400(client):
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01X", "name": "fetch_ledger", "input": {}}
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_01X"):
        client.messages.create(model=SONNET, max_tokens=100, tools=TOOLS, messages=messages)


def test_tool_result_for_an_unknown_tool_use_id_is_a_400(client):
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01A", "name": "fetch_ledger", "input": {}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "ok"},
                {"type": "tool_result", "tool_use_id": "toolu_01ZZZ", "content": "made up"},
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=SONNET, max_tokens=100, tools=TOOLS, messages=messages)
    assert "unexpected `tool_use_id` found in `tool_result` blocks: toolu_01ZZZ" in (
        caught.value.api_message
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"tools": TOOLS + [TOOLS[0]]}, 400, "Tool names must be unique"),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            400,
            'first message must use the "user" role',
        ),
        ({"messages": []}, 400, "at least one message is required"),
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"max_tokens": 70_000, "timeout": 30}, 400, "maximum allowed number of output tokens"),
        ({"model": "claude-unknown-9"}, 404, "model: claude-unknown-9"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            400,
            "non-empty",
        ),
    ],
)
def test_request_validation(client, kwargs, status, fragment):
    params = {"model": SONNET, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    params.update(kwargs)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**params)
    assert caught.value.status_code == status
    assert fragment in caught.value.api_message
    expected_type = "not_found_error" if status == 404 else "invalid_request_error"
    assert caught.value.type == expected_type


def test_missing_fields_with_a_raw_client(api):
    raw = httpx2.Client(transport=SimulatorTransport(api), base_url="http://simulator.local")
    response = raw.post("/v1/messages", headers={"x-api-key": "k"}, json={"model": SONNET})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    response = raw.post("/v1/messages", headers={"x-api-key": "k"}, content=b"{not json")
    assert response.status_code == 400


def test_authentication_is_required_but_any_scheme_or_version_works(api):
    raw = httpx2.Client(transport=SimulatorTransport(api), base_url="http://simulator.local")
    body = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    denied = raw.post("/v1/messages", json=body)
    assert denied.status_code == 401
    assert denied.json()["type"] == "error"
    assert denied.json()["error"]["type"] == "authentication_error"
    assert denied.headers["request-id"] == denied.json()["request_id"]
    bearer = raw.post(
        "/v1/messages",
        json=body,
        headers={"authorization": "Bearer k", "anthropic-version": "1999-01-01"},
    )
    assert bearer.status_code == 200
    legacy = raw.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    assert legacy.status_code == 200 and legacy.json()["type"] == "message"


def test_sdk_without_key_raises_authentication_error(api):
    client = sdk_client(api)
    with pytest.raises(anthropic.AuthenticationError):
        client.with_options(
            default_headers={"x-api-key": anthropic.Omit(), "authorization": anthropic.Omit()}
        ).messages.create(model=SONNET, max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_request_over_32_mb_is_413(api):
    raw = httpx2.Client(transport=SimulatorTransport(api), base_url="http://simulator.local")
    response = raw.post(
        "/v1/messages", headers={"x-api-key": "k"}, content=b" " * (32 * 1024 * 1024 + 1)
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_response_shape_matches_the_api(api):
    raw = httpx2.Client(transport=SimulatorTransport(api), base_url="http://simulator.local")
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    payload = raw.post("/v1/messages", json=body, headers={"x-api-key": "k"}).json()
    assert set(payload) == {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert payload["model"] == "claude-sonnet-4-5-20250929"
    assert payload["stop_sequence"] is None
    assert payload["usage"] == {
        "input_tokens": payload["usage"]["input_tokens"],
        "output_tokens": payload["usage"]["output_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }
    assert payload["usage"]["input_tokens"] > 0 and payload["usage"]["output_tokens"] > 0


def test_max_tokens_truncates_text(make_api):
    long_answer = "word " * 400  # 2000 chars = 500 tokens
    api = make_api(resolver=lambda name: scripted(final(long_answer)))
    message = sdk_client(api).messages.create(
        model=HAIKU, max_tokens=20, messages=[{"role": "user", "content": "talk"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 20
    assert message.content[0].text == long_answer[:80]


def test_max_tokens_drops_an_incomplete_tool_use(make_api):
    turn = Turn([text("Let me look."), tool_use("fetch_ledger", {"day": "2025-01-01" * 20})])
    api = make_api(resolver=lambda name: scripted(turn))
    message = sdk_client(api).messages.create(
        model=SONNET, max_tokens=30, tools=TOOLS, messages=[{"role": "user", "content": "go"}]
    )
    assert message.stop_reason == "max_tokens"
    assert [b.type for b in message.content] == ["text"]
    assert message.usage.output_tokens == 30


def test_stop_sequences(make_api):
    api = make_api(resolver=lambda name: scripted(final("alpha beta STOP gamma")))
    message = sdk_client(api).messages.create(
        model=SONNET,
        max_tokens=100,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "go"}],
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert message.content[0].text == "alpha beta "


def test_streaming_gives_the_same_message(make_api):
    turn = Turn(
        [text("Calling the ledger now, " * 5), tool_use("fetch_ledger", {"day": "2025-02-02"})]
    )
    api = make_api(resolver=lambda name: scripted(turn))
    client = sdk_client(api)
    params = {
        "model": SONNET,
        "max_tokens": 500,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "go"}],
    }
    with client.messages.stream(**params) as stream:
        texts = list(stream.text_stream)
        streamed = stream.get_final_message()
    assert "".join(texts) == turn.content[0]["text"]
    assert len(texts) > 1
    assert streamed.stop_reason == "tool_use"
    assert streamed.content[1].input == {"day": "2025-02-02"}
    plain = client.messages.create(**params)
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens


def test_policy_crash_is_a_500_with_the_reason(make_api):
    def broken(conv):
        raise KeyError("day")

    api = make_api(resolver=lambda name: broken)
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk_client(api, max_retries=0).messages.create(
            model=SONNET, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert "KeyError" in caught.value.api_message


def test_models_endpoint(client):
    ids = [m.id for m in client.models.list()]
    assert "claude-opus-4-7" in ids and "claude-haiku-4-5" in ids
    assert client.models.retrieve("claude-sonnet-4-6").id == "claude-sonnet-4-6"
