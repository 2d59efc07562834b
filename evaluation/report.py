"""An evaluation's report, computed from its runs as they are now (never stored).

Per case, the outcome is read from the run: ``succeeded``, ``escalated`` (the run's ticket,
closed as an evaluation outcome, gives the reason), ``failed``, ``halted``, ``cancelled``,
``rejected`` (a manager refused its approval), ``pending`` (not final yet) or ``not started``
(the start was refused: a budget, the daily start limit). A case passes when the outcome is
the expected one, the reason matches when one is expected, and every expected output field
holds its value. Over the dataset:

- outcome accuracy: cases passed / cases (a case not started, or still pending, has not passed);
- escalation rate by reason: escalated cases per reason / cases;
- provenance failures: cases escalated as ``hallucination`` (a value in the answer that no
  recorded tool call produced);
- tool error rate: tool call attempts that ended ``error``, ``timeout``, ``invalid_output`` or
  ``unknown_tool`` / all attempts (a guard's or precondition's refusal is not a tool error);
- cost: the runs' ``cost_usd`` (charged by costs.accounting), in total and per case;
- latency: each run from started to finished; median, 95th percentile (nearest rank), max.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q

from evaluation.models import Evaluation, EvaluationCase, Expected
from orchestration.models import Run, ToolCall
from orchestration.validation import value_at
from reviews.models import EscalationTicket

TOOL_ERRORS = (
    ToolCall.Status.ERROR,
    ToolCall.Status.TIMEOUT,
    ToolCall.Status.INVALID_OUTPUT,
    ToolCall.Status.UNKNOWN_TOOL,
)
PENDING, NOT_STARTED, ESCALATED = "pending", "not started", "escalated"
HALLUCINATION = EscalationTicket.Reason.HALLUCINATION


@dataclass
class CaseOutcome:
    case: EvaluationCase
    outcome: str
    reason: str = ""
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    cost_usd: Decimal = Decimal(0)
    latency_ms: int | None = None
    tool_calls: int = 0
    tool_errors: int = 0

    @property
    def expected(self) -> str:
        c = self.case
        fields = ", ".join(
            f"{path} = {value!r}" for path, value in (c.expected_output or {}).items()
        )
        return (
            c.expected_status
            + (f" ({c.expected_reason})" if c.expected_reason else "")
            + (f" with {fields}" if fields else "")
        )

    @property
    def actual(self) -> str:
        return self.outcome + (f" ({self.reason})" if self.reason else "")


@dataclass
class Report:
    evaluation: Evaluation
    outcomes: list[CaseOutcome]
    cases: int
    finished: int
    passed: int
    escalations: dict[str, int]
    hallucinations: int
    tool_calls: int
    tool_errors: int
    cost_usd: Decimal
    latencies_ms: list[int]
    awaiting_approval: int

    @property
    def complete(self) -> bool:
        return self.finished == self.cases

    @property
    def accuracy(self) -> float | None:
        return self.passed / self.cases if self.cases else None

    @property
    def escalated(self) -> int:
        return sum(self.escalations.values())

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.cases if self.cases else None

    def escalation_rates(self) -> list[tuple[str, int, float]]:
        return [
            (reason, n, n / self.cases)
            for reason, n in sorted(self.escalations.items(), key=lambda i: (-i[1], i[0]))
        ]

    @property
    def tool_error_rate(self) -> float | None:
        return self.tool_errors / self.tool_calls if self.tool_calls else None

    @property
    def cost_per_case(self) -> Decimal | None:
        return self.cost_usd / self.cases if self.cases else None

    def latency(self, quantile: float) -> int | None:
        """Nearest rank: the smallest latency with at least ``quantile`` of the runs at or below it."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]

    @property
    def latency_p50_ms(self) -> int | None:
        return self.latency(0.5)

    @property
    def latency_p95_ms(self) -> int | None:
        return self.latency(0.95)

    @property
    def latency_max_ms(self) -> int | None:
        return max(self.latencies_ms) if self.latencies_ms else None


def outcome_of(run: Run | None, ticket: EscalationTicket | None) -> tuple[str, str]:
    """(outcome, reason) of a case's run; see the module docstring."""
    if run is None:
        return NOT_STARTED, ""
    if ticket is not None:
        return ESCALATED, ticket.reason
    if run.status in (
        Run.Status.SUCCEEDED,
        Run.Status.FAILED,
        Run.Status.HALTED,
        Run.Status.CANCELLED,
        Run.Status.REJECTED,
    ):
        return run.status, ""
    return PENDING, ""


def problems_of(case: EvaluationCase, outcome: str, reason: str, result: Any) -> list[str]:
    """Why the case did not pass (empty: it passed)."""
    if outcome == PENDING:
        return ["not finished yet"]
    if outcome != case.expected_status:
        return [
            f"expected {case.expected_status}, got {outcome}" + (f" ({reason})" if reason else "")
        ]
    if (
        case.expected_status == Expected.ESCALATED
        and case.expected_reason
        and reason != case.expected_reason
    ):
        return [f"expected an escalation for {case.expected_reason}, got {reason}"]
    problems = []
    for path, want in (case.expected_output or {}).items():
        found, got = value_at(result, tuple(str(path).split(".")))
        if not found:
            problems.append(f"output {path}: expected {want!r}, the result has no such field")
        elif got != want:
            problems.append(f"output {path}: expected {want!r}, got {got!r}")
    return problems


def report(evaluation: Evaluation) -> Report:
    """The report (three queries, whatever the number of cases)."""
    cases = list(evaluation.cases.select_related("run").order_by("name"))
    run_ids = [c.run_id for c in cases if c.run_id]
    tickets: dict[Any, EscalationTicket] = {}
    # A run's latest ticket: an evaluation run escalates at most once (it halts there).
    for ticket in EscalationTicket.objects.filter(run_id__in=run_ids).order_by("created_at"):
        tickets[ticket.run_id] = ticket
    tools = {
        row["run_id"]: row
        for row in ToolCall.objects.filter(run_id__in=run_ids)
        .values("run_id")
        .annotate(n=Count("pk"), errors=Count("pk", filter=Q(status__in=TOOL_ERRORS)))
    }
    outcomes = []
    for case in cases:
        run = case.run
        outcome, reason = outcome_of(run, tickets.get(case.run_id))
        problems = (
            [f"not started: {case.refused}"]
            if outcome == NOT_STARTED
            else problems_of(case, outcome, reason, run.result if run else None)
        )
        counts = tools.get(case.run_id, {})
        outcomes.append(
            CaseOutcome(
                case=case,
                outcome=outcome,
                reason=reason,
                passed=not problems,
                problems=problems,
                cost_usd=run.cost_usd if run else Decimal(0),
                latency_ms=run.latency_ms if run else None,
                tool_calls=counts.get("n", 0),
                tool_errors=counts.get("errors", 0),
            )
        )
    escalations = Counter(o.reason for o in outcomes if o.outcome == ESCALATED)
    return Report(
        evaluation=evaluation,
        outcomes=outcomes,
        cases=len(outcomes),
        finished=sum(o.outcome != PENDING for o in outcomes),
        passed=sum(o.passed for o in outcomes),
        escalations=dict(escalations),
        hallucinations=escalations.get(HALLUCINATION, 0),
        tool_calls=sum(o.tool_calls for o in outcomes),
        tool_errors=sum(o.tool_errors for o in outcomes),
        cost_usd=sum((o.cost_usd for o in outcomes), Decimal(0)),
        latencies_ms=[o.latency_ms for o in outcomes if o.latency_ms is not None],
        awaiting_approval=sum(
            1 for c in cases if c.run and c.run.status == Run.Status.AWAITING_APPROVAL
        ),
    )


@dataclass
class Comparison:
    """Two evaluations of one dataset, case by case (matched by name)."""

    a: Report
    b: Report
    rows: list[tuple[str, CaseOutcome | None, CaseOutcome | None]]

    @property
    def same_dataset(self) -> bool:
        return self.a.evaluation.dataset_digest == self.b.evaluation.dataset_digest

    @property
    def changed(self) -> int:
        """Cases that pass on one side and not on the other."""
        return sum(1 for _, x, y in self.rows if (x and x.passed) != (y and y.passed))


def compare(a: Evaluation, b: Evaluation) -> Comparison:
    ra, rb = report(a), report(b)
    left = {o.case.name: o for o in ra.outcomes}
    right = {o.case.name: o for o in rb.outcomes}
    names = sorted(set(left) | set(right))
    return Comparison(ra, rb, [(n, left.get(n), right.get(n)) for n in names])
