"""Fuzzing the JSON API against its own OpenAPI document (schemathesis, through WSGI).

Valid and invalid requests are generated for every operation in /api/openapi.json, with a
manager's bearer token; every answer must be no 5xx, a documented status, the documented
content type and a body matching the documented schema. Bounded and deterministic: a fixed
number of examples per operation and mode, derandomized, no example database.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.models import ApiToken
from tests.attack.conftest import World

EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def keep_test_connection():
    """Calls go through the real WSGI handler, which closes the database connection at the end
    of each request; in a test that would close the test's transaction. Django's own test
    Client does the same as this."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def no_rate_limit(request):
    """The fuzzer sends more requests a minute than API_RATE_LIMIT allows one token; the limit
    has tests of its own (tests/test_api_limits.py), here it would only cut the fuzzing short."""
    request.getfixturevalue("settings").API_RATE_LIMIT = "1000000/m"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_every_generated_request_as_documented(
    world: World, mode: GenerationMode, keep_test_connection: None, no_rate_limit: None
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", WSGIHandler())
    token = ApiToken.issue(world.users["manager"], "fuzz")[1]
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /api/runs",
        "GET /api/runs/{run_id}",
        "POST /api/tickets/{ticket_id}/resolve",
    }
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            response = case.call(headers=headers)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=CHECKS, headers=headers)

        fuzz()
    assert seen, "nothing was generated"


@pytest.mark.parametrize("path", ["/api/runs/%0A", "/api/nothing%0Ahere", "/api/%F0%9F%92%A5"])
def test_any_unknown_api_path_is_a_json_404(client, db, path):
    """Found by the fuzzing: a path with an encoded newline fell through to the HTML 404."""
    response = client.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
