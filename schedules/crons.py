"""Cron expressions and time zones of schedules: parsing, validating, and the occurrences.

A schedule's cron expression has the five classic fields (minute hour day-of-month month
day-of-week) and is read by Celery's own parser, the one beat uses (django-celery-beat's
CrontabSchedule), so what is accepted here is exactly what beat fires. As in Celery, a day must
match day-of-month AND month AND day-of-week (Unix cron ORs the two day fields).

``latest(...)`` is the occurrence a tick is for: the latest one at or before the tick's time.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass

from celery.schedules import ParseException, crontab
from django.conf import settings

FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_FIELD_TEXT = re.compile(r"^[0-9A-Za-z*/,\-]+$")
# An expression that never occurs within this many days (31 February...) is refused.
_HORIZON_DAYS = 366 * 5


class CronError(ValueError):
    """The expression or time zone is not usable; the message says what to write instead."""


@dataclass(frozen=True)
class Cron:
    expression: str  # normalised: single spaces
    fields: dict[str, str]  # FIELDS -> text, as django-celery-beat's CrontabSchedule stores them
    spec: crontab  # the expanded sets (minute, hour, ...)
    tz: zoneinfo.ZoneInfo


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> zoneinfo.ZoneInfo:
    name = (name or "").strip()
    if name not in _zone_names():
        raise CronError(
            f"Unknown time zone {name!r}: use an IANA name such as Australia/Sydney or UTC."
        )
    return zoneinfo.ZoneInfo(name)


def parse(expression: str, tz_name: str, *, strict: bool = True) -> Cron:
    """The expression and zone, checked: five fields Celery can parse, a time zone that
    exists, at least one occurrence, and occurrences at least SCHEDULE_MIN_INTERVAL_MINUTES
    apart (every scheduled run costs money; a tick is named by its minute). ``strict=False``
    (a saved schedule being run or shown) skips the last two: a schedule saved under an
    older minimum interval still runs."""
    tz = zone(tz_name)
    parts = (expression or "").split()
    if len(parts) != len(FIELDS):
        raise CronError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"e.g. '30 6 * * *' for 06:30 every day; {len(parts)} given."
        )
    for name, text in zip(FIELDS, parts, strict=True):
        if not _FIELD_TEXT.match(text):
            raise CronError(
                f"The {name.replace('_', ' ')} field {text!r} has characters cron does not use."
            )
    fields = dict(zip(FIELDS, parts, strict=True))
    try:
        spec = crontab(**fields)
    except (ParseException, ValueError, TypeError, IndexError) as exc:
        raise CronError(f"Not a valid cron expression: {exc}.") from None
    cron = Cron(" ".join(parts), fields, spec, tz)
    if not strict:
        return cron
    if following(cron, dt.datetime.now(dt.UTC)) is None:
        raise CronError("This expression never occurs (e.g. 31 February): nothing would run.")
    gap = min_gap_minutes(cron)
    least = settings.SCHEDULE_MIN_INTERVAL_MINUTES
    if gap < least:
        raise CronError(
            f"Runs would start {gap} minute(s) apart; schedules must be at least {least} "
            "minutes apart."
        )
    return cron


def min_gap_minutes(cron: Cron) -> int:
    """The shortest time between two occurrences, over the minutes and hours of a day (and
    from the last of one day to the first of the next)."""
    times = sorted(h * 60 + m for h in cron.spec.hour for m in cron.spec.minute)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + 24 * 60 - times[-1])
    return min(gaps)


def _day_matches(cron: Cron, day: dt.date) -> bool:
    spec = cron.spec
    return (
        day.month in spec.month_of_year
        and day.day in spec.day_of_month
        and day.isoweekday() % 7 in spec.day_of_week
    )


def latest(cron: Cron, at: dt.datetime) -> dt.datetime | None:
    """The latest occurrence at or before ``at`` (aware), as an aware UTC datetime."""
    at = at.astimezone(dt.UTC)  # compared by instant, whatever zone ``at`` came in
    day = at.astimezone(cron.tz).date()
    for _ in range(_HORIZON_DAYS):
        if _day_matches(cron, day):
            for hour in sorted(cron.spec.hour, reverse=True):
                for minute in sorted(cron.spec.minute, reverse=True):
                    when = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=cron.tz)
                    if when <= at:
                        return when.astimezone(dt.UTC)
        day -= dt.timedelta(days=1)
    return None


def following(cron: Cron, at: dt.datetime) -> dt.datetime | None:
    """The first occurrence strictly after ``at`` (aware), as an aware UTC datetime."""
    at = at.astimezone(dt.UTC)
    day = at.astimezone(cron.tz).date()
    for _ in range(_HORIZON_DAYS):
        if _day_matches(cron, day):
            for hour in sorted(cron.spec.hour):
                for minute in sorted(cron.spec.minute):
                    when = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=cron.tz)
                    if when > at:
                        return when.astimezone(dt.UTC)
        day += dt.timedelta(days=1)
    return None
