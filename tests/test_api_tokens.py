"""The API tokens page: create (secret shown once), list, revoke; only your own tokens."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

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
    response = client.post(
        reverse("api_token_create"), {"name": "nightly job", "password": settings.DEMO_PASSWORD}
    )
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
    response = client.post(
        reverse("api_token_create"), {"name": name, "password": settings.DEMO_PASSWORD}
    )
    assert response.status_code == 422 and message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_two_active_tokens_cannot_share_a_name_but_a_revoked_name_is_free(client, operator):
    client.force_login(operator)
    client.post(reverse("api_token_create"), {"name": "ci", "password": settings.DEMO_PASSWORD})
    duplicate = client.post(
        reverse("api_token_create"), {"name": "ci", "password": settings.DEMO_PASSWORD}
    )
    assert (
        duplicate.status_code == 422
        and "already have an active token" in duplicate.content.decode()
    )
    ApiToken.objects.get().revoke()
    assert (
        client.post(
            reverse("api_token_create"), {"name": "ci", "password": settings.DEMO_PASSWORD}
        ).status_code
        == 200
    )
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


# --- issue 12 section 8: re-authentication, expiry, revocation on a password change ----------


def _create(client, **form):
    return client.post(reverse("api_token_create"), {"name": "ci", **form})


def test_creating_a_token_asks_for_the_password_again(client, operator):
    client.force_login(operator)
    missing = _create(client)
    assert missing.status_code == 422 and "Type your password" in missing.content.decode()
    wrong = _create(client, password="not-my-password")
    assert wrong.status_code == 422
    assert "That is not your password. No token was created." in wrong.content.decode()
    assert 'name="password"' in wrong.content.decode() and not wrong.context["secret"]
    assert not ApiToken.objects.exists()
    right = _create(client, password=settings.DEMO_PASSWORD)
    assert right.status_code == 200 and right.context["secret"].startswith("cs_")
    assert ApiToken.objects.filter(user=operator).count() == 1


def test_wrong_passwords_on_the_tokens_page_count_towards_the_lockout(client, operator, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client.force_login(operator)
    assert _create(client, password="wrong-1").status_code == 422
    locked = _create(client, password="wrong-2")
    # django-axes' lockout page, as for the sign-in form.
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.content.decode()
    # Locked out: even the right password creates nothing until the lock lifts.
    again = _create(client, password=settings.DEMO_PASSWORD)
    assert again.status_code == 429 and "Too many failed sign-ins" in again.content.decode()
    assert not ApiToken.objects.exists()


def test_a_token_lasts_the_days_chosen_with_a_default_and_a_maximum(client, operator, settings):
    settings.API_TOKEN_DEFAULT_DAYS, settings.API_TOKEN_MAX_DAYS = 90, 365
    client.force_login(operator)
    page = client.get(reverse("api_tokens")).content.decode()
    assert 'name="days"' in page and 'value="90"' in page and 'max="365"' in page
    before = timezone.now()
    assert _create(client, password=settings.DEMO_PASSWORD).status_code == 200
    token = ApiToken.objects.get(name="ci")
    assert (
        before + dt.timedelta(days=90) <= token.expires_at <= timezone.now() + dt.timedelta(days=90)
    )
    assert (
        _create(client, name="weekly", days="7", password=settings.DEMO_PASSWORD).status_code == 200
    )
    weekly = ApiToken.objects.get(name="weekly")
    assert weekly.expires_at - weekly.created_at == pytest.approx(
        dt.timedelta(days=7), abs=dt.timedelta(seconds=5)
    )
    for days in ("366", "0", "-1", "forever"):
        refused = _create(client, name=f"bad {days}", days=days, password=settings.DEMO_PASSWORD)
        assert (
            refused.status_code == 422
            and "A token lasts from 1 to 365 days" in refused.content.decode()
        )
    assert ApiToken.objects.count() == 2
    with pytest.raises(ValueError, match="1 to 365 days"):
        ApiToken.issue(operator, "too long", days=400)


def test_an_expired_token_answers_401_saying_so(client, operator):
    token, secret = ApiToken.issue(operator, "short", days=1)
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/runs", headers=auth).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = client.get("/api/runs", headers=auth)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "token_expired" and "expired on" in error["message"]
    client.force_login(operator)
    row = client.get(reverse("api_tokens")).content.decode()
    assert "expired" in row and "Revoke" in row  # an expired token can still be revoked
    # Its name is held until it is revoked; the page says so.
    held = _create(client, name="short", password=settings.DEMO_PASSWORD)
    assert (
        held.status_code == 422 and "has expired but still holds the name" in held.content.decode()
    )


def _change_with_set_password(user, client):
    user.set_password("a-new-password-42")
    user.save()


def _change_with_unusable_password(user, client):
    user.set_unusable_password()
    user.save()


def _change_with_the_command(user, client):
    import getpass

    from django.core.management import call_command

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(getpass, "getpass", lambda prompt="": "a-new-password-42")
        call_command("changepassword", user.username, stdout=io.StringIO())


def _change_in_the_admin(user, client):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "x-root-pw-1")
    client.force_login(root)
    response = client.post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {
            "password1": "a-new-password-42",
            "password2": "a-new-password-42",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _change_own_in_the_admin(user, client):
    client.force_login(user)
    response = client.post(
        reverse("admin:password_change"),
        {
            "old_password": settings.DEMO_PASSWORD,
            "new_password1": "a-new-password-42",
            "new_password2": "a-new-password-42",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]


@pytest.mark.parametrize(
    "change",
    [
        _change_with_set_password,
        _change_with_unusable_password,
        _change_with_the_command,
        _change_in_the_admin,
        _change_own_in_the_admin,
    ],
)
def test_a_password_change_revokes_every_token_of_the_user(client, manager, operator, change):
    mine = [ApiToken.issue(manager, name) for name in ("laptop", "ci")]
    theirs, their_secret = ApiToken.issue(operator, "someone else's")
    change(manager, client)
    for token, secret in mine:
        token.refresh_from_db()
        assert token.revoked_at is not None and token.revoked_reason == "password_changed"
        response = client.get("/api/runs", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "token_revoked",
            "message": "This API token was revoked because the account's password changed. "
            "Create a new one on the API tokens page.",
        }
    theirs.refresh_from_db()
    assert theirs.is_active  # another user's tokens are untouched
    assert (
        client.get("/api/runs", headers={"Authorization": f"Bearer {their_secret}"}).status_code
        == 200
    )


def test_other_saves_and_a_hash_upgrade_keep_the_tokens(client, operator, settings):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The production hasher (tests use MD5 for speed): a PBKDF2 hash of fewer rounds upgrades.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]

    class OldHasher(PBKDF2PasswordHasher):
        iterations = 1000  # what an older Django used: the next sign-in upgrades the hash

    token, secret = ApiToken.issue(operator, "nightly")
    operator.first_name = "Olive"
    operator.save()
    operator.last_login = timezone.now()
    operator.save(update_fields=["last_login"])  # what signing in saves
    type(operator).objects.filter(pk=operator.pk).update(
        password=OldHasher().encode(settings.DEMO_PASSWORD, OldHasher().salt())
    )
    operator.refresh_from_db()
    assert operator.check_password(settings.DEMO_PASSWORD)  # upgrades and saves the hash
    operator.refresh_from_db()
    assert "$1000$" not in operator.password  # it was upgraded...
    token.refresh_from_db()
    assert token.is_active  # ...and that is not a password change
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
