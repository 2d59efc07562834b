"""The cost formula against hand-computed cases, to the micro-dollar."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from costs.models import ModelPrice
from costs.pricing import UnknownModelPrice, Usage, cost_of, price_for

# (model, usage, batch, expected USD) computed by hand from DESIGN.md's table.
CASES = [
    ("claude-opus-4-6", Usage(input_tokens=1_000_000), False, "5.000000"),
    ("claude-opus-4-6", Usage(output_tokens=1_000_000), False, "25.000000"),
    (
        "claude-opus-4-6",
        Usage(input_tokens=25_000, output_tokens=5_000),
        False,
        "0.250000",
    ),  # 0.125 + 0.125
    (
        "claude-opus-4-6",
        Usage(input_tokens=100, cache_write_5m=5_000, output_tokens=300),
        False,
        "0.039250",
    ),  # 0.0005+0.03125+0.0075
    (
        "claude-opus-4-6",
        Usage(input_tokens=100, cache_write_1h=5_000, output_tokens=300),
        False,
        "0.058000",
    ),  # 0.0005+0.05+0.0075
    (
        "claude-opus-4-6",
        Usage(input_tokens=200, cache_read=5_000, output_tokens=300),
        False,
        "0.011000",
    ),  # 0.001+0.0025+0.0075
    (
        "claude-opus-4-5",
        Usage(input_tokens=1_234, output_tokens=567),
        False,
        "0.020345",
    ),  # 0.00617+0.014175
    (
        "claude-sonnet-4-5",
        Usage(input_tokens=10_000, output_tokens=2_000),
        False,
        "0.060000",
    ),  # 0.03+0.03
    ("claude-sonnet-4-5", Usage(input_tokens=10_000, output_tokens=2_000), True, "0.030000"),
    (
        "claude-sonnet-4-6",
        Usage(cache_write_5m=2_048, cache_write_1h=1_024, cache_read=4_096, input_tokens=7),
        False,
        "0.015074",
    ),  # 0.00768+0.006144+0.0012288+0.000021 = 0.0150738
    (
        "claude-haiku-4-5",
        Usage(input_tokens=3_000, cache_read=10_000, output_tokens=800),
        False,
        "0.008000",
    ),  # 0.003+0.001+0.004
    (
        "claude-haiku-4-5",
        Usage(input_tokens=3_000, cache_read=10_000, output_tokens=800),
        True,
        "0.004000",
    ),
    (
        "claude-opus-4-7",
        Usage(input_tokens=1, cache_write_5m=1, cache_write_1h=1, cache_read=1, output_tokens=1),
        True,
        "0.000023375",
    ),  # (5+6.25+10+0.5+25)/1e6/2
    (
        "claude-sonnet-4-5-20250929",
        Usage(input_tokens=1_000),
        False,
        "0.003000",
    ),  # dated snapshot name
]


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "usage", "batch", "expected"), CASES)
def test_cost_matches_hand_computation(model, usage, batch, expected):
    got = cost_of(usage, price_for(model), batch=batch)
    assert got.quantize(Decimal("0.000001")) == Decimal(expected).quantize(Decimal("0.000001"))


@pytest.mark.django_db
def test_mixed_ttl_case_exact():
    usage = Usage(cache_write_5m=2_048, cache_write_1h=1_024, cache_read=4_096, input_tokens=7)
    assert cost_of(usage, price_for("claude-sonnet-4-6")) == Decimal("0.0150738")


@pytest.mark.django_db
def test_a_run_keeps_the_price_in_force_when_it_ran():
    old = price_for("claude-haiku-4-5")
    ModelPrice.objects.create(
        model="claude-haiku-4-5",
        input_per_mtok=2,
        output_per_mtok=10,
        cache_write_5m_per_mtok=Decimal("2.5"),
        cache_write_1h_per_mtok=4,
        cache_read_per_mtok=Decimal("0.2"),
        effective_from=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    assert price_for("claude-haiku-4-5", dt.datetime(2026, 12, 31, tzinfo=dt.UTC)) == old
    assert price_for("claude-haiku-4-5", dt.datetime(2027, 1, 2, tzinfo=dt.UTC)).input_per_mtok == 2


@pytest.mark.django_db
def test_unknown_model_says_what_to_do():
    with pytest.raises(UnknownModelPrice, match="Add one in the admin"):
        price_for("claude-unknown-9")


def test_usage_from_api_splits_cache_creation_by_ttl():
    usage = Usage.from_api(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 40,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        }
    )
    assert usage == Usage(
        input_tokens=10, output_tokens=5, cache_write_5m=100, cache_write_1h=200, cache_read=40
    )
    legacy = Usage.from_api(
        {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 50}
    )
    assert legacy.cache_write_5m == 50 and legacy.cache_write_1h == 0
