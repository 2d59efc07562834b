"""Model fields: a JSONField whose values are encrypted at rest when a key is configured."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import expressions

from orchestration.privacy import decrypt_json, encrypt_json


class EncryptedJSONField(models.JSONField):
    """A JSONField sealed with Fernet when ``PAYLOAD_ENCRYPTION_KEYS`` is set.

    The stored JSONB is ``{"$countersign_encrypted": "<fernet token>"}``; reading decrypts
    with any configured key (MultiFernet), so keys can be rotated. Values written while no
    key was configured stay plaintext and are read as they are. Only writes are sealed
    (``get_db_prep_save``): lookups on the contents of an encrypted field cannot match, and
    the full-text index sees only the envelope, so encrypted bodies are not searchable.
    """

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, expressions.BaseExpression):
            value = encrypt_json(value)
        return super().get_db_prep_save(value, connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return decrypt_json(super().from_db_value(value, expression, connection))
