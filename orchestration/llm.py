"""The one factory for Anthropic clients.

Backend ``simulated`` (default) hands the real SDK an httpx2 transport that serves the
simulated Messages API in-process, so the SDK's request building, parsing, errors and
retries are all exercised. Backend ``anthropic`` talks to the real API with
ANTHROPIC_API_KEY. ANTHROPIC_BASE_URL points either at another endpoint, e.g. the
standalone simulator (``manage.py simulate_api``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anthropic
from django.conf import settings

from simulator import SimulatorTransport
from simulator.django import build_api_from_settings

SIMULATOR_BASE_URL = "http://simulator.countersign.invalid"


@functools.cache
def _base_client() -> anthropic.Anthropic:
    kwargs: dict[str, Any] = {
        "timeout": settings.LLM_TIMEOUT_SECONDS,
        "max_retries": settings.LLM_SDK_MAX_RETRIES,
    }
    if settings.LLM_BACKEND == "anthropic":
        kwargs["api_key"] = settings.ANTHROPIC_API_KEY
        if settings.ANTHROPIC_BASE_URL:
            kwargs["base_url"] = settings.ANTHROPIC_BASE_URL
        return anthropic.Anthropic(**kwargs)
    kwargs["api_key"] = "simulated"
    if settings.ANTHROPIC_BASE_URL:  # the standalone simulator over loopback HTTP
        return anthropic.Anthropic(base_url=settings.ANTHROPIC_BASE_URL, **kwargs)
    transport = SimulatorTransport(build_api_from_settings())
    return anthropic.Anthropic(
        base_url=SIMULATOR_BASE_URL,
        http_client=anthropic.DefaultHttpxClient(transport=transport),
        **kwargs,
    )


def client_for(
    *, workflow: str | None = None, run_id: Any = None, faults: list[dict] | None = None
) -> anthropic.Anthropic:
    """A client for one run. With the simulator, headers tell it which policy plays the
    model and which faults to inject; the real API never receives them."""
    base = _base_client()
    if settings.LLM_BACKEND != "simulated":
        return base
    headers = {}
    if workflow:
        headers["x-countersign-workflow"] = workflow
    if run_id:
        headers["x-countersign-run"] = str(run_id)
    if faults:
        headers["x-simulator-faults"] = json.dumps(faults)
    return base.with_options(default_headers=headers) if headers else base


def reset_clients() -> None:
    _base_client.cache_clear()
