"""A router hands a loan enquiry to its lending sub-agent, which pauses for a lending officer;
the router's page says what it waits on, the reviewer resolves the child's ticket, and the
child then the router finish, on a real worker (the child's end re-queues the parent through
the broker)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestration.launch import start_run
from orchestration.models import Run
from tests.browser.conftest import shot, sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_a_paused_sub_agent_is_resolved_and_the_router_finishes(
    live_server, browser, page, seeded, worker
):
    operator = get_user_model().objects.get(username="operator")
    root = start_run(
        "customer_router",
        {"customer_account": "ACC-555", "question": "Could I get a loan?"},
        operator,
    )
    wait_for(root, (Run.Status.AWAITING_SUBAGENT,))
    child = Run.objects.get(parent=root)
    wait_for(child, (Run.Status.AWAITING_REVIEW,))
    ticket = child.tickets.get()

    # The requester's view of the router: what it waits on, and the child's ticket.
    sign_in(page, live_server.url, "operator")
    page.goto(f"{live_server.url}/runs/{root.pk}/")
    banner = page.inner_text("#subagent-waiting")
    assert "Waiting for its sub-agent" in banner and f"ticket #{ticket.pk}" in banner
    assert "awaiting subagent" in page.inner_text(".tile")
    assert "customer_lending" in page.inner_text("#subagents table")
    shot(page, "run-page-waiting-on-sub-agent")
    page.click(f"#subagents table a[href$='/runs/{child.pk}/']")
    assert "Sub-agent of" in page.inner_text("#subagent-parent")
    assert "awaiting review" in page.inner_text(".tile")
    shot(page, "run-page-sub-agent-child")

    # A reviewer resumes the child from its ticket.
    reviewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(reviewer, live_server.url, "reviewer")
    reviewer.goto(f"{live_server.url}/reviews/tickets/{ticket.pk}/")
    reviewer.check("input[value=resume]")
    reviewer.fill("#id_note", "Answer with what is on file: no income yet.")
    reviewer.click("button:has-text('Resolve')")
    reviewer.wait_for_url(f"{live_server.url}/runs/{child.pk}/")
    reviewer.wait_for_selector(".tile .status-succeeded", timeout=60_000)
    reviewer.context.close()

    # The child's end re-queued the router, which finished.
    page.click(f"#subagent-parent a[href$='/runs/{root.pk}/']")
    page.wait_for_selector(".tile .status-succeeded", timeout=60_000)
    assert "succeeded" in page.inner_text("#subagents table")
    split = page.inner_text("#cost-split")
    assert "own $" in split and "sub-agents $" in split
    shot(page, "run-page-sub-agent-tree")
    root.refresh_from_db()
    assert root.status == Run.Status.SUCCEEDED and root.result["routed_to"] == "lending"
    assert root.children_cost_usd == Run.objects.get(pk=child.pk).cost_usd > 0
