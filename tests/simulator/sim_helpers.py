"""Helpers shared by the simulator tests (imported as `sim_helpers`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anthropic

# The simulator core is framework-free; make the repo importable without Django's help.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator import SimulatedAPI, SimulatorTransport  # noqa: E402

SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-6"


class FakeClock:
    """A settable clock for InMemoryState (epoch seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sdk_client(api: SimulatedAPI, *, max_retries: int = 2, **kwargs: Any) -> anthropic.Anthropic:
    """The real SDK wired to the in-process simulator."""
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://simulator.local",
        http_client=anthropic.DefaultHttpxClient(transport=SimulatorTransport(api)),
        max_retries=max_retries,
        **kwargs,
    )


def demo_resolver(workflow: str | None):
    """A policy resolver importable by dotted path (used by the settings test)."""
    from simulator import final

    if workflow == "demo":
        return lambda conv: final({"demo": True})
    return None
