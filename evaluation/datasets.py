"""What a case is, and datasets in and out as JSONL: the one owner of both rules.

One case per line::

    {"name": "pay-1001", "input": {"payment_id": "PAY-1001"},
     "expected": {"status": "succeeded", "output": {"decision": "approve"}}}
    {"name": "pay-1003", "input": {"payment_id": "PAY-1003"},
     "expected": {"status": "escalated", "reason": "regulatory_trigger"}}

``expected.status`` is ``succeeded``, ``escalated`` or ``failed``; ``reason`` (an escalation
reason) only with ``escalated``; ``output`` maps a field of the result, by dotted path, to the
value it must hold. The input must satisfy the workflow's input schema.

An import is all or nothing: a file with any bad line imports no line, and every bad line is
reported with its number and what to fix (the page shows the text again, so nothing typed is
lost). A line whose name exists in the dataset replaces that case. Every change is audited
(``dataset.changed``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from evaluation.models import Case, Dataset, Expected
from orchestration import audit
from orchestration.untrusted import Rejected, check_json, check_text, parse_json, printable
from orchestration.validation import schema_errors
from orchestration.workflows import registry
from reviews.models import EscalationTicket

MAX_CASES = 500  # an evaluation starts one run per case
REASONS = tuple(EscalationTicket.Reason.values)
KEYS = {"name", "input", "expected"}
EXPECTED_KEYS = {"status", "reason", "output"}


class CaseInvalid(ValueError):
    """A case that cannot be saved; ``errors`` maps a field to what was wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line 3: input/payment_id: ..."


def clean_case(workflow_name: str, data: Any) -> dict[str, Any]:
    """The model fields of a case from its JSON form (a JSONL line, or the case form's values
    put into that shape), or ``CaseInvalid`` naming every problem."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        raise CaseInvalid({"case": f"must be a JSON object, not {type(data).__name__}"})
    if unknown := sorted(set(data) - KEYS):
        errors["case"] = (
            f"unknown key(s) {', '.join(map(repr, unknown))}; a case has name, input and expected"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "is required (a short text naming the case)"
    else:
        try:  # NUL, a lone surrogate or an overlong name: refused here, not by Postgres
            check_text(name.strip(), "name", max_length=100)
        except Rejected as exc:
            errors.update(exc.fields)
    value = data.get("input")
    try:
        workflow = registry.get(workflow_name)
    except registry.UnknownWorkflow as exc:
        raise CaseInvalid({"workflow": str(exc)}) from None
    if not isinstance(value, dict):
        errors["input"] = "must be a JSON object (the run's input)"
    else:
        try:
            check_json(value, field="input")
            for problem in schema_errors(value, workflow.input_schema):
                where, _, what = problem.partition(":")
                errors.setdefault(f"input/{where}" if where != "(root)" else "input", what.strip())
        except Rejected as exc:
            errors.update(exc.fields)
    expected = data.get("expected")
    status = reason = ""
    output: Any = {}
    if not isinstance(expected, dict):
        errors["expected"] = 'must be an object such as {"status": "succeeded"}'
    else:
        if unknown := sorted(set(expected) - EXPECTED_KEYS):
            errors["expected"] = (
                f"unknown key(s) {', '.join(map(repr, unknown))}; use status, reason, output"
            )
        status = expected.get("status")
        reason = expected.get("reason") or ""
        output = expected.get("output") or {}
        if status not in Expected.values:
            errors["expected/status"] = (
                f"must be one of {', '.join(Expected.values)}, not {printable(status)!r}"
            )
        if reason and status != Expected.ESCALATED:
            errors["expected/reason"] = "is only for an expected escalation (status escalated)"
        elif reason and reason not in REASONS:
            errors["expected/reason"] = (
                f"{printable(reason)!r} is not an escalation reason; one of {', '.join(REASONS)}"
            )
        if not isinstance(output, dict):
            errors["expected/output"] = (
                'must map result fields to values, e.g. {"decision": "approve"}'
            )
        elif output and status != Expected.SUCCEEDED:
            errors["expected/output"] = "is only checked on a run that succeeded (status succeeded)"
        else:
            try:
                check_json(output, field="expected/output")
            except Rejected as exc:
                errors.update(exc.fields)
    if errors:
        raise CaseInvalid(errors)
    return {
        "name": name.strip(),
        "input": value,
        "expected_status": status,
        "expected_reason": reason,
        "expected_output": output,
    }


def as_json(case: Case | Any) -> dict[str, Any]:
    """A case (or an evaluation's copy of one) in its JSONL form."""
    expected: dict[str, Any] = {"status": case.expected_status}
    if case.expected_reason:
        expected["reason"] = case.expected_reason
    if case.expected_output:
        expected["output"] = case.expected_output
    return {"name": case.name, "input": case.input, "expected": expected}


def export_jsonl(dataset: Dataset) -> str:
    return "".join(
        json.dumps(as_json(c), sort_keys=True, ensure_ascii=False) + "\n"
        for c in dataset.cases.order_by("name")
    )


def digest(cases: Any) -> str:
    """sha256 over the cases' JSONL lines in name order: what an evaluation ran."""
    lines = sorted(json.dumps(as_json(c), sort_keys=True) for c in cases)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parse_jsonl(workflow_name: str, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every line's case fields, and every problem as "line N: field: what"; blank lines skip."""
    cases: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = clean_case(workflow_name, parse_json(line, field="line"))
        except Rejected as exc:
            errors += [f"line {number}: {why}" for why in exc.fields.values()]
            continue
        except CaseInvalid as exc:
            errors += [f"line {number}: {where}: {why}" for where, why in exc.errors.items()]
            continue
        if fields["name"] in seen:
            errors.append(
                f"line {number}: name: {fields['name']!r} is already used on line {seen[fields['name']]}"
            )
            continue
        seen[fields["name"]] = number
        cases.append(fields)
    if not cases and not errors:
        errors.append("the file has no cases: one JSON object per line")
    if len(cases) > MAX_CASES:
        errors.append(f"{len(cases)} cases: a dataset holds at most {MAX_CASES}")
    return cases, errors


def import_jsonl(dataset: Dataset, text: str, user: Any) -> ImportResult:
    """Add or replace the file's cases, all or nothing (see the module docstring)."""
    cases, errors = parse_jsonl(dataset.workflow_name, text)
    if errors:
        return ImportResult(errors=errors)
    result = ImportResult()
    with transaction.atomic():
        existing = set(dataset.cases.values_list("name", flat=True))
        if len(existing | {c["name"] for c in cases}) > MAX_CASES:
            return ImportResult(errors=[f"the dataset would hold more than {MAX_CASES} cases"])
        for fields in cases:
            _, created = Case.objects.update_or_create(
                dataset=dataset, name=fields["name"], defaults=fields
            )
            (result.created if created else result.updated).append(fields["name"])
        _changed(dataset, user, "imported", created=result.created, updated=result.updated)
    return result


def save_case(dataset: Dataset, data: Any, user: Any, *, case: Case | None = None) -> Case:
    """Create a case, or replace ``case`` with ``data``; ``CaseInvalid`` changes nothing."""
    fields = clean_case(dataset.workflow_name, data)
    with transaction.atomic():
        clash = dataset.cases.filter(name=fields["name"]).exclude(pk=getattr(case, "pk", None))
        if clash.exists():
            raise CaseInvalid({"name": f"{fields['name']!r} is already a case of this dataset"})
        if case is None:
            case = Case.objects.create(dataset=dataset, **fields)
            _changed(dataset, user, "case added", case=case.name)
        else:
            for name, value in fields.items():
                setattr(case, name, value)
            case.save()
            _changed(dataset, user, "case edited", case=case.name)
    return case


def delete_case(case: Case, user: Any) -> None:
    with transaction.atomic():
        _changed(case.dataset, user, "case deleted", case=case.name)
        case.delete()


def create_dataset(workflow_name: str, name: str, description: str, user: Any) -> Dataset:
    """A new empty dataset; ``CaseInvalid`` (keyed by field) when the names do not hold."""
    errors: dict[str, str] = {}
    if workflow_name not in {w.name for w in registry.all_workflows()}:
        errors["workflow"] = f"{printable(workflow_name)!r} is not a workflow"
    slug = name.strip()
    if (
        not slug
        or len(slug) > 100
        or not all(ch.isalnum() or ch in "-_" for ch in slug)
        or not slug.isascii()
    ):
        errors["name"] = "use letters, digits, - and _ only (at most 100), e.g. regression"
    elif Dataset.objects.filter(workflow_name=workflow_name, name=slug).exists():
        errors["name"] = f"{workflow_name} already has a dataset named {slug!r}"
    try:
        description = printable(description.strip())[:2000]
    except AttributeError:
        description = ""
    if errors:
        raise CaseInvalid(errors)
    with transaction.atomic():
        dataset = Dataset.objects.create(
            workflow_name=workflow_name,
            name=slug,
            description=description,
            created_by=user if getattr(user, "pk", None) else None,  # or a label: "seed_demo"
        )
        _changed(dataset, user, "created")
    return dataset


def delete_dataset(dataset: Dataset, user: Any) -> None:
    """Its evaluations stay (with their copies of the cases); the dataset and its cases go."""
    with transaction.atomic():
        _changed(dataset, user, "deleted", cases=dataset.cases.count())
        dataset.delete()


def _changed(dataset: Dataset, user: Any, what: str, **details: Any) -> None:
    audit.record(
        "dataset.changed",
        actor=user,
        payload={
            "workflow": dataset.workflow_name,
            "dataset": dataset.name,
            "change": what,
            **details,
        },
    )
