"""A password change revokes the user's API tokens, whatever changed it.

The tokens page, the admin's password form, `manage.py changepassword`, a password reset and
plain ``user.set_password(...); user.save()`` all end in a save of the user row whose
``password`` differs from the stored one; so does ``set_unusable_password``. That save revokes
every live token of the user, in the same transaction (``revoked_reason`` says why, and the
API answers 401 naming it). One save changes the hash without changing the password: Django's
upgrade of an old hash at sign-in (``check_password``'s setter); it is told apart from a
change because the old hash was due for that upgrade and ``set_password`` was not called
from outside, and it leaves the tokens alone.

Not covered: an UPDATE of the password column in SQL (someone with database write access).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher, is_password_usable
from django.db.models.signals import post_save, pre_save

from api.models import ApiToken


def _due_for_upgrade(encoded: str) -> bool:
    """What django.contrib.auth.hashers.check_password rehashes on a correct sign-in."""
    if not is_password_usable(encoded):
        return False
    try:
        hasher = identify_hasher(encoded)
    except ValueError:
        return False
    preferred = get_hasher("default")
    return hasher.algorithm != preferred.algorithm or preferred.must_update(encoded)


def _password_changed(instance: Any, update_fields: Any) -> bool:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return False
    stored = (
        type(instance)
        ._default_manager.filter(pk=instance.pk)
        .values_list("password", flat=True)
        .first()
    )
    if stored is None or stored == instance.password:
        return False
    hash_upgrade = (
        getattr(instance, "_password", None) is None
        and _due_for_upgrade(stored)
        and is_password_usable(instance.password)
        and not _due_for_upgrade(instance.password)
    )
    return not hash_upgrade


def note_password_change(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    instance._api_tokens_revoke = not raw and _password_changed(instance, update_fields)


def revoke_tokens_on_password_change(
    sender: Any, instance: Any, raw: bool = False, **kwargs: Any
) -> None:
    if getattr(instance, "_api_tokens_revoke", False):
        instance._api_tokens_revoke = False
        ApiToken.revoke_all_of(instance.pk, ApiToken.RevokedBecause.PASSWORD_CHANGED)


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(
        note_password_change, sender=user_model, dispatch_uid="api_tokens_password_pre"
    )
    post_save.connect(
        revoke_tokens_on_password_change, sender=user_model, dispatch_uid="api_tokens_password_post"
    )
