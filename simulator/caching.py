"""Prompt caching, computed the way the real API bills it.

Algorithm (one request):

1. The prompt is a list of segments in prefix order: tools, system blocks, message
   blocks (tokens.prompt_segments). A *breakpoint* is a segment with
   ``cache_control: {"type": "ephemeral", "ttl": "5m"|"1h"}`` (ttl defaults to 5m);
   a top-level ``cache_control`` on the request puts one on the last segment.
   At most 4 breakpoints (more is a 400), and a 1h breakpoint may not follow a 5m one.
2. Each prefix is identified by a chained hash: ``h(-1) = sha256(model)``,
   ``h(i) = sha256(h(i-1) + key(i))``. The model is the canonical model name, so a
   dated alias shares the cache of its model; another model never does.
3. **Read.** Candidate prefixes end at each breakpoint and at up to
   ``LOOKBACK_BLOCKS - 1`` block boundaries before it (the real API looks back about
   20 blocks, which is what makes "breakpoint on the last message" hit the entry the
   previous turn wrote). The longest candidate with a live entry is read:
   its tokens are ``cache_read_input_tokens`` and its entry's TTL is refreshed.
4. **Write.** Every breakpoint after the read position whose prefix has at least the
   model's minimum cacheable tokens is written with its own TTL. The tokens between
   the read position and the last written breakpoint are
   ``cache_creation_input_tokens``; each span between consecutive written breakpoints
   is attributed to the TTL of the breakpoint that closes it (``ephemeral_5m`` /
   ``ephemeral_1h``). A breakpoint under the minimum is silently not cached; its
   tokens roll into the next breakpoint that is cached, if any.
5. Everything else is ``input_tokens``, so input + creation + read always equals the
   uncached count (what count_tokens answers).

Not modelled: invalidation by tool_choice/thinking changes, and the real API's
"cache write only becomes readable once the first response starts" race.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .errors import invalid
from .state import TTL_SECONDS, SimulatorState
from .tokens import Segment

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int

    def as_usage(self, output_tokens: int, service_tier: str = "standard") -> dict[str, Any]:
        """The `usage` object of a Messages API response."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.ephemeral_1h_input_tokens,
            },
            "service_tier": service_tier,
        }


def with_request_cache_control(
    segments: list[Segment], cache_control: dict[str, Any] | None
) -> list[Segment]:
    """Apply a top-level `cache_control` (automatic caching) to the last segment."""
    if not cache_control or not segments:
        return segments
    last = segments[-1]
    return [*segments[:-1], Segment(last.tokens, last.key, cache_control, last.where)]


def breakpoints(segments: list[Segment]) -> list[tuple[int, str]]:
    """Validated (segment index, ttl) of every cache_control, in prefix order."""
    found: list[tuple[int, str]] = []
    for index, segment in enumerate(segments):
        control = segment.cache_control
        if control is None:
            continue
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            raise invalid(f"{segment.where}.cache_control.type: Input should be 'ephemeral'")
        ttl = control.get("ttl", "5m")
        if ttl not in TTL_SECONDS:
            raise invalid(f"{segment.where}.cache_control.ttl: Input should be '5m' or '1h'")
        found.append((index, ttl))
    if len(found) > MAX_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    seen_5m = False
    for index, ttl in found:
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise invalid(
                f"{segments[index].where}.cache_control: a ttl='1h' cache entry must not come "
                "after a ttl='5m' cache entry in the prompt (order: tools, system, messages)"
            )
    return found


def prefix_hashes(model: str, segments: list[Segment]) -> list[str]:
    """hashes[i] identifies the prefix made of segments 0..i for `model`."""
    digest = hashlib.sha256(model.encode()).hexdigest()
    hashes: list[str] = []
    for segment in segments:
        digest = hashlib.sha256((digest + "\x00" + segment.key).encode()).hexdigest()
        hashes.append(digest)
    return hashes


def compute_cache_usage(
    segments: list[Segment],
    *,
    model: str,
    min_tokens: int,
    state: SimulatorState,
    write: bool = True,
) -> CacheUsage:
    """Split the request's input tokens into uncached, cache-write and cache-read.

    With write=False nothing is stored or refreshed (a dry run).
    """
    total = sum(s.tokens for s in segments)
    points = breakpoints(segments)
    if not points:
        return CacheUsage(total, 0, 0, 0, 0)

    cumulative: list[int] = []
    running = 0
    for segment in segments:
        running += segment.tokens
        cumulative.append(running)
    hashes = prefix_hashes(model, segments)

    candidates: set[int] = set()
    for index, _ in points:
        candidates.update(range(max(0, index - LOOKBACK_BLOCKS + 1), index + 1))
    ordered = sorted(candidates, reverse=True)
    found = state.cache_lookup([hashes[i] for i in ordered])
    read_at, read_ttl = -1, None
    for index, ttl in zip(ordered, found, strict=True):
        if ttl is not None:
            read_at, read_ttl = index, ttl
            break
    read_tokens = cumulative[read_at] if read_at >= 0 else 0
    if write and read_ttl is not None:
        state.cache_store(hashes[read_at], read_ttl)  # a read refreshes the entry's TTL

    created = {"5m": 0, "1h": 0}
    covered = read_tokens
    for index, ttl in points:
        if index <= read_at or cumulative[index] < min_tokens:
            continue
        created[ttl] += cumulative[index] - covered
        covered = cumulative[index]
        if write:
            state.cache_store(hashes[index], ttl)
    creation = created["5m"] + created["1h"]
    return CacheUsage(
        input_tokens=total - creation - read_tokens,
        cache_creation_input_tokens=creation,
        cache_read_input_tokens=read_tokens,
        ephemeral_5m_input_tokens=created["5m"],
        ephemeral_1h_input_tokens=created["1h"],
    )
