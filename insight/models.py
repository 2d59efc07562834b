"""Roll-ups: what the operations page, the daily digest and /metrics read instead of scanning
runs, model calls and tool calls. ``insight.rollups.fold`` is their only writer."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models


class CountsField(ArrayField):
    """A bigint[] of histogram counts, sent as one array literal: ArrayField's preparation of
    each element (a field call and a driver adaptation per bucket) was most of a fold's time."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("base_field", models.BigIntegerField())
        super().__init__(**kwargs)

    def get_db_prep_value(
        self, value: object, connection: object, prepared: bool = False
    ) -> object:
        if value is None:
            return None
        return "{" + ",".join(str(int(n)) for n in value) + "}"  # type: ignore[union-attr]

    def deconstruct(self) -> tuple:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("base_field", None)
        return name, path, args, kwargs


class Rollup(models.Model):
    """One bucket: an hour (UTC), a day (local midnight, TIME_ZONE) or all time (``/metrics``'
    counters and histograms) of one kind of record for one workflow and one name.

    ``name`` is the model (model_call, step), the tool (tool_call), the reason (retry,
    escalation) or empty (run); ``role`` is the model call's role (model_call), else empty.
    ``outcomes`` counts rows by status (runs: final status; calls: ok/error/...).
    ``latency`` and ``ttft`` are ``insight.histogram`` histograms in ms (runs: started to
    finished; model calls: total and time to first token; tool calls: the attempt; steps:
    the model call's start to its last tool call's end). ``cost_usd``: model calls' cost.

    Hour rows are recomputed from the source rows of that hour; day rows are the sum of
    their hours; an all-time row changes by what its days changed. Rows are never edited by
    hand.
    """

    class Grain(models.TextChoices):
        HOUR = "hour"
        DAY = "day"
        ALL = "all", "all time"

    class Kind(models.TextChoices):
        RUN = "run"
        MODEL_CALL = "model_call", "model call"
        STEP = "step"
        TOOL_CALL = "tool_call", "tool call"
        RETRY = "retry"
        ESCALATION = "escalation"

    grain = models.CharField(max_length=4, choices=Grain.choices)
    start = models.DateTimeField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    workflow = models.CharField(max_length=100)
    name = models.CharField(max_length=100, blank=True, default="")
    role = models.CharField(max_length=20, blank=True, default="")
    count = models.BigIntegerField(default=0)
    outcomes = models.JSONField(default=dict, blank=True)
    latency_count = models.BigIntegerField(default=0)
    latency_sum_ms = models.BigIntegerField(default=0)
    latency = CountsField(default=list, blank=True)
    ttft_count = models.BigIntegerField(default=0)
    ttft_sum_ms = models.BigIntegerField(default=0)
    ttft = CountsField(default=list, blank=True)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal(0))

    class Meta:
        ordering = ["grain", "kind", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["grain", "kind", "start", "workflow", "name", "role"],
                name="rollup_unique_bucket",
            ),
        ]
        # The unique constraint's index, led by (grain, kind, start), serves every reader:
        # one kind over a period, optionally filtered by workflow.

    def __str__(self) -> str:
        return f"{self.grain} {self.start:%Y-%m-%d %H:%M} {self.kind} {self.workflow} {self.name}"


class FoldWatermark(models.Model):
    """Where the last fold got to: rows finished after ``folded_until - ROLLUP_LAG_SECONDS``
    are looked at again by the next fold (one row, pk=1)."""

    folded_until = models.DateTimeField(null=True, blank=True)
    folds = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"folded until {self.folded_until}"


class DigestDelivery(models.Model):
    """A daily digest sent: one per workflow and day, so a repeated beat sends it once."""

    workflow = models.CharField(max_length=100)
    day = models.DateField()
    recipients = models.JSONField(default=list)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "workflow"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "day"], name="digestdelivery_unique_day"),
        ]

    def __str__(self) -> str:
        return f"digest {self.workflow} {self.day}"
