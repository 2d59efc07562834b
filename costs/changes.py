"""Price and budget changes: the one place they are allowed, bounded and recorded.

A model price decides whether a run needs a manager's approval and when a guard trips, and a
budget decides whether a run may start, so changing either is changing a control:
- only a superuser may (``may_change``): the permission ``costs.add_modelprice`` or
  ``costs.add_budget`` alone is not enough, so a manager cannot price their own run at $0;
- a change takes effect no sooner than ``COST_CHANGE_MIN_DELAY_MINUTES`` from now, so it is
  in the audit trail and the admin before it counts, and a run being approved now is priced
  with what everyone saw;
- rows are history (``costs.models``): a change is a new row, never an edit of one in force;
  a row not yet in force may be withdrawn;
- bounds (no zero or negative price, a ceiling per million tokens, no negative limit) are
  model validators and database CheckConstraints;
- every change is an audit event in the chain (``price.added``, ``price.withdrawn``,
  ``budget.added``, ``budget.withdrawn``), with who made it and what it replaces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from costs.models import PRICE_FIELDS, Budget, ModelLifecycle, ModelPrice
from orchestration import audit


def may_change(user: Any) -> bool:
    """Whether this user may add or withdraw prices and budgets: active superusers only."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def earliest_effective(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) + dt.timedelta(minutes=settings.COST_CHANGE_MIN_DELAY_MINUTES)


def timing_error(effective_from: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """Why a change cannot take effect then ("" when it can)."""
    if effective_from is None:
        return "Say when the change takes effect."
    earliest = earliest_effective(now)
    if effective_from < earliest:
        local = timezone.localtime(earliest)
        return (
            f"A change takes effect at least {settings.COST_CHANGE_MIN_DELAY_MINUTES} minutes "
            f"from now: pick {local:%Y-%m-%d %H:%M} {local.tzname()} or later. Rows in force "
            "are never changed, so a change never applies to what is already running."
        )
    return ""


def _refuse_unless_allowed(actor: Any) -> None:
    if not may_change(actor):
        raise PermissionDenied("Only a superuser may change model prices and budgets.")


def _price_payload(price: ModelPrice) -> dict[str, Any]:
    body: dict[str, Any] = {
        "price_id": price.pk,
        "model": price.model,
        "effective_from": price.effective_from.isoformat(),
        "batch_discount": str(price.batch_discount),
        **{name: str(getattr(price, name)) for name in PRICE_FIELDS},
    }
    current = (
        ModelPrice.objects.filter(model=price.model, effective_from__lte=timezone.now())
        .exclude(pk=price.pk)
        .order_by("-effective_from")
        .first()
    )
    if current is not None:
        body["replaces"] = {
            "price_id": current.pk,
            **{name: str(getattr(current, name)) for name in PRICE_FIELDS},
        }
    return body


def _budget_key(budget: Budget) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "workflow_name": budget.workflow_name,
        "user_id": budget.user_id,
        "period": budget.period,
        "hard": budget.hard,
    }


def _budget_payload(budget: Budget) -> dict[str, Any]:
    body: dict[str, Any] = {
        "budget_id": budget.pk,
        **_budget_key(budget),
        "user": budget.user.get_username() if budget.user_id else "",
        "limit_usd": str(budget.limit_usd),
        "effective_from": budget.effective_from.isoformat(),
    }
    current = (
        Budget.objects.filter(**_budget_key(budget), effective_from__lte=timezone.now())
        .exclude(pk=budget.pk)
        .order_by("-effective_from", "-pk")
        .first()
    )
    if current is not None:
        body["replaces"] = {"budget_id": current.pk, "limit_usd": str(current.limit_usd)}
    return body


def superseded(row: ModelPrice | Budget) -> bool:
    """Whether a later row of the same model (price) or scope, period and kind (budget) is in force."""
    if isinstance(row, ModelPrice):
        later = ModelPrice.objects.filter(model=row.model)
    else:
        later = Budget.objects.filter(**_budget_key(row))
    return later.filter(
        effective_from__gt=row.effective_from, effective_from__lte=timezone.now()
    ).exists()


def _add(row: ModelPrice | Budget, actor: Any, kind: str) -> Any:
    _refuse_unless_allowed(actor)
    if not row._state.adding:
        raise ValidationError("Rows in force are never edited: add a new one instead.")
    problem = timing_error(row.effective_from)
    if problem:
        raise ValidationError({"effective_from": problem})
    row.full_clean()
    with transaction.atomic():
        row.save()
        row.refresh_from_db()  # the audit event records the values as stored (4.0000, not 4)
        payload = _price_payload(row) if isinstance(row, ModelPrice) else _budget_payload(row)
        audit.record(kind, actor=actor, payload=payload)
    return row


def add_price(price: ModelPrice, actor: Any) -> ModelPrice:
    """Save a new (unsaved) price row, in force from its effective_from; audited."""
    return _add(price, actor, "price.added")


def add_budget(budget: Budget, actor: Any) -> Budget:
    """Save a new (unsaved) budget row; from its effective_from it replaces the one in force for
    the same scope, target, period and kind. Audited."""
    return _add(budget, actor, "budget.added")


def withdraw(row: ModelPrice | Budget, actor: Any) -> None:
    """Delete a price or budget row that is not yet in force; audited. One in force: refused."""
    _refuse_unless_allowed(actor)
    is_price = isinstance(row, ModelPrice)
    with transaction.atomic():
        payload = _price_payload(row) if is_price else _budget_payload(row)
        row.delete()  # ImmutableRow when in force (checked against the stored row)
        audit.record(
            "price.withdrawn" if is_price else "budget.withdrawn", actor=actor, payload=payload
        )


def _lifecycle_payload(row: ModelLifecycle) -> dict[str, Any]:
    return {
        "model": row.model,
        "deprecated_on": row.deprecated_on.isoformat() if row.deprecated_on else None,
        "end_of_life": row.end_of_life.isoformat() if row.end_of_life else None,
        "replacement": row.replacement,
        "source": row.source,
    }


def save_lifecycle(row: ModelLifecycle, actor: Any) -> ModelLifecycle:
    """Add or change a model's deprecation and end-of-life dates; audited with what it was."""
    _refuse_unless_allowed(actor)
    row.full_clean()
    with transaction.atomic():
        before = None
        if row.pk is not None:
            stored = ModelLifecycle.objects.select_for_update().filter(pk=row.pk).first()
            before = _lifecycle_payload(stored) if stored is not None else None
        row.save()
        audit.record(
            "model_lifecycle.changed",
            actor=actor,
            payload={**_lifecycle_payload(row), "was": before},
        )
    return row


def delete_lifecycle(row: ModelLifecycle, actor: Any) -> None:
    """Remove a model's dates (it is then active again); audited."""
    _refuse_unless_allowed(actor)
    with transaction.atomic():
        payload = _lifecycle_payload(row)
        row.delete()
        audit.record("model_lifecycle.deleted", actor=actor, payload=payload)
