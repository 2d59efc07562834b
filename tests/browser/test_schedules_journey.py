"""A manager finds the demo's daily financial report on the schedules page, declares a new
schedule (after the form refuses a bad cron expression and a bad template, field by field),
pauses it and deletes it; every change is in the audit trail."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from orchestration.models import AuditEvent
from schedules import service
from schedules.models import Schedule
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


def test_manager_declares_pauses_and_deletes_a_schedule(live_server, page, seeded):
    call_command("seed_demo", stdout=io.StringIO())  # with the demo schedule this time
    demo = Schedule.objects.get(name="Daily financial report")
    # It has been there for a week, and beat has just sent its tick.
    Schedule.objects.filter(pk=demo.pk).update(active_since=timezone.now() - dt.timedelta(days=7))
    tick = service.tick(demo.pk)
    assert tick.run.requested_by.username == "operator"
    sign_in(page, live_server.url, "manager")
    page.click("nav >> text=Schedules")
    row = page.locator(f"#schedule-{demo.pk}")
    text = row.inner_text()
    assert "financial_reporting" in text and "0 6 * * *" in text and "Australia/Sydney" in text
    assert "{{yesterday}}" in text and "operator" in text and "At 06:00 AM" in text
    ticks = page.inner_text("#tick-table")
    assert "Daily financial report" in ticks and "Run started" in ticks and "Queued" in ticks
    shot(page, "schedules-page")

    page.click("#new-schedule")
    page.fill("#id_name", "Weekly payments check")
    page.select_option("#id_workflow_name", "financial_reporting")
    page.fill("#id_cron", "0 7 * * mon-fri *")
    page.fill("#id_timezone", "Europe/Lodnon")
    page.fill("#id_input_template", '{"date": "{{lastweek}}"}')
    page.click("button:has-text('Create schedule')")
    form = page.inner_text("#schedule-form")
    assert "A cron expression has 5 fields" in form
    assert "Unknown time zone 'Europe/Lodnon'" in form
    assert "date: unknown placeholder {{lastweek}}" in form
    assert page.input_value("#id_name") == "Weekly payments check"  # nothing typed is lost
    shot(page, "schedules-form-errors")

    page.fill("#id_cron", "0 7 * * mon-fri")
    page.fill("#id_timezone", "Europe/London")
    page.fill("#id_input_template", '{"date": "{{today-7}}"}')
    page.click("button:has-text('Create schedule')")
    page.wait_for_selector(".messages >> text=created")
    created = Schedule.objects.get(name="Weekly payments check")
    assert created.owner.username == "manager" and created.timezone == "Europe/London"
    page.locator(f"#schedule-{created.pk} button:has-text('Pause')").click()
    page.wait_for_selector(f"#schedule-{created.pk}.schedule-paused")
    shot(page, "schedules-page-paused")

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f"#schedule-{created.pk} button:has-text('Delete')").click()
    page.wait_for_selector(".messages >> text=deleted")
    assert not Schedule.objects.filter(pk=created.pk).exists()
    kinds = list(
        AuditEvent.objects.filter(
            kind__startswith="schedule.", payload__name="Weekly payments check"
        )
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["schedule.created", "schedule.paused", "schedule.deleted"]

    # The admin edits the same schedule with the same form and checks.
    page.goto(f"{live_server.url}/admin/schedules/schedule/{demo.pk}/change/")
    page.fill("#id_cron", "0 6 * * * *")
    page.click("input[name=_save]")
    assert "A cron expression has 5 fields" in page.inner_text("#content")
    shot(page, "schedules-admin-error")
    page.fill("#id_cron", "30 6 * * *")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was changed successfully")
    demo.refresh_from_db()
    assert demo.cron == "30 6 * * *"
    changed = AuditEvent.objects.filter(kind="schedule.changed", payload__name=demo.name).get()
    assert changed.payload["changes"] == {"cron": {"from": "0 6 * * *", "to": "30 6 * * *"}}
