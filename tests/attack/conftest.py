"""The objects every attack test points at: one of each thing a URL can name.

`world` holds a run of the operator's paused on an open ticket, a run waiting for a
manager's approval, a fan-out job, and an API token, so every URL kwarg in the resolver can
be filled with a real row (see urls.py in this package).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

PERSONAS = ("anonymous", "operator", "reviewer", "manager", "auditor", "outsider")


@dataclass
class World:
    run: Any  # the operator's run, paused with an open ticket
    ticket: Any
    waiting: Any  # the operator's run awaiting approval
    approval: Any
    job: Any  # a fan-out job of the operator's
    token: Any  # the operator's API token (row)
    secret: str  # its secret
    users: dict[str, Any]


@pytest.fixture
def no_enqueue(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    enqueued: list[str] = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(str(run_id)),
    )
    return enqueued


@pytest.fixture
def world(operator, reviewer, manager, auditor, outsider, settings, no_enqueue) -> World:
    from axes.models import AccessAttempt, AccessFailureLog

    from api.models import ApiToken
    from costs.models import Budget
    from orchestration import lifecycle
    from orchestration.fanout.models import Fanout, FanoutJob
    from orchestration.launch import start_run
    from orchestration.models import ModelCall, Run, ToolCall
    from reviews.escalation import escalate
    from warehouse.models import AuditLogEntry, PaymentDecision, PublishedReport

    run = start_run("financial_reporting", {"date": "2026-11-20"}, operator)
    lifecycle.transition(run.pk, Run.Status.RUNNING)
    ticket = escalate(run.pk, "ambiguity", "The model was unsure which ledger to use.")

    # The run is also a fan-out with one job, so the job grid and job page have rows.
    Fanout.objects.create(run=run, total=1, failure_threshold=Decimal("0.2"), per_run_concurrency=5)
    job = FanoutJob.objects.create(
        run=run, job_id="job-1", seq=0, prompt="Check one thing.", schema={"type": "object"}
    )
    # One row in every admin table, so each change/delete/history page has an object.
    call = ModelCall.objects.create(
        run=run, turn=0, attempt=1, role="orchestrator", model="claude-sonnet-4-6"
    )
    ToolCall.objects.create(
        run=run,
        model_call=call,
        tool_use_id="toolu_matrix",
        name="fetch_transactions",
        input={"date": "2026-11-20"},
    )
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("100.00"))
    PublishedReport.objects.create(
        report_id="RPT-M", idempotency_key="matrix-r", report_date="2026-11-20", payload={}
    )
    AuditLogEntry.objects.create(idempotency_key="matrix-a", step_name="audit_log", payload={})
    PaymentDecision.objects.create(
        idempotency_key="matrix-p", payment_id="PAY-1001", validator="standard", decision="approve"
    )
    # Alerts and notifications: one row each (alerts.*, notifications.*).
    from django.utils import timezone

    from alerts.models import Alert, AlertThresholds, UserPause
    from notifications.models import WebhookDelivery, WebhookEndpoint, WorkflowRecipient

    AlertThresholds.objects.get_or_create(workflow_name="")
    alert = Alert.objects.create(
        rule="retry_burst",
        key=f"retry_burst:user:{outsider.pk}",
        user=outsider,
        title="matrix",
        detail="matrix",
        numbers={"count": 100},
        opened_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    UserPause.objects.create(user=outsider, alert=alert, reason="matrix")
    endpoint = WebhookEndpoint.objects.create(
        name="matrix", url="http://127.0.0.1:9/", secret="matrix"
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event="run.ended", body="{}")
    WorkflowRecipient.objects.create(workflow_name="financial_reporting", email="ops@example.com")
    # An evaluation of the demo dataset (evaluation.*), so its report page has a row.
    from evaluation.models import Dataset, Evaluation, EvaluationCase

    evaluation = Evaluation.objects.create(
        workflow_name="financial_reporting",
        version=run.workflow_version,
        dataset_name="demo",
        dataset=Dataset.objects.get(workflow_name="financial_reporting", name="demo"),
        dataset_digest="matrix",
        requested_by=manager,
        backend="simulated",
    )
    EvaluationCase.objects.create(
        evaluation=evaluation, name="matrix", input=run.input, expected_status="succeeded"
    )

    # A schedule and one of its ticks (schedules.*).
    from schedules import service as schedules_service
    from schedules.models import ScheduledTick

    schedule = schedules_service.create(
        manager,
        {
            "name": "matrix",
            "workflow_name": "financial_reporting",
            "cron": "0 6 * * *",
            "timezone": "UTC",
            "input_template": {"date": "{{yesterday}}"},
            "owner": operator,
        },
    )
    ScheduledTick.objects.create(
        schedule=schedule, schedule_name=schedule.name, due_at=timezone.now()
    )

    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    waiting = start_run("financial_reporting", {"date": "2026-11-21"}, operator)
    approval = waiting.approvals.get()
    seen = {
        "username": "matrix-intruder",
        "ip_address": "192.0.2.7",
        "user_agent": "curl",
        "http_accept": "*/*",
        "path_info": "/login/",
    }
    AccessAttempt.objects.create(**seen, get_data="", post_data="", failures_since_start=1)
    AccessFailureLog.objects.create(**seen)
    token, secret = ApiToken.issue(operator, "matrix")
    users = {
        "operator": operator,
        "reviewer": reviewer,
        "manager": manager,
        "auditor": auditor,
        "outsider": outsider,
    }
    return World(run, ticket, waiting, approval, job, token, secret, users)


def client_for(persona: str, world: World, **kwargs: Any) -> Any:
    from django.test import Client

    client = Client(**kwargs)
    if persona != "anonymous":
        client.force_login(world.users[persona])
    return client
