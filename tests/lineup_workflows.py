"""Workflows for the lineup tests (tests/test_lineup.py): the ledger close of
tests/engine_workflows.py with a turn rule, and copies on an unpriced, a retired and a
deprecated model. Registered on import."""

from __future__ import annotations

import dataclasses

from orchestration.workflows.declaration import TurnRoles
from orchestration.workflows.registry import register
from tests.engine_workflows import LEDGER

MODELS = {
    "orchestrator": "claude-opus-5",
    "classifier": "claude-haiku-4-5",
    "formatter": "claude-sonnet-5",
}

# Haiku takes the request, Sonnet the routine turns and the answer after post_summary, Opus
# recovers: default differs from recovery so a test can tell them apart.
ROUTED = register(
    dataclasses.replace(
        LEDGER,
        name="lineup_routed",
        title="Ledger close, routed per turn (tests only)",
        models=MODELS,
        turn_roles=TurnRoles(
            first="classifier",
            default="formatter",
            recovery="orchestrator",
            after={"post_summary": "formatter"},
        ),
    )
)
UNPRICED = register(
    dataclasses.replace(
        LEDGER,
        name="lineup_unpriced",
        title="On an unpriced model (tests only)",
        models={**MODELS, "classifier": "claude-haiku-5-5"},
        turn_roles=TurnRoles(first="classifier"),
    )
)
RETIRED = register(
    dataclasses.replace(
        LEDGER,
        name="lineup_retired",
        title="On a retired model (tests only)",
        models={**MODELS, "orchestrator": "claude-sonnet-4-5"},
    )
)
DEPRECATED = register(
    dataclasses.replace(
        LEDGER,
        name="lineup_deprecated",
        title="On a deprecated model (tests only)",
        models={**MODELS, "orchestrator": "claude-opus-4-5"},
    )
)
