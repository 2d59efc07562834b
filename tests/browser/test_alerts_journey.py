"""A retry burst opens alerts and pauses its user; a manager reads what triggered them on the
alerts page, acknowledges one, resolves it, and lifts the pause."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts import raising
from alerts.models import Alert, UserPause
from orchestration.models import AuditEvent
from tests import alert_factories as f
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


def test_manager_handles_alerts_and_lifts_a_pause(live_server, page, seeded):
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.get(username="operator")
    now = f.now()
    burst = [now - dt.timedelta(seconds=9) + i * dt.timedelta(seconds=0.09) for i in range(100)]
    f.retries(f.run(operator, "payment_approval"), burst, tools=20)
    opened = raising.evaluate_and_raise(now)
    assert {a.rule for a in opened} == {"retry_burst"} and len(opened) == 2

    sign_in(page, live_server.url, "manager")
    assert "2" in page.inner_text("nav a:has-text('Alerts')")
    page.click("nav >> text=Alerts")
    user_alert = Alert.objects.get(key=f"retry_burst:user:{operator.pk}")
    row = page.locator(f"#alert-{user_alert.pk}")
    text = row.inner_text()
    assert (
        "retry burst" in text
        and "100 retries" in text
        and "count" in text
        and "window_seconds" in text
    )
    assert "operator" in page.inner_text("#paused-users")
    shot(page, "alerts-page")

    row.locator("input[name=note]").fill("Looking at the script")
    row.locator("button:has-text('Acknowledge')").click()
    page.wait_for_selector(f"#alert-{user_alert.pk}.alert-acknowledged")
    assert "Acknowledged" in page.inner_text(".messages")
    page.locator(f"#alert-{user_alert.pk} button:has-text('Resolve')").click()
    page.wait_for_selector(".messages >> text=Resolved")
    assert page.locator(f"#alert-table #alert-{user_alert.pk}").count() == 0

    page.locator("#paused-users input[name=note]").fill("The script is fixed")
    page.click("#paused-users button:has-text('Lift the pause')")
    page.wait_for_selector(".messages >> text=operator may start runs again")
    assert page.locator("#paused-users").count() == 0
    shot(page, "alerts-page-after")

    assert UserPause.objects.get(user=operator).lifted_by.username == "manager"
    kinds = set(AuditEvent.objects.values_list("kind", flat=True))
    assert {
        "alert.opened",
        "alert.acknowledged",
        "alert.resolved",
        "user.paused",
        "user.pause_lifted",
    } <= kinds
