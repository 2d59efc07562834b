"""Build the process-wide `SimulatedAPI` from Django settings (the only Django-aware module).

Settings::

    SIMULATOR = {
        "latency_scale": 1.0, "latency": {"claude-opus": (1.5, 40.0), ...},
        "faults": [{"fault": "overloaded", "rate": 0.01}], "seed": None,
        "retry_after_seconds": 1.0, "batch_seconds": 0.0,
        "state_url": "redis://localhost:6379/3",  # shared by web, worker and beat
    }
    SIMULATOR_POLICY_RESOLVER = "orchestration.workflows.registry.policy_for"  # optional

Every key is optional (see config.SimulatorConfig for the defaults).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from .api import SimulatedAPI
from .config import config_from_mapping
from .policy import PolicyResolver


def policy_resolver_from_settings() -> PolicyResolver | None:
    path = getattr(settings, "SIMULATOR_POLICY_RESOLVER", None)
    if not path:
        return None
    return import_string(path) if isinstance(path, str) else path


def make_api_from_settings(**overrides: Any) -> SimulatedAPI:
    """A new SimulatedAPI from settings.SIMULATOR with `overrides` on top (uncached)."""
    values = dict(getattr(settings, "SIMULATOR", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SimulatedAPI(
        config_from_mapping(values), policy_resolver=policy_resolver_from_settings()
    )


@functools.cache
def build_api_from_settings() -> SimulatedAPI:
    """The process-wide SimulatedAPI (built once; `reset_api()` forgets it)."""
    return make_api_from_settings()


def reset_api() -> None:
    """Forget the cached API so the next build reads settings again (tests)."""
    build_api_from_settings.cache_clear()
