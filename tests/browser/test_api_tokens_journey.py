"""A user creates an API token in the browser, uses it from a script, and revokes it."""

from __future__ import annotations

import httpx2
import pytest
from django.conf import settings

from api.models import ApiToken
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser]


def test_create_use_and_revoke_a_token(live_server, page, seeded):
    sign_in(page, live_server.url, "operator")
    page.click("text=API tokens")
    assert "You have no API tokens yet" in page.inner_text("main")
    shot(page, "api-tokens-empty")

    page.fill("#id_name", "nightly reporting job")
    page.fill("#id_password", settings.DEMO_PASSWORD)
    page.click("button:has-text('Create token')")
    secret = page.inner_text("#new-token pre.secret").strip()
    assert secret.startswith("cs_")
    assert "shown only this once" in page.inner_text("#new-token")
    shot(page, "api-tokens-created")

    # The secret works from outside the browser, as a script would use it.
    api = f"{live_server.url}/api/runs"
    started = httpx2.post(
        api,
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "browser-1"},
        json={"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}},
    )
    assert started.status_code == 201, started.text
    followed = httpx2.get(
        started.json()["links"]["self"], headers={"Authorization": f"Bearer {secret}"}
    )
    assert followed.status_code == 200 and followed.json()["requested_by"] == "operator"

    page.goto(f"{live_server.url}/account/api-tokens/")
    assert secret not in page.content()  # shown once, never again
    row = page.locator("tr", has_text="nightly reporting job")
    assert "active" in row.inner_text()
    row.locator("button:has-text('Revoke')").click()
    assert "revoked: requests using it now get 401" in page.inner_text(".messages")
    assert "revoked" in page.locator("tr", has_text="nightly reporting job").inner_text()
    shot(page, "api-tokens-revoked")
    assert httpx2.get(api, headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert ApiToken.objects.get().revoked_at is not None
