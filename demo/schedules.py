"""The demo's schedules: the financial report runs every day for the previous calendar day
(the seed: "a daily financial report"), at 06:00 in Sydney (the seed's company is an
Australian fintech), as the demo operator, set up by the demo manager."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from schedules import service
from schedules.models import Schedule

DAILY_FINANCIAL_REPORT = {
    "name": "Daily financial report",
    "workflow_name": "financial_reporting",
    "cron": "0 6 * * *",
    "timezone": "Australia/Sydney",
    "input_template": {"date": "{{yesterday}}"},
    "enabled": True,
}


def seed_schedules(*, created_by: str = "manager", owner: str = "operator") -> list[str]:
    """Create each demo schedule that is missing (by name); returns the names created. A
    schedule that exists is left as it is: a manager may have changed or paused it."""
    User = get_user_model()
    manager = User.objects.filter(username=created_by).first()
    runs_as = User.objects.filter(username=owner).first()
    if manager is None or runs_as is None:
        return []
    created = []
    for spec in (DAILY_FINANCIAL_REPORT,):
        if Schedule.objects.filter(name=spec["name"]).exists():
            continue
        service.create(manager, {**spec, "owner": runs_as})
        created.append(spec["name"])
    return created
