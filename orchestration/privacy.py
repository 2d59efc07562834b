"""Redaction of personal data, and optional encryption at rest of tool payloads.

What is stored raw and what is redacted (docs/operations.md "Privacy and retention" is
the reader's version of this):

- Run input and result, model call contents and tool call inputs and outputs are stored as
  the engine used them: it replays them verbatim to rebuild the conversation after a crash.
  With ``PAYLOAD_ENCRYPTION_KEYS`` set, every column holding model or tool payloads (model
  call contents, tool call bodies, ticket context snapshots, fan-out job prompts and
  outputs) and the fan-out JSONL artifacts are encrypted at rest (see below).
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

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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
#
# Stored forms of an encrypted column (docs/architecture.md, "Privacy and retention"):
#
#   JSON column                               text column
#   {"$countersign_encrypted": "<token>"}     "$countersign_encrypted:<token>"   sealed
#   {"$countersign_plain": <value>}           "$countersign_plain:<value>"       escaped plaintext
#   anything else                             anything else                      plaintext
#
# With a key every value is sealed, whatever it looks like, so a model or a user cannot
# plant something that reads back as ciphertext. Without a key, a value that looks like
# either wrapper is stored escaped (wrapped once more), and reads back exactly. Plaintext
# written before encryption was turned on is read as it is.

ENVELOPE_KEY = "$countersign_encrypted"
PLAIN_KEY = "$countersign_plain"
TEXT_ENVELOPE_PREFIX = ENVELOPE_KEY + ":"
TEXT_PLAIN_PREFIX = PLAIN_KEY + ":"
UNDECRYPTABLE_KEY = "_undecryptable"


class PayloadKeyError(RuntimeError):
    """An encrypted payload cannot be read with the configured keys."""


class Undecryptable(dict):
    """Read in place of a JSON payload that cannot be decrypted: ``{"_undecryptable": why}``.

    Pages show it as the message it holds; the engine refuses to go on with it
    (``require_readable``). It keeps the stored ciphertext, and saving it writes that back
    unchanged, so a row saved while its key is missing loses nothing.
    """

    def __init__(self, stored: Any, cause: str) -> None:
        self.stored, self.cause = stored, cause
        self.reason = f"This payload cannot be decrypted: {cause}"
        super().__init__({UNDECRYPTABLE_KEY: self.reason})

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle keep it a placeholder
        return (Undecryptable, (self.stored, self.cause))


class UndecryptableText(str):
    """The text-column counterpart of ``Undecryptable``: ``[undecryptable: why]``."""

    stored: str
    cause: str
    reason: str

    def __new__(cls, stored: str, cause: str) -> UndecryptableText:
        reason = f"This text cannot be decrypted: {cause}"
        obj = super().__new__(cls, f"[{reason}]")
        obj.stored, obj.cause, obj.reason = stored, cause, reason
        return obj

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        return (self.stored, self.cause)


def undecryptable_reason(value: Any) -> str:
    """Why ``value`` (a field's value) could not be decrypted, or "" when it was read fine."""
    if isinstance(value, Undecryptable | UndecryptableText):
        return value.reason
    return ""


def require_readable(value: Any, what: str) -> Any:
    """``value``, or PayloadKeyError when it is a placeholder for an undecryptable payload.

    The engine calls this on everything it would send to a model or act upon: a placeholder
    must stop the run with a reason, never be sent as if it were the data.
    """
    if isinstance(value, Undecryptable | UndecryptableText):
        raise PayloadKeyError(f"{what} cannot be decrypted: {value.cause}")
    return value


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> Any:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "PAYLOAD_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 "
            "bytes each; make one with `python -c 'from cryptography.fernet import Fernet; "
            f"print(Fernet.generate_key().decode())'`): {exc}"
        ) from exc


def _keys() -> tuple[str, ...]:
    return tuple(k.strip() for k in settings.PAYLOAD_ENCRYPTION_KEYS if k.strip())


def fernet() -> Any:
    """The MultiFernet for PAYLOAD_ENCRYPTION_KEYS (first key encrypts, all decrypt), or None."""
    keys = _keys()
    return _fernet_for(keys) if keys else None


def _single(value: Any, key: str) -> bool:
    return isinstance(value, dict) and len(value) == 1 and key in value


def is_envelope(value: Any) -> bool:
    """Whether a *stored* JSON value is sealed (only meaningful on what the column holds)."""
    return _single(value, ENVELOPE_KEY)


def _decrypt_token(token: Any) -> bytes:
    f = fernet()
    if f is None:
        raise PayloadKeyError("it is encrypted at rest but PAYLOAD_ENCRYPTION_KEYS is not set.")
    if not isinstance(token, str):
        raise PayloadKeyError("the stored envelope is malformed (its token is not a string).")
    try:
        return f.decrypt(token.encode())
    except InvalidToken as exc:
        raise PayloadKeyError(
            "it was encrypted with a key that is not in PAYLOAD_ENCRYPTION_KEYS, or it was "
            "altered (keep retired keys in the list, after the current one, until "
            "`manage.py reencrypt_payloads` has run)."
        ) from exc


def encrypt_json(value: Any) -> Any:
    """What to store for ``value`` in a JSON column (see the table above); None stays None."""
    if value is None:
        return None
    if isinstance(value, Undecryptable):
        return value.stored  # written back exactly as it was read
    f = fernet()
    if f is not None:
        token = f.encrypt(json.dumps(value, separators=(",", ":")).encode())
        return {ENVELOPE_KEY: token.decode()}
    if _single(value, ENVELOPE_KEY) or _single(value, PLAIN_KEY):
        return {PLAIN_KEY: value}
    return value


def decrypt_json(stored: Any) -> Any:
    """The value a JSON column holds; PayloadKeyError when it cannot be decrypted."""
    if _single(stored, PLAIN_KEY):
        return stored[PLAIN_KEY]
    if not is_envelope(stored):
        return stored
    try:
        return json.loads(_decrypt_token(stored[ENVELOPE_KEY]))
    except ValueError as exc:  # decrypted, but not JSON: a corrupted row
        raise PayloadKeyError(f"it decrypts to something that is not JSON ({exc}).") from exc


def read_json(stored: Any) -> Any:
    """``decrypt_json``, with a placeholder instead of an exception (what fields return)."""
    try:
        return decrypt_json(stored)
    except PayloadKeyError as exc:
        return Undecryptable(stored, str(exc))


def encrypt_text(value: Any) -> Any:
    """What to store for ``value`` in a text column; None and "" are stored as they are."""
    if value is None or value == "":
        return value
    if isinstance(value, UndecryptableText):
        return value.stored
    value = str(value)
    f = fernet()
    if f is not None:
        return TEXT_ENVELOPE_PREFIX + f.encrypt(value.encode()).decode()
    if value.startswith((TEXT_ENVELOPE_PREFIX, TEXT_PLAIN_PREFIX)):
        return TEXT_PLAIN_PREFIX + value
    return value


def decrypt_text(stored: Any) -> Any:
    if not isinstance(stored, str):
        return stored
    if stored.startswith(TEXT_PLAIN_PREFIX):
        return stored[len(TEXT_PLAIN_PREFIX) :]
    if not stored.startswith(TEXT_ENVELOPE_PREFIX):
        return stored
    try:
        return _decrypt_token(stored[len(TEXT_ENVELOPE_PREFIX) :]).decode()
    except UnicodeDecodeError as exc:
        raise PayloadKeyError("it decrypts to something that is not text.") from exc


def read_text(stored: Any) -> Any:
    try:
        return decrypt_text(stored)
    except PayloadKeyError as exc:
        return UndecryptableText(stored, str(exc))


def is_sealed_with_current_key(stored: Any) -> bool:
    """Whether a stored JSON or text value is already sealed with the first key."""
    if fernet() is None:
        return False
    if is_envelope(stored):
        token = stored[ENVELOPE_KEY]
    elif isinstance(stored, str) and stored.startswith(TEXT_ENVELOPE_PREFIX):
        token = stored[len(TEXT_ENVELOPE_PREFIX) :]
    else:
        return False
    try:
        Fernet(_keys()[0].encode()).decrypt(token.encode())
    except (InvalidToken, TypeError, ValueError, AttributeError):
        return False
    return True
