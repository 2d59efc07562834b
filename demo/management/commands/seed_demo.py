"""Create the demo users, prices and demo data. Safe to run any number of times.

The roles (groups and their permissions) are not made here: migration
``reviews/0006_access_roles`` creates them. A demo user that already exists is left as it is:
its password, its roles and its staff flag may have been changed on purpose.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from costs.pricing import seed_prices
from demo.datasets import seed_datasets
from demo.schedules import seed_schedules
from reviews.access import ROLES
from warehouse.demo_data import seed_warehouse

# username -> (role, is_staff: may open the read-only admin)
USERS = {
    "operator": ("operators", False),
    "reviewer": ("reviewers", False),
    "manager": ("managers", True),
    "auditor": ("auditors", True),
}


class Command(BaseCommand):
    help = "Create the demo users (password from DEMO_PASSWORD), model prices and demo data."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-schedules",
            action="store_true",
            help="Leave out the demo schedules (the daily financial report): the test fixtures "
            "start from no schedule, and no audit event of one.",
        )

    @transaction.atomic
    def handle(self, *args, **options):
        groups = {g.name: g for g in Group.objects.filter(name__in=ROLES)}
        if missing := sorted(set(ROLES) - set(groups)):
            raise CommandError(
                f"The role(s) {', '.join(missing)} are missing: run `python manage.py migrate`."
            )
        User = get_user_model()
        created = []
        for username, (role, staff) in USERS.items():
            if User.objects.filter(username=username).exists():
                continue
            user = User.objects.create_user(
                username, email=f"{username}@example.com", password=settings.DEMO_PASSWORD
            )
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
            user.groups.set([groups[role]])
            created.append(username)
        prices = seed_prices()
        data = seed_warehouse()
        schedules = [] if options["no_schedules"] else seed_schedules()
        shipped = seed_datasets()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {len(created)} new user(s) ({', '.join(created) or 'all existed'}), "
                f"{prices} new price rows, {data['transactions']} transactions, "
                f"{data['payments']} payments, {len(schedules)} new schedule(s), "
                f"{shipped} new evaluation dataset(s)."
            )
        )
