"""Configuration of the simulated Messages API and the models it knows.

`SimulatorConfig` is a plain dataclass so the simulator core stays framework-free;
`config_from_mapping` builds one from the dict found in ``settings.SIMULATOR``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from anthropic.types import Model as SdkModel

MAX_REQUEST_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    """What the simulator needs to know about one model."""

    name: str
    min_cache_tokens: int  # shorter cacheable prefixes are silently not cached
    max_output_tokens: int


# Canonical names; dated aliases ("claude-sonnet-4-5-20250929") resolve by prefix. Known
# limits first; every other model the installed SDK names is added below, so the simulator
# answers for each of them.
_KNOWN: tuple[ModelInfo, ...] = (
    ModelInfo("claude-opus-4-5", 4096, 64_000),
    ModelInfo("claude-opus-4-6", 4096, 128_000),
    ModelInfo("claude-opus-4-7", 4096, 128_000),
    ModelInfo("claude-sonnet-4-5", 1024, 64_000),
    ModelInfo("claude-sonnet-4-6", 1024, 64_000),
    ModelInfo("claude-haiku-4-5", 4096, 64_000),
)
_DATED = re.compile(r".+-\d{8}")


def sdk_model_names() -> list[str]:
    """Every model id the installed anthropic SDK names (its ``Model`` literal), in its order."""
    names: list[str] = []
    for arg in get_args(SdkModel):
        names += [a for a in get_args(arg) if isinstance(a, str)]
    return names


def _sdk_model(name: str) -> ModelInfo:
    """Limits for an SDK model the table above does not list: the 5 generation's documented
    128K max output; the cache minimum of its family, as the estimate assumes
    (costs.estimates.min_cacheable_tokens)."""
    return ModelInfo(name, 1024 if "sonnet" in name else 4096, 128_000)


MODELS: dict[str, ModelInfo] = {info.name: info for info in _KNOWN}
for _name in sdk_model_names():
    if _name not in MODELS and not _DATED.fullmatch(_name):
        MODELS[_name] = _sdk_model(_name)


def resolve_model(name: str) -> ModelInfo | None:
    """Return the model for a canonical name or a dated alias of it, else None."""
    if name in MODELS:
        return MODELS[name]
    # Only a "-<suffix>" after the full canonical name counts, so "claude-opus-4-50" does not
    # resolve to claude-opus-4-5; the longest such name wins, so "claude-sonnet-5-5-x" is
    # claude-sonnet-5-5, not claude-sonnet-5.
    found = [info for canonical, info in MODELS.items() if name.startswith(canonical + "-")]
    return max(found, key=lambda info: len(info.name)) if found else None


# (time to first token in seconds, output tokens per second), matched by model prefix.
DEFAULT_LATENCY: dict[str, tuple[float, float]] = {
    "claude-opus": (1.5, 40.0),
    "claude-sonnet": (0.8, 70.0),
    "claude-haiku": (0.4, 150.0),
    "claude-fable": (2.0, 35.0),
    "claude-mythos": (2.0, 35.0),
}


@dataclass
class SimulatorConfig:
    """Knobs of the simulator. Defaults behave like a healthy API with realistic latency."""

    latency: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    latency_scale: float = 1.0  # multiplies every modelled delay; 0 disables sleeping
    # When > 0, every /v1/messages answer takes exactly this long (benchmarks); latency and
    # latency_scale are then ignored. Faults' extra delays still add to it.
    fixed_latency_seconds: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # global faults, see faults.py
    seed: int | None = None  # seeds the fault RNG (ids stay random so processes never collide)
    retry_after_seconds: float = 1.0  # sent with 429 as retry-after / retry-after-ms
    batch_seconds: float = 0.0  # a batch ends this long after creation (0: on next read)
    state_url: str | None = None  # redis://... to share cache and batches between processes
    slow_seconds: float = 30.0  # default extra delay of the "slow" fault
    max_request_bytes: int = MAX_REQUEST_BYTES
    public_base_url: str | None = None  # base of batch results_url; default: the request's Host

    def latency_for(self, model: str) -> tuple[float, float]:
        """(ttft, tokens/s) for the longest configured prefix of `model`."""
        best: tuple[float, float] = (0.0, math.inf)
        best_len = -1
        for prefix, value in self.latency.items():
            if model.startswith(prefix) and len(prefix) > best_len:
                best, best_len = (float(value[0]), float(value[1])), len(prefix)
        return best

    def delay_seconds(self, model: str, output_tokens: int) -> float:
        """Modelled generation time of one answer, scaled by `latency_scale`."""
        if self.fixed_latency_seconds > 0:
            return self.fixed_latency_seconds
        if self.latency_scale <= 0:
            return 0.0
        ttft, tps = self.latency_for(model)
        generation = output_tokens / tps if tps > 0 else 0.0
        return (ttft + generation) * self.latency_scale

    def first_token_seconds(self, model: str) -> float:
        """Modelled time to the first token of a streamed answer (the rest of ``delay_seconds``
        is spent streaming). A fixed latency is all spent before the first byte."""
        if self.fixed_latency_seconds > 0:
            return self.fixed_latency_seconds
        if self.latency_scale <= 0:
            return 0.0
        return self.latency_for(model)[0] * self.latency_scale


def config_from_mapping(values: Mapping[str, Any] | None) -> SimulatorConfig:
    """Build a config from a settings-style dict; missing keys take the defaults.

    Unknown keys raise ValueError so a typo in settings does not silently do nothing.
    """
    values = dict(values or {})
    known = set(SimulatorConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown SIMULATOR settings: {sorted(unknown)}")
    if "latency" in values and values["latency"] is not None:
        values["latency"] = {
            str(prefix): (float(v[0]), float(v[1])) for prefix, v in values["latency"].items()
        }
    for key in (
        "latency_scale",
        "fixed_latency_seconds",
        "retry_after_seconds",
        "batch_seconds",
        "slow_seconds",
    ):
        if values.get(key) is not None:
            values[key] = float(values[key])
    values = {k: v for k, v in values.items() if v is not None}
    return SimulatorConfig(**values)
