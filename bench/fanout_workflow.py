"""The benchmark's fan-out workflow: N echo jobs that all pass, so the run is pure engine.

Imported by bench/fanout.py and, through COUNTERSIGN_EXTRA_WORKFLOWS, by its workers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from demo.playbook import fanout_roles
from orchestration.workflows.declaration import Constraints, FanoutSpec, JobResult, Workflow
from orchestration.workflows.registry import register

SCHEMA = {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}


def items(run_input: dict[str, Any]) -> list[str]:
    return [f"job-{i:04d}" for i in range(run_input["n"])]


def decompose(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"job_id": key, "prompt": f"Return value {key}."} for key in data["items"]]


def specialist(data: dict[str, Any]) -> dict[str, Any]:
    return {"value": data["job_id"]}


def validator(data: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": data["job_id"], "status": "PASS", "reason": "ok"}


def aggregate(data: dict[str, Any]) -> dict[str, Any]:
    return {"passed": len(data["results"]), "failed": len(data["failed"])}


def expected_aggregate(results: list[JobResult]) -> dict[str, Any]:
    return {"passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results)}


WORKFLOW = register(
    Workflow(
        name="bench_fanout",
        title="Benchmark fan-out",
        version="1",
        domain="benchmarks",
        role="Echo.",
        input_schema={
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 1000}},
            "required": ["n"],
        },
        output_schema={
            "type": "object",
            "properties": {"passed": {"type": "integer"}, "failed": {"type": "integer"}},
            "required": ["passed", "failed"],
        },
        tools=(),
        rules=("Echo.",),
        approval_threshold_usd=Decimal("1000"),
        constraints=Constraints(
            max_steps=4,
            run_timeout_seconds=3600,
            max_cost_usd=Decimal("500"),
            max_tokens_per_run=100_000_000,
            max_output_tokens=64_000,
        ),
        fanout=FanoutSpec(
            specialist_instructions="Echo.",
            validator_instructions="Check the echo.",
            job_output_schema=SCHEMA,
            items=items,
            expected_aggregate=expected_aggregate,
            max_jobs=1000,
            expected_jobs=lambda i: i["n"],
        ),
        policy=fanout_roles(
            decompose=decompose, specialist=specialist, validator=validator, aggregate=aggregate
        ),
    )
)
