"""Deterministic demo data that reaches every branch of the demo workflows.

Financial reporting, by date (November 2026):
- weekdays 2..20: normal days that reconcile and comply (20th is the form's default);
- 17th: a $3.50 ledger difference (under the $100 limit: reported, not escalated);
- 18th: a $250 ledger difference (escalates);
- 19th: a large payment to an unverified customer (APRA violation: escalates, never published);
- weekends (21st, 22nd): no transactions (escalates);
- 11th: the warehouse is degraded (``SLOW_DAYS``): every query takes 25 s, so the fetch times out
  (20 s) and its retry is stopped by the step's 30 s latency limit: the run escalates
  (``latency_limit``);
- 13th: the warehouse is reprocessing the day (``BUSY_DAYS``): a query over more than 12 hours
  of it hits the statement timeout, so the full-day fetch times out and the engine retries it
  once with the narrower window (00:00-12:00), then the model fetches the rest;
- every day from the 23rd to today (when the demo is seeded): a normal day, so a manual start
  (which defaults to the previous calendar day) and the daily schedule have data to report.
Each transaction is booked at a time of day derived from its id (the report's time windows).
Payments: PAY-1001 routine; PAY-1002 high value; PAY-1003 high value to a watchlisted
payee (escalates); PAY-1004 small to a watchlisted payee (escalates); PAY-1005 over the
sign-off limit (a reviewer signs off the decision before it is written).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from warehouse.models import ApraRuleSet, LedgerEntry, Payment, Transaction

ACCOUNTS = ["ACC-100", "ACC-101", "ACC-102", "ACC-103", "ACC-104", "ACC-900"]
# Days the warehouse is reprocessing: a query over more hours of the day than this times out.
BUSY_DAYS: dict[dt.date, int] = {dt.date(2026, 11, 13): 12}
# Days the warehouse is degraded: every query takes this many seconds (the latency-limit demo:
# the report's step limit is 30 s, its fetch's timeout 20 s).
SLOW_DAYS: dict[dt.date, float] = {dt.date(2026, 11, 11): 25.0}
# Normal days are generated from here up to the day the demo is seeded.
ROLLING_FROM = dt.date(2026, 11, 23)

COUNTERPARTIES = [
    "Acme Supplies",
    "Harbour Logistics",
    "Koala Energy",
    "Southern Cross Telco",
    "Reef Insurance",
    "Banksia Payroll",
    "Wattle Rentals",
    "Outback Freight",
]


def _day_rows(day: dt.date, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(1, 9 + day.day % 5):
        rows.append(
            {
                "txn_id": f"TX-{day:%Y%m%d}-{i:03d}",
                "account": rng.choice(ACCOUNTS),
                "amount": Decimal(rng.randrange(1500, 950000)) / 100,
                "booked_on": day,
                "status": rng.choices(["completed", "pending"], weights=[5, 1])[0],
                "counterparty": rng.choice(COUNTERPARTIES),
                "description": "demo transaction",
                "customer_verified": True,
            }
        )
    return rows


def booked_at(txn_id: str) -> dt.time:
    """A time of day for a transaction, fixed by its id (no draw from the shared generator)."""
    minute = int(hashlib.sha256(txn_id.encode()).hexdigest()[:8], 16) % (24 * 60)
    return dt.time(minute // 60, minute % 60)


def _recent_days(today: dt.date) -> list[dict]:
    """Normal days after the November set, each from its own generator (the November days'
    figures, which tests rely on, stay as they are)."""
    rows = []
    day = ROLLING_FROM
    while day <= today:
        rows += _day_rows(day, random.Random(day.toordinal()))  # noqa: S311 - demo data
        day += dt.timedelta(days=1)
    return rows


@transaction.atomic
def seed_warehouse() -> dict[str, int]:
    """Upsert the demo rows (one statement per table), restoring any the demo changed."""
    rng = random.Random(20261120)  # noqa: S311 - demo data, not security
    txns: list[Transaction] = []
    ledger: list[LedgerEntry] = []
    day = dt.date(2026, 11, 2)
    while day <= dt.date(2026, 11, 20):
        if day.weekday() < 5:
            rows = _day_rows(day, rng)
            if day.day == 19:
                rows.append(
                    {
                        "txn_id": f"TX-{day:%Y%m%d}-900",
                        "account": "ACC-104",
                        "amount": Decimal("25000.00"),
                        "booked_on": day,
                        "status": "completed",
                        "counterparty": "Unverified Holdings Pty",
                        "description": "large transfer",
                        "customer_verified": False,
                    }
                )
            for row in rows:
                txns.append(Transaction(**row))
                posted = row["amount"]
                if day.day == 17 and row["txn_id"].endswith("-001"):
                    posted += Decimal("3.50")
                if day.day == 18 and row["txn_id"].endswith("-002"):
                    posted -= Decimal("250.00")
                ledger.append(
                    LedgerEntry(
                        txn_id=row["txn_id"], account=row["account"], amount=posted, posted_on=day
                    )
                )
        day += dt.timedelta(days=1)
    for row in _recent_days(timezone.localdate() + dt.timedelta(days=1)):
        txns.append(Transaction(**row))
        ledger.append(
            LedgerEntry(
                txn_id=row["txn_id"],
                account=row["account"],
                amount=row["amount"],
                posted_on=row["booked_on"],
            )
        )
    for txn in txns:
        txn.booked_at = booked_at(txn.txn_id)
    Transaction.objects.bulk_create(
        txns,
        update_conflicts=True,
        unique_fields=["txn_id"],
        update_fields=[
            "account",
            "amount",
            "currency",
            "booked_on",
            "booked_at",
            "status",
            "counterparty",
            "description",
            "customer_verified",
        ],
    )
    LedgerEntry.objects.filter(txn_id__in=[t.txn_id for t in txns]).delete()
    LedgerEntry.objects.bulk_create(ledger)
    payments = [
        Payment(
            payment_id=pid,
            payer_account=payer,
            payee=payee,
            amount=Decimal(amount),
            payee_on_watchlist=watch,
            decision="",
        )
        for pid, payer, payee, amount, watch in (
            ("PAY-1001", "ACC-100", "Acme Supplies", "2500.00", False),
            ("PAY-1002", "ACC-101", "Harbour Logistics", "48000.00", False),
            ("PAY-1003", "ACC-102", "Shadow Imports Ltd", "15000.00", True),
            ("PAY-1004", "ACC-103", "Shadow Imports Ltd", "800.00", True),
            ("PAY-1005", "ACC-104", "Koala Energy", "300000.00", False),
        )
    ]
    Payment.objects.bulk_create(
        payments,
        update_conflicts=True,
        unique_fields=["payment_id"],
        update_fields=["payer_account", "payee", "amount", "payee_on_watchlist", "decision"],
    )
    if not ApraRuleSet.objects.exists():
        ApraRuleSet.objects.create(
            large_amount=Decimal("10000"), note="APRA CPS 234 / ASIC RG 271 as of 2026"
        )
    return {"transactions": len(txns), "ledger_entries": len(ledger), "payments": len(payments)}
