"""XSS payloads in run inputs, tool outputs, ticket comments and fan-out jobs render as text
(checked in headless Chromium), and the main pages raise no CSP violation.

Proof that nothing ran: a dialog hook, a window flag every payload would set, no element
the payloads would create, a `securitypolicyviolation` listener (an unescaped inline script
would be blocked by the CSP and reported there) and the console.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from orchestration.launch import start_run
from tests.attack import injection_workflow  # noqa: F401 - registers injection_probe
from tests.browser.conftest import shot, sign_in

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<script>window.__pwned=1;alert('script')</script>",
    "<img src=x id=xss-img onerror=\"window.__pwned=1;alert('img')\">",
    '"><svg id=xss-svg onload="window.__pwned=1">',
    "javascript:window.__pwned=1;alert('js-url')",
    "' onmouseover='window.__pwned=1' x='",
    "</textarea><script>window.__pwned=1</script>",
    "</script><script>window.__pwned=1</script>",
    "{{ 7|add:7 }}{% csrf_token %}",
]
XSS = " ".join(PAYLOADS)

WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _watch(page: Any) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"dialogs": [], "console": [], "errors": []}
    page.add_init_script(WATCH)
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on(
        "console",
        lambda m: seen["console"].append(m.text) if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def _assert_clean(page: Any, seen: dict[str, list[str]], where: str) -> None:
    assert page.evaluate("window.__pwned") is None, f"a payload ran on {where}"
    assert page.locator("#xss-img, #xss-svg").count() == 0, (
        f"payload markup became elements on {where}"
    )
    assert page.evaluate("window.__csp") == [], (
        f"CSP violations on {where}: {page.evaluate('window.__csp')}"
    )
    assert not seen["dialogs"], f"dialogs on {where}: {seen['dialogs']}"
    assert not [c for c in seen["console"] if "Content Security Policy" in c], seen["console"]
    assert not seen["errors"], f"script errors on {where}: {seen['errors']}"


@pytest.fixture
def hostile(seeded, drive, settings):
    """A paused run and a failed one whose input, tool outputs, ticket comment and fan-out
    job carry every payload."""
    from orchestration.fanout.models import Fanout, FanoutJob
    from reviews import resolutions

    operator = get_user_model().objects.get(username="operator")
    reviewer = get_user_model().objects.get(username="reviewer")
    value = {"request": XSS, "placement": "tool", "obey": "comply", "large": True}
    paused = drive(start_run("injection_probe", value, operator))
    ticket = paused.tickets.get()
    failed = drive(start_run("injection_probe", value, operator))
    closed = failed.tickets.get()
    resolutions.resolve(closed.pk, reviewer, "fail", comment=XSS)
    Fanout.objects.create(
        run=paused, total=1, failure_threshold=Decimal("0.2"), per_run_concurrency=5
    )
    job = FanoutJob.objects.create(
        run=paused,
        job_id="xss-job",
        seq=0,
        prompt=XSS,
        schema={"type": "object"},
        output_text=XSS,
        output={"text": XSS},
        reason=XSS,
        status="failed",
    )
    return paused, ticket, closed, job


def test_payloads_render_as_text_everywhere(live_server, page, hostile):
    paused, ticket, closed, job = hostile
    seen = _watch(page)
    sign_in(page, live_server.url, "manager")
    pages = {
        "run-page": f"/runs/{paused.pk}/",
        "runs-list": f"/runs/?q={'script'}",
        "ticket-page": f"/reviews/tickets/{ticket.pk}/",
        "resolved-ticket": f"/reviews/tickets/{closed.pk}/",
        "ticket-queue": "/reviews/tickets/",
        "job-grid": f"/runs/{paused.pk}/jobs/",
        "job-page": f"/runs/{paused.pk}/jobs/{job.pk}/",
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        _assert_clean(page, seen, name)
        text = page.inner_text("body")
        if name not in ("runs-list", "ticket-queue"):
            assert "<script>window.__pwned=1" in text, f"the payload is not shown as text on {name}"
        shot(page, f"xss-{name}")
    # The run page's input field and the ticket's textarea keep the payload as their value.
    page.goto(f"{live_server.url}/reviews/tickets/{ticket.pk}/")
    page.fill("#id_comment", XSS)
    page.check("input[value=correct]")
    page.fill("#id_corrected", XSS)  # not JSON: refused, and the form comes back with the values
    page.click("button:has-text('Resolve')")
    page.wait_for_selector("#resolve .banner.error")
    shot(page, "xss-ticket-form-refused")
    _assert_clean(page, seen, "ticket form re-rendered")
    assert page.input_value("#id_comment") == XSS and page.input_value("#id_corrected") == XSS


def test_main_pages_raise_no_csp_violation(live_server, page, hostile):
    paused, ticket, *_ = hostile
    seen = _watch(page)
    sign_in(page, live_server.url, "manager")
    for path in [
        "/",
        "/runs/",
        f"/runs/{paused.pk}/",
        "/reviews/tickets/",
        f"/reviews/tickets/{ticket.pk}/",
        "/reviews/approvals/",
        "/costs/",
        f"/runs/{paused.pk}/jobs/",
        "/account/api-tokens/",
        "/runs/new/",
        "/runs/new/financial_reporting/",
        "/admin/",
    ]:
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        _assert_clean(page, seen, path)
    # The costs chart and the bars are drawn by static JS: the chart canvas got a size.
    page.goto(live_server.url + "/costs/")
    assert page.evaluate("document.getElementById('spend-chart').width") > 0
    page.goto(f"{live_server.url}/runs/{paused.pk}/")
    widths = page.eval_on_selector_all(
        ".fanout-progress .bar", "els => els.map(e => e.style.width)"
    )
    assert widths == ["100%"], widths
    shot(page, "csp-run-page-progress")
    # An HTMX swap works under the CSP: the estimate preview on the start form.
    page.goto(live_server.url + "/runs/new/financial_reporting/")
    page.click("#estimate-button")
    page.wait_for_selector("#estimate h2:has-text('Estimate')")
    _assert_clean(page, seen, "start form")


def test_a_locked_out_user_is_told_why_and_for_how_long(live_server, page, seeded, settings):
    seen = _watch(page)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
    assert "Too many failed sign-ins" in page.inner_text("#locked-out")
    assert "0:15:00" in page.inner_text("#locked-out")
    _assert_clean(page, seen, "lockout page")
    shot(page, "login-locked-out")
