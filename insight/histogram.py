"""Latency histograms with fixed bounds: the sketch every roll-up row keeps.

A histogram is a list of ``len(BOUNDS_MS) + 1`` counts: ``counts[i]`` counts the values ``v``
(integer milliseconds) with ``BOUNDS_MS[i - 1] < v <= BOUNDS_MS[i]`` (``counts[0]``: ``v <=
BOUNDS_MS[0]``; the last one: ``v > BOUNDS_MS[-1]``). Histograms of the same bounds add up
element by element, so hourly rows merge into days and days into periods exactly, which a
quantile of quantiles would not.

A quantile read from it is exact to the bucket: the reported value lies in the same bucket
as the true one (nearest rank), interpolated linearly inside it. Consecutive bounds are at
most 1.5 apart above 10 ms (mantissas 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 per decade), so
the error is below a third of the value. Prometheus gets a subset of the bounds
(``PROMETHEUS_BOUNDS_MS``), cumulated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

_MANTISSAS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
# 1 ms to 5 days: model and tool calls take milliseconds to minutes; a run's latency counts
# the hours it waited for a reviewer.
BOUNDS_MS: tuple[int, ...] = tuple(
    sorted(
        {1, 2, 3, 5, 7}
        | {int(m * 10**k) for k in range(1, 9) for m in _MANTISSAS if m * 10**k <= 5 * 10**8}
    )
)
SIZE = len(BOUNDS_MS) + 1
# The buckets /metrics exposes (Prometheus cost grows with each), in seconds once divided.
PROMETHEUS_BOUNDS_MS: tuple[int, ...] = (
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    25000,
    50000,
    100000,
    250000,
    600000,
)
assert set(PROMETHEUS_BOUNDS_MS) <= set(BOUNDS_MS)


def width_bucket_sql(column: str) -> str:
    """SQL giving the bucket index of ``column`` (integer ms): Postgres' width_bucket counts
    the bounds <= value, so bounds + 1 make each bucket's upper bound inclusive."""
    return f"width_bucket({column}, ARRAY[{','.join(str(b + 1) for b in BOUNDS_MS)}]::bigint[])"


def empty() -> list[int]:
    return [0] * SIZE


def bucket_of(value_ms: float) -> int:
    """The index of the bucket holding ``value_ms`` (the Python twin of width_bucket_sql)."""
    v = math.ceil(value_ms)
    lo, hi = 0, len(BOUNDS_MS)
    while lo < hi:  # first bound >= v
        mid = (lo + hi) // 2
        if BOUNDS_MS[mid] >= v:
            hi = mid
        else:
            lo = mid + 1
    return lo


def merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    total = empty()
    for h in histograms:
        for i, n in enumerate(h or ()):
            total[i] += n
    return total


def count(histogram: Sequence[int]) -> int:
    return sum(histogram)


def quantile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) in ms by nearest rank, interpolated inside its bucket;
    None for an empty histogram. Values over the last bound read as the last bound."""
    n = sum(histogram)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for i, c in enumerate(histogram):
        if c and seen + c >= rank:
            if i >= len(BOUNDS_MS):
                return float(BOUNDS_MS[-1])
            lower = BOUNDS_MS[i - 1] if i else 0
            upper = BOUNDS_MS[i]
            return lower + (upper - lower) * (rank - seen) / c
        seen += c
    return float(BOUNDS_MS[-1])  # unreachable: the ranks add up to n


def bucket_range(value_ms: float) -> tuple[int, int | None]:
    """(lower exclusive, upper inclusive) bounds of the bucket holding the value."""
    i = bucket_of(value_ms)
    lower = BOUNDS_MS[i - 1] if i else 0
    return lower, BOUNDS_MS[i] if i < len(BOUNDS_MS) else None


def cumulative(
    histogram: Sequence[int], bounds_ms: Sequence[int] = PROMETHEUS_BOUNDS_MS
) -> list[int]:
    """Counts of values <= each of ``bounds_ms`` (which must be among BOUNDS_MS)."""
    out, running, j = [], 0, 0
    for i, bound in enumerate(BOUNDS_MS):
        running += histogram[i]
        if j < len(bounds_ms) and bound == bounds_ms[j]:
            out.append(running)
            j += 1
    return out
