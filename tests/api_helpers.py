"""Calling the JSON API with a token, and checking answers against the OpenAPI document."""

from __future__ import annotations

import json
import uuid
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from api.models import ApiToken
from api.openapi import build


def token_for(user: Any, name: str | None = None) -> str:
    return ApiToken.issue(user, name or f"tests-{uuid.uuid4().hex[:8]}")[1]


def call(
    client: Any,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | str | None = None,
) -> Any:
    extra = dict(headers or {})
    if token is not None:
        extra["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    kwargs: dict[str, Any] = {"headers": extra}
    if data is not None:
        kwargs.update(data=data, content_type=extra.pop("Content-Type", "application/json"))
    return getattr(client, method.lower())(path, **kwargs)


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Validate against a schema of the OpenAPI document, with its components reachable."""
    doc = build()
    root = {**schema, "components": doc["components"]}
    validator = Draft202012Validator(root, format_checker=FormatChecker())
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)
    ]


def assert_documented(response: Any, path: str, method: str) -> dict[str, Any]:
    """The response's status is documented for this operation, and its body matches the schema."""
    op = build()["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in op["responses"], f"{method} {path} answered {status}, which is not documented"
    body = response.json()
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    errors = schema_errors(body, schema)
    assert not errors, f"{method} {path} {status} does not match its schema: {errors}"
    return body
