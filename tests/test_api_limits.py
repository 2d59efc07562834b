"""The JSON API's per-token rate limit (django-ratelimit): 429 with Retry-After past API_RATE_LIMIT."""

from __future__ import annotations

import pytest

from api.models import ApiToken
from tests.api_helpers import assert_documented, call


@pytest.fixture
def tiny_limit(settings):
    # An hour's window: three requests cannot straddle its end in a test.
    settings.API_RATE_LIMIT = "3/h"


def test_past_the_limit_a_token_gets_429_with_retry_after(client, operator, tiny_limit):
    _, secret = ApiToken.issue(operator, "busy script")
    for _ in range(3):
        assert call(client, "GET", "/api/runs", secret).status_code == 200
    refused = call(client, "GET", "/api/runs", secret)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3600
    error = refused.json()["error"]
    assert error["code"] == "too_many_requests"
    assert "more than 3 requests per hour (API_RATE_LIMIT)" in error["message"]
    assert f"Retry in {refused['Retry-After']} s." in error["message"]
    assert_documented(refused, "/api/runs", "get")
    # Every endpoint of that token is counted, writes too: nothing is started.
    started = call(
        client,
        "POST",
        "/api/runs",
        secret,
        body={"workflow": "x", "input": {}},
        headers={"Idempotency-Key": "limit-1"},
    )
    assert started.status_code == 429


def test_the_limit_is_per_token(client, operator, tiny_limit):
    _, first = ApiToken.issue(operator, "one")
    _, second = ApiToken.issue(operator, "two")
    for _ in range(4):
        call(client, "GET", "/api/runs", first)
    assert call(client, "GET", "/api/runs", first).status_code == 429
    assert call(client, "GET", "/api/runs", second).status_code == 200


def test_a_bad_token_is_refused_before_it_is_counted(client, operator, tiny_limit):
    for _ in range(5):
        assert call(client, "GET", "/api/runs", "cs_not-a-token").status_code == 401


def test_with_the_cache_down_the_api_still_answers_unless_told_to_fail_closed(
    client, operator, tiny_limit, settings, monkeypatch
):
    _, secret = ApiToken.issue(operator, "outage")

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr("api.http.get_usage", down)
    assert call(client, "GET", "/api/runs", secret).status_code == 200
    settings.RATELIMIT_FAIL_OPEN = False
    refused = call(client, "GET", "/api/runs", secret)
    assert refused.status_code == 429 and refused["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("rate", "words"),
    [
        ("120/m", "120 requests per minute"),
        ("10/5m", "10 requests per 5 minutes"),
        ("1/d", "1 request per day"),
    ],
)
def test_the_limit_is_described_in_words(rate, words):
    from api.http import describe_rate

    assert describe_rate(rate) == words
