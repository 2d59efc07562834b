"""Redaction of personal data, and optional encryption at rest of tool payloads.

What is stored raw and what is redacted (docs/operations.md "Privacy and retention" is
the reader's version of this):

- Run input and result, model call contents and tool call inputs and outputs are stored as
  the engine used them: it replays them verbatim to rebuild the conversation after a crash.
  Tool call bodies can be encrypted at rest (``PAYLOAD_ENCRYPTION_KEYS``).
- Audit event payloads are redacted *before* they are hashed and stored, so the audit
  trail itself never holds a matched email, card or phone number.
- Every export and download (runs CSV/JSONL, the whole-run JSON) is redacted on the way out.
- Application log lines go through ``RedactingFilter``.

``redact(value)`` walks nested JSON (dicts, lists, strings; integers that look like card
numbers) and replaces every match with ``[REDACTED:<name>]``. Patterns come from
``REDACT_PATTERNS`` (builtin names) and ``REDACT_CUSTOM_PATTERNS`` (name -> regex).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: re.Pattern[str]
    # A second check on each match (cards must pass Luhn, so ids and amounts do not match).
    accept: Callable[[re.Match[str]], bool] | None = None


BUILTIN_PATTERNS: dict[str, Pattern] = {
    "email": Pattern("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    # 13-19 digits, optionally grouped by spaces or dashes, Luhn-valid.
    "card": Pattern("card", re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"), _is_card),
    # International (+61 2 9876 5432), bracketed ((02) 9876 5432) or grouped (555-123-4567)
    # numbers of at least 9 digits. Not preceded by a letter, digit or dash, so ids like
    # TX-20261120-001 and dates like 2026-11-20 do not match.
    "phone": Pattern(
        "phone",
        re.compile(
            r"(?<![\w-])(?:\+\d{1,3}[ .-]?\d{1,4}|\(\d{1,4}\)|\d{2,4})(?:[ .-]\d{2,4})?[ .-]\d{3,4}[ .-]\d{3,4}(?![\w-])"
        ),
        lambda m: len(re.sub(r"\D", "", m.group(0))) >= 9,
    ),
}


def compile_policy(names: list[str], custom: dict[str, str]) -> tuple[Pattern, ...]:
    """The redaction patterns for these settings; a bad name or regex fails with a clear message."""
    patterns = []
    for name in names:
        if name not in BUILTIN_PATTERNS:
            raise ImproperlyConfigured(
                f"REDACT_PATTERNS: unknown pattern {name!r}; builtin ones are "
                f"{', '.join(sorted(BUILTIN_PATTERNS))} (add others in REDACT_CUSTOM_PATTERNS)."
            )
        patterns.append(BUILTIN_PATTERNS[name])
    if not isinstance(custom, dict):
        raise ImproperlyConfigured(
            'REDACT_CUSTOM_PATTERNS must be a JSON object: {"name": "regex"}.'
        )
    for name, regex in custom.items():
        try:
            patterns.append(Pattern(str(name), re.compile(regex)))
        except (re.error, TypeError) as exc:
            raise ImproperlyConfigured(
                f"REDACT_CUSTOM_PATTERNS[{name!r}] is not a valid regex: {exc}"
            ) from exc
    return tuple(patterns)


@functools.cache
def _policy_for(names: tuple[str, ...], custom: str) -> tuple[Pattern, ...]:
    return compile_policy(list(names), json.loads(custom))


def active_patterns() -> tuple[Pattern, ...]:
    # Cached by the settings' value, so tests that override the settings get a fresh policy.
    return _policy_for(
        tuple(settings.REDACT_PATTERNS), json.dumps(settings.REDACT_CUSTOM_PATTERNS, sort_keys=True)
    )


def redact_text(text: str, patterns: tuple[Pattern, ...] | None = None) -> str:
    for pattern in active_patterns() if patterns is None else patterns:

        def _sub(m: re.Match[str], p: Pattern = pattern) -> str:
            if p.accept is not None and not p.accept(m):
                return m.group(0)
            return f"[REDACTED:{p.name}]"

        text = pattern.regex.sub(_sub, text)
    return text


def redact(value: Any, patterns: tuple[Pattern, ...] | None = None) -> Any:
    """A copy of ``value`` (nested JSON or a string) with every match replaced."""
    patterns = active_patterns() if patterns is None else patterns
    if not patterns:
        return value
    if isinstance(value, str):
        return redact_text(value, patterns)
    if isinstance(value, dict):
        return {k: redact(v, patterns) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, patterns) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
        # A card number stored as a JSON number.
        text = str(value)
        redacted = redact_text(text, patterns)
        return value if redacted == text else redacted
    return value


class RedactingFilter(logging.Filter):
    """Redacts each log line (message and arguments) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as it is
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# --- encryption at rest ---------------------------------------------------------------

ENVELOPE_KEY = "$countersign_encrypted"


class PayloadKeyError(RuntimeError):
    """An encrypted payload cannot be read with the configured keys."""


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "PAYLOAD_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 "
            "bytes each; make one with `python -c 'from cryptography.fernet import Fernet; "
            f"print(Fernet.generate_key().decode())'`): {exc}"
        ) from exc


def fernet() -> Any:
    """The MultiFernet for PAYLOAD_ENCRYPTION_KEYS (first key encrypts, all decrypt), or None."""
    keys = tuple(settings.PAYLOAD_ENCRYPTION_KEYS)
    return _fernet_for(keys) if keys else None


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and ENVELOPE_KEY in value


def encrypt_json(value: Any) -> Any:
    """``value`` sealed in an envelope when encryption is on; unchanged (and None) otherwise."""
    f = fernet()
    if f is None or value is None or is_envelope(value):
        return value
    token = f.encrypt(json.dumps(value, separators=(",", ":")).encode())
    return {ENVELOPE_KEY: token.decode()}


def decrypt_json(value: Any) -> Any:
    if not is_envelope(value):
        return value
    from cryptography.fernet import InvalidToken

    f = fernet()
    if f is None:
        raise PayloadKeyError(
            "This tool payload is encrypted at rest but PAYLOAD_ENCRYPTION_KEYS is not set."
        )
    try:
        return json.loads(f.decrypt(value[ENVELOPE_KEY].encode()))
    except InvalidToken as exc:
        raise PayloadKeyError(
            "This tool payload was encrypted with a key that is not in PAYLOAD_ENCRYPTION_KEYS "
            "(keep retired keys in the list, after the current one, until re-encrypted)."
        ) from exc
