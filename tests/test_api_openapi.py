"""The OpenAPI document covers every route of the API urlconf, and its examples are valid."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver

import api.urls
from tests.api_helpers import build, schema_errors

METHODS = ("get", "post", "put", "patch", "delete")


def _routes() -> dict[str, int]:
    """OpenAPI path -> how many operations api/urls.py routes there, for every route except the
    document itself and the catch-all."""
    routes: dict[str, int] = {}
    for pattern in api.urls.urlpatterns:
        assert isinstance(pattern, URLPattern) and not isinstance(pattern, URLResolver)
        if pattern.name in ("not_found", "openapi"):
            continue
        path = "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        assert path not in routes, f"{path} is routed twice"
        routes[path] = len(pattern.callback.operations)
    return routes


def test_every_route_and_method_is_documented_and_nothing_else():
    paths = build()["paths"]
    routes = _routes()
    assert len(routes) >= 5
    for path, operations in routes.items():
        assert path in paths, f"{path} is routed but not documented"
        documented = [m for m in paths[path] if m in METHODS]
        assert len(documented) == operations, f"{path}: {operations} routed, {documented}"
    assert set(paths) == set(routes), "the document describes a path that is not routed"


def _examples() -> list[tuple[str, Any, dict[str, Any]]]:
    found = []
    for path, item in build()["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body and "example" in body:
                found.append((f"{method} {path} request", body["example"], body["schema"]))
            for status, response in op["responses"].items():
                content = response.get("content", {}).get("application/json")
                if not content:
                    continue
                if "example" in content:
                    found.append(
                        (f"{method} {path} {status}", content["example"], content["schema"])
                    )
                for name, example in content.get("examples", {}).items():
                    found.append(
                        (f"{method} {path} {status} {name}", example["value"], content["schema"])
                    )
            for param in op.get("parameters", []):
                if "example" in param:
                    found.append(
                        (f"{method} {path} {param['name']}", param["example"], param["schema"])
                    )
    return found


@pytest.mark.parametrize(
    ("where", "example", "schema"), _examples(), ids=[e[0] for e in _examples()]
)
def test_examples_validate_against_their_schemas(where, example, schema):
    assert schema_errors(example, schema) == [], where


def test_examples_are_many_and_a_wrong_body_is_caught():
    assert len(_examples()) >= 20
    run_schema = {"$ref": "#/components/schemas/Run"}
    assert schema_errors({"id": "x"}, run_schema)  # the checker is not vacuous
    assert any(
        "cost_usd" in e
        for e in schema_errors(
            {
                **build()["paths"]["/api/runs/{run_id}"]["get"]["responses"]["200"]["content"][
                    "application/json"
                ]["example"],
                "cost_usd": 0.5,
            },
            run_schema,
        )
    )


def test_every_operation_documents_401_unless_public():
    for path, item in build()["paths"].items():
        for method, op in item.items():
            if op.get("security") == []:
                continue
            assert "401" in op["responses"], f"{method} {path}"
            assert op["operationId"]
