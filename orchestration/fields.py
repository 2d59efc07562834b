"""Model fields whose values are encrypted at rest when a key is configured.

Every column holding model or tool payloads uses one of these (``sealed_fields()`` lists
them for ``manage.py reencrypt_payloads``). The stored forms are described in
``orchestration.privacy``; in short:

- with ``PAYLOAD_ENCRYPTION_KEYS`` set, every value written is sealed with the first key
  (Fernet, via MultiFernet), whatever it looks like, so a value that merely looks like an
  envelope is encrypted like any other and reads back exactly;
- without a key, values are stored as they are, except one that looks like a wrapper,
  which is escaped;
- reading opens sealed values with any configured key, returns plaintext (legacy rows,
  written before encryption was on) as it is, and returns a placeholder
  (``privacy.Undecryptable`` / ``UndecryptableText``) for a value it cannot decrypt, so a
  page never fails on it; saving a placeholder writes the original ciphertext back.

Only writes are sealed (``get_db_prep_save``, so ``.save()``, ``.create()``,
``bulk_create()`` and ``.update()`` all seal): lookups on the contents of an encrypted
column cannot match, and a full-text index over one sees only the envelope.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models
from django.db.models import expressions

from orchestration import storable
from orchestration.privacy import (
    ENVELOPE_KEY,
    TEXT_ENVELOPE_PREFIX,
    UndecryptableText,
    encrypt_json,
    encrypt_text,
    read_json,
    read_text,
)


class EncryptedJSONField(models.JSONField):
    """A JSONField sealed with Fernet when ``PAYLOAD_ENCRYPTION_KEYS`` is set."""

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, expressions.BaseExpression):
            # What Postgres cannot hold (NUL, lone surrogates, NaN...) in its reversible
            # stored form (orchestration.storable), then sealed.
            value = encrypt_json(storable.encode(value))
        return super().get_db_prep_save(value, connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        escaped = storable.may_hold_escapes(value) or (
            isinstance(value, str) and ENVELOPE_KEY in value
        )
        read = read_json(super().from_db_value(value, expression, connection))
        return storable.decode(read) if escaped else read


class EncryptedTextField(models.TextField):
    """A TextField sealed with Fernet when ``PAYLOAD_ENCRYPTION_KEYS`` is set ("" stays "")."""

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, expressions.BaseExpression):
            if isinstance(value, str) and not isinstance(value, UndecryptableText):
                value = storable.encode_text(value)
            value = encrypt_text(value)
        return super().get_db_prep_save(value, connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        read = read_text(value)
        if isinstance(value, str) and value.startswith(
            (storable.TEXT_PREFIX, TEXT_ENVELOPE_PREFIX)
        ):
            return storable.decode_text(read)
        return read


def sealed_fields() -> list[tuple[type[models.Model], models.Field]]:
    """Every (model, field) stored encrypted, across all installed apps."""
    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedJSONField | EncryptedTextField)
    ]
