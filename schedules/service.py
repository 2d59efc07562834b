"""Managing schedules and running their ticks: the one place that changes a schedule.

Every change (create, edit, pause, resume, delete), from the schedules page or the admin,
goes through ``create`` / ``update`` / ``set_paused`` / ``delete``: each checks the access
rule (reviews.access), validates with ``validate`` (the one validation, shared by the page's
form, the admin's form and, later, the API), writes the Schedule and its django-celery-beat
PeriodicTask in one transaction, and records an audit event.

``tick`` is what beat sends for an occurrence: it claims (schedule, due time) once in
ScheduledTick (a unique constraint), resolves the input template for that occurrence and
starts the run through orchestration.launch.start_run as the schedule's owner, so the spend
gate, budgets, rate limits and pauses apply as for any run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from orchestration import audit, launch, untrusted
from orchestration.workflows import registry
from reviews import access
from schedules import crons, input_template
from schedules.models import Schedule, ScheduledTick

TICK_TASK = "schedules.tasks.tick"
TASK_PREFIX = "countersign-schedule-"
# A tick is for the latest occurrence at or before its time plus this slack, so a worker whose
# clock is a little behind beat's still names the occurrence beat fired for. Less than the
# shortest allowed gap between occurrences (SCHEDULE_MIN_INTERVAL_MINUTES).
CLOCK_SLACK = dt.timedelta(seconds=30)


class ScheduleInvalid(Exception):
    """Nothing was saved; ``errors`` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class ScheduleRefused(Exception):
    """The user may not do this; nothing was changed."""


@dataclass(frozen=True)
class Cleaned:
    name: str
    workflow_name: str
    cron: crons.Cron
    input_template: dict[str, Any]
    owner: Any
    enabled: bool


def _template_value(raw: Any) -> tuple[Any, str | None]:
    if isinstance(raw, dict):
        return raw, None
    text = (raw or "").strip() or "{}"
    try:  # the shared limits: NaN, 1e400, 64-bit integers, NUL, depth (docs/security.md)
        return untrusted.parse_json(text, field="input_template"), None
    except untrusted.Rejected as exc:
        return None, "; ".join(
            why if where == "input_template" else f"{where.split('/', 1)[1]}: {why}"
            for where, why in exc.fields.items()
        )


def _text_problem(value: str, name: str) -> str | None:
    try:
        untrusted.check_text(value, name)
    except untrusted.Rejected as exc:
        return exc.fields[name].replace("the text", "It", 1)
    return None


def validate(data: dict[str, Any], *, instance: Schedule | None = None) -> Cleaned:
    """Check a schedule as submitted (strings from a form, or values): raise ScheduleInvalid
    with every problem found, keyed by field. The template is resolved for the next
    occurrence and the result checked against the workflow's input schema, so a template
    that could never start a run is refused now, not at 6 a.m."""
    errors: dict[str, str] = {}
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = "A schedule needs a name."
    elif len(name) > 100:
        errors["name"] = "At most 100 characters."
    elif problem := _text_problem(name, "name"):
        errors["name"] = problem
    elif Schedule.objects.filter(name=name).exclude(pk=getattr(instance, "pk", None)).exists():
        errors["name"] = f"A schedule named {name!r} already exists."
    workflow_name = str(data.get("workflow_name") or "").strip()
    try:
        registry.get(workflow_name)
    except registry.UnknownWorkflow as exc:
        errors["workflow_name"] = str(exc)
    cron, tz_name = None, str(data.get("timezone") or "")
    try:
        crons.zone(tz_name)
    except crons.CronError as exc:
        errors["timezone"] = str(exc)
    try:  # the expression is checked even when the zone is wrong: both errors at once
        cron = crons.parse(str(data.get("cron") or ""), "UTC" if "timezone" in errors else tz_name)
    except crons.CronError as exc:
        errors["cron"] = str(exc)
    owner = data.get("owner")
    if not hasattr(owner, "pk"):
        try:
            pk = untrusted.whole_number(str(owner or ""), "owner")
        except untrusted.Rejected:
            pk = None
        owner = get_user_model().objects.filter(pk=pk).first() if pk is not None else None
    if refusal := access.schedule_owner_refusal(owner):
        errors["owner"] = refusal
    template, problem = _template_value(data.get("input_template"))
    if problem:
        errors["input_template"] = problem
    else:
        errors.update(input_template.check(template))
    if not errors and cron is not None:
        due = crons.following(cron, timezone.now()) or timezone.now()
        try:
            launch.validate_input(workflow_name, input_template.resolve(template, due, cron.tz))
        except launch.RunRefused as refused:
            for field, message in refused.errors.items():
                whole = field in ("input", "workflow", "(root)")
                errors["input_template" if whole else f"input_template/{field}"] = (
                    f"the input this template gives for the next run is refused: {message}"
                )
    if errors:
        raise ScheduleInvalid(errors)
    enabled = data.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.lower() in ("1", "true", "on", "yes")
    return Cleaned(name, workflow_name, cron, template, owner, bool(enabled))


def describe(schedule: Schedule) -> dict[str, Any]:
    """What an audit event records of a schedule."""
    return {
        "schedule": schedule.pk,
        "name": schedule.name,
        "workflow": schedule.workflow_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "input_template": schedule.input_template,
        "owner": schedule.owner.get_username() if schedule.owner_id else None,
        "enabled": schedule.enabled,
    }


def _refuse_unless_manager(user: Any) -> None:
    if refusal := access.schedule_refusal(user):
        raise ScheduleRefused(refusal)


def _sync_task(schedule: Schedule, cron: crons.Cron, *, retimed: bool) -> None:
    """The schedule's PeriodicTask (beat's row), created or brought in step."""
    crontab, _ = CrontabSchedule.objects.get_or_create(**cron.fields, timezone=cron.tz.key)
    task = schedule.periodic_task or PeriodicTask(
        name=f"{TASK_PREFIX}{schedule.pk}",
        task=TICK_TASK,
        kwargs=json.dumps({"schedule_id": schedule.pk}),
    )
    task.crontab = crontab
    task.interval = None
    task.enabled = schedule.enabled
    task.description = f"Countersign schedule {schedule.name!r} (managed from /schedules/)"
    if retimed:
        # Beat must not treat the new timing as overdue since the task's last run.
        task.last_run_at = timezone.now()
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])


def create(user: Any, data: dict[str, Any]) -> Schedule:
    _refuse_unless_manager(user)
    cleaned = validate(data)
    with transaction.atomic():
        schedule = Schedule.objects.create(
            name=cleaned.name,
            workflow_name=cleaned.workflow_name,
            cron=cleaned.cron.expression,
            timezone=cleaned.cron.tz.key,
            input_template=cleaned.input_template,
            owner=cleaned.owner,
            enabled=cleaned.enabled,
            active_since=timezone.now(),
            created_by=user,
        )
        _sync_task(schedule, cleaned.cron, retimed=True)
        audit.record("schedule.created", actor=user, payload=describe(schedule))
    return schedule


def update(user: Any, schedule: Schedule, data: dict[str, Any]) -> Schedule:
    _refuse_unless_manager(user)
    cleaned = validate(data, instance=schedule)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().select_related("owner").get(pk=schedule.pk)
        before = describe(schedule)
        retimed = (cleaned.cron.expression, cleaned.cron.tz.key) != (
            schedule.cron,
            schedule.timezone,
        )
        resumed = cleaned.enabled and not schedule.enabled
        schedule.name, schedule.workflow_name = cleaned.name, cleaned.workflow_name
        schedule.cron, schedule.timezone = cleaned.cron.expression, cleaned.cron.tz.key
        schedule.input_template, schedule.owner = cleaned.input_template, cleaned.owner
        schedule.enabled = cleaned.enabled
        if retimed or resumed:
            schedule.active_since = timezone.now()
        schedule.save()
        _sync_task(schedule, cleaned.cron, retimed=retimed or resumed)
        after = describe(schedule)
        changed = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
        audit.record("schedule.changed", actor=user, payload={**after, "changes": changed})
    return schedule


def set_paused(user: Any, schedule: Schedule, paused: bool) -> Schedule:
    """Pause (beat stops firing it; a tick already queued starts nothing) or resume (from
    now on: the occurrences missed while paused are not run)."""
    _refuse_unless_manager(user)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().select_related("owner").get(pk=schedule.pk)
        if schedule.enabled == (not paused):
            return schedule
        schedule.enabled = not paused
        if not paused:
            schedule.active_since = timezone.now()
        schedule.save(update_fields=["enabled", "active_since", "updated_at"])
        _sync_task(
            schedule,
            crons.parse(schedule.cron, schedule.timezone, strict=False),
            retimed=not paused,
        )
        audit.record(
            "schedule.paused" if paused else "schedule.resumed",
            actor=user,
            payload=describe(schedule),
        )
    return schedule


def delete(user: Any, schedule: Schedule) -> None:
    """The schedule and its PeriodicTask go; its ticks stay (schedule unset), so do its runs."""
    _refuse_unless_manager(user)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().select_related("owner").get(pk=schedule.pk)
        payload = describe(schedule)
        task = schedule.periodic_task
        schedule.delete()
        if task is not None:
            task.delete()
        audit.record("schedule.deleted", actor=user, payload=payload)


def next_occurrence(schedule: Schedule) -> dt.datetime | None:
    if not schedule.enabled:
        return None
    try:
        return crons.following(
            crons.parse(schedule.cron, schedule.timezone, strict=False), timezone.now()
        )
    except crons.CronError:
        return None


# --- ticks ---------------------------------------------------------------------------------


def tick(schedule_id: int, *, now: dt.datetime | None = None) -> ScheduledTick | None:
    """Start the run of the occurrence due at ``now`` (the latest at or before it), once.

    Returns the tick row, or None when there is nothing to run (the schedule is gone or
    paused, or its latest occurrence predates ``active_since``). A second delivery of the same
    tick, or beat catching up after being down, finds the row already claimed and starts
    nothing. If a worker dies between claiming and starting, the redelivered message finds the
    row still ``claimed`` and starts the run with the same idempotency key, which start_run
    answers with the run already made, if any."""
    now = now or timezone.now()
    schedule = Schedule.objects.select_related("owner").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        return None
    cron = crons.parse(schedule.cron, schedule.timezone, strict=False)
    due = crons.latest(cron, now + CLOCK_SLACK)
    if due is None or due < schedule.active_since:
        return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                row, _ = ScheduledTick.objects.get_or_create(
                    schedule=schedule, due_at=due, defaults={"schedule_name": schedule.name}
                )
        except IntegrityError:  # a concurrent delivery inserted it first
            row = ScheduledTick.objects.get(schedule=schedule, due_at=due)
        row = ScheduledTick.objects.select_for_update().get(pk=row.pk)
        if row.outcome != ScheduledTick.Outcome.CLAIMED:
            return row  # already run (or refused) for this occurrence
        _start(schedule, cron, row)
        row.save()
    return row


def _start(schedule: Schedule, cron: crons.Cron, row: ScheduledTick) -> None:
    owner = schedule.owner
    context = {"schedule": schedule.pk, "name": schedule.name, "due_at": row.due_at.isoformat()}
    try:
        if refusal := access.schedule_owner_refusal(owner):
            raise launch.RunRefused({"owner": refusal})
        value = input_template.resolve(schedule.input_template, row.due_at, cron.tz)
        with transaction.atomic():
            run = launch.start_run(
                schedule.workflow_name,
                value,
                owner,
                source="schedule",
                idempotency_key=f"schedule:{schedule.pk}:{row.due_at.isoformat()}",
                options={"schedule": context},
            )
    except (launch.RunRefused, input_template.TemplateError) as exc:
        errors = getattr(exc, "errors", {"input": str(exc)})
        row.outcome = ScheduledTick.Outcome.REFUSED
        row.detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        audit.record(
            "schedule.refused",
            actor="beat",
            payload={
                **context,
                "owner": owner.get_username(),
                "code": getattr(exc, "code", "invalid_input"),
                "errors": errors,
            },
        )
        return
    row.outcome, row.run, row.detail = ScheduledTick.Outcome.STARTED, run, ""
    audit.record("schedule.fired", run=run, actor="beat", payload={**context, "status": run.status})
