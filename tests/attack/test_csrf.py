"""CSRF on every mutation: every route (enumerated, not listed) refuses a POST without a
token, and the ones a persona may use accept it with one. The JSON API is the documented
exception: bearer tokens only, so a session cookie alone mutates nothing there."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.test import Client

from tests.attack.conftest import World
from tests.attack.routes import all_routes
from tests.attack.test_access_matrix import EXPECT, PERSONAS, expected, outcome, values_for

ROUTES = {r.template: r for r in all_routes()}
REFUSED = {403, 404, 405, "login", "admin-login"}


def _client(world: World, persona: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    if persona != "anonymous":
        client.force_login(world.users[persona])
    client.get("/login/" if persona == "anonymous" else "/")  # sets the csrftoken cookie
    return client


def _post(client: Client, path: str, token: str | None) -> Any:
    headers = {"X-CSRFToken": token} if token else {}
    with transaction.atomic():
        response = client.post(path, headers=headers)
        transaction.set_rollback(True)
    return response


def test_every_post_without_a_token_is_refused(world: World) -> None:
    clients = {p: _client(world, p) for p in PERSONAS}
    wrong = []
    for template, route in sorted(ROUTES.items()):
        if template.startswith("api/"):
            continue
        path = route.url(values_for(route, world))
        for persona, client in clients.items():
            response = _post(client, path, token=None)
            if response.status_code != 403 or b"CSRF" not in response.content:
                wrong.append(
                    f"POST {template} as {persona} without a token: {response.status_code}"
                )
    assert not wrong, "\n".join(wrong)


def test_every_post_a_persona_may_make_is_accepted_with_the_token(world: World) -> None:
    """With the token, the answer is exactly the matrix's (so the token is what made the difference)."""
    clients = {p: _client(world, p) for p in PERSONAS}
    accepted, wrong = 0, []
    for template, route in sorted(ROUTES.items()):
        if template.startswith("api/"):
            continue
        path = route.url(values_for(route, world))
        for persona, client in clients.items():
            want = expected(template, "POST", persona)
            if want in REFUSED:
                continue
            got = outcome(_post(client, path, token=client.cookies["csrftoken"].value))
            accepted += 1
            if got != want:
                wrong.append(f"POST {template} as {persona} with the token: {got}, expected {want}")
    assert not wrong, "\n".join(wrong)
    assert accepted >= 15  # every form the app has: claim, resolve, decide, start, tokens, admin...


def test_only_the_token_api_is_exempt_from_csrf() -> None:
    exempt = sorted(t for t, r in ROUTES.items() if getattr(r.callback, "csrf_exempt", False))
    assert exempt and all(t.startswith("api/") for t in exempt), exempt
    assert set(EXPECT) >= set(exempt)


def test_a_session_cookie_alone_cannot_mutate_through_the_api(world: World) -> None:
    from orchestration.models import Run

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["manager"])
    before = Run.objects.count()
    started = client.post(
        "/api/runs",
        data=json.dumps({"workflow": "financial_reporting", "input": {"date": "2026-11-20"}}),
        content_type="application/json",
    )
    assert started.status_code == 401 and started["WWW-Authenticate"].startswith("Bearer")
    assert Run.objects.count() == before
    resolved = client.post(
        f"/api/tickets/{world.ticket.pk}/resolve",
        data=json.dumps({"action": "fail", "comment": "no"}),
        content_type="application/json",
    )
    assert resolved.status_code == 401
    world.ticket.refresh_from_db()
    assert world.ticket.status == "open"
