"""The evaluation gate on approving a version: ``blockers(version)``.

A workflow may declare ``evaluation_thresholds`` (orchestration.workflows.declaration). A
version may then be approved only once its latest evaluation on the named dataset, run on the
dataset as it is now, is finished and meets every threshold. The version-approval rule
(orchestration.version_policy.approval_blockers) adds these reasons to its own.
"""

from __future__ import annotations

from decimal import Decimal

from evaluation import datasets
from evaluation.models import Dataset, Evaluation
from evaluation.report import report
from orchestration.models import WorkflowVersion
from orchestration.workflows.declaration import EvaluationThresholds
from orchestration.workflows.versions import declaration_for


def blockers(version: WorkflowVersion) -> list[str]:
    """Why ``version`` may not be approved yet, in words a manager can act on; [] when no
    thresholds apply or the latest evaluation meets them.

    Two bars may apply, and each must be cleared: the one the version declares itself, and
    the one of the version serving now (from its snapshot), so that a change cannot lower or
    drop its own bar in the same breath."""
    reasons: list[str] = []
    for thresholds in _bars(version):
        for why in _blockers(version, thresholds):
            if why not in reasons:
                reasons.append(why)
    return reasons


def _bars(version: WorkflowVersion) -> list[EvaluationThresholds]:
    bars = []
    declared = declaration_for(version)
    if declared is not None and declared.evaluation_thresholds is not None:
        bars.append(declared.evaluation_thresholds)
    serving = (
        WorkflowVersion.objects.filter(name=version.name, serving=True)
        .exclude(pk=version.pk)
        .only("behaviour")
        .first()
    )
    recorded = ((serving.behaviour or {}) if serving else {}).get("evaluation_thresholds")
    if recorded:
        cost = recorded.get("max_cost_usd")
        bar = EvaluationThresholds(
            **{**recorded, "max_cost_usd": None if cost is None else Decimal(cost)}
        )
        if bar not in bars:
            bars.append(bar)
    return bars


def _blockers(version: WorkflowVersion, thresholds: EvaluationThresholds) -> list[str]:
    name = thresholds.dataset
    dataset = Dataset.objects.filter(workflow_name=version.name, name=name).first()
    if dataset is None:
        return [
            f"{version.name} requires an evaluation on the dataset {name!r}, which does not exist: create it."
        ]
    latest = (
        Evaluation.objects.filter(version=version, dataset_name=name)
        .order_by("-created_at")
        .first()
    )  # evaluation_version_latest
    label = f"v{version.version} ({version.content_hash[:8]})"
    if latest is None:
        return [f"{label} has not been evaluated on {name!r}: run an evaluation first."]
    if latest.dataset_digest != datasets.digest(dataset.cases.all()):
        return [
            f"The dataset {name!r} changed after evaluation {latest.pk}: evaluate {label} again."
        ]
    r = report(latest)
    if not r.complete:
        return [
            f"Evaluation {latest.pk} of {label} is not finished: {r.cases - r.finished} of {r.cases} "
            "case(s) still running or awaiting approval."
        ]
    reasons = []
    if r.accuracy is not None and r.accuracy < thresholds.min_accuracy:
        reasons.append(
            f"Outcome accuracy {r.accuracy:.0%} ({r.passed} of {r.cases}) is below the required "
            f"{thresholds.min_accuracy:.0%}."
        )
    if r.hallucinations > thresholds.max_hallucinations:
        reasons.append(
            f"{r.hallucinations} provenance (hallucination) failure(s); at most "
            f"{thresholds.max_hallucinations} allowed."
        )
    if (
        thresholds.max_escalation_rate is not None
        and (r.escalation_rate or 0) > thresholds.max_escalation_rate
    ):
        reasons.append(
            f"Escalation rate {r.escalation_rate:.0%} is above the allowed "
            f"{thresholds.max_escalation_rate:.0%}."
        )
    if (
        thresholds.max_tool_error_rate is not None
        and (r.tool_error_rate or 0) > thresholds.max_tool_error_rate
    ):
        reasons.append(
            f"Tool error rate {r.tool_error_rate:.0%} is above the allowed "
            f"{thresholds.max_tool_error_rate:.0%}."
        )
    if thresholds.max_cost_usd is not None and r.cost_usd > Decimal(thresholds.max_cost_usd):
        reasons.append(
            f"The evaluation cost ${r.cost_usd:.4f}, over the allowed ${Decimal(thresholds.max_cost_usd):.4f}."
        )
    if (
        thresholds.max_case_latency_seconds is not None
        and (r.latency_max_ms or 0) > thresholds.max_case_latency_seconds * 1000
    ):
        reasons.append(
            f"The slowest case took {r.latency_max_ms / 1000:.1f} s, over the allowed "
            f"{thresholds.max_case_latency_seconds:g} s."
        )
    return [f"Evaluation {latest.pk}: {why}" for why in reasons]
