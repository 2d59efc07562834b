"""The API tokens page: create (secret shown once), list, revoke; only your own tokens."""

from __future__ import annotations

import pytest
from django.urls import reverse

from api.models import ApiToken, hash_secret


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(reverse("api_tokens"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.post(reverse("api_token_create"), {"name": "x"}).status_code == 302
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("persona", ["operator", "reviewer", "manager", "auditor", "outsider"])
def test_every_signed_in_user_has_the_page_in_the_nav(client, request, persona):
    client.force_login(request.getfixturevalue(persona))
    body = client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("api_tokens")}"' in body
    page = client.get(reverse("api_tokens"))
    assert page.status_code == 200 and "You have no API tokens yet" in page.content.decode()


def test_create_shows_the_secret_once_and_stores_only_its_hash(client, operator):
    client.force_login(operator)
    response = client.post(reverse("api_token_create"), {"name": "nightly job"})
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret.startswith("cs_") and len(secret) > 40
    assert secret in response.content.decode()
    token = ApiToken.objects.get(user=operator)
    assert token.name == "nightly job" and token.token_hash == hash_secret(secret)
    assert secret not in str(list(ApiToken.objects.values()))  # never stored
    again = client.get(reverse("api_tokens")).content.decode()
    assert secret not in again and token.hint in again and "nightly job" in again
    # And it works.
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


@pytest.mark.parametrize(
    ("name", "message"), [("", "Give the token a name"), ("x" * 101, "under 100 characters")]
)
def test_bad_names_are_refused(client, operator, name, message):
    client.force_login(operator)
    response = client.post(reverse("api_token_create"), {"name": name})
    assert response.status_code == 422 and message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_two_active_tokens_cannot_share_a_name_but_a_revoked_name_is_free(client, operator):
    client.force_login(operator)
    client.post(reverse("api_token_create"), {"name": "ci"})
    duplicate = client.post(reverse("api_token_create"), {"name": "ci"})
    assert (
        duplicate.status_code == 422
        and "already have an active token" in duplicate.content.decode()
    )
    ApiToken.objects.get().revoke()
    assert client.post(reverse("api_token_create"), {"name": "ci"}).status_code == 200
    assert ApiToken.objects.filter(name="ci").count() == 2
    rows = [t.is_active for t in client.get(reverse("api_tokens")).context["tokens"]]
    assert rows == [True, False]  # the active token is listed first


def test_revoke_own_token(client, operator):
    token, secret = ApiToken.issue(operator, "laptop")
    client.force_login(operator)
    response = client.post(reverse("api_token_revoke", args=[token.pk]), follow=True)
    body = response.content.decode()
    assert "revoked: requests using it now get 401" in body
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    again = client.post(reverse("api_token_revoke", args=[token.pk]), follow=True)
    assert "already revoked" in again.content.decode()


def test_someone_elses_token_is_404(client, operator, manager):
    theirs, _ = ApiToken.issue(manager, "manager's")
    client.force_login(operator)
    assert client.post(reverse("api_token_revoke", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active
    assert "manager&#x27;s" not in client.get(reverse("api_tokens")).content.decode()


def test_wrong_methods_are_refused(client, operator):
    token, _ = ApiToken.issue(operator, "x")
    client.force_login(operator)
    assert client.get(reverse("api_token_revoke", args=[token.pk])).status_code == 405
    assert client.get(reverse("api_token_create")).status_code == 405
    assert client.post(reverse("api_tokens")).status_code == 405
    token.refresh_from_db()
    assert token.is_active


def test_admin_can_revoke_but_not_create_tokens(client, operator, django_user_model):
    admin_user = django_user_model.objects.create_superuser(
        "root", "root@example.com", "x-root-pw-1"
    )
    token, secret = ApiToken.issue(operator, "leaver's laptop")
    client.force_login(admin_user)
    assert client.get(reverse("admin:api_apitoken_add")).status_code == 403
    response = client.post(
        reverse("admin:api_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    token.refresh_from_db()
    assert not token.is_active
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
