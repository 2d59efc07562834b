"""Fixtures for the simulator suite: plain pytest, no Django, no database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from sim_helpers import FakeClock, sdk_client

from simulator import InMemoryState, PolicyResolver, SimulatedAPI, SimulatorConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> InMemoryState:
    return InMemoryState(clock=clock)


@pytest.fixture
def make_api(state: InMemoryState) -> Callable[..., SimulatedAPI]:
    """make_api(resolver=None, **config): an API on the fake-clock state, no latency."""

    def factory(resolver: PolicyResolver | None = None, **config: Any) -> SimulatedAPI:
        config.setdefault("latency_scale", 0.0)
        config.setdefault("retry_after_seconds", 0.01)
        return SimulatedAPI(SimulatorConfig(**config), policy_resolver=resolver, state=state)

    return factory


@pytest.fixture
def api(make_api: Callable[..., SimulatedAPI]) -> SimulatedAPI:
    return make_api()


@pytest.fixture
def client(api: SimulatedAPI) -> anthropic.Anthropic:
    return sdk_client(api)
