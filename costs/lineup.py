"""Which models a run may use: the one place the lineup rules live.

A workflow's models (``Workflow.models_in_use``: every role its calls play) must each have a
price in force (``costs.pricing``) and must not be past their end of life
(``costs.models.ModelLifecycle``); otherwise the run is refused before anything is written,
with a message that says what to add or change. A deprecated model only warns. The start page
shows the verdict as soon as the workflow is loaded, and ``orchestration.launch`` refuses the
start; ``manage.py check_lineup`` checks every registered workflow (a deploy step).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.utils import timezone

from costs.models import ModelLifecycle
from costs.pricing import UnknownModelPrice, canonical_model, price_for
from orchestration.workflows.declaration import Workflow


@dataclass(frozen=True)
class Verdict:
    """What the lineup says about a set of models: refusals stop a start, warnings do not."""

    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refusals


def _roles_by_model(models: Mapping[str, str]) -> dict[str, list[str]]:
    by_model: dict[str, list[str]] = {}
    for role, model in models.items():
        by_model.setdefault(model, []).append(role)
    return by_model


def verdict(models: Mapping[str, str], at: dt.datetime | None = None) -> Verdict:
    """The verdict on ``models`` (role -> model) at ``at`` (default: now)."""
    at = at or timezone.now()
    today = at.astimezone(dt.UTC).date()
    by_model = _roles_by_model(models)
    dates = {
        row.model: row
        for row in ModelLifecycle.objects.filter(model__in={canonical_model(m) for m in by_model})
    }
    result = Verdict()
    for model, roles in by_model.items():
        played = f"(role{'s' if len(roles) > 1 else ''} {', '.join(roles)})"
        try:
            price_for(model, at)
        except UnknownModelPrice as exc:
            result.refusals.append(f"Model {model} {played} has no price. {exc}")
        row = dates.get(canonical_model(model))
        if row is None:
            continue
        move = (
            f" Declare another model for {', '.join(roles)} in the workflow's models"
            + (f" (the replacement is {row.replacement})" if row.replacement else "")
            + "."
        )
        if row.end_of_life is not None and row.end_of_life <= today:
            result.refusals.append(
                f"Model {model} {played} reached its end of life on {row.end_of_life:%Y-%m-%d}: the API no "
                f"longer answers it, so no run that uses it may start.{move} If the date is wrong, a superuser "
                "corrects it in the admin (Costs > Model lifecycles)."
            )
        elif row.deprecated_on is not None and row.deprecated_on <= today:
            until = f"; its end of life is {row.end_of_life:%Y-%m-%d}" if row.end_of_life else ""
            result.warnings.append(
                f"Model {model} {played} is deprecated since {row.deprecated_on:%Y-%m-%d}{until}.{move}"
            )
    return result


def workflow_verdict(workflow: Workflow, at: dt.datetime | None = None) -> Verdict:
    """The verdict on every model the workflow's calls may use."""
    return verdict(workflow.models_in_use(), at)
