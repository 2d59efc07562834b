"""Who a workflow's own notifications go to: the one API to read them.

``for_workflow(name, event)`` is the union of the addresses the workflow declares in code
(``Workflow.recipients``: alerts and the daily digest, and the ``Workflow.recipient_events``
it names, e.g. the finance team told of every ticket and run end of the daily report) and the active ``WorkflowRecipient``
rows of the admin subscribed to ``event`` (a row with no events gets alerts and the digest).
The daily digest (operations) calls ``for_workflow(name, "digest")``.
"""

from __future__ import annotations

import contextlib

from notifications.models import EVENT_NAMES, WorkflowRecipient
from orchestration.workflows import registry

# What a recipient gets when they subscribed to nothing in particular.
DEFAULT_EVENTS = frozenset({"alert.opened", "digest"})


def for_workflow(workflow_name: str, event: str) -> list[str]:
    if event not in EVENT_NAMES:
        raise ValueError(
            f"Unknown event {event!r}; the events are: {', '.join(sorted(EVENT_NAMES))}."
        )
    found: set[str] = set()
    # A workflow removed from the code may still have admin rows.
    with contextlib.suppress(registry.UnknownWorkflow):
        workflow = registry.get(workflow_name)
        if event in DEFAULT_EVENTS or event in workflow.recipient_events:
            found.update(workflow.recipients)
    for row in WorkflowRecipient.objects.filter(workflow_name=workflow_name, active=True):
        if event in (row.events or DEFAULT_EVENTS):
            found.add(row.email)
    return sorted(found)
