"""Managers edit evaluation datasets and run evaluations (issue 16); the views-everything roles
(managers, auditors) see evaluations.

As in 0006_access_roles, the roles are copied here, not imported, so this migration keeps
meaning what it meant; tests/test_access.py checks that the latest copy equals
``reviews.access.ROLES``. ``ensure_roles`` only adds what is missing.
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
            "alerts.handle_alert",
            "alerts.lift_pause",
            "schedules.manage_schedule",
            "evaluation.run_evaluation",
        ),
        views_everything=True,
    ),
    "auditors": Role(("orchestration.view_all_runs",), views_everything=True),
}


def add_evaluation_roles(apps, schema_editor):
    ensure_roles(apps, schema_editor.connection.alias, roles=ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0014_evaluation_ticket_outcome"),
        ("evaluation", "0001_initial"),
    ]

    operations = [migrations.RunPython(add_evaluation_roles, migrations.RunPython.noop)]
