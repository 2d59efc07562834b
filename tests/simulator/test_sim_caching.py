"""Prompt caching: writes, reads, TTLs, minimums, lookback and the usage invariant."""

from __future__ import annotations

import anthropic
import pytest
from sim_helpers import HAIKU, OPUS, SONNET, sdk_client

from simulator import SimulatedAPI, SimulatorConfig, input_tokens
from simulator.tokens import (
    REQUEST_OVERHEAD,
    TOOLS_PREAMBLE,
    text_tokens,
    tool_tokens,
)

BIG = "Rules of the workflow. " * 240  # 5,520 chars = 1,380 tokens: over Sonnet's minimum
SMALL = "Short rules. " * 60  # 780 chars = 195 tokens: under every minimum


def system(text_value, ttl=None):
    control = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": text_value, "cache_control": control}]


def ask(client, *, model=SONNET, system_blocks=None, messages=None, **extra):
    params = {
        "model": model,
        "max_tokens": 100,
        "messages": messages or [{"role": "user", "content": "Run it."}],
        **extra,
    }
    if system_blocks is not None:
        params["system"] = system_blocks
    message = client.messages.create(**params)
    count = client.messages.count_tokens(
        **{k: v for k, v in params.items() if k != "max_tokens"}
    ).input_tokens
    usage = message.usage
    # The invariant: input + creation + read is the uncached count.
    assert (
        usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        == count
    )
    assert (
        usage.cache_creation.ephemeral_5m_input_tokens
        + usage.cache_creation.ephemeral_1h_input_tokens
        == usage.cache_creation_input_tokens
    )
    return usage


def test_write_then_read_within_ttl_then_expiry(client, clock):
    prefix = REQUEST_OVERHEAD + text_tokens(BIG)
    first = ask(client, system_blocks=system(BIG))
    assert first.cache_creation_input_tokens == prefix
    assert first.cache_creation.ephemeral_5m_input_tokens == prefix
    assert first.cache_read_input_tokens == 0
    assert first.input_tokens > 0  # the user message after the breakpoint

    clock.advance(240)
    second = ask(client, system_blocks=system(BIG))
    assert (second.cache_read_input_tokens, second.cache_creation_input_tokens) == (prefix, 0)
    assert second.input_tokens == first.input_tokens

    clock.advance(240)  # 480s after the write, but the read at 240s refreshed the 5m TTL
    assert ask(client, system_blocks=system(BIG)).cache_read_input_tokens == prefix

    clock.advance(301)
    expired = ask(client, system_blocks=system(BIG))
    assert (expired.cache_read_input_tokens, expired.cache_creation_input_tokens) == (0, prefix)


def test_one_hour_ttl(client, clock):
    first = ask(client, system_blocks=system(BIG, ttl="1h"))
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens > 0
    assert first.cache_creation.ephemeral_5m_input_tokens == 0
    clock.advance(50 * 60)
    assert ask(client, system_blocks=system(BIG, ttl="1h")).cache_read_input_tokens > 0
    clock.advance(61 * 60)
    assert ask(client, system_blocks=system(BIG, ttl="1h")).cache_read_input_tokens == 0


def test_prefix_under_the_model_minimum_is_not_cached(client):
    for _ in range(2):
        usage = ask(client, system_blocks=system(SMALL))
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0


def test_minimum_depends_on_the_model(client):
    # 1,380 tokens: cacheable on Sonnet (1,024), not on Haiku 4.5 or Opus 4.6 (4,096).
    assert ask(client, model=SONNET, system_blocks=system(BIG)).cache_creation_input_tokens > 0
    assert ask(client, model=HAIKU, system_blocks=system(BIG)).cache_creation_input_tokens == 0
    assert ask(client, model=OPUS, system_blocks=system(BIG)).cache_creation_input_tokens == 0
    huge = BIG * 3  # 4,140 tokens
    assert ask(client, model=HAIKU, system_blocks=system(huge)).cache_creation_input_tokens > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cache_is_per_model_and_shared_by_dated_aliases(client):
    ask(client, model="claude-sonnet-4-6", system_blocks=system(BIG))
    assert (
        ask(client, model="claude-sonnet-4-5", system_blocks=system(BIG)).cache_read_input_tokens
        == 0
    )
    dated = ask(client, model="claude-sonnet-4-5-20250929", system_blocks=system(BIG))
    assert dated.cache_read_input_tokens > 0


def test_tools_then_system_split_by_ttl(client):
    tools = [
        {
            "name": "lookup",
            "description": "Look things up. " * 300,
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    usage = ask(client, system_blocks=system(BIG), tools=tools)
    tools_only = REQUEST_OVERHEAD + TOOLS_PREAMBLE + tool_tokens(tools[0])
    assert usage.cache_creation.ephemeral_1h_input_tokens == tools_only
    assert usage.cache_creation.ephemeral_5m_input_tokens == text_tokens(BIG)
    again = ask(client, system_blocks=system(BIG), tools=tools)
    assert again.cache_read_input_tokens == usage.cache_creation_input_tokens
    # Change the system prompt: the tools prefix is still read, the system part rewritten.
    changed = ask(client, system_blocks=system(BIG + " v2"), tools=tools)
    assert changed.cache_read_input_tokens == tools_only
    assert changed.cache_creation.ephemeral_5m_input_tokens == text_tokens(BIG + " v2")


def test_lookback_reads_the_entry_the_previous_turn_wrote(client):
    """Breakpoint on the last message each turn: turn 2 reads what turn 1 wrote."""
    history = [
        {
            "role": "user",
            "content": [{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    first = ask(client, messages=history)
    assert first.input_tokens == 0  # the breakpoint is on the only block
    written = first.cache_creation_input_tokens
    assert written > 1024

    plain_first = [{"role": "user", "content": [{"type": "text", "text": BIG}]}]
    second_history = [
        *plain_first,
        {"role": "assistant", "content": "Noted."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Next step.", "cache_control": {"type": "ephemeral"}}
            ],
        },
    ]
    second = ask(client, messages=second_history)
    assert second.cache_read_input_tokens == written
    assert second.cache_creation_input_tokens > 0
    assert second.input_tokens == 0  # everything up to the last block is read or written


def test_top_level_cache_control_caches_the_whole_prompt(client):
    messages = [{"role": "user", "content": BIG}]
    first = ask(client, messages=messages, extra_body={"cache_control": {"type": "ephemeral"}})
    assert first.input_tokens == 0 and first.cache_creation_input_tokens > 0
    again = ask(client, messages=messages, extra_body={"cache_control": {"type": "ephemeral"}})
    assert again.cache_read_input_tokens == first.cache_creation_input_tokens


def test_more_than_four_breakpoints_is_a_400(client):
    blocks = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        client.messages.create(
            model=SONNET, max_tokens=10, system=blocks, messages=[{"role": "user", "content": "x"}]
        )


def test_one_hour_after_five_minutes_is_a_400(client):
    blocks = [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    with pytest.raises(anthropic.BadRequestError, match="ttl='1h'"):
        client.messages.create(
            model=SONNET, max_tokens=10, system=blocks, messages=[{"role": "user", "content": "x"}]
        )


def test_count_tokens_is_the_uncached_count_and_writes_nothing(client):
    params = {
        "model": SONNET,
        "system": system(BIG),
        "messages": [{"role": "user", "content": "Run it."}],
    }
    counted = client.messages.count_tokens(**params).input_tokens
    assert counted == input_tokens(params)
    usage = client.messages.create(max_tokens=10, **params).usage
    assert usage.cache_read_input_tokens == 0  # count_tokens did not populate the cache
    assert usage.input_tokens + usage.cache_creation_input_tokens == counted


def test_state_is_shared_between_api_instances(state):
    one = sdk_client(SimulatedAPI(SimulatorConfig(latency_scale=0), state=state))
    two = sdk_client(SimulatedAPI(SimulatorConfig(latency_scale=0), state=state))
    written = ask(one, system_blocks=system(BIG)).cache_creation_input_tokens
    assert ask(two, system_blocks=system(BIG)).cache_read_input_tokens == written


def test_concurrent_requests_are_consistent(api):
    """Many threads on one API: every call answers and each usage split is consistent."""
    from concurrent.futures import ThreadPoolExecutor

    client = sdk_client(api)
    params = {
        "model": SONNET,
        "max_tokens": 20,
        "system": system(BIG),
        "messages": [{"role": "user", "content": "x"}],
    }
    total = client.messages.count_tokens(**{k: v for k, v in params.items() if k != "max_tokens"})

    def call(_):
        return client.messages.create(**params).usage

    with ThreadPoolExecutor(max_workers=16) as pool:
        usages = list(pool.map(call, range(48)))
    assert len(usages) == 48
    for usage in usages:
        assert (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            == total.input_tokens
        )
    assert sum(1 for u in usages if u.cache_read_input_tokens > 0) >= 32
    assert [r.status for r in api.requests if r.path == "/v1/messages"] == [200] * 48
