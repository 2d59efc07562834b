"""Examples and response descriptions for the OpenAPI document that ninja generates.

The document's structure and schemas come from the operations and api/schemas.py; this
module only adds, per operation, the example request body, example parameters and, per
response status, its description and example bodies (tests/test_api_openapi.py validates
every example against the generated schema). Keyed by (method, path) as documented.
"""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/api/workflows"): {
        "responses": {
            "200": {
                "description": "Every registered workflow.",
                "example": {
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
            },
            "401": {
                "description": "No token, or the token is "
                "invalid, revoked (by its "
                "owner, an administrator, or "
                "a change of the account's "
                "password) or expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "This token made more "
                "requests than "
                "API_RATE_LIMIT allows in "
                "the current window; "
                "Retry-After says when to "
                "try again.",
                "examples": {
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    }
                },
            },
        }
    },
    ("post", "/api/runs"): {
        "request": {"workflow": "payment_approval", "input": {"payment_id": "PAY-1002"}},
        "parameters": {"Idempotency-Key": "2f1d6c3e-nightly-2026-11-20"},
        "responses": {
            "201": {
                "description": "The run was created.",
                "example": {
                    "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                    "status": "queued",
                    "estimate": {
                        "upper_usd": "0.089288",
                        "expected_usd": "0.059525",
                        "model": "claude-opus-4-6",
                        "lines": [
                            {
                                "item": "Prompt (system + tools + this input)",
                                "calc": "count_tokens on the rendered prompt = 1,381 tokens",
                                "usd": "",
                            },
                            {
                                "item": "Expected cost",
                                "calc": "sum of the lines above",
                                "usd": "$0.059525",
                            },
                            {
                                "item": "Upper bound",
                                "calc": "expected x (1 + 50% retry allowance)",
                                "usd": "$0.089288",
                            },
                        ],
                    },
                    "links": {
                        "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                    },
                },
            },
            "200": {
                "description": "A retry with an Idempotency-Key already used: the run it created.",
                "example": {
                    "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                    "status": "running",
                    "estimate": {
                        "upper_usd": "0.089288",
                        "expected_usd": "0.059525",
                        "model": "claude-opus-4-6",
                        "lines": [
                            {
                                "item": "Prompt (system + tools + this input)",
                                "calc": "count_tokens on the rendered prompt = 1,381 tokens",
                                "usd": "",
                            },
                            {
                                "item": "Expected cost",
                                "calc": "sum of the lines above",
                                "usd": "$0.059525",
                            },
                            {
                                "item": "Upper bound",
                                "calc": "expected x (1 + 50% retry allowance)",
                                "usd": "$0.089288",
                            },
                        ],
                    },
                    "links": {
                        "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                    },
                },
            },
            "413": {
                "description": "The body is larger than "
                "DATA_UPLOAD_MAX_MEMORY_SIZE "
                "(2.5 MB by default).",
                "examples": {
                    "request_too_large": {
                        "summary": "413 request_too_large",
                        "value": {
                            "error": {
                                "code": "request_too_large",
                                "message": "The "
                                "request "
                                "body "
                                "is "
                                "larger "
                                "than "
                                "the "
                                "limit "
                                "of "
                                "2.5 "
                                "MB "
                                "(2,621,440 "
                                "bytes) "
                                "(DATA_UPLOAD_MAX_MEMORY_SIZE). "
                                "Send "
                                "less "
                                "at "
                                "once.",
                                "fields": {"body": "at most 2,621,440 bytes"},
                            }
                        },
                    }
                },
            },
            "400": {
                "description": "The body is not a JSON object, "
                "or the Idempotency-Key header "
                "is malformed.",
                "examples": {
                    "malformed_json": {
                        "summary": "400 malformed_json",
                        "value": {
                            "error": {
                                "code": "malformed_json",
                                "message": "The request body is not valid JSON at line 1 column 2.",
                            }
                        },
                    }
                },
            },
            "401": {
                "description": "No token, or the token is "
                "invalid, revoked (by its owner, "
                "an administrator, or a change "
                "of the account's password) or "
                "expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "403": {
                "description": "Your account may not start "
                "runs, a hard budget would be "
                "exceeded, or an anomaly alert "
                "paused your new runs until a "
                "manager lifts it (user_paused).",
                "examples": {
                    "budget_exceeded": {
                        "summary": "403 budget_exceeded",
                        "value": {
                            "error": {
                                "code": "budget_exceeded",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "it "
                                "would "
                                "exceed "
                                "a "
                                "hard "
                                "budget.",
                                "fields": {
                                    "budget": "the "
                                    "monthly "
                                    "budget "
                                    "for "
                                    "payment_approval "
                                    "($500.00) "
                                    "would "
                                    "be "
                                    "exceeded"
                                },
                            }
                        },
                    },
                    "forbidden": {
                        "summary": "403 forbidden",
                        "value": {
                            "error": {
                                "code": "forbidden",
                                "message": "Your account may not start runs.",
                            }
                        },
                    },
                    "user_paused": {
                        "summary": "403 user_paused",
                        "value": {
                            "error": {
                                "code": "user_paused",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "your "
                                "new "
                                "runs "
                                "are "
                                "paused "
                                "until "
                                "a "
                                "manager "
                                "lifts "
                                "the "
                                "pause.",
                                "fields": {
                                    "user": "Your "
                                    "new "
                                    "runs "
                                    "are "
                                    "paused "
                                    "since "
                                    "2026-12-03 "
                                    "22:10: "
                                    "100 "
                                    "retries "
                                    "..."
                                },
                            }
                        },
                    },
                },
            },
            "409": {
                "description": "No approved version of the "
                "workflow can serve the run: the "
                "deployed change awaits approval "
                "by someone other than its "
                "author (version_unavailable).",
                "examples": {
                    "version_unavailable": {
                        "summary": "409 version_unavailable",
                        "value": {
                            "error": {
                                "code": "version_unavailable",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "no "
                                "approved "
                                "version "
                                "of "
                                "the "
                                "workflow "
                                "can "
                                "serve "
                                "it; "
                                "see "
                                "fields.",
                                "fields": {
                                    "workflow": "The "
                                    "approved "
                                    "version "
                                    "of "
                                    "'payment_approval', "
                                    "v3 "
                                    "(...), "
                                    "is "
                                    "no "
                                    "longer "
                                    "deployed "
                                    "..."
                                },
                            }
                        },
                    }
                },
            },
            "415": {"description": "The body is not application/json."},
            "422": {
                "description": "The workflow or its input is "
                "not valid, or the "
                "Idempotency-Key was used with "
                "another body.",
                "examples": {
                    "invalid_input": {
                        "summary": "422 invalid_input",
                        "value": {
                            "error": {
                                "code": "invalid_input",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "the "
                                "input "
                                "is "
                                "not "
                                "valid; "
                                "see "
                                "fields.",
                                "fields": {"payment_id": "'payment_id' is a required property"},
                            }
                        },
                    },
                    "idempotency_key_reused": {
                        "summary": "422 idempotency_key_reused",
                        "value": {
                            "error": {
                                "code": "idempotency_key_reused",
                                "message": "This "
                                "Idempotency-Key "
                                "was "
                                "already "
                                "used "
                                "for "
                                "run "
                                "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f "
                                "with "
                                "a "
                                "different "
                                "workflow "
                                "or "
                                "input. "
                                "Use "
                                "a "
                                "new "
                                "key "
                                "for "
                                "a "
                                "new "
                                "run.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "Your limit on starting runs is "
                "reached (rate_limited), or this "
                "token made more requests than "
                "API_RATE_LIMIT allows "
                "(too_many_requests); "
                "Retry-After says when to try "
                "again, when known.",
                "examples": {
                    "rate_limited": {
                        "summary": "429 rate_limited",
                        "value": {
                            "error": {
                                "code": "rate_limited",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "you "
                                "have "
                                "reached "
                                "your "
                                "limit "
                                "on "
                                "starting "
                                "runs. "
                                "Try "
                                "again "
                                "later.",
                            }
                        },
                    },
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    },
                },
            },
            "503": {
                "description": "The cost estimate could not be "
                "made (the Messages API did not "
                "answer).",
                "examples": {
                    "estimate_unavailable": {
                        "summary": "503 estimate_unavailable",
                        "value": {
                            "error": {
                                "code": "estimate_unavailable",
                                "message": "The "
                                "run "
                                "was "
                                "not "
                                "started: "
                                "the "
                                "cost "
                                "estimate "
                                "could "
                                "not "
                                "be "
                                "made "
                                "(APIConnectionError). "
                                "Try "
                                "again "
                                "later.",
                            }
                        },
                    }
                },
            },
        },
    },
    ("get", "/api/runs"): {
        "parameters": {
            "status": "awaiting_review,awaiting_approval",
            "workflow": "payment_approval",
        },
        "responses": {
            "200": {
                "description": "A page of runs.",
                "example": {
                    "results": [
                        {
                            "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                            "workflow": "payment_approval",
                            "status": "awaiting_review",
                            "requested_by": "operator",
                            "estimate_usd": "0.089288",
                            "cost_usd": "0.041210",
                            "created_at": "2026-11-20T09:14:51Z",
                            "finished_at": None,
                            "links": {
                                "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                                "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                            },
                        }
                    ],
                    "next": "https://countersign.example.com/api/runs?status=awaiting_review&cursor=MjAyNi0xMS0yMFQwOToxNDo1MS4wMDAwMDArMDA6MDB8MGI3ZjJjMWU",
                },
            },
            "400": {
                "description": "The cursor is not one this API issued.",
                "examples": {
                    "invalid_cursor": {
                        "summary": "400 invalid_cursor",
                        "value": {
                            "error": {
                                "code": "invalid_cursor",
                                "message": "This "
                                "cursor "
                                "is "
                                "not "
                                "valid; "
                                "use "
                                "the "
                                "'next' "
                                "link "
                                "of "
                                "a "
                                "previous "
                                "page "
                                "as "
                                "it "
                                "is.",
                            }
                        },
                    }
                },
            },
            "401": {
                "description": "No token, or the token is "
                "invalid, revoked (by its owner, "
                "an administrator, or a change of "
                "the account's password) or "
                "expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "This token made more requests "
                "than API_RATE_LIMIT allows in "
                "the current window; Retry-After "
                "says when to try again.",
                "examples": {
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    }
                },
            },
            "422": {
                "description": "An unknown status or a bad limit.",
                "examples": {
                    "invalid_query": {
                        "summary": "422 invalid_query",
                        "value": {
                            "error": {
                                "code": "invalid_query",
                                "message": "The query was not valid; see fields.",
                                "fields": {
                                    "status": "unknown "
                                    "status "
                                    "finished; "
                                    "one "
                                    "of "
                                    "requested, "
                                    "queued, "
                                    "running"
                                },
                            }
                        },
                    }
                },
            },
        },
    },
    ("get", "/api/runs/{run_id}"): {
        "responses": {
            "200": {
                "description": "The run.",
                "example": {
                    "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                    "workflow": "payment_approval",
                    "workflow_version": {
                        "version": "1",
                        "content_hash": "3f9a000000000000000000000000000000000000000000000000000000000000",
                    },
                    "status": "awaiting_review",
                    "final": False,
                    "requested_by": "operator",
                    "input": {"payment_id": "PAY-1002"},
                    "result": None,
                    "error": None,
                    "estimate": {
                        "upper_usd": "0.089288",
                        "expected_usd": "0.059525",
                        "model": "claude-opus-4-6",
                        "lines": [
                            {
                                "item": "Prompt (system + tools + this input)",
                                "calc": "count_tokens on the rendered prompt = 1,381 tokens",
                                "usd": "",
                            },
                            {
                                "item": "Expected cost",
                                "calc": "sum of the lines above",
                                "usd": "$0.059525",
                            },
                            {
                                "item": "Upper bound",
                                "calc": "expected x (1 + 50% retry allowance)",
                                "usd": "$0.089288",
                            },
                        ],
                    },
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
                    "open_ticket": {
                        "id": 42,
                        "status": "open",
                        "reason": "regulatory_trigger",
                        "message": "Payment PAY-1002 is over the sign-off amount.",
                        "priority": 1,
                        "due_at": "2026-11-20T10:15:00Z",
                        "assignee": None,
                        "created_at": "2026-11-20T09:15:00Z",
                        "links": {
                            "resolve": "https://countersign.example.com/api/tickets/42/resolve",
                            "web": "https://countersign.example.com/reviews/tickets/42/",
                        },
                    },
                    "created_at": "2026-11-20T09:14:51Z",
                    "updated_at": "2026-11-20T09:15:00Z",
                    "queued_at": "2026-11-20T09:14:52Z",
                    "started_at": "2026-11-20T09:14:52Z",
                    "finished_at": None,
                    "links": {
                        "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                    },
                },
            },
            "401": {
                "description": "No token, or the token "
                "is invalid, revoked (by "
                "its owner, an "
                "administrator, or a "
                "change of the account's "
                "password) or expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "This token made more "
                "requests than "
                "API_RATE_LIMIT allows "
                "in the current window; "
                "Retry-After says when "
                "to try again.",
                "examples": {
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    }
                },
            },
            "404": {
                "description": "No such object, or it "
                "is not visible to you "
                "(someone else's run is "
                "404, never 403).",
                "examples": {
                    "not_found": {
                        "summary": "404 not_found",
                        "value": {"error": {"code": "not_found", "message": "No such run."}},
                    }
                },
            },
        }
    },
    ("get", "/api/runs/{run_id}/calls"): {
        "responses": {
            "200": {
                "description": "The run's calls.",
                "example": {
                    "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
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
                                "messages": [
                                    {"role": "user", "content": '{"payment_id": "PAY-1001"}'}
                                ]
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
                    "links": {
                        "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                    },
                },
            },
            "401": {
                "description": "No token, or the "
                "token is invalid, "
                "revoked (by its "
                "owner, an "
                "administrator, or "
                "a change of the "
                "account's "
                "password) or "
                "expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "This token made "
                "more requests "
                "than "
                "API_RATE_LIMIT "
                "allows in the "
                "current window; "
                "Retry-After says "
                "when to try "
                "again.",
                "examples": {
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    }
                },
            },
            "404": {
                "description": "No such object, "
                "or it is not "
                "visible to you "
                "(someone else's "
                "run is 404, never "
                "403).",
                "examples": {
                    "not_found": {
                        "summary": "404 not_found",
                        "value": {"error": {"code": "not_found", "message": "No such run."}},
                    }
                },
            },
        }
    },
    ("post", "/api/runs/{run_id}/ceiling"): {
        "request": {"add_usd": "5.00", "comment": "Quarter-end close; approved by finance."},
        "responses": {
            "200": {
                "description": "The ceiling was raised.",
                "example": {
                    "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                    "ceiling_usd": "7.500000",
                    "ceiling_tokens": 400000,
                    "ceiling_basis": "raised to $7.50 by manager at 2026-11-20 09:30",
                    "cost_usd": "2.490000",
                    "reserved_usd": "0.000000",
                    "links": {
                        "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                    },
                },
            },
            "413": {
                "description": "The body is "
                "larger than "
                "DATA_UPLOAD_MAX_MEMORY_SIZE "
                "(2.5 MB by "
                "default).",
                "examples": {
                    "request_too_large": {
                        "summary": "413 request_too_large",
                        "value": {
                            "error": {
                                "code": "request_too_large",
                                "message": "The "
                                "request "
                                "body "
                                "is "
                                "larger "
                                "than "
                                "the "
                                "limit "
                                "of "
                                "2.5 "
                                "MB "
                                "(2,621,440 "
                                "bytes) "
                                "(DATA_UPLOAD_MAX_MEMORY_SIZE). "
                                "Send "
                                "less "
                                "at "
                                "once.",
                                "fields": {"body": "at most 2,621,440 bytes"},
                            }
                        },
                    }
                },
            },
            "400": {"description": "The body is not a JSON object."},
            "401": {
                "description": "No token, or "
                "the token is "
                "invalid, "
                "revoked (by "
                "its owner, an "
                "administrator, "
                "or a change of "
                "the account's "
                "password) or "
                "expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "403": {
                "description": "Not a manager, or the manager who requested the run (four eyes).",
                "examples": {
                    "forbidden": {
                        "summary": "403 forbidden",
                        "value": {
                            "error": {
                                "code": "forbidden",
                                "message": "Only "
                                "a "
                                "manager "
                                "who "
                                "did "
                                "not "
                                "request "
                                "this "
                                "run "
                                "may "
                                "raise "
                                "its "
                                "ceiling.",
                            }
                        },
                    }
                },
            },
            "404": {
                "description": "No such "
                "object, or it "
                "is not visible "
                "to you "
                "(someone "
                "else's run is "
                "404, never "
                "403).",
                "examples": {
                    "not_found": {
                        "summary": "404 not_found",
                        "value": {"error": {"code": "not_found", "message": "No such run."}},
                    }
                },
            },
            "409": {
                "description": "The run is finished; its ceiling can no longer change.",
                "examples": {
                    "conflict": {
                        "summary": "409 conflict",
                        "value": {
                            "error": {
                                "code": "conflict",
                                "message": "The "
                                "run "
                                "is "
                                "succeeded; "
                                "its "
                                "ceiling "
                                "can "
                                "no "
                                "longer "
                                "change.",
                            }
                        },
                    }
                },
            },
            "415": {"description": "The body is not application/json."},
            "422": {
                "description": "The amount is "
                "not positive, "
                "has more than "
                "two decimals, "
                "or is over the "
                "limit. Nothing "
                "changed.",
                "examples": {
                    "invalid_input": {
                        "summary": "422 invalid_input",
                        "value": {
                            "error": {
                                "code": "invalid_input",
                                "message": "The amount to add must be more than $0.00.",
                                "fields": {"add_usd": "The amount to add must be more than $0.00."},
                            }
                        },
                    }
                },
            },
        },
    },
    ("post", "/api/tickets/{ticket_id}/resolve"): {
        "request": {"action": "approve", "comment": "Signed off: supplier verified by phone."},
        "responses": {
            "200": {
                "description": "The ticket is resolved; the run moved on.",
                "example": {
                    "ticket": {
                        "id": 42,
                        "status": "resolved",
                        "reason": "regulatory_trigger",
                        "message": "Payment PAY-1002 is over the sign-off amount.",
                        "priority": 1,
                        "due_at": "2026-11-20T10:15:00Z",
                        "assignee": "reviewer",
                        "created_at": "2026-11-20T09:15:00Z",
                        "links": {
                            "resolve": "https://countersign.example.com/api/tickets/42/resolve",
                            "web": "https://countersign.example.com/reviews/tickets/42/",
                        },
                        "resolution": "approve",
                        "resolved_by": "reviewer",
                        "resolved_at": "2026-11-20T09:20:00Z",
                    },
                    "run": {
                        "id": "0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                        "status": "succeeded",
                        "links": {
                            "self": "https://countersign.example.com/api/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f",
                            "web": "https://countersign.example.com/runs/0b7f2c1e-4d5a-4c3b-9e8f-1a2b3c4d5e6f/",
                        },
                    },
                },
            },
            "413": {
                "description": "The body "
                "is "
                "larger "
                "than "
                "DATA_UPLOAD_MAX_MEMORY_SIZE "
                "(2.5 MB "
                "by "
                "default).",
                "examples": {
                    "request_too_large": {
                        "summary": "413 request_too_large",
                        "value": {
                            "error": {
                                "code": "request_too_large",
                                "message": "The "
                                "request "
                                "body "
                                "is "
                                "larger "
                                "than "
                                "the "
                                "limit "
                                "of "
                                "2.5 "
                                "MB "
                                "(2,621,440 "
                                "bytes) "
                                "(DATA_UPLOAD_MAX_MEMORY_SIZE). "
                                "Send "
                                "less "
                                "at "
                                "once.",
                                "fields": {"body": "at most 2,621,440 bytes"},
                            }
                        },
                    }
                },
            },
            "400": {"description": "The body is not a JSON object."},
            "401": {
                "description": "No "
                "token, "
                "or the "
                "token is "
                "invalid, "
                "revoked "
                "(by its "
                "owner, "
                "an "
                "administrator, "
                "or a "
                "change "
                "of the "
                "account's "
                "password) "
                "or "
                "expired.",
                "examples": {
                    "token_revoked": {
                        "summary": "401 token_revoked",
                        "value": {
                            "error": {
                                "code": "token_revoked",
                                "message": "This "
                                "API "
                                "token "
                                "was "
                                "revoked "
                                "because "
                                "the "
                                "account's "
                                "password "
                                "changed. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                    "token_expired": {
                        "summary": "401 token_expired",
                        "value": {
                            "error": {
                                "code": "token_expired",
                                "message": "This "
                                "API "
                                "token "
                                "expired "
                                "on "
                                "2026-11-20 "
                                "09:15 "
                                "UTC. "
                                "Create "
                                "a "
                                "new "
                                "one "
                                "on "
                                "the "
                                "API "
                                "tokens "
                                "page.",
                            }
                        },
                    },
                },
            },
            "429": {
                "description": "This "
                "token "
                "made "
                "more "
                "requests "
                "than "
                "API_RATE_LIMIT "
                "allows "
                "in the "
                "current "
                "window; "
                "Retry-After "
                "says "
                "when to "
                "try "
                "again.",
                "examples": {
                    "too_many_requests": {
                        "summary": "429 too_many_requests",
                        "value": {
                            "error": {
                                "code": "too_many_requests",
                                "message": "This "
                                "token "
                                "made "
                                "more "
                                "than "
                                "120 "
                                "requests "
                                "per "
                                "minute "
                                "(API_RATE_LIMIT). "
                                "Retry "
                                "in "
                                "42 "
                                "s.",
                            }
                        },
                    }
                },
            },
            "403": {
                "description": "Your "
                "account "
                "may not "
                "resolve "
                "tickets, "
                "or not "
                "this "
                "one: you "
                "requested "
                "its run "
                "and it "
                "decides "
                "money or "
                "a "
                "sign-off "
                "(four-eyes "
                "rule), "
                "it is a "
                "budget "
                "ticket "
                "and you "
                "are not "
                "a "
                "manager, "
                "or "
                "someone "
                "else "
                "holds "
                "it. "
                "Nothing "
                "changed.",
                "examples": {
                    "forbidden": {
                        "summary": "403 forbidden",
                        "value": {
                            "error": {
                                "code": "forbidden",
                                "message": "Your account may not resolve escalation tickets.",
                            }
                        },
                    }
                },
            },
            "404": {
                "description": "No such "
                "ticket, "
                "or one "
                "you may "
                "not see "
                "(another "
                "reviewer's "
                "claimed "
                "or "
                "resolved "
                "ticket): "
                "the same "
                "rule as "
                "the run "
                "page.",
                "examples": {
                    "not_found": {
                        "summary": "404 not_found",
                        "value": {"error": {"code": "not_found", "message": "No such ticket."}},
                    }
                },
            },
            "409": {
                "description": "The "
                "ticket's "
                "state "
                "refuses "
                "the "
                "action: "
                "already "
                "resolved, "
                "or the "
                "run is "
                "no "
                "longer "
                "awaiting "
                "review. "
                "Nothing "
                "changed.",
                "examples": {
                    "conflict": {
                        "summary": "409 conflict",
                        "value": {
                            "error": {
                                "code": "conflict",
                                "message": "This "
                                "ticket "
                                "was "
                                "already "
                                "resolved "
                                "(approved "
                                "the "
                                "result) "
                                "by "
                                "manager "
                                "at "
                                "09:20:00. "
                                "Nothing "
                                "was "
                                "changed.",
                            }
                        },
                    }
                },
            },
            "415": {"description": "The body is not application/json."},
            "422": {
                "description": "An "
                "unknown "
                "action, "
                "a "
                "missing "
                "note or "
                "corrected "
                "output, "
                "or a "
                "correction "
                "that "
                "fails "
                "its "
                "schema. "
                "Nothing "
                "changed.",
                "examples": {
                    "invalid_correction": {
                        "summary": "422 invalid_correction",
                        "value": {
                            "error": {
                                "code": "invalid_correction",
                                "message": "The "
                                "corrected "
                                "output "
                                "was "
                                "not "
                                "accepted; "
                                "nothing "
                                "was "
                                "changed.",
                                "fields": {"corrected": "'approved' is a required property"},
                            }
                        },
                    }
                },
            },
        },
    },
}


def add_to(document: dict[str, Any]) -> None:
    """Merge the examples into a generated document (in place)."""
    for (method, path), extra in EXAMPLES.items():
        op = document["paths"].get(path, {}).get(method)
        if op is None:
            continue  # an operation that is no more: tests/test_api_openapi.py notices
        if "request" in extra and "requestBody" in op:
            op["requestBody"]["content"]["application/json"]["example"] = extra["request"]
        for param in op.get("parameters", []):
            if param["name"] in extra.get("parameters", {}):
                param["example"] = extra["parameters"][param["name"]]
        for status, response in extra["responses"].items():
            documented = op["responses"].get(status)
            if documented is None:
                continue
            if "description" in response:
                documented["description"] = response["description"]
            content = documented.get("content", {}).get("application/json")
            if content is None:
                continue
            for key in ("example", "examples"):
                if key in response:
                    content[key] = response[key]
