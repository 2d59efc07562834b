"""Hostile characters in what people typed are shown as markers, not obeyed by the page: a
right-to-left override in an approval comment and in a schedule name (issue 17 audit)."""

from __future__ import annotations

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers quarter_probe in the live server's process
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


def test_a_bidi_override_in_a_comment_and_a_name_is_shown_as_its_marker(
    live_server, page, seeded, operator, manager, monkeypatch
):
    from orchestration.launch import start_run
    from reviews import approvals
    from schedules import service

    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    approvals.decide(
        waiting.approvals.get().pk, manager, approve=False, comment="too dear \u202etxt.exe"
    )
    service.create(
        manager,
        {
            "name": "Nightly \u202eevil",
            "workflow_name": "probe",
            "cron": "0 6 * * *",
            "timezone": "UTC",
            "input_template": {"mode": "ok"},
            "owner": operator,
            "enabled": False,
        },
    )
    sign_in(page, live_server.url, "manager")
    page.goto(f"{live_server.url}/reviews/approvals/?status=rejected")
    text = page.inner_text("main")
    assert "too dear \\u202etxt.exe" in text and "\u202e" not in text
    shot(page, "hostile-approval-comment")
    page.goto(f"{live_server.url}/schedules/")
    text = page.inner_text("main")
    assert "Nightly \\u202eevil" in text and "\u202e" not in text
    shot(page, "hostile-schedule-name")
