"""Price and budget changes (issue 12, section 2): superusers only, in the future, bounded,
never edited in place, each an audit event in the chain. Driven through the admin with the
demo personas, and at the ORM and database level for what the admin cannot stop.

Names new with this change (costs.changes, ImmutableRow) are reached through their module
inside the tests, so that on the code before it each bypass fails on its assertion, not on
an import."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.utils import DatabaseError
from django.urls import reverse
from django.utils import timezone

from costs import budgets
from costs import models as cost_models
from costs.models import Budget, ModelPrice
from costs.pricing import price_for
from orchestration.audit import verify_chain
from orchestration.models import AuditEvent

MODEL = "claude-opus-4-6"


@pytest.fixture
def root(django_user_model, seeded):
    return django_user_model.objects.create_superuser("root", "root@example.com", "x-root-pw-1")


def _when(delta: dt.timedelta) -> dict[str, str]:
    at = timezone.localtime(timezone.now() + delta)
    return {
        "effective_from_0": at.strftime("%Y-%m-%d"),
        "effective_from_1": at.strftime("%H:%M:%S"),
    }


def _price_form(
    price: str = "5.00", delta: dt.timedelta = dt.timedelta(hours=2), **extra: str
) -> dict[str, str]:
    return {
        "model": MODEL,
        "input_per_mtok": price,
        "output_per_mtok": "25.00",
        "cache_write_5m_per_mtok": "6.25",
        "cache_write_1h_per_mtok": "10.00",
        "cache_read_per_mtok": "0.50",
        "batch_discount": "0.5",
        **_when(delta),
        **extra,
    }


def _budget_form(limit: str, delta: dt.timedelta = dt.timedelta(hours=2)) -> dict[str, str]:
    return {
        "scope": "global",
        "workflow_name": "",
        "user": "",
        "period": "day",
        "limit_usd": limit,
        "hard": "on",
        **_when(delta),
    }


def _zero_price_form() -> dict[str, str]:
    return _price_form(
        "0",
        dt.timedelta(0),
        output_per_mtok="0",
        cache_write_5m_per_mtok="0",
        cache_write_1h_per_mtok="0",
        cache_read_per_mtok="0",
    )


# --- the bypasses ------------------------------------------------------------------------------


def test_a_manager_cannot_add_a_zero_price_in_force_now_through_the_admin(client, manager):
    before = price_for(MODEL)
    client.force_login(manager)
    assert client.get(reverse("admin:costs_modelprice_add")).status_code == 403
    response = client.post(reverse("admin:costs_modelprice_add"), _zero_price_form())
    assert response.status_code == 403
    assert ModelPrice.objects.filter(model=MODEL).count() == 1
    assert price_for(MODEL).pk == before.pk and price_for(MODEL).output_per_mtok == Decimal("25")
    assert not AuditEvent.objects.filter(kind__startswith="price.").exists()


def test_even_a_superuser_cannot_add_a_zero_price_or_one_in_force_now(client, root):
    client.force_login(root)
    zero = client.post(reverse("admin:costs_modelprice_add"), _price_form("0"))
    assert zero.status_code == 200
    assert (
        "A price must be more than $0 and at most $1000 per million tokens" in zero.content.decode()
    )
    now = client.post(reverse("admin:costs_modelprice_add"), _price_form("4.00", dt.timedelta(0)))
    assert now.status_code == 200
    assert "A change takes effect at least 60 minutes from now" in now.content.decode()
    soon = client.post(
        reverse("admin:costs_modelprice_add"), _price_form("4.00", dt.timedelta(minutes=30))
    )
    assert "at least 60 minutes from now" in soon.content.decode()
    huge = client.post(reverse("admin:costs_modelprice_add"), _price_form("25000"))
    assert "at most $1000 per million tokens" in huge.content.decode()
    free_batch = client.post(reverse("admin:costs_modelprice_add"), _price_form(batch_discount="1"))
    assert "The batch discount is a fraction between 0 and 0.9" in free_batch.content.decode()
    assert ModelPrice.objects.filter(model=MODEL).count() == 1
    assert not AuditEvent.objects.filter(kind__startswith="price.").exists()


@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_zero_or_negative_price_is_refused_by_the_database(db, value):
    with (
        pytest.raises(IntegrityError, match="modelprice_input_per_mtok_bounded"),
        transaction.atomic(),
    ):
        ModelPrice.objects.create(
            model="claude-free",
            input_per_mtok=Decimal(value),
            output_per_mtok=1,
            cache_write_5m_per_mtok=1,
            cache_write_1h_per_mtok=1,
            cache_read_per_mtok=1,
            effective_from=timezone.now(),
        )
    with pytest.raises(IntegrityError, match="budget_limit_not_negative"), transaction.atomic():
        Budget.objects.create(scope="global", period="day", limit_usd=Decimal("-1"))
    assert not ModelPrice.objects.filter(model="claude-free").exists()


def test_a_price_in_force_is_never_edited_or_deleted(client, manager, root):
    price = price_for(MODEL)
    for user in (manager, root):
        client.force_login(user)
        form = _price_form("0.01", dt.timedelta(days=-400))
        assert (
            client.post(reverse("admin:costs_modelprice_change", args=[price.pk]), form).status_code
            == 403
        )
        assert (
            client.post(
                reverse("admin:costs_modelprice_delete", args=[price.pk]), {"post": "yes"}
            ).status_code
            == 403
        )
    price.input_per_mtok = Decimal("0.01")
    with pytest.raises(cost_models.ImmutableRow, match="never edited"):
        price.save()
    with pytest.raises(cost_models.ImmutableRow, match="in force since"):
        price.delete()
    # Around the model: the database trigger.
    with pytest.raises(DatabaseError, match="never edited"), transaction.atomic():
        ModelPrice.objects.filter(pk=price.pk).update(input_per_mtok=Decimal("0.01"))
    with pytest.raises(DatabaseError, match="in force since"), transaction.atomic():
        ModelPrice.objects.filter(pk=price.pk).delete()
    price.refresh_from_db()
    assert price.input_per_mtok == Decimal("5.0000")


def test_a_budget_in_force_is_not_changed_by_a_manager_nor_in_place(client, manager, root):
    budget = Budget.objects.create(scope="global", period="day", limit_usd=Decimal("100.00"))
    client.force_login(manager)
    change = client.post(
        reverse("admin:costs_budget_change", args=[budget.pk]),
        {**_budget_form("1000000.00", dt.timedelta(0))},
    )
    assert change.status_code == 403
    assert (
        client.post(
            reverse("admin:costs_budget_delete", args=[budget.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("admin:costs_budget_add"), _budget_form("1000000.00", dt.timedelta(0))
        ).status_code
        == 403
    )
    client.force_login(root)
    now = client.post(
        reverse("admin:costs_budget_add"), _budget_form("1000000.00", dt.timedelta(0))
    )
    assert now.status_code == 200 and "at least 60 minutes from now" in now.content.decode()
    assert (
        client.post(
            reverse("admin:costs_budget_delete", args=[budget.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    budget.limit_usd = Decimal("1000000.00")
    with pytest.raises(cost_models.ImmutableRow):
        budget.save()
    with pytest.raises(cost_models.ImmutableRow):
        budget.delete()
    with pytest.raises(DatabaseError, match="never edited"), transaction.atomic():
        Budget.objects.filter(pk=budget.pk).update(limit_usd=Decimal("1000000.00"))
    assert [(b.pk, b.limit_usd) for b in budgets.in_force()] == [(budget.pk, Decimal("100.00"))]
    negative = client.post(reverse("admin:costs_budget_add"), _budget_form("-5.00"))
    assert "A budget limit cannot be negative." in negative.content.decode()
    assert Budget.objects.count() == 1


def test_the_code_path_refuses_a_manager_too(db, manager):
    from costs import changes

    price = ModelPrice(
        model=MODEL,
        input_per_mtok=1,
        output_per_mtok=1,
        cache_write_5m_per_mtok=1,
        cache_write_1h_per_mtok=1,
        cache_read_per_mtok=1,
        effective_from=timezone.now() + dt.timedelta(days=1),
    )
    with pytest.raises(PermissionDenied, match="Only a superuser"):
        changes.add_price(price, manager)
    assert price.pk is None


# --- an accepted change --------------------------------------------------------------------------


def test_an_accepted_price_change_is_audited_and_applies_only_from_its_time(client, root):
    old = price_for(MODEL)
    client.force_login(root)
    page = client.get(reverse("admin:costs_modelprice_add")).content.decode()
    assert 'name="effective_from_0"' in page
    response = client.post(reverse("admin:costs_modelprice_add"), _price_form("4.00"))
    assert response.status_code == 302, response.content.decode()[:3000]
    new = ModelPrice.objects.get(model=MODEL, input_per_mtok=Decimal("4.00"))
    assert new.effective_from > timezone.now() + dt.timedelta(minutes=119)
    assert price_for(MODEL).pk == old.pk  # today's runs: the price everyone saw
    assert price_for(MODEL, at=timezone.now() + dt.timedelta(hours=3)).pk == new.pk
    event = AuditEvent.objects.get(kind="price.added")
    assert event.actor_label == "root" and event.run_id is None
    assert event.payload["price_id"] == new.pk and event.payload["input_per_mtok"] == "4.0000"
    assert event.payload["replaces"] == {
        "price_id": old.pk,
        "input_per_mtok": "5.0000",
        "output_per_mtok": "25.0000",
        "cache_write_5m_per_mtok": "6.2500",
        "cache_write_1h_per_mtok": "10.0000",
        "cache_read_per_mtok": "0.5000",
    }
    assert verify_chain().ok
    listing = client.get(reverse("admin:costs_modelprice_changelist")).content.decode()
    assert "scheduled" in listing and "in force" in listing
    # Not yet in force: it may be withdrawn, which is audited too.
    withdrawn = client.post(
        reverse("admin:costs_modelprice_delete", args=[new.pk]), {"post": "yes"}
    )
    assert withdrawn.status_code == 302
    assert not ModelPrice.objects.filter(pk=new.pk).exists()
    assert AuditEvent.objects.get(kind="price.withdrawn").payload["price_id"] == new.pk
    assert verify_chain().ok


def test_an_accepted_budget_change_replaces_the_one_in_force_at_its_time(client, root, operator):
    current = Budget.objects.create(scope="global", period="day", limit_usd=Decimal("100.00"))
    soft = Budget.objects.create(
        scope="global", period="day", limit_usd=Decimal("80.00"), hard=False
    )
    client.force_login(root)
    response = client.post(reverse("admin:costs_budget_add"), _budget_form("250.00"))
    assert response.status_code == 302, response.content.decode()[:3000]
    raised = Budget.objects.get(limit_usd=Decimal("250.00"))
    assert {b.pk for b in budgets.applicable("financial_reporting", operator)} == {
        current.pk,
        soft.pk,
    }
    later = budgets.in_force(timezone.now() + dt.timedelta(hours=3))
    assert {b.pk for b in later} == {raised.pk, soft.pk}  # the soft one is a budget of its own
    event = AuditEvent.objects.get(kind="budget.added")
    assert event.actor_label == "root"
    assert event.payload["limit_usd"] == "250.00" and event.payload["hard"] is True
    assert event.payload["replaces"] == {"budget_id": current.pk, "limit_usd": "100.00"}
    assert verify_chain().ok
