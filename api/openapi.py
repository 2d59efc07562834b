"""The OpenAPI 3.1 document for the JSON API, served at /api/openapi.json.

Written by hand, next to the code: tests/test_api_openapi.py checks that every route in
api/urls.py is documented with its methods, that every example validates against its
schema, and tests/test_api.py validates real responses against these schemas.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from api.http import api_view
from orchestration.models import Run
from reviews.models import EscalationTicket

RUN_ID = "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f"
BASE = "https://countersign.example.com"

NULLABLE_STRING = {"type": ["string", "null"]}
DATETIME = {"type": "string", "format": "date-time"}
NULLABLE_DATETIME = {"type": ["string", "null"], "format": "date-time"}
MONEY = {
    "type": "string",
    "pattern": r"^-?\d+(\.\d+)?$",
    "description": "US dollars as a decimal string.",
}

ESTIMATE_EXAMPLE = {
    "upper_usd": "0.089288",
    "expected_usd": "0.059525",
    "model": "claude-opus-4-6",
    "lines": [
        {
            "item": "Prompt (system + tools + this input)",
            "calc": "count_tokens on the rendered prompt = 1,381 tokens",
            "usd": "",
        },
        {"item": "Expected cost", "calc": "sum of the lines above", "usd": "$0.059525"},
        {"item": "Upper bound", "calc": "expected x (1 + 50% retry allowance)", "usd": "$0.089288"},
    ],
}
LINKS_EXAMPLE = {"self": f"{BASE}/api/runs/{RUN_ID}", "web": f"{BASE}/runs/{RUN_ID}/"}
TICKET_EXAMPLE = {
    "id": 42,
    "status": "open",
    "reason": "regulatory_trigger",
    "message": "Payment PAY-1002 is over the sign-off amount.",
    "priority": 1,
    "due_at": "2026-11-20T10:15:00Z",
    "assignee": None,
    "created_at": "2026-11-20T09:15:00Z",
    "links": {"resolve": f"{BASE}/api/tickets/42/resolve", "web": f"{BASE}/reviews/tickets/42/"},
}
RUN_EXAMPLE = {
    "id": RUN_ID,
    "workflow": "payment_approval",
    "workflow_version": {"version": "1", "content_hash": "3f9a" + "0" * 60},
    "status": "awaiting_review",
    "final": False,
    "requested_by": "operator",
    "input": {"payment_id": "PAY-1002"},
    "result": None,
    "error": None,
    "estimate": ESTIMATE_EXAMPLE,
    "cost_usd": "0.041210",
    "tokens": {
        "input": 6120,
        "output": 410,
        "cache_write": 0,
        "cache_read": 0,
        "total_input": 6120,
    },
    "steps_taken": 4,
    "latency_ms": None,
    "idempotency_key": "2f1d6c3e-nightly-2026-11-20",
    "open_ticket": TICKET_EXAMPLE,
    "created_at": "2026-11-20T09:14:51Z",
    "updated_at": "2026-11-20T09:15:00Z",
    "queued_at": "2026-11-20T09:14:52Z",
    "started_at": "2026-11-20T09:14:52Z",
    "finished_at": None,
    "links": LINKS_EXAMPLE,
}


CALLS_EXAMPLE = {
    "id": RUN_ID,
    "model_calls": [
        {
            "id": 412,
            "job": None,
            "turn": 0,
            "attempt": 1,
            "role": "orchestrator",
            "model": "claude-opus-4-6",
            "status": "ok",
            "stop_reason": "tool_use",
            "request_id": "req_011CVkXq",
            "request_content": {
                "messages": [{"role": "user", "content": '{"payment_id": "PAY-1001"}'}]
            },
            "response_content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "fetch_payment",
                    "input": {"payment_id": "PAY-1001"},
                }
            ],
            "usage": {"input_tokens": 1830, "output_tokens": 64},
            "input_tokens": 1830,
            "output_tokens": 64,
            "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0,
            "cache_read_tokens": 0,
            "cost_usd": "0.014750",
            "is_batch": False,
            "sdk_attempts": 1,
            "latency_ms": 1840,
            "error": "",
            "created_at": "2026-11-20T09:14:51Z",
            "finished_at": "2026-11-20T09:14:53Z",
            "payload_purged_at": None,
        }
    ],
    "tool_calls": [
        {
            "id": 977,
            "model_call": 412,
            "tool_use_id": "toolu_01A",
            "name": "fetch_payment",
            "tool_version": "1",
            "attempt": 1,
            "status": "ok",
            "settled": True,
            "input": {"payment_id": "PAY-1001"},
            "output": {"payment_id": "PAY-1001", "amount": "1250.00"},
            "raw_output": {"payment_id": "PAY-1001", "amount": "1250.00"},
            "validation_errors": [],
            "error": "",
            "latency_ms": 12,
            "created_at": "2026-11-20T09:14:53Z",
            "finished_at": "2026-11-20T09:14:53Z",
            "payload_purged_at": None,
        }
    ],
    "links": LINKS_EXAMPLE,
}


def _error_example(
    status_code: str, code: str, message: str, fields: dict[str, str] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"summary": f"{status_code} {code}", "value": {"error": error}}


def _error(description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Error"}}
    if examples:
        content["examples"] = {e["summary"].split(" ", 1)[1]: e for e in examples}
    return {"description": description, "content": {"application/json": content}}


# Every POST: a body over DATA_UPLOAD_MAX_MEMORY_SIZE (config/request_limits.py).
TOO_LARGE = {
    "description": "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default).",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Error"},
            "examples": {
                "request_too_large": _error_example(
                    "413",
                    "request_too_large",
                    "The request body is larger than the limit of 2.5 MB (2,621,440 bytes) "
                    "(DATA_UPLOAD_MAX_MEMORY_SIZE). Send less at once.",
                    {"body": "at most 2,621,440 bytes"},
                )
            },
        }
    },
}


UNAUTHENTICATED = _error(
    "No token, or the token is invalid, revoked (by its owner, an administrator, or a change of "
    "the account's password) or expired.",
    _error_example(
        "401",
        "token_revoked",
        "This API token was revoked because the account's password changed. Create a new one "
        "on the API tokens page.",
    ),
    _error_example(
        "401",
        "token_expired",
        "This API token expired on 2026-11-20 09:15 UTC. Create a new one on the API tokens page.",
    ),
)
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "Seconds until the token's request window ends.",
    }
}
# Every operation that takes a token: its requests are counted per token (API_RATE_LIMIT).
TOO_MANY_REQUESTS = {
    **_error(
        "This token made more requests than API_RATE_LIMIT allows in the current window; "
        "Retry-After says when to try again.",
        _error_example(
            "429",
            "too_many_requests",
            "This token made more than 120 requests per minute (API_RATE_LIMIT). Retry in 42 s.",
        ),
    ),
    "headers": RETRY_AFTER,
}
NOT_FOUND = _error(
    "No such object, or it is not visible to you (someone else's run is 404, never 403).",
    _error_example("404", "not_found", "No such run."),
)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable reason."},
                    "message": {"type": "string", "description": "What was wrong and what to do."},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Per-field problems (a field name, or 'input' for the whole input).",
                    },
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
    "Links": {
        "type": "object",
        "required": ["self", "web"],
        "properties": {
            "self": {"type": "string", "format": "uri"},
            "web": {"type": "string", "format": "uri"},
        },
    },
    "EstimateLine": {
        "type": "object",
        "required": ["item", "calc", "usd"],
        "properties": {
            "item": {"type": "string"},
            "calc": {"type": "string"},
            "usd": {
                "type": "string",
                "description": "'$0.012345', or empty for a line without a cost.",
            },
        },
    },
    "Estimate": {
        "type": "object",
        "description": "The pre-run cost estimate. Over the approval threshold, the run waits for a manager.",
        "required": ["upper_usd", "lines"],
        "properties": {
            "upper_usd": MONEY,
            "expected_usd": {**MONEY, "type": ["string", "null"]},
            "model": NULLABLE_STRING,
            "lines": {"type": "array", "items": {"$ref": "#/components/schemas/EstimateLine"}},
        },
    },
    "StartRun": {
        "type": "object",
        "required": ["workflow", "input"],
        "additionalProperties": False,
        "properties": {
            "workflow": {
                "type": "string",
                "description": "A workflow name from GET /api/workflows.",
            },
            "input": {
                "type": "object",
                "description": "Validated against the workflow's input_schema.",
            },
        },
    },
    "RunCreated": {
        "type": "object",
        "required": ["id", "status", "estimate", "links"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": Run.Status.values},
            "estimate": {"oneOf": [{"$ref": "#/components/schemas/Estimate"}, {"type": "null"}]},
            "links": {"$ref": "#/components/schemas/Links"},
        },
    },
    "Ticket": {
        "type": "object",
        "required": [
            "id",
            "status",
            "reason",
            "message",
            "priority",
            "due_at",
            "assignee",
            "created_at",
            "links",
        ],
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": EscalationTicket.Status.values},
            "reason": {"type": "string", "enum": EscalationTicket.Reason.values},
            "message": {"type": "string"},
            "priority": {"type": "integer", "minimum": 1},
            "due_at": DATETIME,
            "assignee": NULLABLE_STRING,
            "created_at": DATETIME,
            "resolution": {"type": "string"},
            "resolved_by": {"type": "string"},
            "resolved_at": NULLABLE_DATETIME,
            "links": {
                "type": "object",
                "required": ["resolve", "web"],
                "properties": {
                    "resolve": {"type": "string", "format": "uri"},
                    "web": {"type": "string", "format": "uri"},
                },
            },
        },
    },
    "ModelCall": {
        "type": "object",
        "description": (
            "One attempt at one model turn (orchestration.serialize.model_call_dict; the run "
            "download writes the same). Payloads are redacted; an undecryptable one is "
            '`{"_undecryptable": why}`, a purged one null.'
        ),
        "required": [
            "id",
            "job",
            "turn",
            "attempt",
            "role",
            "model",
            "status",
            "stop_reason",
            "request_id",
            "request_content",
            "response_content",
            "usage",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
            "cost_usd",
            "is_batch",
            "sdk_attempts",
            "latency_ms",
            "error",
            "created_at",
            "finished_at",
            "payload_purged_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "job": {"type": ["integer", "null"], "description": "The fan-out job, if any."},
            "turn": {"type": "integer", "minimum": 0},
            "attempt": {"type": "integer", "minimum": 1},
            "role": {"enum": ["orchestrator", "specialist", "validator", "reviewer", "classifier"]},
            "model": {"type": "string"},
            "status": {"enum": ["pending", "ok", "error"]},
            "stop_reason": {"type": "string"},
            "request_id": {"type": "string"},
            "request_content": {},
            "response_content": {},
            "usage": {"type": ["object", "null"]},
            "input_tokens": {"type": "integer", "minimum": 0},
            "output_tokens": {"type": "integer", "minimum": 0},
            "cache_write_5m_tokens": {"type": "integer", "minimum": 0},
            "cache_write_1h_tokens": {"type": "integer", "minimum": 0},
            "cache_read_tokens": {"type": "integer", "minimum": 0},
            "cost_usd": MONEY,
            "is_batch": {"type": "boolean"},
            "sdk_attempts": {"type": "integer", "minimum": 0},
            "latency_ms": {"type": ["integer", "null"]},
            "error": {"type": "string"},
            "created_at": DATETIME,
            "finished_at": NULLABLE_DATETIME,
            "payload_purged_at": NULLABLE_DATETIME,
        },
    },
    "ToolCall": {
        "type": "object",
        "description": (
            "One attempt at one tool_use (orchestration.serialize.tool_call_dict); the settled "
            "attempt is what the model was answered with."
        ),
        "required": [
            "id",
            "model_call",
            "tool_use_id",
            "name",
            "tool_version",
            "attempt",
            "status",
            "settled",
            "input",
            "output",
            "raw_output",
            "validation_errors",
            "error",
            "latency_ms",
            "created_at",
            "finished_at",
            "payload_purged_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "model_call": {"type": "integer", "description": "The model call that asked for it."},
            "tool_use_id": {"type": "string"},
            "name": {"type": "string"},
            "tool_version": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "status": {
                "enum": [
                    "running",
                    "ok",
                    "error",
                    "timeout",
                    "invalid_output",
                    "unknown_tool",
                    "rejected",
                    "corrected",
                ]
            },
            "settled": {"type": "boolean"},
            "input": {},
            "output": {},
            "raw_output": {},
            "validation_errors": {"type": "array"},
            "error": {"type": "string"},
            "latency_ms": {"type": ["integer", "null"]},
            "created_at": DATETIME,
            "finished_at": NULLABLE_DATETIME,
            "payload_purged_at": NULLABLE_DATETIME,
        },
    },
    "RunCalls": {
        "type": "object",
        "required": ["id", "model_calls", "tool_calls", "links"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "model_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ModelCall"}},
            "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}},
            "links": {"$ref": "#/components/schemas/Links"},
        },
    },
    "Run": {
        "type": "object",
        "required": [
            "id",
            "workflow",
            "workflow_version",
            "status",
            "final",
            "requested_by",
            "input",
            "result",
            "error",
            "estimate",
            "cost_usd",
            "tokens",
            "steps_taken",
            "latency_ms",
            "open_ticket",
            "created_at",
            "updated_at",
            "queued_at",
            "started_at",
            "finished_at",
            "links",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "workflow": {"type": "string"},
            "workflow_version": {
                "type": "object",
                "required": ["version", "content_hash"],
                "properties": {"version": {"type": "string"}, "content_hash": {"type": "string"}},
            },
            "status": {"type": "string", "enum": Run.Status.values},
            "final": {
                "type": "boolean",
                "description": "True once the status will not change again.",
            },
            "requested_by": {"type": "string"},
            "input": {"type": "object"},
            "result": {
                "description": "The validated final output (a JSON object), null until the run succeeds."
            },
            "error": NULLABLE_STRING,
            "estimate": {"oneOf": [{"$ref": "#/components/schemas/Estimate"}, {"type": "null"}]},
            "cost_usd": MONEY,
            "tokens": {
                "type": "object",
                "required": ["input", "output", "cache_write", "cache_read", "total_input"],
                "properties": {
                    k: {"type": "integer", "minimum": 0}
                    for k in ("input", "output", "cache_write", "cache_read", "total_input")
                },
            },
            "steps_taken": {"type": "integer", "minimum": 0},
            "latency_ms": {"type": ["integer", "null"]},
            "idempotency_key": NULLABLE_STRING,
            "open_ticket": {
                "oneOf": [{"$ref": "#/components/schemas/Ticket"}, {"type": "null"}],
                "description": "The escalation the run is paused on, if any.",
            },
            "created_at": DATETIME,
            "updated_at": DATETIME,
            "queued_at": NULLABLE_DATETIME,
            "started_at": NULLABLE_DATETIME,
            "finished_at": NULLABLE_DATETIME,
            "links": {"$ref": "#/components/schemas/Links"},
        },
    },
    "RunSummary": {
        "type": "object",
        "required": [
            "id",
            "workflow",
            "status",
            "requested_by",
            "estimate_usd",
            "cost_usd",
            "created_at",
            "finished_at",
            "links",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "workflow": {"type": "string"},
            "status": {"type": "string", "enum": Run.Status.values},
            "requested_by": {"type": "string"},
            "estimate_usd": {**MONEY, "type": ["string", "null"]},
            "cost_usd": MONEY,
            "created_at": DATETIME,
            "finished_at": NULLABLE_DATETIME,
            "links": {"$ref": "#/components/schemas/Links"},
        },
    },
    "RunList": {
        "type": "object",
        "required": ["results", "next"],
        "properties": {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "next": {
                "type": ["string", "null"],
                "format": "uri",
                "description": "The next page (older runs), or null on the last page.",
            },
        },
    },
    "RaiseCeiling": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "add_usd": {
                "type": "string",
                "description": "Dollars to add: a positive amount in cents, at most CEILING_MAX_RAISE_USD.",
            },
            "add_tokens": {
                "type": "integer",
                "minimum": 0,
                "description": "Tokens to add (when the run stopped at its token ceiling).",
            },
            "comment": {"type": "string", "description": "Why; recorded in the audit trail."},
        },
    },
    "Ceiling": {
        "type": "object",
        "required": [
            "id",
            "ceiling_usd",
            "ceiling_tokens",
            "ceiling_basis",
            "cost_usd",
            "reserved_usd",
            "links",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "ceiling_usd": MONEY,
            "ceiling_tokens": {"type": "integer"},
            "ceiling_basis": {"type": "string"},
            "cost_usd": MONEY,
            "reserved_usd": {
                **MONEY,
                "description": "What calls in flight hold at their worst case.",
            },
            "links": {"$ref": "#/components/schemas/Links"},
        },
    },
    "Resolve": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "action": {"type": "string", "enum": EscalationTicket.Resolution.values},
            "comment": {
                "type": "string",
                "description": "Recorded in the audit trail; the reason for 'fail'.",
            },
            "note": {
                "type": "string",
                "description": "For 'resume': what the model should do next (required).",
            },
            "corrected": {
                "description": "For 'correct' (required): the corrected tool output or final output, "
                "validated against its schema."
            },
        },
    },
    "Resolved": {
        "type": "object",
        "required": ["ticket", "run"],
        "properties": {
            "ticket": {"$ref": "#/components/schemas/Ticket"},
            "run": {
                "type": "object",
                "required": ["id", "status", "links"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": Run.Status.values},
                    "links": {"$ref": "#/components/schemas/Links"},
                },
            },
        },
    },
    "Workflow": {
        "type": "object",
        "required": [
            "name",
            "title",
            "description",
            "version",
            "orchestrator_model",
            "input_schema",
            "input_example",
        ],
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "version": {"type": "string"},
            "orchestrator_model": {"type": "string"},
            "input_schema": {"type": "object"},
            "input_example": {"type": ["object", "null"]},
        },
    },
    "WorkflowList": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Workflow"}}
        },
    },
}


def _json(
    schema: str, description: str, example: Any = None, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    if example is not None:
        content["example"] = example
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": content},
    }
    if headers:
        response["headers"] = headers
    return response


PATHS: dict[str, Any] = {
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/api/workflows": {
        "get": {
            "operationId": "listWorkflows",
            "summary": "The workflows you can start, with their input schemas",
            "responses": {
                "200": _json(
                    "WorkflowList",
                    "Every registered workflow.",
                    {
                        "results": [
                            {
                                "name": "payment_approval",
                                "title": "Payment approval",
                                "description": "Check a payment against policy and approve or hold it.",
                                "version": "1",
                                "orchestrator_model": "claude-opus-4-6",
                                "input_schema": {
                                    "type": "object",
                                    "required": ["payment_id"],
                                    "properties": {"payment_id": {"type": "string"}},
                                },
                                "input_example": {"payment_id": "PAY-1001"},
                            }
                        ]
                    },
                ),
                "401": UNAUTHENTICATED,
                "429": TOO_MANY_REQUESTS,
            },
        }
    },
    "/api/runs": {
        "post": {
            "operationId": "startRun",
            "summary": "Start a run",
            "description": (
                "Validates the input, estimates the cost, applies budgets, the rate limit and the approval gate "
                "(the same path as the start page). The run is `queued`, or `awaiting_approval` when its estimate "
                "is over the approval threshold. With an `Idempotency-Key`, a retry returns the same run: 201 the "
                "first time, 200 with `Idempotent-Replayed: true` after that (a concurrent duplicate may also get "
                "201, with the same run id). The same key with a different body is refused with 422."
            ),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Up to 200 printable characters, unique per request you mean (a UUID is ideal).",
                    "schema": {"type": "string", "maxLength": 200},
                    "example": "2f1d6c3e-nightly-2026-11-20",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/StartRun"},
                        "example": {
                            "workflow": "payment_approval",
                            "input": {"payment_id": "PAY-1002"},
                        },
                    }
                },
            },
            "responses": {
                "201": _json(
                    "RunCreated",
                    "The run was created.",
                    {
                        "id": RUN_ID,
                        "status": "queued",
                        "estimate": ESTIMATE_EXAMPLE,
                        "links": LINKS_EXAMPLE,
                    },
                    headers={
                        "Location": {"schema": {"type": "string"}, "description": "The run's URL."}
                    },
                ),
                "200": _json(
                    "RunCreated",
                    "A retry with an Idempotency-Key already used: the run it created.",
                    {
                        "id": RUN_ID,
                        "status": "running",
                        "estimate": ESTIMATE_EXAMPLE,
                        "links": LINKS_EXAMPLE,
                    },
                    headers={
                        "Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}}
                    },
                ),
                "413": TOO_LARGE,
                "400": _error(
                    "The body is not a JSON object, or the Idempotency-Key header is malformed.",
                    _error_example(
                        "400",
                        "malformed_json",
                        "The request body is not valid JSON at line 1 column 2.",
                    ),
                ),
                "401": UNAUTHENTICATED,
                "403": _error(
                    "Your account may not start runs, a hard budget would be exceeded, or an "
                    "anomaly alert paused your new runs until a manager lifts it (user_paused).",
                    _error_example(
                        "403",
                        "budget_exceeded",
                        "The run was not started: it would exceed a hard budget.",
                        {
                            "budget": "the monthly budget for payment_approval ($500.00) would be exceeded"
                        },
                    ),
                    _error_example("403", "forbidden", "Your account may not start runs."),
                    _error_example(
                        "403",
                        "user_paused",
                        "The run was not started: your new runs are paused until a manager lifts "
                        "the pause.",
                        {
                            "user": "Your new runs are paused since 2026-12-03 22:10: 100 retries ..."
                        },
                    ),
                ),
                "409": _error(
                    "No approved version of the workflow can serve the run: the deployed change "
                    "awaits approval by someone other than its author (version_unavailable).",
                    _error_example(
                        "409",
                        "version_unavailable",
                        "The run was not started: no approved version of the workflow can serve it; "
                        "see fields.",
                        {
                            "workflow": "The approved version of 'payment_approval', v3 (...), is no longer deployed ..."
                        },
                    ),
                ),
                "415": _error("The body is not application/json."),
                "422": _error(
                    "The workflow or its input is not valid, or the Idempotency-Key was used with another body.",
                    _error_example(
                        "422",
                        "invalid_input",
                        "The run was not started: the input is not valid; see fields.",
                        {"payment_id": "'payment_id' is a required property"},
                    ),
                    _error_example(
                        "422",
                        "idempotency_key_reused",
                        "This Idempotency-Key was already used for run "
                        f"{RUN_ID} with a different workflow or input. Use a new key for a new run.",
                    ),
                ),
                "429": _error(
                    "Your limit on starting runs is reached (rate_limited), or this token made more "
                    "requests than API_RATE_LIMIT allows (too_many_requests); Retry-After says when "
                    "to try again, when known.",
                    _error_example(
                        "429",
                        "rate_limited",
                        "The run was not started: you have reached your limit "
                        "on starting runs. Try again later.",
                    ),
                    TOO_MANY_REQUESTS["content"]["application/json"]["examples"][
                        "too_many_requests"
                    ],
                ),
                "503": _error(
                    "The cost estimate could not be made (the Messages API did not answer).",
                    _error_example(
                        "503",
                        "estimate_unavailable",
                        "The run was not started: the cost estimate "
                        "could not be made (APIConnectionError). Try again later.",
                    ),
                ),
            },
        },
        "get": {
            "operationId": "listRuns",
            "summary": "Runs you can see, newest first",
            "description": "Keyset-paginated: follow `next` until it is null. Operators see their own runs, reviewers "
            "also the runs behind tickets, managers and auditors every run.",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "description": "One status, or several separated by commas.",
                    "schema": {"type": "string"},
                    "example": "awaiting_review,awaiting_approval",
                },
                {
                    "name": "workflow",
                    "in": "query",
                    "schema": {"type": "string"},
                    "example": "payment_approval",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "From a previous page's `next` link.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json(
                    "RunList",
                    "A page of runs.",
                    {
                        "results": [
                            {
                                "id": RUN_ID,
                                "workflow": "payment_approval",
                                "status": "awaiting_review",
                                "requested_by": "operator",
                                "estimate_usd": "0.089288",
                                "cost_usd": "0.041210",
                                "created_at": "2026-11-20T09:14:51Z",
                                "finished_at": None,
                                "links": LINKS_EXAMPLE,
                            }
                        ],
                        "next": f"{BASE}/api/runs?status=awaiting_review&cursor=MjAyNi0xMS0yMFQwOToxNDo1MS4wMDAwMDArMDA6MDB8MGI3ZjJjMWU",
                    },
                ),
                "400": _error(
                    "The cursor is not one this API issued.",
                    _error_example(
                        "400",
                        "invalid_cursor",
                        "This cursor is not valid; use the 'next' link of a "
                        "previous page as it is.",
                    ),
                ),
                "401": UNAUTHENTICATED,
                "429": TOO_MANY_REQUESTS,
                "422": _error(
                    "An unknown status or a bad limit.",
                    _error_example(
                        "422",
                        "invalid_query",
                        "The query was not valid; see fields.",
                        {"status": "unknown status finished; one of requested, queued, running"},
                    ),
                ),
            },
        },
    },
    "/api/runs/{run_id}": {
        "get": {
            "operationId": "getRun",
            "summary": "Follow a run: status, cost, tokens, result, error, timestamps and its open ticket",
            "parameters": [
                {
                    "name": "run_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {
                "200": _json("Run", "The run.", RUN_EXAMPLE),
                "401": UNAUTHENTICATED,
                "429": TOO_MANY_REQUESTS,
                "404": NOT_FOUND,
            },
        }
    },
    "/api/runs/{run_id}/calls": {
        "get": {
            "operationId": "getRunCalls",
            "summary": "A run's model calls and tool calls, every attempt, as the run download writes them",
            "description": (
                "Model calls in turn order (a fan-out job's calls carry its `job`), tool calls in the "
                "order they started. Payloads are redacted as in the download."
            ),
            "parameters": [
                {
                    "name": "run_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {
                "200": _json("RunCalls", "The run's calls.", CALLS_EXAMPLE),
                "401": UNAUTHENTICATED,
                "429": TOO_MANY_REQUESTS,
                "404": NOT_FOUND,
            },
        }
    },
    "/api/runs/{run_id}/ceiling": {
        "post": {
            "operationId": "raiseCeiling",
            "summary": "Raise a run's spend ceiling (a manager who did not request the run)",
            "description": (
                "Adds the amount to the run's ceiling and records it in the audit trail. Resuming a "
                "`budget_exceeded` ticket never raises the ceiling: raise it here (or on the ticket page) first."
            ),
            "parameters": [
                {
                    "name": "run_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/RaiseCeiling"},
                        "example": {
                            "add_usd": "5.00",
                            "comment": "Quarter-end close; approved by finance.",
                        },
                    }
                },
            },
            "responses": {
                "200": _json(
                    "Ceiling",
                    "The ceiling was raised.",
                    {
                        "id": RUN_ID,
                        "ceiling_usd": "7.500000",
                        "ceiling_tokens": 400000,
                        "ceiling_basis": "raised to $7.50 by manager at 2026-11-20 09:30",
                        "cost_usd": "2.490000",
                        "reserved_usd": "0.000000",
                        "links": LINKS_EXAMPLE,
                    },
                ),
                "413": TOO_LARGE,
                "400": _error("The body is not a JSON object."),
                "401": UNAUTHENTICATED,
                "403": _error(
                    "Not a manager, or the manager who requested the run (four eyes).",
                    _error_example(
                        "403",
                        "forbidden",
                        "Only a manager who did not request this run may raise its ceiling.",
                    ),
                ),
                "404": NOT_FOUND,
                "409": _error(
                    "The run is finished; its ceiling can no longer change.",
                    _error_example(
                        "409", "conflict", "The run is succeeded; its ceiling can no longer change."
                    ),
                ),
                "415": _error("The body is not application/json."),
                "422": _error(
                    "The amount is not positive, has more than two decimals, or is over the limit. Nothing changed.",
                    _error_example(
                        "422",
                        "invalid_input",
                        "The amount to add must be more than $0.00.",
                        {"add_usd": "The amount to add must be more than $0.00."},
                    ),
                ),
            },
        }
    },
    "/api/tickets/{ticket_id}/resolve": {
        "post": {
            "operationId": "resolveTicket",
            "summary": "Resolve an escalation ticket (reviewers and managers)",
            "description": (
                "`resume` (needs `note`), `retry`, `correct` (needs `corrected`), `approve` or `fail`, with the same "
                "rules as the ticket page: a ticket claimed by someone else can be resolved only by them or a manager."
            ),
            "parameters": [
                {"name": "ticket_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Resolve"},
                        "example": {
                            "action": "approve",
                            "comment": "Signed off: supplier verified by phone.",
                        },
                    }
                },
            },
            "responses": {
                "200": _json(
                    "Resolved",
                    "The ticket is resolved; the run moved on.",
                    {
                        "ticket": {
                            **TICKET_EXAMPLE,
                            "status": "resolved",
                            "assignee": "reviewer",
                            "resolution": "approve",
                            "resolved_by": "reviewer",
                            "resolved_at": "2026-11-20T09:20:00Z",
                        },
                        "run": {"id": RUN_ID, "status": "succeeded", "links": LINKS_EXAMPLE},
                    },
                ),
                "413": TOO_LARGE,
                "400": _error("The body is not a JSON object."),
                "401": UNAUTHENTICATED,
                "429": TOO_MANY_REQUESTS,
                "403": _error(
                    "Your account may not resolve tickets, or not this one: you requested its run "
                    "and it decides money or a sign-off (four-eyes rule), it is a budget ticket "
                    "and you are not a manager, or someone else holds it. Nothing changed.",
                    _error_example(
                        "403", "forbidden", "Your account may not resolve escalation tickets."
                    ),
                ),
                "404": _error(
                    "No such ticket, or one you may not see (another reviewer's claimed or "
                    "resolved ticket): the same rule as the run page.",
                    _error_example("404", "not_found", "No such ticket."),
                ),
                "409": _error(
                    "The ticket's state refuses the action: already resolved, or the run is no "
                    "longer awaiting review. Nothing changed.",
                    _error_example(
                        "409",
                        "conflict",
                        "This ticket was already resolved (approved the result) by manager "
                        "at 09:20:00. Nothing was changed.",
                    ),
                ),
                "415": _error("The body is not application/json."),
                "422": _error(
                    "An unknown action, a missing note or corrected output, or a correction that fails its "
                    "schema. Nothing changed.",
                    _error_example(
                        "422",
                        "invalid_correction",
                        "The corrected output was not accepted; nothing was changed.",
                        {"corrected": "'approved' is a required property"},
                    ),
                ),
            },
        }
    },
}


def build() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Countersign API",
            "version": "1",
            "description": (
                "Start, follow and resolve Claude agent workflow runs. Authenticate with a personal API token "
                "(create one on the API tokens page) sent as `Authorization: Bearer <token>`; it acts with your "
                'permissions. Errors are JSON: `{"error": {"code", "message", "fields"}}`. Money is a '
                "decimal string in US dollars; timestamps are ISO 8601 in UTC."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (cs_...).",
                }
            },
            "schemas": SCHEMAS,
        },
    }


@api_view("GET", auth=False)
def document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(build(), json_dumps_params={"indent": 2})
