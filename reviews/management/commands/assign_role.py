"""Give a user a role, or take it away: python manage.py assign_role USERNAME ROLE [--remove].

The roles are the four groups of ``reviews.access.ROLES`` (operators, reviewers, managers,
auditors), created by ``migrate``. A user may hold several; the four-eyes rule still keeps
them from deciding on runs they requested.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from reviews.access import ROLES
from reviews.roles import RoleError, assign


class Command(BaseCommand):
    help = f"Give USERNAME the role ROLE ({', '.join(ROLES)}); --remove takes it away."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", help=f"one of: {', '.join(ROLES)}")
        parser.add_argument("--remove", action="store_true", help="take the role away instead")

    def handle(self, *args, **options):
        try:
            user = assign(options["username"], options["role"], remove=options["remove"])
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        roles = sorted(user.groups.values_list("name", flat=True))
        verb = "no longer has" if options["remove"] else "has"
        self.stdout.write(
            f"{user.get_username()} {verb} the role {options['role']}; "
            f"roles now: {', '.join(roles) or 'none'}."
        )
