"""The standalone server over real loopback HTTP, and the Redis-backed shared state."""

from __future__ import annotations

import json
import os
import time
import uuid

import anthropic
import pytest
from sim_helpers import SONNET

from simulator import RedisState, SimulatedAPI, SimulatorConfig, serve_in_thread


@pytest.fixture
def server():
    api = SimulatedAPI(SimulatorConfig(latency_scale=0, retry_after_seconds=0.01))
    srv, thread = serve_in_thread(api, port=0)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_sdk_over_loopback(server):
    client = anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=2)
    assert server.base_url.startswith("http://127.0.0.1:")
    message = client.messages.create(
        model=SONNET,
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-simulator-faults": json.dumps([{"fault": "rate_limit", "times": 1}])},
    )
    assert json.loads(message.content[0].text) == {"status": "success"}
    assert [(r.status, r.retry_count) for r in server.api.requests] == [(429, 0), (200, 1)]
    assert (
        client.messages.count_tokens(
            model=SONNET, messages=[{"role": "user", "content": "hi"}]
        ).input_tokens
        > 0
    )

    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "a",
                "params": {
                    "model": SONNET,
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": "x"}],
                },
            }
        ]
    )
    assert client.messages.batches.retrieve(batch.id).results_url.startswith(server.base_url)
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["succeeded"]

    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model=SONNET, max_tokens=5, messages=[{"role": "assistant", "content": "x"}]
        )


def test_slow_fault_times_out_over_loopback(server):
    client = anthropic.Anthropic(
        api_key="test", base_url=server.base_url, max_retries=0, timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(
            model=SONNET,
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-simulator-faults": json.dumps([{"fault": "slow", "seconds": 20}])},
        )
    assert time.monotonic() - started < 5


@pytest.fixture
def redis_url():
    """The Redis that `make test` starts (database 1); each test uses its own key prefix."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:63790/1")


def test_redis_state_is_shared_between_processes_views(redis_url):
    from sim_helpers import sdk_client

    prefix = f"test:{uuid.uuid4().hex}:"
    web = SimulatedAPI(SimulatorConfig(latency_scale=0), state=RedisState(redis_url, prefix=prefix))
    worker = SimulatedAPI(
        SimulatorConfig(latency_scale=0), state=RedisState(redis_url, prefix=prefix)
    )
    system = [
        {
            "type": "text",
            "text": "Rules. " * 800,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    params = {
        "model": SONNET,
        "max_tokens": 20,
        "system": system,
        "messages": [{"role": "user", "content": "x"}],
    }
    written = sdk_client(web).messages.create(**params).usage
    read = sdk_client(worker).messages.create(**params).usage
    assert written.cache_creation.ephemeral_1h_input_tokens > 0
    assert read.cache_read_input_tokens == written.cache_creation_input_tokens

    batch = sdk_client(web).messages.batches.create(requests=[{"custom_id": "a", "params": params}])
    assert sdk_client(worker).messages.batches.retrieve(batch.id).processing_status == "ended"
    assert [r.custom_id for r in sdk_client(web).messages.batches.results(batch.id)] == ["a"]
    web.state.clear()
    assert web.state.batch_ids() == []


def test_slow_stream_trickles_the_body_over_loopback(server):
    """Headers at once, the body in pieces: the read timeout applies to each gap, so a
    client with a 0.5 s timeout still receives a 1.2 s answer, slowly, and a stream whose
    gaps exceed the timeout times out."""
    fault = {"x-simulator-faults": json.dumps([{"fault": "slow_stream", "seconds": 1.2}])}
    client = anthropic.Anthropic(
        api_key="test", base_url=server.base_url, max_retries=0, timeout=0.5
    )
    began = time.monotonic()
    raw = client.messages.with_raw_response.create(
        model=SONNET,
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=fault,
    )
    message = raw.parse()
    assert time.monotonic() - began >= 1.0
    assert json.loads(message.content[0].text) == {"status": "success"}
    assert "x-simulator-trickle-seconds" not in raw.headers  # internal, never sent

    slow_gaps = {"x-simulator-faults": json.dumps([{"fault": "slow_stream", "seconds": 8}])}
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(
            model=SONNET,
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=slow_gaps,
        )
