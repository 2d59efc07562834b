"""Sealing stored payloads with the current key: legacy plaintext rows and rows of old keys.

``reencrypt_all()`` (``manage.py reencrypt_payloads``) walks every encrypted column
(``orchestration.fields.sealed_fields()``) in primary-key batches and rewrites each value
that is not sealed with the first key of ``PAYLOAD_ENCRYPTION_KEYS``: plaintext written
before encryption was turned on, escaped look-alikes, and values sealed with a retired key.
Then it rewrites the fan-out JSONL artifacts the same way. After it reports no value left
behind, the retired keys can be dropped from the list.

Each row is rewritten with a compare-and-set (``WHERE column = <what was read>``): a row the
engine wrote in the meantime is already sealed with the current key and is left alone. A
value that cannot be decrypted (its key is not in the list, or it was altered) is left
exactly as it is and counted. Running it twice is harmless; it can run while the system
is up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models, transaction

from orchestration import privacy
from orchestration.fanout import artifacts
from orchestration.fanout.models import Fanout
from orchestration.fields import EncryptedJSONField, sealed_fields


@dataclass
class ColumnReport:
    label: str
    rewritten: int = 0
    current: int = 0
    undecryptable: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.label}: {self.rewritten} re-encrypted, {self.current} already current"
        if self.undecryptable:
            shown = ", ".join(str(pk) for pk in self.undecryptable[:10])
            more = "..." if len(self.undecryptable) > 10 else ""
            text += f", {len(self.undecryptable)} cannot be decrypted (ids {shown}{more})"
        return text


def _rows(
    model: type[models.Model], f: models.Field, after: Any, size: int
) -> list[tuple[Any, Any]]:
    table, pk, column = (
        connection.ops.quote_name(n)
        for n in (model._meta.db_table, model._meta.pk.column, f.column)
    )
    value = f"{column}::text" if isinstance(f, EncryptedJSONField) else column
    where = f"WHERE {pk} > %s " if after is not None else ""
    sql = f"SELECT {pk}, {value} FROM {table} {where}ORDER BY {pk} LIMIT %s"  # noqa: S608 - names from the model
    with connection.cursor() as cursor:
        cursor.execute(sql, ([after] if after is not None else []) + [size])
        return cursor.fetchall()


def _write(model: type[models.Model], f: models.Field, pk: Any, old: str, new: Any) -> bool:
    table, pk_col, column = (
        connection.ops.quote_name(n)
        for n in (model._meta.db_table, model._meta.pk.column, f.column)
    )
    if isinstance(f, EncryptedJSONField):
        sql = (
            f"UPDATE {table} SET {column} = %s::jsonb WHERE {pk_col} = %s AND {column} = %s::jsonb"  # noqa: S608
        )
        params = [json.dumps(new), pk, old]
    else:
        sql = f"UPDATE {table} SET {column} = %s WHERE {pk_col} = %s AND {column} = %s"  # noqa: S608
        params = [new, pk, old]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def reencrypt_column(
    model: type[models.Model], f: models.Field, *, dry_run: bool = False, batch_size: int = 500
) -> ColumnReport:
    report = ColumnReport(f"{model._meta.label}.{f.name}")
    is_json = isinstance(f, EncryptedJSONField)
    after = None
    while rows := _rows(model, f, after, batch_size):
        after = rows[-1][0]
        with transaction.atomic():
            for pk, raw in rows:
                if raw is None or raw == "":
                    continue
                stored = json.loads(raw) if is_json else raw
                if privacy.is_sealed_with_current_key(stored):
                    report.current += 1
                    continue
                try:
                    value = (
                        privacy.decrypt_json(stored) if is_json else privacy.decrypt_text(stored)
                    )
                except privacy.PayloadKeyError:
                    report.undecryptable.append(pk)
                    continue
                new = privacy.encrypt_json(value) if is_json else privacy.encrypt_text(value)
                if dry_run or _write(model, f, pk, raw, new):
                    report.rewritten += 1
    return report


def reencrypt_all(*, dry_run: bool = False, batch_size: int = 500) -> list[ColumnReport]:
    """Every encrypted column, then every fan-out artifact; raises when no key is set."""
    if privacy.fernet() is None:
        raise privacy.PayloadKeyError(
            "PAYLOAD_ENCRYPTION_KEYS is not set: there is no key to encrypt with."
        )
    reports = [
        reencrypt_column(model, f, dry_run=dry_run, batch_size=batch_size)
        for model, f in sealed_fields()
    ]
    files = ColumnReport("fan-out artifacts (lines)")
    for run_id in Fanout.objects.order_by("run_id").values_list("run_id", flat=True).iterator():
        if dry_run:
            continue
        rewritten, kept = artifacts.reencrypt(run_id)
        files.rewritten += rewritten
        if kept:
            files.undecryptable.append(run_id)
    reports.append(files)
    return reports
