"""Roll-ups: the fold adds up exactly what the rows say, incrementally, once, and late rows too."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from django.utils import timezone

from insight import figures, histogram, rollups
from insight.models import Rollup
from orchestration.models import ModelCall, Run, ToolCall
from tests.insight_factories import (
    activity,
    day_at,
    model_call,
    nearest_rank,
    run_at,
    ticket,
    tool_call,
)

K = Rollup.Kind
pytestmark = pytest.mark.django_db


def _in(period: figures.Period, when: dt.datetime) -> bool:
    return period.start <= when < period.end


def test_histogram_quantile_lands_in_the_true_values_bucket() -> None:
    values = [3, 17, 17, 240, 999, 1000, 1001, 25_000, 7_200_000]
    hist = histogram.empty()
    for v in values:
        hist[histogram.bucket_of(v)] += 1
    for q in (0.5, 0.95, 1.0):
        exact = nearest_rank(values, q)
        lower, upper = histogram.bucket_range(exact)
        assert lower < histogram.quantile(hist, q) <= upper
    assert histogram.quantile(histogram.empty(), 0.5) is None
    # The SQL twin puts 1000 in the bucket whose upper bound is 1000, 1001 in the next.
    assert histogram.BOUNDS_MS[histogram.bucket_of(1000)] == 1000
    assert histogram.BOUNDS_MS[histogram.bucket_of(1001) - 1] == 1000


def test_the_fold_adds_up_to_the_rows(operator) -> None:
    made = activity(operator, [0, 1, 3, 8, 12])
    result = rollups.fold()
    assert result.folded and result.hours > 0
    period = figures.Period.ending(7)
    before = period.previous()

    for p in (period, before):
        runs = [r for r in made.runs if _in(p, r.finished_at)]
        total = figures.total(K.RUN, p)
        assert total.count == len(runs)
        assert total.outcomes == dict(Counter(r.status for r in runs))
        ended = [r for r in runs if r.status in figures.RATED_OUTCOMES]
        assert figures.success_rate(total.outcomes) == pytest.approx(
            sum(r.status == "succeeded" for r in ended) / len(ended)
        )
        # Cost per day: exact, the Decimal sum of the calls made that day.
        per_day = figures.per_day(K.MODEL_CALL, p)
        for day, row in per_day.items():
            expected = sum(
                (
                    mc.cost_usd
                    for mc in made.model_calls
                    if timezone.localtime(mc.created_at).date() == day
                ),
                Decimal(0),
            )
            assert row.cost_usd == expected, day
        # Tool calls by tool, and their p50/p95 in the bucket of the exact nearest rank.
        tools = figures.by_name(K.TOOL_CALL, p)
        for name, row in tools.items():
            lat = [
                tc.latency_ms for tc in made.tool_calls if tc.name == name and _in(p, tc.created_at)
            ]
            assert row.count == len(lat)
            assert row.latency_sum_ms == sum(lat)
            for q in (0.5, 0.95):
                lower, upper = histogram.bucket_range(nearest_rank(lat, q))
                assert lower < histogram.quantile(row.latency, q) <= upper
        # Run latency: started to finished.
        lat = [r.latency_ms for r in runs if r.started_at]
        row = figures.total(K.RUN, p)
        lower, upper = histogram.bucket_range(nearest_rank(lat, 0.95))
        assert lower < histogram.quantile(row.latency, 0.95) <= upper
        # Model calls by model, outcomes.
        for model, mrow in figures.by_name(K.MODEL_CALL, p).items():
            calls = [mc for mc in made.model_calls if mc.model == model and _in(p, mc.created_at)]
            assert mrow.outcomes == dict(Counter(mc.status for mc in calls))
        # Retries by reason.
        retries = {n: r.count for n, r in figures.by_name(K.RETRY, p).items()}
        in_p = [mc for mc in made.model_calls if _in(p, mc.created_at)]
        assert retries.get("model_error", 0) == sum(mc.attempt > 1 for mc in in_p)
        assert retries.get("sdk_http", 0) == sum(mc.sdk_attempts - 1 for mc in in_p)
        assert retries.get("tool_timeout", 0) == sum(
            tc.attempt > 1 for tc in made.tool_calls if _in(p, tc.created_at)
        )
        # Escalations by reason.
        escalations = {n: r.count for n, r in figures.by_name(K.ESCALATION, p).items()}
        assert escalations == dict(Counter(t.reason for t in made.tickets if _in(p, t.created_at)))


def test_a_second_fold_with_nothing_new_recomputes_nothing_and_counts_nothing_twice(
    operator,
) -> None:
    # Days already over: rows placed later today could lie in the future (just after
    # midnight), and a fold recomputes the hours of rows not yet behind its watermark.
    activity(operator, [1, 2], per_day=4)
    rollups.fold()
    before = {
        (r.grain, r.kind, r.start, r.workflow, r.name, r.role): r.count
        for r in Rollup.objects.all()
    }
    assert rollups.fold().hours == 0
    after = {
        (r.grain, r.kind, r.start, r.workflow, r.name, r.role): r.count
        for r in Rollup.objects.all()
    }
    assert after == before


def test_new_rows_are_folded_and_only_their_hour_is_recomputed(operator) -> None:
    activity(operator, [2], per_day=6)
    rollups.fold()
    now = timezone.now()
    run = run_at(operator, now - dt.timedelta(seconds=5), status="failed", run_ms=1234)
    result = rollups.fold()
    assert result.hours == 1
    today = figures.total(K.RUN, figures.Period.ending(1))
    assert (
        today.outcomes.get("failed", 0)
        == Run.objects.filter(
            status="failed", finished_at__gte=figures.Period.ending(1).start
        ).count()
    )
    assert run.pk  # the run is today's


def test_a_row_committed_late_inside_the_lag_is_still_folded(operator, settings) -> None:
    """A row stamped finished before the last fold but committed after it (a slow transaction,
    a clock behind) lands in the next fold, as long as it is within ROLLUP_LAG_SECONDS."""
    settings.ROLLUP_LAG_SECONDS = 600
    rollups.fold()
    folded_at = rollups.watermark()
    run = run_at(operator, folded_at - dt.timedelta(seconds=300), status="succeeded")
    mc = model_call(
        run, folded_at - dt.timedelta(seconds=300), model="claude-opus-4-6", ms=100, cost="0.5"
    )
    rollups.fold()
    day = timezone.localtime(mc.created_at).date()
    assert figures.per_day(K.MODEL_CALL, figures.Period.ending(1, day))[day].cost_usd == Decimal(
        "0.5"
    )
    # Older than the lag (and more than a range gap from the hours the fold recomputes): not
    # seen by the fold, but by the day's refold (the digest does it).
    old = run_at(operator, rollups.watermark() - dt.timedelta(days=2), status="halted")
    rollups.fold()
    old_day = timezone.localtime(old.finished_at).date()
    assert figures.total(K.RUN, figures.Period.ending(1, old_day)).outcomes.get("halted", 0) == 0
    rollups.refold(old_day)
    assert figures.total(K.RUN, figures.Period.ending(1, old_day)).outcomes.get("halted", 0) == 1


def test_pending_and_running_rows_wait_until_they_finish(operator) -> None:
    when = (
        day_at(0, hour=0, minute=30)
        if timezone.localtime().hour
        else timezone.now() - dt.timedelta(minutes=1)
    )
    run = run_at(operator, when, status="running")
    mc = model_call(run, when, model="claude-opus-4-6", ms=10, cost="0.25", status="pending")
    tc = tool_call(run, mc, when, name="post_ledger", ms=5, status="running")
    ModelCall.objects.filter(pk=mc.pk).update(finished_at=None)
    ToolCall.objects.filter(pk=tc.pk).update(finished_at=None)
    rollups.fold()
    today = figures.Period.ending(1)
    assert figures.total(K.RUN, today).count == 0
    assert figures.total(K.MODEL_CALL, today).count == 0
    assert figures.total(K.TOOL_CALL, today).count == 0
    ModelCall.objects.filter(pk=mc.pk).update(status="ok", finished_at=timezone.now())
    ToolCall.objects.filter(pk=tc.pk).update(status="ok", finished_at=timezone.now())
    rollups.fold()
    assert figures.total(K.MODEL_CALL, today).cost_usd == Decimal("0.25")
    assert figures.total(K.TOOL_CALL, today).outcomes == {"ok": 1}


@pytest.mark.skipif(
    rollups.TTFT_FIELD is None, reason="ModelCall has no time-to-first-token field yet"
)
def test_time_to_first_token_is_rolled_up(operator) -> None:
    run = run_at(operator, day_at(1), status="succeeded")
    firsts = [120, 340, 90, 2000]
    for i, first in enumerate(firsts):
        model_call(
            run,
            day_at(1),
            model="claude-opus-4-6",
            ms=first + 500,
            cost="0.01",
            turn=i,
            **{
                [f.name for f in ModelCall._meta.concrete_fields if f.column == rollups.TTFT_FIELD][
                    0
                ]: first
            },
        )
    rollups.fold()
    row = figures.by_name(
        K.MODEL_CALL, figures.Period.ending(1, timezone.localdate() - dt.timedelta(days=1))
    )["claude-opus-4-6"]
    assert row.ttft_count == 4 and row.ttft_sum_ms == sum(firsts)
    lower, upper = histogram.bucket_range(nearest_rank(firsts, 0.95))
    assert lower < histogram.quantile(row.ttft, 0.95) <= upper


def test_all_time_rows_stay_the_sum_of_the_days(operator, settings) -> None:
    """/metrics reads the all-time rows, kept by what each fold changed: after folds, late
    rows and a refold they still equal the sum of every day row, series by series."""
    settings.ROLLUP_LAG_SECONDS = 600
    activity(operator, [0, 1, 2], per_day=6)
    rollups.fold()
    run_at(operator, timezone.now() - dt.timedelta(seconds=30), status="failed", run_ms=77)
    rollups.fold()
    old = run_at(operator, day_at(2, hour=5), status="halted")
    rollups.refold(timezone.localtime(old.finished_at).date())
    rollups.refold(timezone.localtime(old.finished_at).date())  # twice: nothing counted twice

    def series(grain: str) -> dict:
        merged = rollups.group_rows(
            Rollup.objects.filter(grain=grain), key=lambda r: (r.kind, r.workflow, r.name, r.role)
        )
        return {
            k: (r.count, r.outcomes, r.latency_count, r.latency_sum_ms, r.cost_usd, r.latency)
            for k, r in merged.items()
        }

    assert series(Rollup.Grain.ALL) == series(Rollup.Grain.DAY)
    runs = figures.all_time(K.RUN)
    assert sum(r.count for r in runs) == Run.objects.filter(status__in=Run.FINAL).count()


def test_beat_folds_and_sends_digests_through_the_tasks(operator, settings) -> None:
    from insight import tasks

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["fold-rollups"]["task"] == "insight.tasks.fold_rollups"
    assert schedule["daily-digest"]["task"] == "insight.tasks.send_daily_digests"
    activity(operator, [1], per_day=3)  # yesterday: no row lies ahead of the fold's watermark
    assert tasks.fold_rollups.apply().get() > 0
    assert tasks.fold_rollups.apply().get() == 0  # nothing new
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    assert figures.total(K.RUN, figures.Period.ending(1, yesterday)).count == 3


@pytest.mark.parametrize("evaluation", [True, False])
def test_an_evaluation_run_moves_no_production_figure(operator, evaluation) -> None:
    """An evaluation fails cases on purpose: its run, calls, retries and tickets stay out of
    the success rate, the error counts (``CountersignErrorRate`` reads them from /metrics) and
    the cost; the same run in production counts."""
    day = timezone.localdate() - dt.timedelta(days=1)
    for i in range(3):
        ok = run_at(operator, day_at(1, minute=i), status="succeeded")
        model_call(ok, day_at(1, minute=i), model="claude-opus-4-6", ms=100, cost="1.00")
    failing = run_at(operator, day_at(1, hour=11), status="failed")
    Run.objects.filter(pk=failing.pk).update(is_evaluation=evaluation)
    mc = model_call(
        failing, day_at(1, hour=11), model="claude-opus-4-6", ms=100, cost="5.00", attempt=2
    )
    tool_call(failing, mc, day_at(1, hour=11), name="post_ledger", ms=10, status="error", attempt=2)
    ticket(failing, day_at(1, hour=11), "tool_error")
    rollups.fold()
    period = figures.Period.ending(1, day)
    runs = figures.total(K.RUN, period)
    if evaluation:
        assert runs.outcomes == {"succeeded": 3}
        assert figures.success_rate(runs.outcomes) == 1.0
        assert figures.total(K.MODEL_CALL, period).cost_usd == Decimal("3.00")
        assert figures.by_name(K.RETRY, period) == {}
        assert figures.by_name(K.ESCALATION, period) == {}
        assert figures.total(K.TOOL_CALL, period).count == 0
    else:
        assert runs.outcomes == {"succeeded": 3, "failed": 1}
        assert figures.success_rate(runs.outcomes) == pytest.approx(0.75)
        assert figures.total(K.MODEL_CALL, period).cost_usd == Decimal("8.00")
        assert {n: r.count for n, r in figures.by_name(K.RETRY, period).items()} == {
            "model_error": 1,
            "tool_error": 1,
        }
        assert {n: r.count for n, r in figures.by_name(K.ESCALATION, period).items()} == {
            "tool_error": 1
        }
    # /metrics reads the all-time rows: countersign_runs_finished{outcome="failed"}.
    failed_all_time = sum(r.outcomes.get("failed", 0) for r in figures.all_time(K.RUN))
    assert failed_all_time == (0 if evaluation else 1)
