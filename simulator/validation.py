"""Request validation the real Messages API does, with messages worded like its own.

Only checks that matter to a client are modelled: required fields and their types,
known models, the user-first rule, tool_use/tool_result pairing, tool definitions,
non-empty content. Everything raises errors.ApiError (400, or 404 for unknown models).
"""

from __future__ import annotations

import re
from typing import Any

from .config import ModelInfo, resolve_model
from .errors import ApiError, invalid

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
ROLES = ("user", "assistant")


def _require(body: dict[str, Any], key: str) -> Any:
    if key not in body or body[key] is None:
        raise invalid(f"{key}: Field required")
    return body[key]


def _validate_model_field(body: dict[str, Any]) -> str:
    model = _require(body, "model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Input should be a valid string")
    return model


def validate_model(body: dict[str, Any]) -> ModelInfo:
    """The resolved model of a request; 400 if the field is bad, 404 if unknown."""
    model = _validate_model_field(body)
    info = resolve_model(model)
    if info is None:
        raise ApiError(404, f"model: {model}")
    return info


def _validate_max_tokens_field(body: dict[str, Any]) -> None:
    value = _require(body, "max_tokens")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("max_tokens: Input should be a valid integer")
    if value < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")


def _validate_max_tokens_for_model(body: dict[str, Any], info: ModelInfo) -> None:
    value = body["max_tokens"]
    if value > info.max_output_tokens:
        raise invalid(
            f"max_tokens: {value} > {info.max_output_tokens}, which is the maximum allowed "
            f"number of output tokens for {body['model']}"
        )


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
            raise invalid(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            continue  # server tools (web_search_..., bash_...) have no input_schema
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise invalid(f"tools.{i}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice")
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and choice.get("name") not in names
    ):
        raise invalid(f"tool_choice: Tool '{choice.get('name')}' not found in tools")


def _validate_system(body: dict[str, Any]) -> None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise invalid("system: text content blocks must be non-empty")


def _validate_block(where: str, block: Any) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise invalid(f"{where}: Input should be a valid content block with a 'type'")
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise invalid(f"{where}.text: Field required")
        if not block["text"]:
            raise invalid("messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not block["id"]:
            raise invalid(f"{where}.tool_use.id: Field required")
        if not isinstance(block.get("name"), str):
            raise invalid(f"{where}.tool_use.name: Field required")
        if not isinstance(block.get("input"), dict):
            raise invalid(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        raise invalid(f"{where}.tool_result.tool_use_id: Field required")


def _validate_messages(body: dict[str, Any]) -> None:
    messages = _require(body, "messages")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    seen_tool_use_ids: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            if not content and not (role == "assistant" and i == len(messages) - 1):
                raise invalid(
                    f"messages.{i}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
            continue
        if not isinstance(content, list):
            raise invalid(f"messages.{i}.content: Input should be a valid string or list")
        if not content and not (role == "assistant" and i == len(messages) - 1):
            raise invalid(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, block in enumerate(content):
            _validate_block(f"messages.{i}.content.{j}", block)
            if block["type"] == "tool_use":
                if block["id"] in seen_tool_use_ids:
                    raise invalid(f"messages.{i}.content.{j}: `tool_use` ids must be unique")
                seen_tool_use_ids.add(block["id"])
    if messages[0]["role"] != "user":
        raise invalid('messages: first message must use the "user" role')
    _validate_tool_pairing(messages)


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _validate_tool_pairing(messages: list[dict[str, Any]]) -> None:
    """A tool_use turn must be answered by a user turn that begins with its tool_results."""
    for i, message in enumerate(messages):
        blocks = _blocks(message)
        if message["role"] == "assistant":
            ids = [b["id"] for b in blocks if b["type"] == "tool_use"]
            if not ids:
                continue
            following = messages[i + 1] if i + 1 < len(messages) else None
            answered: set[str] = set()
            if following is not None and following["role"] == "user":
                for block in _blocks(following):
                    if block["type"] != "tool_result":
                        break  # only tool_results at the start of the turn count
                    answered.add(block["tool_use_id"])
            missing = [tool_id for tool_id in ids if tool_id not in answered]
            if missing:
                raise invalid(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        else:
            previous = messages[i - 1] if i > 0 and messages[i - 1]["role"] == "assistant" else None
            asked = (
                {b["id"] for b in _blocks(previous) if b["type"] == "tool_use"}
                if previous
                else set()
            )
            for j, block in enumerate(blocks):
                if block["type"] == "tool_result" and block["tool_use_id"] not in asked:
                    raise invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` block "
                        "must have a corresponding `tool_use` block in the previous message."
                    )


def _validate_sampling(body: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 1
    ):
        raise invalid("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)
    ):
        raise invalid("stop_sequences: Input should be a valid list of non-empty strings")


def validate_messages_request(body: Any, *, count_tokens: bool = False) -> ModelInfo:
    """Validate a /v1/messages (or count_tokens) body; returns the resolved model."""
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    # Shape errors (400) come before the model lookup (404), as in the real API.
    _validate_model_field(body)
    if not count_tokens:
        _validate_max_tokens_field(body)
    _validate_messages(body)
    _validate_system(body)
    _validate_tools(body)
    _validate_sampling(body)
    info = validate_model(body)
    if not count_tokens:
        _validate_max_tokens_for_model(body, info)
    return info
