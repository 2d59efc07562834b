"""Redaction (patterns, nested JSON, logs, bad config) and encryption at rest of tool payloads."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from orchestration import privacy
from orchestration.models import ToolCall
from tests.audit_factories import make_run

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+x@example.com.au now", "mail [REDACTED:email] now"),
        ("card 4111 1111 1111 1111", "card [REDACTED:card]"),
        ("card 5555-5555-5555-4444.", "card [REDACTED:card]."),
        ("call +61 2 9876 5432", "call [REDACTED:phone]"),
        ("call (02) 9876 5432 or 555-123-4567", "call [REDACTED:phone] or [REDACTED:phone]"),
        # Not personal data: ids, dates, timestamps, amounts, numbers failing Luhn.
        ("TX-20261120-001 on 2026-11-20", "TX-20261120-001 on 2026-11-20"),
        ("at 2026-11-23T17:13:00.123456+00:00", "at 2026-11-23T17:13:00.123456+00:00"),
        (
            "4111111111111112 and 12 345 678 and 950000.00",
            "4111111111111112 and 12 345 678 and 950000.00",
        ),
    ],
)
def test_builtin_patterns(settings, text, expected):
    settings.REDACT_PATTERNS = ["email", "card", "phone"]
    assert privacy.redact(text) == expected


def test_nested_json_is_redacted_and_other_values_kept(settings):
    settings.REDACT_PATTERNS = ["email", "card"]
    value = {
        "who": ["a@b.io", {"card": 4111111111111111, "n": 12, "ok": True}],
        "amount": "12.50",
        "none": None,
    }
    assert privacy.redact(value) == {
        "who": ["[REDACTED:email]", {"card": "[REDACTED:card]", "n": 12, "ok": True}],
        "amount": "12.50",
        "none": None,
    }
    assert value["who"][0] == "a@b.io"  # a copy, not in place


def test_custom_patterns_and_turning_builtins_off(settings):
    settings.REDACT_PATTERNS = []
    settings.REDACT_CUSTOM_PATTERNS = {"tfn": r"\b\d{3} \d{3} \d{3}\b", "account": r"ACC-9\d\d"}
    assert privacy.redact("tfn 123 456 789, ACC-900, ACC-100, a@b.io") == (
        "tfn [REDACTED:tfn], [REDACTED:account], ACC-100, a@b.io"
    )


@pytest.mark.parametrize(
    ("names", "custom", "message"),
    [
        (["email", "ssn"], {}, "unknown pattern 'ssn'"),
        ([], {"bad": "(unclosed"}, "not a valid regex"),
        ([], ["x"], "must be a JSON object"),
    ],
)
def test_bad_redaction_settings_fail_clearly(names, custom, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        privacy.compile_policy(names, custom)


def test_log_lines_are_redacted(settings):
    settings.REDACT_PATTERNS = ["email"]
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "notify %s about %s", ("ops@example.com", "TX-1"), None
    )
    assert privacy.RedactingFilter().filter(record)
    assert record.getMessage() == "notify [REDACTED:email] about TX-1"


# --- encryption at rest -----------------------------------------------------------------


def _stored(tc: ToolCall) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT input::text, output::text FROM orchestration_toolcall WHERE id = %s", [tc.pk]
        )
        raw_input, raw_output = cursor.fetchone()
    return {"input": json.loads(raw_input), "output": json.loads(raw_output)}


def test_tool_payloads_are_encrypted_at_rest_and_read_back(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    run = make_run(
        operator, tool_output={"transactions": [{"txn_id": "TX-20261120-001", "amount": 10}]}
    )
    tc = ToolCall.objects.get(run=run)
    stored = _stored(tc)
    assert set(stored["input"]) == {privacy.ENVELOPE_KEY}
    assert "TX-20261120-001" not in json.dumps(stored)
    assert tc.output == {"transactions": [{"txn_id": "TX-20261120-001", "amount": 10}]}
    assert ToolCall.objects.values_list("input", flat=True).get(pk=tc.pk) == {"date": "2026-11-20"}
    # .update() seals too.
    # (A long marker: a short one like "s3" turns up by chance in base64 ciphertext.)
    ToolCall.objects.filter(pk=tc.pk).update(output={"secret": "sealed-by-update-marker"})
    assert "sealed-by-update-marker" not in json.dumps(_stored(tc))
    assert ToolCall.objects.get(pk=tc.pk).output == {"secret": "sealed-by-update-marker"}


def test_key_rotation_reads_old_rows_and_writes_with_the_new_key(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    old = ToolCall.objects.get(run=make_run(operator, tool_output={"v": "old"}))
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    assert ToolCall.objects.get(pk=old.pk).output == {"v": "old"}
    new = ToolCall.objects.get(run=make_run(operator, tool_output={"v": "new"}))
    token = _stored(new)["output"][privacy.ENVELOPE_KEY]
    assert Fernet(KEY_NEW.encode()).decrypt(token.encode()) == b'{"v":"new"}'


def test_a_missing_or_wrong_key_reads_as_a_clear_placeholder_and_loses_nothing(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    tc = ToolCall.objects.get(run=make_run(operator, tool_output={"v": 1}))
    sealed = _stored(tc)
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    wrong = ToolCall.objects.get(pk=tc.pk)
    assert "not in PAYLOAD_ENCRYPTION_KEYS" in wrong.output[privacy.UNDECRYPTABLE_KEY]
    with pytest.raises(privacy.PayloadKeyError, match="not in PAYLOAD_ENCRYPTION_KEYS"):
        privacy.require_readable(wrong.output, "the output")
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    missing = ToolCall.objects.get(pk=tc.pk)
    assert "PAYLOAD_ENCRYPTION_KEYS is not set" in missing.output[privacy.UNDECRYPTABLE_KEY]
    # Saving a row read without its key writes the ciphertext back, not the placeholder.
    missing.error = "touched"
    missing.save()
    assert _stored(tc) == sealed
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    assert ToolCall.objects.get(pk=tc.pk).output == {"v": 1}


def test_plaintext_rows_stay_readable_after_encryption_is_turned_on(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    tc = ToolCall.objects.get(run=make_run(operator, tool_output={"v": "plain"}))
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    assert ToolCall.objects.get(pk=tc.pk).output == {"v": "plain"}


def test_a_malformed_key_fails_at_configuration(settings):
    settings.PAYLOAD_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet keys"):
        privacy.fernet()


def test_placeholders_survive_copy_and_pickle():
    sealed = {privacy.ENVELOPE_KEY: "gAAAAABx"}
    for placeholder in (
        privacy.Undecryptable(sealed, "why"),
        privacy.UndecryptableText(privacy.TEXT_ENVELOPE_PREFIX + "gAAAAABx", "why"),
    ):
        for clone in (copy.deepcopy(placeholder), pickle.loads(pickle.dumps(placeholder))):  # noqa: S301
            assert type(clone) is type(placeholder) and clone == placeholder
            assert clone.stored == placeholder.stored
            assert privacy.undecryptable_reason(clone) == placeholder.reason
