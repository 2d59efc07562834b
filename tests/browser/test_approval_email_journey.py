"""A manager starts a run estimated over the threshold; another manager receives the approval
email (sent by a real worker after the commit, through Django's file mail backend), opens its
link, signs in and approves it. The requesting manager, opening the same link, cannot decide
(four eyes), and learns the decision by email."""

from __future__ import annotations

import email
import re
import time
from email import policy
from pathlib import Path

import pytest

import tests.workflows_for_tests  # noqa: F401 - registers quarter_probe in the live server's process
from orchestration.models import Run
from reviews.models import ApprovalRequest
from tests import alert_factories as f
from tests.browser.conftest import shot, sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def mails(folder: Path) -> list[email.message.EmailMessage]:
    """Every message the file backend wrote (one file per connection, messages separated)."""
    found = []
    for path in sorted(folder.glob("*.log")):
        for chunk in path.read_bytes().split(b"-" * 79):
            if chunk.strip():
                found.append(email.message_from_bytes(chunk.strip() + b"\n", policy=policy.default))
    return found


def wait_for_mail(
    folder: Path, to: str, subject: str, timeout: float = 60
) -> email.message.EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in mails(folder):
            if to in message["To"] and subject in message["Subject"]:
                return message
        time.sleep(0.3)
    raise AssertionError(
        f"no email to {to} about {subject!r}; got {[(m['To'], m['Subject']) for m in mails(folder)]}"
    )


def test_a_manager_approves_from_the_email_link(
    live_server, browser, page, seeded, worker_factory, tmp_path
):
    outbox = tmp_path / "mail"
    worker_factory(
        env={
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(outbox),
            "PUBLIC_BASE_URL": live_server.url,
        }
    )
    second = f.person("manager2", "managers")
    second.set_password("demo-2")
    second.save()

    # A manager starts an expensive run: it waits for another manager.
    sign_in(page, live_server.url, "manager")
    page.goto(f"{live_server.url}/runs/new/quarter_probe/")
    page.fill("#id_quarter", "2026-Q4")
    page.click("#estimate-button")
    page.wait_for_selector("#estimate h2:has-text('Estimate: up to')")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    run = Run.objects.get(workflow_name="quarter_probe")
    req = ApprovalRequest.objects.get(run=run)
    assert run.status == Run.Status.AWAITING_APPROVAL

    # The other manager's email: the calculation and the link.
    message = wait_for_mail(outbox, "manager2@example.com", "Approval needed")
    body = message.get_content()
    assert f"${req.estimate_usd:,.2f}" in message["Subject"] and "manager" in message["Subject"]
    assert (
        "The calculation:" in body and "Upper bound" in body and "approval threshold $20.00" in body
    )
    link = re.search(r"(http://\S+/reviews/approvals/\d+/)", body).group(1)
    assert link == f"{live_server.url}/reviews/approvals/{req.pk}/"
    # The requester is a manager too, but is not asked to approve their own run.
    assert not [
        m
        for m in mails(outbox)
        if "manager@example.com" in m["To"] and "Approval needed" in m["Subject"]
    ]

    # Four eyes: the requester opening the link sees the request and cannot decide it.
    page.goto(link)
    assert "another manager must decide it" in page.inner_text("#approval-refusal")
    assert page.locator("#approval-decide").count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(
        f"{live_server.url}/reviews/approvals/{req.pk}/decide/",
        form={"decision": "approve", "next": "detail"},
        headers={"X-CSRFToken": csrf},
    )
    assert refused.ok and "another manager must decide it" in refused.text()
    assert ApprovalRequest.objects.get(pk=req.pk).status == "pending"
    shot(page, "approval-email-link-requester")

    # The other manager, not signed in, opens the link: sign in first, then the decision page.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    other = context.new_page()
    other.goto(link)
    assert "/login/" in other.url
    other.fill("#id_username", "manager2")
    other.fill("#id_password", "demo-2")
    other.click("button[type=submit]")
    other.wait_for_url(link)
    calculation = other.inner_text("#approval-calculation")
    assert "Upper bound" in calculation and "count_tokens" in calculation
    shot(other, "approval-email-link-decision")
    other.fill("#approval-decide input[name=comment]", "Approved from the email")
    other.click("#approval-decide button:has-text('Approve')")
    other.wait_for_url(link)
    assert "approved" in other.inner_text("#approval-status") and "manager2" in other.inner_text(
        "#approval-status"
    )
    context.close()

    req.refresh_from_db()
    assert req.status == "approved" and req.decided_by.username == "manager2"
    # The requester learns the decision, then the end of the run.
    decided = wait_for_mail(outbox, "manager@example.com", "was approved by manager2")
    assert "Approved from the email" in decided.get_content()
    wait_for(run, (Run.Status.SUCCEEDED,), timeout=90)
    ended = wait_for_mail(outbox, "manager@example.com", "succeeded")
    assert f"/runs/{run.pk}/" in ended.get_content()
