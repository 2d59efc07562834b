"""WorkflowVersion snapshots: the checkpoint recorded before every run."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import IntegrityError, transaction

from orchestration.models import WorkflowVersion
from orchestration.workflows.declaration import Workflow
from orchestration.workflows.prompt import render_system_prompt


def snapshot_fields(workflow: Workflow) -> dict[str, Any]:
    constraints = workflow.constraints.as_dict()
    if workflow.fanout is not None:
        constraints["fanout"] = workflow.fanout.as_dict()
    if workflow.turn_roles is not None:  # which role plays each turn: part of what was approved
        constraints["turn_roles"] = workflow.turn_roles.as_dict()
    return {
        "name": workflow.name,
        "version": workflow.version,
        "title": workflow.title,
        "system_prompt": render_system_prompt(workflow),
        "tools": [{**t.definition(), "version": t.version} for t in workflow.tools],
        "input_schema": workflow.input_schema,
        "output_schema": workflow.output_schema,
        "model_roles": dict(workflow.models),
        "constraints": constraints,
    }


def content_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def snapshot(workflow: Workflow) -> WorkflowVersion:
    """Return the WorkflowVersion for the workflow as declared now, creating it if new."""
    fields = snapshot_fields(workflow)
    digest = content_hash(fields)
    existing = WorkflowVersion.objects.filter(content_hash=digest).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return WorkflowVersion.objects.create(content_hash=digest, **fields)
    except IntegrityError:  # another process recorded the same snapshot first
        return WorkflowVersion.objects.get(content_hash=digest)


def api_tools(version: WorkflowVersion) -> list[dict[str, Any]]:
    """Tool definitions as the API takes them (our version field stripped)."""
    return [{k: v for k, v in tool.items() if k != "version"} for tool in version.tools]
