"""Message Batches through the SDK: create, retrieve, results, list, cancel, delete."""

from __future__ import annotations

import json

import anthropic
import pytest
from sim_helpers import HAIKU, SONNET, sdk_client

from simulator import PolicyRegistry, final


def request(custom_id, content, **params):
    return {
        "custom_id": custom_id,
        "params": {
            "model": HAIKU,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }


def test_create_retrieve_results(make_api):
    registry = PolicyRegistry()
    registry.register("echo", lambda conv: final({"echo": conv.input}))
    api = make_api(resolver=registry)
    client = sdk_client(api, default_headers={"x-countersign-workflow": "echo"})
    batch = client.messages.batches.create(
        requests=[
            request("first", '{"n": 1}'),
            request("second", '{"n": 2}'),
            request("broken", "x", model="claude-nope-1"),
        ]
    )
    assert batch.id.startswith("msgbatch_01")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3 and batch.results_url is None

    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended"
    assert done.ended_at is not None and done.expires_at > done.created_at
    assert (
        done.request_counts.succeeded,
        done.request_counts.errored,
        done.request_counts.processing,
    ) == (2, 1, 0)
    assert done.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"first", "second", "broken"}
    assert results["first"].type == "succeeded"
    assert json.loads(results["first"].message.content[0].text) == {"echo": {"n": 1}}
    assert results["first"].message.usage.service_tier == "batch"
    assert results["first"].message.usage.input_tokens > 0  # not discounted
    assert results["broken"].type == "errored"
    assert results["broken"].error.error.type == "not_found_error"


def test_batch_ends_after_batch_seconds(make_api, clock):
    client = sdk_client(make_api(batch_seconds=60))
    batch = client.messages.batches.create(requests=[request("only", "hi")])
    clock.advance(30)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError, match="Has it finished processing"):
        client.messages.batches.results(batch.id)
    clock.advance(31)
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    (line,) = list(client.messages.batches.results(batch.id))
    assert line.result.type == "succeeded"


def test_cancel_list_delete(make_api, clock):
    client = sdk_client(make_api(batch_seconds=3600))
    kept = client.messages.batches.create(requests=[request("a", "hi")])
    clock.advance(1)
    canceled = client.messages.batches.create(requests=[request("b", "hi"), request("c", "hi")])
    assert client.messages.batches.cancel(canceled.id).processing_status == "canceling"
    after = client.messages.batches.retrieve(canceled.id)
    assert after.processing_status == "ended"
    assert after.request_counts.canceled == 2
    assert {r.result.type for r in client.messages.batches.results(canceled.id)} == {"canceled"}

    listed = [b.id for b in client.messages.batches.list()]
    assert listed == [canceled.id, kept.id]  # newest first
    first_page = client.messages.batches.list(limit=1)
    assert [b.id for b in first_page.data] == [canceled.id] and first_page.has_more
    assert [b.id for b in first_page.get_next_page().data] == [kept.id]

    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(kept.id)  # still in progress
    assert client.messages.batches.delete(canceled.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(canceled.id)


def test_batch_create_validation(client):
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        client.messages.batches.create(requests=[request("a", "x"), request("a", "y")])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": HAIKU, "messages": []}}]
        )
    with pytest.raises(anthropic.BadRequestError, match="at least 1 item"):
        client.messages.batches.create(requests=[])


def test_batch_faults_from_the_create_header(make_api):
    client = sdk_client(make_api())
    batch = client.messages.batches.create(
        requests=[request("a", "x", model=SONNET)],
        extra_headers={"x-simulator-faults": json.dumps([{"fault": "overloaded"}])},
    )
    (line,) = list(client.messages.batches.results(batch.id))
    assert line.result.type == "errored"
    assert line.result.error.error.type == "overloaded_error"
