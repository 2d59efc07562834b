"""The demo workflows' evaluation datasets: one JSONL file per workflow, named after it.

``seed_datasets`` (called by ``seed_demo``) creates each workflow's dataset "demo" from its
file the first time; a dataset that exists is left alone, so a manager's edits survive a
re-seed. The cases are the branches tests/demo/test_demo_workflows.py walks.
"""

from __future__ import annotations

from pathlib import Path

from evaluation import datasets
from evaluation.models import Case, Dataset
from orchestration.workflows import registry

HERE = Path(__file__).resolve().parent
NAME = "demo"


def seed_datasets() -> int:
    """Create the missing demo datasets; returns how many were created. Demo data, like the
    warehouse's: written directly, not audited (a dataset a person edits is). A file with a
    bad line raises: the repository's files are ours, and a bad one is a bug to see."""
    created = 0
    known = {w.name for w in registry.all_workflows()}
    for path in sorted(HERE.glob("*.jsonl")):
        workflow = path.stem
        if (
            workflow not in known
            or Dataset.objects.filter(workflow_name=workflow, name=NAME).exists()
        ):
            continue
        cases, errors = datasets.parse_jsonl(workflow, path.read_text(encoding="utf-8"))
        if errors:
            raise ValueError(f"{path.name}: " + "; ".join(errors))
        dataset = Dataset.objects.create(
            workflow_name=workflow,
            name=NAME,
            description="The demo workflow's branches (shipped with Countersign).",
        )
        Case.objects.bulk_create([Case(dataset=dataset, **fields) for fields in cases])
        created += 1
    return created
