"""The settings glue, run in a subprocess so this suite never configures Django itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sim_helpers import ROOT

SCRIPT = textwrap.dedent(
    """
    import json
    import django
    from django.conf import settings

    settings.configure(
        SIMULATOR={"latency_scale": 0, "seed": 3, "batch_seconds": 5,
                   "faults": [{"fault": "overloaded", "rate": 0.0}]},
        SIMULATOR_POLICY_RESOLVER="sim_helpers.demo_resolver",
    )
    django.setup()
    from simulator.django import (
        build_api_from_settings, make_api_from_settings, reset_api,
    )

    api = build_api_from_settings()
    assert build_api_from_settings() is api
    reset_api()
    fresh = build_api_from_settings()
    assert fresh is not api
    override = make_api_from_settings(latency_scale=2.5)
    from simulator import SimulatorTransport
    import httpx2
    raw = httpx2.Client(transport=SimulatorTransport(fresh), base_url="http://sim")
    answer = raw.post(
        "/v1/messages",
        headers={"x-api-key": "k", "x-countersign-workflow": "demo"},
        json={"model": "claude-haiku-4-5", "max_tokens": 20,
              "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    print(json.dumps({
        "scale": fresh.config.latency_scale,
        "seed": fresh.config.seed,
        "batch_seconds": fresh.config.batch_seconds,
        "resolver": fresh.policy_resolver.__name__,
        "answer": answer["content"][0]["text"],
        "override_scale": override.config.latency_scale,
        "state": type(fresh.state).__name__,
    }))
    """
)


def test_build_api_from_settings_is_cached_and_reads_settings():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'simulator'}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    import json

    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "scale": 0.0,
        "seed": 3,
        "batch_seconds": 5.0,
        "resolver": "demo_resolver",
        "answer": '{"demo": true}',  # the resolver's policy played the model
        "override_scale": 2.5,
        "state": "InMemoryState",
    }
