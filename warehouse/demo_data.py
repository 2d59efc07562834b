"""Deterministic demo data that reaches every branch of the demo workflows.

Financial reporting, by date (November 2026):
- weekdays 2..20: normal days that reconcile and comply (20th is the form's default);
- 17th: a $3.50 ledger difference (under the $100 limit: reported, not escalated);
- 18th: a $250 ledger difference (escalates);
- 19th: a large payment to an unverified customer (APRA violation: escalates, never published);
- weekends (21st, 22nd): no transactions (escalates).
Payments: PAY-1001 routine; PAY-1002 high value; PAY-1003 high value to a watchlisted
payee (escalates); PAY-1004 small to a watchlisted payee (escalates); PAY-1005 over the
sign-off limit (needs a reviewer's approval of the result).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from django.db import transaction

from warehouse.models import LedgerEntry, Payment, Transaction

ACCOUNTS = ["ACC-100", "ACC-101", "ACC-102", "ACC-103", "ACC-104", "ACC-900"]
COUNTERPARTIES = ["Acme Supplies", "Harbour Logistics", "Koala Energy", "Southern Cross Telco",
                  "Reef Insurance", "Banksia Payroll", "Wattle Rentals", "Outback Freight"]


def _day_rows(day: dt.date, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(1, 9 + day.day % 5):
        rows.append({
            "txn_id": f"TX-{day:%Y%m%d}-{i:03d}",
            "account": rng.choice(ACCOUNTS),
            "amount": Decimal(rng.randrange(1500, 950000)) / 100,
            "booked_on": day,
            "status": rng.choices(["completed", "pending"], weights=[5, 1])[0],
            "counterparty": rng.choice(COUNTERPARTIES),
            "description": "demo transaction",
            "customer_verified": True,
        })
    return rows


@transaction.atomic
def seed_warehouse() -> dict[str, int]:
    rng = random.Random(20261120)  # noqa: S311 - demo data, not security
    txns = ledger = 0
    day = dt.date(2026, 11, 2)
    while day <= dt.date(2026, 11, 20):
        if day.weekday() < 5:
            rows = _day_rows(day, rng)
            if day.day == 19:
                rows.append({"txn_id": f"TX-{day:%Y%m%d}-900", "account": "ACC-104", "amount": Decimal("25000.00"),
                             "booked_on": day, "status": "completed", "counterparty": "Unverified Holdings Pty",
                             "description": "large transfer", "customer_verified": False})
            for row in rows:
                txn_id = row.pop("txn_id")
                Transaction.objects.update_or_create(txn_id=txn_id, defaults=row)
                posted = row["amount"]
                if day.day == 17 and txn_id.endswith("-001"):
                    posted += Decimal("3.50")
                if day.day == 18 and txn_id.endswith("-002"):
                    posted -= Decimal("250.00")
                LedgerEntry.objects.update_or_create(
                    txn_id=txn_id, defaults={"account": row["account"], "amount": posted, "posted_on": day})
                txns += 1
                ledger += 1
        day += dt.timedelta(days=1)
    payments = [
        ("PAY-1001", "ACC-100", "Acme Supplies", "2500.00", False),
        ("PAY-1002", "ACC-101", "Harbour Logistics", "48000.00", False),
        ("PAY-1003", "ACC-102", "Shadow Imports Ltd", "15000.00", True),
        ("PAY-1004", "ACC-103", "Shadow Imports Ltd", "800.00", True),
        ("PAY-1005", "ACC-104", "Koala Energy", "300000.00", False),
    ]
    for pid, payer, payee, amount, watch in payments:
        Payment.objects.update_or_create(payment_id=pid, defaults={
            "payer_account": payer, "payee": payee, "amount": Decimal(amount), "payee_on_watchlist": watch})
    return {"transactions": txns, "ledger_entries": ledger, "payments": len(payments)}
