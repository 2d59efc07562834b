"""The four roles (groups) and their permissions, so a fresh database has them after
``migrate`` alone (``seed_demo`` only adds demo users).

The roles are copied here, not imported, so this migration keeps meaning what it meant when
``reviews.access.ROLES`` changes later: a change to the roles comes with a migration of its
own (tests/test_roles.py checks that the two agree). The code that writes the rows is shared
(reviews.roles.ensure_roles): it creates a missing group, adds missing permissions, and never
removes anything, so a database that ``seed_demo`` seeded before keeps its groups.
"""

from django.db import migrations

from reviews.access import Role
from reviews.roles import ensure_roles

_SEE_OWN_RUNS = (
    "orchestration.view_run",
    "orchestration.view_modelcall",
    "orchestration.view_toolcall",
    "orchestration.view_workflowversion",
)
ROLES = {
    "operators": Role(("orchestration.start_run", *_SEE_OWN_RUNS)),
    "reviewers": Role(("reviews.resolve_ticket", "reviews.view_escalationticket", *_SEE_OWN_RUNS)),
    "managers": Role(
        (
            "orchestration.start_run",
            "orchestration.view_all_runs",
            "reviews.decide_approval",
            "reviews.resolve_ticket",
            "reviews.override_ticket",
        ),
        views_everything=True,
    ),
    "auditors": Role(("orchestration.view_all_runs",), views_everything=True),
}


def create_roles(apps, schema_editor):
    ensure_roles(apps, schema_editor.connection.alias, roles=ROLES)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orchestration", "0005_runs_list_filter_indexes"),
        ("reviews", "0005_crypto_encrypted_context"),
        ("costs", "0002_seed_prices"),
        ("warehouse", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
