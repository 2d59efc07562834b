"""Per-user API tokens: the secret is shown once, only its hash is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# "cs_" marks a Countersign token in logs and secret scanners; 32 random bytes follow.
PREFIX = "cs_"


def hash_secret(secret: str) -> str:
    # A fast hash is enough: the secret is 256 random bits, not a password to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token that acts as its user in the JSON API.

    active -> revoked (final), or active -> expired at ``expires_at`` (chosen at creation, at
    most API_TOKEN_MAX_DAYS away). The secret exists only in the response that created it;
    ``token_hash`` is what a request's token is looked up by, and ``hint`` (the first
    characters) lets the owner tell tokens apart. Changing the user's password revokes every
    token of theirs (api.signals), as it ends their other sessions.
    """

    class RevokedBecause(models.TextChoices):
        OWNER = "owner", "revoked by its owner"
        ADMIN = "admin", "revoked by an administrator"
        PASSWORD_CHANGED = "password_changed", "revoked because the account's password changed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(
        max_length=100, help_text="What the token is for, e.g. 'nightly batch job'."
    )
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=20, choices=RevokedBecause.choices, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The tokens page: a user's tokens, newest first.
            models.Index(fields=["user", "-created_at"], name="apitoken_user_created"),
        ]
        constraints = [
            # Two live tokens of one user with the same name would be indistinguishable on the page.
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at__isnull=True),
                name="apitoken_unique_live_name",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…, {self.user})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @classmethod
    def issue(cls, user: object, name: str, *, days: int | None = None) -> tuple[ApiToken, str]:
        """Create a token valid for ``days`` (default API_TOKEN_DEFAULT_DAYS, at most
        API_TOKEN_MAX_DAYS); returns the row and the secret, which is never stored."""
        days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
        if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
            raise ValueError(f"A token lasts 1 to {settings.API_TOKEN_MAX_DAYS} days, not {days}.")
        secret = PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            token_hash=hash_secret(secret),
            hint=secret[:10],
            expires_at=timezone.now() + dt.timedelta(days=days),
        )
        return token, secret

    def revoke(self, reason: str = RevokedBecause.OWNER) -> bool:
        """Revoke once; returns False when it was already revoked."""
        updated = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason
        )
        self.refresh_from_db(fields=["revoked_at", "revoked_reason"])
        return bool(updated)

    revoke.alters_data = True  # type: ignore[attr-defined]

    @classmethod
    def revoke_all_of(cls, user_id: int, reason: str) -> int:
        return cls.objects.filter(user_id=user_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason
        )
