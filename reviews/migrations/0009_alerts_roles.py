"""Managers handle alerts and lift the pauses an anomaly alert put on a user (issue 15); the
views-everything roles (managers, auditors) see the new apps' rows.

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
        ),
        views_everything=True,
    ),
    "auditors": Role(("orchestration.view_all_runs",), views_everything=True),
}


def add_alert_roles(apps, schema_editor):
    ensure_roles(apps, schema_editor.connection.alias, roles=ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0008_ops_insight_ticket_created"),
        ("alerts", "0001_alerts_notify_initial"),
        ("notifications", "0001_alerts_notify_initial"),
        ("insight", "0001_ops_insight_rollups"),
    ]

    operations = [migrations.RunPython(add_alert_roles, migrations.RunPython.noop)]
