"""Schedules through the JSON API (issue 16 §5): every change goes through schedules.service
(one validation, managers only, audited); every answer matches the generated document."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from orchestration.models import AuditEvent
from schedules.models import Schedule
from tests.api_helpers import assert_documented, call, token_for

BODY = {
    "name": "Nightly report",
    "workflow": "financial_reporting",
    "cron": "0 6 * * *",
    "timezone": "Australia/Sydney",
    "input_template": {"date": "{{yesterday}}"},
    "owner": "operator",
}


def kinds() -> list[str]:
    return list(
        AuditEvent.objects.filter(kind__startswith="schedule.")
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def test_a_manager_creates_changes_pauses_resumes_and_deletes_a_schedule(client, manager, operator):
    token = token_for(manager)
    created = call(client, "POST", "/api/schedules", token, BODY)
    body = assert_documented(created, "/api/schedules", "post")
    assert created.status_code == 201 and body["owner"] == "operator" and body["next_at"]
    schedule = Schedule.objects.get(pk=body["id"])
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
    listed = call(client, "GET", "/api/schedules", token)
    assert [x["id"] for x in assert_documented(listed, "/api/schedules", "get")["results"]] == [
        schedule.pk
    ]
    one = f"/api/schedules/{schedule.pk}"
    changed = call(client, "POST", one, token, {**BODY, "cron": "30 7 * * 1-5"})
    assert assert_documented(changed, "/api/schedules/{schedule_id}", "post")["cron"] == (
        "30 7 * * 1-5"
    )
    paused = call(client, "POST", f"{one}/pause", token)
    body = assert_documented(paused, "/api/schedules/{schedule_id}/pause", "post")
    assert body["enabled"] is False and body["next_at"] is None
    resumed = call(client, "POST", f"{one}/resume", token)
    assert assert_documented(resumed, "/api/schedules/{schedule_id}/resume", "post")["enabled"]
    deleted = call(client, "POST", f"{one}/delete", token)
    assert deleted.status_code == 204 and not Schedule.objects.exists()
    assert kinds() == [
        "schedule.created",
        "schedule.changed",
        "schedule.paused",
        "schedule.resumed",
        "schedule.deleted",
    ]
    gone = call(client, "POST", f"{one}/pause", token)
    assert gone.status_code == 404
    assert_documented(gone, "/api/schedules/{schedule_id}/pause", "post")


def test_an_invalid_schedule_is_422_naming_each_field_and_saves_nothing(client, manager):
    response = call(
        client,
        "POST",
        "/api/schedules",
        token_for(manager),
        {**BODY, "cron": "61 * * * *", "timezone": "Mars/Base", "owner": "reviewer"},
    )
    assert response.status_code == 422
    fields = assert_documented(response, "/api/schedules", "post")["error"]["fields"]
    assert {"cron", "timezone", "owner"} <= set(fields)
    assert "may not start runs" in fields["owner"]
    assert not Schedule.objects.exists() and kinds() == []


def test_only_managers_see_and_change_schedules(client, manager, operator, reviewer, auditor):
    schedule_id = call(client, "POST", "/api/schedules", token_for(manager), BODY).json()["id"]
    for who in (operator, reviewer, auditor):
        token = token_for(who)
        for method, path, body in (
            ("GET", "/api/schedules", None),
            ("POST", "/api/schedules", {**BODY, "name": "mine"}),
            ("POST", f"/api/schedules/{schedule_id}/pause", None),
            ("POST", f"/api/schedules/{schedule_id}/delete", None),
        ):
            response = call(client, method, path, token, body)
            assert response.status_code == 403, (who, path)
            assert response.json()["error"]["code"] == "forbidden"
    schedule = Schedule.objects.get()
    assert schedule.enabled and kinds() == ["schedule.created"]
