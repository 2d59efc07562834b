"""Policies: the Conversation view, the generic policy and schema instances."""

from __future__ import annotations

import json

import jsonschema
import pytest
from sim_helpers import SONNET, sdk_client

from simulator import (
    Conversation,
    PolicyRegistry,
    extract_output_schema,
    final,
    generic_policy,
    schema_instance,
    scripted,
)
from simulator.config import config_from_mapping, resolve_model

OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "report_date": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": ["compliant", "non_compliant"]},
        "record_count": {"type": "integer", "minimum": 0},
        "items": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "amount": {"type": "number", "exclusiveMinimum": 0},
                },
                "required": ["id", "amount"],
                "additionalProperties": False,
            },
        },
        "reviewer": {"type": ["string", "null"], "format": "email"},
    },
    "required": ["report_date", "status", "record_count", "items"],
    "additionalProperties": False,
}

TOOLS = [
    {
        "name": "extract",
        "description": "Extract.",
        "input_schema": {
            "type": "object",
            "properties": {
                "period_start": {"type": "string", "format": "date"},
                "source": {"type": "string", "default": "ledger"},
                "limit": {"type": "integer", "minimum": 10, "maximum": 20},
                "filters": {
                    "type": "object",
                    "properties": {"currency": {"type": "string", "examples": ["EUR"]}},
                    "required": ["currency"],
                },
            },
            "required": ["period_start", "filters"],
        },
    },
    {
        "name": "validate",
        "description": "Validate.",
        "input_schema": {
            "type": "object",
            "properties": {"ids": {"type": "array", "items": {"$ref": "#/$defs/id"}}},
            "required": ["ids"],
            "$defs": {"id": {"type": "string", "minLength": 12}},
        },
    },
    {
        "name": "publish",
        "description": "Publish.",
        "input_schema": {"type": "object", "properties": {"channel": {"enum": ["email", "sftp"]}}},
    },
]


def test_generic_policy_walks_tools_in_order_then_answers_with_the_output_schema(client):
    system_prompt = f"You report.\n<output_schema>\n{json.dumps(OUTPUT_SCHEMA)}\n</output_schema>"
    messages = [{"role": "user", "content": json.dumps({"period": "2025-Q1"})}]
    called = []
    for _ in range(len(TOOLS)):
        message = client.messages.create(
            model=SONNET, max_tokens=1000, system=system_prompt, tools=TOOLS, messages=messages
        )
        assert message.stop_reason == "tool_use"
        (call,) = [b for b in message.content if b.type == "tool_use"]
        tool = next(t for t in TOOLS if t["name"] == call.name)
        jsonschema.validate(
            call.input, tool["input_schema"], format_checker=jsonschema.FormatChecker()
        )
        called.append(call.name)
        messages += [
            {"role": "assistant", "content": message.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "{}"}],
            },
        ]
    assert called == ["extract", "validate", "publish"]
    assert messages[2]["content"][0]["tool_use_id"]  # sanity: results were sent back

    answer = client.messages.create(
        model=SONNET, max_tokens=1000, system=system_prompt, tools=TOOLS, messages=messages
    )
    assert answer.stop_reason == "end_turn"
    output = json.loads(answer.content[0].text)
    jsonschema.validate(output, OUTPUT_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert output["status"] == "compliant" and len(output["items"]) == 2


def test_schema_instance_prefers_defaults_examples_and_enums():
    value = schema_instance(TOOLS[0]["input_schema"])
    assert value == {
        "period_start": "2025-01-15",
        "filters": {"currency": "EUR"},
        "source": "ledger",
        "limit": 10,
    }
    assert schema_instance({"type": "string", "format": "date-time"}) == "2025-01-15T09:30:00Z"
    assert (
        schema_instance(
            {"anyOf": [{"type": "null"}, {"type": "integer", "multipleOf": 5, "minimum": 3}]}
        )
        == 5
    )
    combined = {
        "allOf": [
            {"properties": {"a": {"type": "boolean"}}, "required": ["a"]},
            {"properties": {"b": {"const": 3}}},
        ]
    }
    assert schema_instance(combined) == {"a": True, "b": 3}


def test_conversation_view():
    body = {
        "model": SONNET,
        "system": [
            {"type": "text", "text": "Be careful."},
            {"type": "text", "text": '<output_schema>{"type": "object"}</output_schema>'},
        ],
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": '{"run": 7}'}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_a", "name": "extract", "input": {"x": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_a",
                        "content": [{"type": "text", "text": '{"rows": 3}'}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Reviewer note: use EUR."},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_b", "name": "extract", "input": {"x": 2}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "plain text"}
                ],
            },
        ],
    }
    conv = Conversation(body, workflow="finance")
    assert conv.input == {"run": 7}
    assert conv.system_text.startswith("Be careful.")
    assert conv.output_schema == {"type": "object"}
    assert conv.turn_index() == 2
    assert conv.called("extract") and not conv.called("publish")
    assert conv.tool_results[0] == {
        "tool_use_id": "toolu_a",
        "name": "extract",
        "input": {"x": 1},
        "content": {"rows": 3},
        "is_error": True,
    }
    assert conv.last_result("extract")["content"] == "plain text"
    assert conv.last_result("publish") is None
    assert conv.notes == ["Reviewer note: use EUR."]
    assert (
        Conversation({"messages": [{"role": "user", "content": "free text"}]}).input == "free text"
    )


def test_generic_policy_without_output_schema_says_success():
    conv = Conversation({"model": SONNET, "messages": [{"role": "user", "content": "x"}]})
    assert json.loads(generic_policy(conv).content[0]["text"]) == {"status": "success"}
    assert extract_output_schema("<output_schema>not json</output_schema>") is None


def test_registry_and_scripted_turns(make_api):
    registry = PolicyRegistry()

    @registry.register("greeter")
    def greeter(conv):
        return final(f"hello {conv.input['name']}")

    registry.register("counter", scripted(final("one"), final("two")))
    assert registry("missing") is None and registry(None) is None
    api = make_api(resolver=registry)
    client = sdk_client(api, default_headers={"x-countersign-workflow": "greeter"})
    message = client.messages.create(
        model=SONNET, max_tokens=50, messages=[{"role": "user", "content": '{"name": "Ada"}'}]
    )
    assert message.content[0].text == "hello Ada"


def test_models_resolve_by_prefix_and_config_from_mapping():
    assert resolve_model("claude-opus-4-7").min_cache_tokens == 4096
    assert resolve_model("claude-sonnet-4-5-20250929").name == "claude-sonnet-4-5"
    assert resolve_model("claude-opus-4-50") is None
    config = config_from_mapping(
        {"latency_scale": "0", "latency": {"claude-haiku": [0.1, 100]}, "state_url": None}
    )
    assert config.latency_scale == 0.0 and config.latency == {"claude-haiku": (0.1, 100.0)}
    assert config.delay_seconds("claude-haiku-4-5", 1000) == 0.0
    with pytest.raises(ValueError, match="unknown SIMULATOR settings"):
        config_from_mapping({"latency_scal": 1})
