"""Create the roles, demo users, prices and demo data. Safe to run any number of times."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from costs.pricing import seed_prices
from warehouse.demo_data import seed_warehouse

APPS = ("orchestration", "reviews", "costs", "warehouse")


def _perms(*codenames: str) -> list[Permission]:
    found = []
    for name in codenames:
        app, codename = name.split(".")
        found.append(Permission.objects.get(content_type__app_label=app, codename=codename))
    return found


def _view_all() -> list[Permission]:
    return list(Permission.objects.filter(content_type__app_label__in=APPS, codename__startswith="view_"))


ROLES = {
    "operators": lambda: _perms(
        "orchestration.start_run", "orchestration.view_run", "orchestration.view_modelcall",
        "orchestration.view_toolcall", "orchestration.view_workflowversion"),
    "reviewers": lambda: _perms(
        "reviews.resolve_ticket", "reviews.view_escalationticket", "orchestration.view_run",
        "orchestration.view_modelcall", "orchestration.view_toolcall", "orchestration.view_workflowversion"),
    "managers": lambda: _view_all() + _perms(
        "orchestration.start_run", "orchestration.view_all_runs", "reviews.decide_approval",
        "reviews.resolve_ticket", "reviews.override_ticket", "costs.add_budget", "costs.change_budget", "costs.delete_budget",
        "costs.add_modelprice"),
    "auditors": lambda: _view_all() + _perms("orchestration.view_all_runs"),
}
# username -> (group, is_staff: may open the read-only admin)
USERS = {
    "operator": ("operators", False),
    "reviewer": ("reviewers", False),
    "manager": ("managers", True),
    "auditor": ("auditors", True),
}


class Command(BaseCommand):
    help = "Create groups, demo users (password from DEMO_PASSWORD), model prices and demo data."

    @transaction.atomic
    def handle(self, *args, **options):
        for name, perms in ROLES.items():
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set(perms())
        User = get_user_model()
        for username, (group, staff) in USERS.items():
            user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            if created or not user.check_password(settings.DEMO_PASSWORD):
                user.set_password(settings.DEMO_PASSWORD)
            user.is_staff = staff
            user.save()
            user.groups.set([Group.objects.get(name=group)])
        prices = seed_prices()
        data = seed_warehouse()
        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: {len(USERS)} users ({', '.join(USERS)}), {prices} new price rows, "
            f"{data['transactions']} transactions, {data['payments']} payments."))
