"""Schedules (issue 16 §3): cron and time zone, input templates, audited changes from the page
and the admin, ticks through the same start path as any run, and a missed tick run once."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from config.celery import app as celery_app
from costs.models import Budget
from orchestration.models import AuditEvent, Run
from reviews.models import ApprovalRequest
from schedules import crons, input_template, service
from schedules.beat import Scheduler
from schedules.models import Schedule, ScheduledTick

UTC = dt.UTC
SYDNEY = "Australia/Sydney"


def data(owner, **overrides):
    return {
        "name": "Nightly report",
        "workflow_name": "financial_reporting",
        "cron": "0 6 * * *",
        "timezone": SYDNEY,
        "input_template": {"date": "{{yesterday}}"},
        "owner": owner,
        "enabled": True,
        **overrides,
    }


def events(kind):
    return list(AuditEvent.objects.filter(kind=kind).order_by("pk"))


def backdate(schedule, days=10):
    """As if the schedule had been created ``days`` ago."""
    Schedule.objects.filter(pk=schedule.pk).update(
        active_since=timezone.now() - dt.timedelta(days=days)
    )
    schedule.refresh_from_db()
    return schedule


# --- cron expressions and time zones ---------------------------------------------------------


def test_latest_and_following_are_taken_in_the_schedules_time_zone():
    cron = crons.parse("0 6 * * *", SYDNEY)
    at = dt.datetime(2026, 12, 4, 4, 0, tzinfo=UTC)  # 15:00 in Sydney (AEDT, +11)
    assert crons.latest(cron, at) == dt.datetime(2026, 12, 3, 19, 0, tzinfo=UTC)  # 06:00 AEDT
    assert crons.following(cron, at) == dt.datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    # Across the end of daylight saving (5 April 2026 in Sydney): 06:00 AEST is 20:00 UTC.
    assert crons.following(cron, dt.datetime(2026, 4, 5, 12, 0, tzinfo=UTC)) == dt.datetime(
        2026, 4, 5, 20, 0, tzinfo=UTC
    )
    # Day-of-month AND day-of-week, as Celery reads them: Friday the 13th only.
    friday_13th = crons.parse("0 9 13 * 5", "UTC")
    assert crons.following(friday_13th, dt.datetime(2026, 1, 1, tzinfo=UTC)) == dt.datetime(
        2026, 2, 13, 9, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "tz", "message"),
    [
        ("0 6 * *", "UTC", "A cron expression has 5 fields"),
        ("61 6 * * *", "UTC", "Not a valid cron expression"),
        ("0 6 * * mon;rm", "UTC", "has characters cron does not use"),
        ("0 0 31 2 *", "UTC", "never occurs"),
        ("* * * * *", "UTC", "1 minute(s) apart; schedules must be at least 5"),
        ("0,2 6 * * *", "UTC", "2 minute(s) apart"),
        ("0 6 * * *", "Mars/Olympus_Mons", "Unknown time zone 'Mars/Olympus_Mons'"),
        ("0 6 * * *", "../../etc/passwd", "Unknown time zone"),
    ],
)
def test_bad_cron_or_time_zone_is_refused_with_what_to_write(expression, tz, message):
    with pytest.raises(crons.CronError, match=message.replace("(", r"\(").replace(")", r"\)")):
        crons.parse(expression, tz)


# --- input templates --------------------------------------------------------------------------


def test_templates_resolve_for_the_occurrence_in_its_time_zone():
    template = {
        "date": "{{yesterday}}",
        "range": ["{{ today-7 }}", "{{today+1}}"],
        "months": {"from": "{{first_of_last_month}}", "to": "{{last_of_last_month}}"},
        "note": "run of {{today}} ({{first_of_month}}) at {{due}}",
        "count": 3,
    }
    due = dt.datetime(2026, 12, 31, 19, 0, tzinfo=UTC)  # 06:00 on 1 January 2027 in Sydney
    got = input_template.resolve(template, due, crons.zone(SYDNEY))
    assert got == {
        "date": "2026-12-31",
        "range": ["2026-12-25", "2027-01-02"],
        "months": {"from": "2026-12-01", "to": "2026-12-31"},
        "note": "run of 2027-01-01 (2027-01-01) at 2027-01-01T06:00:00+11:00",
        "count": 3,
    }
    # The same instant in UTC is still 31 December: yesterday is the 30th.
    assert input_template.resolve({"d": "{{yesterday}}"}, due, crons.zone("UTC")) == {
        "d": "2026-12-30"
    }


@pytest.mark.parametrize(
    ("template", "field", "message"),
    [
        ({"date": "{{yesteday}}"}, "input_template/date", "unknown placeholder {{yesteday}}"),
        ({"a": ["{{today-400}}"]}, "input_template/a/0", "unknown placeholder {{today-400}}"),
        ({"date": "{{yesterday"}, "input_template/date", "an unclosed {{"),
        ({"date": "x}}"}, "input_template/date", "a stray }}"),
        (["{{today}}"], "input_template", "must be a JSON object"),
    ],
)
def test_a_bad_template_is_refused_with_its_path(template, field, message):
    assert message in input_template.check(template)[field]
    with pytest.raises(input_template.TemplateError):
        input_template.resolve(template, timezone.now(), crons.zone("UTC"))


# --- creating, changing, pausing, deleting: audited, and only by managers ---------------------


def test_a_manager_creates_a_schedule_with_its_beat_row_and_an_audit_event(manager, operator):
    schedule = service.create(manager, data(operator))
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.task == "schedules.tasks.tick" and json.loads(task.kwargs) == {
        "schedule_id": schedule.pk
    }
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == (
        "0",
        "6",
        SYDNEY,
    )
    assert task.enabled is True
    [event] = events("schedule.created")
    assert event.actor_label == "manager" and event.run_id is None
    assert event.payload["cron"] == "0 6 * * *" and event.payload["owner"] == "operator"
    assert event.payload["input_template"] == {"date": "{{yesterday}}"}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"cron": "0 25 * * *"}, "cron", "Not a valid cron expression"),
        ({"timezone": "Nowhere/Town"}, "timezone", "Unknown time zone"),
        (
            {"input_template": {"date": "{{lastweek}}"}},
            "input_template/date",
            "unknown placeholder",
        ),
        ({"input_template": "{date: 1}"}, "input_template", "not valid JSON"),
        # Resolved for the next run, the input breaks the workflow's schema.
        (
            {"input_template": {"date": "{{yesterday}}", "x": 1}},
            "input_template",
            "Additional properties",
        ),
        ({"input_template": {"date": "yesterday"}}, "input_template/date", "is not a 'date'"),
        ({"workflow_name": "nope"}, "workflow_name", "Unknown workflow"),
        ({"name": "  "}, "name", "needs a name"),
    ],
)
def test_bad_input_is_refused_field_by_field_and_writes_nothing(
    manager, operator, overrides, field, message
):
    with pytest.raises(service.ScheduleInvalid) as refused:
        service.create(manager, data(operator, **overrides))
    assert message in refused.value.errors[field]
    assert (
        not Schedule.objects.exists()
        and not PeriodicTask.objects.filter(task=service.TICK_TASK).exists()
    )
    assert not AuditEvent.objects.filter(kind__startswith="schedule.").exists()


def test_the_owner_must_be_able_to_start_runs(manager, reviewer):
    with pytest.raises(service.ScheduleInvalid) as refused:
        service.create(manager, data(reviewer))
    assert refused.value.errors["owner"] == "reviewer may not start runs, so cannot own a schedule."


@pytest.mark.parametrize("persona", ["operator", "reviewer", "auditor"])
def test_only_managers_change_schedules(request, manager, operator, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(service.ScheduleRefused, match="Only a manager"):
        service.create(user, data(operator))
    schedule = service.create(manager, data(operator))
    for change in (
        lambda: service.update(user, schedule, data(operator, cron="0 7 * * *")),
        lambda: service.set_paused(user, schedule, True),
        lambda: service.delete(user, schedule),
    ):
        with pytest.raises(service.ScheduleRefused):
            change()
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.enabled) == ("0 6 * * *", True)
    assert [e.kind for e in AuditEvent.objects.filter(kind__startswith="schedule.")] == [
        "schedule.created"
    ]


def test_edit_pause_resume_delete_each_audited_and_kept_in_step_with_beat(manager, operator):
    schedule = service.create(manager, data(operator))
    task_pk = schedule.periodic_task_id
    schedule = service.update(manager, schedule, data(operator, cron="30 7 * * 1-5"))
    task = PeriodicTask.objects.get(pk=task_pk)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "7", "1-5")
    [changed] = events("schedule.changed")
    assert changed.payload["changes"] == {"cron": {"from": "0 6 * * *", "to": "30 7 * * 1-5"}}

    service.set_paused(manager, schedule, True)
    assert PeriodicTask.objects.get(pk=task_pk).enabled is False
    before = timezone.now()
    service.set_paused(manager, schedule, False)
    schedule.refresh_from_db()
    assert PeriodicTask.objects.get(pk=task_pk).enabled is True and schedule.active_since >= before
    assert [e.kind for e in AuditEvent.objects.filter(kind__startswith="schedule.")] == [
        "schedule.created",
        "schedule.changed",
        "schedule.paused",
        "schedule.resumed",
    ]
    service.delete(manager, schedule)
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(pk=task_pk).exists()
    [deleted] = events("schedule.deleted")
    assert deleted.actor_label == "manager" and deleted.payload["name"] == "Nightly report"


# --- ticks: the same start path as any run ----------------------------------------------------


def test_a_tick_starts_the_run_as_the_owner_for_yesterday_in_the_time_zone(manager, operator):
    schedule = backdate(service.create(manager, data(operator)))
    now = dt.datetime.now(UTC)
    row = service.tick(schedule.pk, now=now)
    due = crons.latest(crons.parse("0 6 * * *", SYDNEY), now + service.CLOCK_SLACK)
    assert row.outcome == ScheduledTick.Outcome.STARTED and row.due_at == due
    run = row.run
    yesterday = (due.astimezone(crons.zone(SYDNEY)).date() - dt.timedelta(days=1)).isoformat()
    assert run.input == {"date": yesterday}
    assert run.requested_by == operator and run.status == Run.Status.QUEUED
    assert run.options["schedule"] == {
        "schedule": schedule.pk,
        "name": "Nightly report",
        "due_at": due.isoformat(),
    }
    requested = AuditEvent.objects.get(run=run, kind="run.requested")
    assert requested.payload["source"] == "schedule" and requested.actor_label == "operator"
    fired = AuditEvent.objects.get(run=run, kind="schedule.fired")
    assert fired.payload["due_at"] == due.isoformat()


def test_a_duplicate_tick_delivery_starts_one_run(manager, operator):
    schedule = backdate(service.create(manager, data(operator)))
    now = timezone.now()
    first = service.tick(schedule.pk, now=now)
    second = service.tick(schedule.pk, now=now + dt.timedelta(minutes=3))  # redelivered later
    assert first.pk == second.pk and Run.objects.count() == 1
    assert ScheduledTick.objects.count() == 1
    assert AuditEvent.objects.filter(kind="schedule.fired").count() == 1


def test_the_database_refuses_a_second_row_for_the_same_occurrence(manager, operator):
    schedule = service.create(manager, data(operator))
    due = timezone.now().replace(microsecond=0)
    ScheduledTick.objects.create(schedule=schedule, schedule_name=schedule.name, due_at=due)
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduledTick.objects.create(schedule=schedule, schedule_name=schedule.name, due_at=due)


def test_a_claimed_tick_whose_worker_died_is_finished_once_by_the_redelivery(manager, operator):
    """The first delivery claimed the occurrence and started the run, then died before
    recording it: the redelivery finds the run by its idempotency key, not a second one."""
    schedule = backdate(service.create(manager, data(operator)))
    now = timezone.now()
    row = service.tick(schedule.pk, now=now)
    ScheduledTick.objects.filter(pk=row.pk).update(outcome=ScheduledTick.Outcome.CLAIMED, run=None)
    again = service.tick(schedule.pk, now=now)
    assert again.outcome == ScheduledTick.Outcome.STARTED and again.run_id == row.run_id
    assert Run.objects.count() == 1


def test_a_scheduled_run_over_the_threshold_waits_for_approval(manager, operator, settings):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.000001")
    schedule = backdate(service.create(manager, data(operator)))
    row = service.tick(schedule.pk)
    assert row.run.status == Run.Status.AWAITING_APPROVAL
    approval = ApprovalRequest.objects.get(run=row.run)
    assert approval.requested_by == operator


def test_a_hard_budget_refuses_the_scheduled_run_and_says_so(manager, operator):
    Budget.objects.create(
        scope=Budget.Scope.GLOBAL, period=Budget.Period.DAY, limit_usd=Decimal("0.01"), hard=True
    )
    schedule = backdate(service.create(manager, data(operator)))
    row = service.tick(schedule.pk)
    assert row.outcome == ScheduledTick.Outcome.REFUSED and row.run is None
    assert "budget" in row.detail
    assert not Run.objects.exists()
    [refused] = events("schedule.refused")
    assert refused.payload["code"] == "budget_exceeded" and refused.payload["owner"] == "operator"
    # Refused is an outcome: the same occurrence is not tried again.
    assert service.tick(schedule.pk).pk == row.pk and not Run.objects.exists()


def test_the_owners_rate_limit_applies(manager, operator, settings):
    from orchestration.launch import start_run

    settings.RUNS_PER_USER_PER_DAY = 1
    start_run("financial_reporting", {"date": "2026-11-12"}, operator)
    schedule = backdate(service.create(manager, data(operator)))
    row = service.tick(schedule.pk)
    assert row.outcome == ScheduledTick.Outcome.REFUSED and "rate_limit" in row.detail
    assert Run.objects.count() == 1
    assert events("schedule.refused")[0].payload["code"] == "rate_limited"


def test_an_owner_who_lost_the_right_to_start_runs_gets_no_run(manager, operator):
    schedule = backdate(service.create(manager, data(operator)))
    operator.groups.clear()
    row = service.tick(schedule.pk)
    assert row.outcome == ScheduledTick.Outcome.REFUSED and "may not start runs" in row.detail
    assert not Run.objects.exists()


def test_a_paused_or_new_schedule_does_not_run_what_it_was_not_due(manager, operator):
    schedule = service.create(manager, data(operator))  # created now: the last 06:00 is before it
    assert service.tick(schedule.pk) is None
    backdate(schedule)
    service.set_paused(manager, schedule, True)
    assert service.tick(schedule.pk) is None  # a tick already queued when it was paused
    assert not ScheduledTick.objects.exists() and not Run.objects.exists()


def test_deleting_a_schedule_keeps_its_ticks_and_runs(manager, operator):
    schedule = backdate(service.create(manager, data(operator)))
    row = service.tick(schedule.pk)
    service.delete(manager, schedule)
    row.refresh_from_db()
    assert row.schedule_id is None and row.schedule_name == "Nightly report" and row.run_id
    assert service.tick(schedule.pk) is None


def test_the_celery_task_ticks(manager, operator):
    from schedules.tasks import tick

    schedule = backdate(service.create(manager, data(operator)))
    assert tick.apply(args=(schedule.pk,)).get().endswith(": started")
    assert tick.apply(args=(schedule.pk,)).get().endswith(": started")  # the same row, reported
    assert Run.objects.count() == 1


# --- beat: the database scheduler ------------------------------------------------------------


class CapturingScheduler(Scheduler):
    """The real scheduler, with the sending replaced by a list (no broker needed)."""

    def __init__(self, *args, **kwargs):
        self.sent = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        self.sent.append((entry.name, entry.task, dict(entry.kwargs), dict(entry.options)))


@pytest.fixture
def beat_db(transactional_db, monkeypatch):
    """Beat runs outside any transaction (DatabaseScheduler closes a connection it finds inside
    one), and the runs it starts are not sent to a broker."""
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)


def beat():
    scheduler = CapturingScheduler(app=celery_app, lazy=False)
    scheduler.__dict__["producer"] = None  # never connect: apply_async is captured
    return scheduler


def run_beat(scheduler, passes=30):
    """Beat's loop until nothing more is due; the schedule ticks it sent meanwhile."""
    already = len(scheduler.sent)
    for _ in range(passes):
        if scheduler.tick() != 0:
            break
    return [s for s in scheduler.sent[already:] if s[1] == service.TICK_TASK]


def test_beat_keeps_every_maintenance_entry_with_its_queue_and_expiry(beat_db, settings):
    beat()
    rows = {t.name: t for t in PeriodicTask.objects.all()}
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        row = rows[name]
        assert row.task == entry["task"], name
        options = entry.get("options", {})
        assert row.queue == options.get("queue"), name
        assert row.expire_seconds == options.get("expires"), name
    heartbeat = rows["heartbeat-llm"]
    assert (
        heartbeat.queue == "llm" and heartbeat.expire_seconds == settings.HEARTBEAT_INTERVAL_SECONDS
    )
    assert heartbeat.interval.every == int(settings.HEARTBEAT_INTERVAL_SECONDS)


def test_beat_loads_a_schedule_whatever_its_hour(beat_db, manager, operator):
    """django-celery-beat 2.9 alone loads a single-hour crontab only within two hours of the
    current hour: a daily tick missed while beat was down would wait a day."""
    far_hour = (timezone.now().hour + 12) % 24
    schedule = service.create(manager, data(operator, cron=f"0 {far_hour} * * *", timezone="UTC"))
    name = schedule.periodic_task.name
    assert name in beat().schedule
    plain = DatabaseScheduler(app=celery_app, lazy=False)
    assert name not in plain.schedule


def test_beat_down_then_up_runs_the_missed_tick_once(beat_db, manager, operator):
    schedule = backdate(service.create(manager, data(operator)))
    # Beat last fired this task two days ago, then went down.
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(
        last_run_at=timezone.now() - dt.timedelta(days=2)
    )
    scheduler = beat()  # beat is back
    sent = run_beat(scheduler)
    assert [(s[0], s[2]) for s in sent] == [
        (schedule.periodic_task.name, {"schedule_id": schedule.pk})
    ]
    assert run_beat(scheduler) == []  # once
    scheduler.sync()
    assert run_beat(beat()) == []  # and not again after another restart
    # The one message, delivered twice: one run, for the latest missed occurrence.
    from schedules.tasks import tick

    for _ in range(2):
        tick.apply(kwargs=sent[0][2])
    assert Run.objects.count() == 1 and ScheduledTick.objects.count() == 1


# --- the pages --------------------------------------------------------------------------------


def form(owner, **overrides):
    values = {
        "name": "Nightly report",
        "workflow_name": "financial_reporting",
        "cron": "0 6 * * *",
        "timezone": SYDNEY,
        "input_template": '{"date": "{{yesterday}}"}',
        "owner": owner.pk,
        "enabled": "on",
    }
    values.update(overrides)
    return values


def test_a_manager_lists_creates_edits_pauses_and_deletes_on_the_page(client, manager, operator):
    client.force_login(manager)
    page = client.get(reverse("schedule_list"))
    assert page.status_code == 200 and "No schedule yet" in page.content.decode()
    response = client.post(reverse("schedule_new"), form(operator))
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    page = client.get(reverse("schedule_list")).content.decode()
    assert "Nightly report" in page and "0 6 * * *" in page and "Australia/Sydney" in page
    assert "At 06:00 AM" in page  # the crontab's human reading
    edit = client.get(reverse("schedule_edit", args=[schedule.pk])).content.decode()
    assert "{{yesterday}}" in edit
    response = client.post(
        reverse("schedule_edit", args=[schedule.pk]), form(operator, cron="15 6 * * *")
    )
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.cron == "15 6 * * *"
    client.post(reverse("schedule_pause", args=[schedule.pk]), {"action": "pause"})
    schedule.refresh_from_db()
    assert schedule.enabled is False
    assert "schedule-paused" in client.get(reverse("schedule_list")).content.decode()
    client.post(reverse("schedule_pause", args=[schedule.pk]), {"action": "resume"})
    schedule.refresh_from_db()
    assert schedule.enabled is True
    client.post(reverse("schedule_delete", args=[schedule.pk]))
    assert not Schedule.objects.exists()
    assert [e.kind for e in AuditEvent.objects.filter(kind__startswith="schedule.")] == [
        "schedule.created",
        "schedule.changed",
        "schedule.paused",
        "schedule.resumed",
        "schedule.deleted",
    ]


def test_the_page_shows_each_error_by_its_field_and_keeps_the_input(client, manager, operator):
    client.force_login(manager)
    response = client.post(
        reverse("schedule_new"),
        form(
            operator, cron="0 6 * *", timezone="Sydney", input_template='{"date": "{{yesteday}}"}'
        ),
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "A cron expression has 5 fields" in body
    assert "Unknown time zone &#x27;Sydney&#x27;" in body
    assert "date: unknown placeholder {{yesteday}}" in body
    assert 'value="0 6 * *"' in body  # what was typed is still there
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("persona", ["operator", "reviewer", "auditor"])
def test_non_managers_get_403_on_every_schedule_page(client, request, manager, operator, persona):
    schedule = service.create(manager, data(operator))
    client.force_login(request.getfixturevalue(persona))
    for method, url in [
        ("get", reverse("schedule_list")),
        ("get", reverse("schedule_new")),
        ("post", reverse("schedule_new")),
        ("get", reverse("schedule_edit", args=[schedule.pk])),
        ("post", reverse("schedule_edit", args=[schedule.pk])),
        ("post", reverse("schedule_pause", args=[schedule.pk])),
        ("post", reverse("schedule_delete", args=[schedule.pk])),
    ]:
        assert getattr(client, method)(url).status_code == 403, url
    assert "Schedules" not in client.get("/").content.decode().split("<main")[0]
    assert Schedule.objects.get().enabled


# --- the admin ----------------------------------------------------------------------------------


def test_admin_changes_go_through_the_same_validation_and_audit(client, manager, operator):
    client.force_login(manager)
    add = reverse("admin:schedules_schedule_add")
    bad = client.post(add, form(operator, cron="99 * * * *"))
    assert bad.status_code == 200 and "Not a valid cron expression" in bad.content.decode()
    assert not Schedule.objects.exists()
    assert client.post(add, form(operator)).status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.periodic_task and schedule.created_by == manager
    change = reverse("admin:schedules_schedule_change", args=[schedule.pk])
    assert client.post(change, form(operator, enabled="")).status_code == 302
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled is False
    delete = reverse("admin:schedules_schedule_delete", args=[schedule.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert (
        not Schedule.objects.exists()
        and not PeriodicTask.objects.filter(task=service.TICK_TASK).exists()
    )
    assert [e.kind for e in AuditEvent.objects.filter(kind__startswith="schedule.")] == [
        "schedule.created",
        "schedule.changed",
        "schedule.deleted",
    ]
    # Beat's own rows are not editable in the admin (an edit there would not be audited).
    assert client.get("/admin/django_celery_beat/periodictask/").status_code == 404


def test_an_auditor_reads_schedules_in_the_admin_but_cannot_change_them(
    client, auditor, manager, operator
):
    schedule = service.create(manager, data(operator))
    client.force_login(auditor)
    change = reverse("admin:schedules_schedule_change", args=[schedule.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, form(operator, cron="0 7 * * *")).status_code == 403
    assert client.post(reverse("admin:schedules_schedule_add"), form(operator)).status_code == 403
    schedule.refresh_from_db()
    assert schedule.cron == "0 6 * * *"


# --- the demo: the daily financial report -----------------------------------------------------


def test_seed_demo_creates_the_daily_financial_report_once(seeded):
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    schedule = Schedule.objects.get()
    assert (schedule.workflow_name, schedule.cron, schedule.timezone) == (
        "financial_reporting",
        "0 6 * * *",
        SYDNEY,
    )
    assert (
        schedule.input_template == {"date": "{{yesterday}}"}
        and schedule.owner.username == "operator"
    )
    assert schedule.created_by.username == "manager" and schedule.periodic_task.enabled
    assert len(events("schedule.created")) == 1
    # Its tick reports the previous calendar day in Sydney.
    backdate(schedule)
    now = dt.datetime.now(UTC)
    row = service.tick(schedule.pk, now=now)
    local_due = row.due_at.astimezone(crons.zone(SYDNEY))
    assert local_due.hour == 6
    assert row.run.input == {"date": (local_due.date() - dt.timedelta(days=1)).isoformat()}
    assert row.run.workflow_name == "financial_reporting"


def test_a_saved_schedule_still_runs_after_the_minimum_interval_is_raised(
    manager, operator, settings
):
    schedule = backdate(service.create(manager, data(operator, cron="*/10 * * * *")))
    settings.SCHEDULE_MIN_INTERVAL_MINUTES = 60
    row = service.tick(schedule.pk)
    assert row.outcome == ScheduledTick.Outcome.STARTED and row.due_at.minute % 10 == 0
    service.set_paused(manager, schedule, True)  # and can still be paused
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled is False
    with pytest.raises(service.ScheduleInvalid, match="at least 60 minutes apart"):
        service.update(manager, schedule, data(operator, cron="*/10 * * * *"))


def test_two_deliveries_at_the_same_moment_start_one_run(beat_db, manager, operator):
    """Two workers run the same tick concurrently: the unique (schedule, due) row lets one
    claim the occurrence; the other waits for it and finds it started."""
    import threading

    from django.db import connection

    schedule = backdate(service.create(manager, data(operator)))
    now = timezone.now()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def deliver():
        try:
            barrier.wait(10)
            results.append(service.tick(schedule.pk, now=now))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 2 and results[0].pk == results[1].pk
    assert {r.outcome for r in results} == {ScheduledTick.Outcome.STARTED}
    assert Run.objects.count() == 1 and ScheduledTick.objects.count() == 1
    assert AuditEvent.objects.filter(kind="schedule.fired").count() == 1
