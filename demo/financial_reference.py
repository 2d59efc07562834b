"""The daily financial report's reference section: the seed's full orchestration prompt.

The seed: "If you're orchestrating the same workflow repeatedly (e.g. daily financial
reports), cache the prompt and reuse it ... caching can reduce costs by 50-70%." The
report's prompt (tools + system prompt, sent with cache_control by the engine) is the same
every turn and every day; with this reference (the agents with their inputs, outputs and
failure recovery, the rules the validator applies, the reconciliation procedure and worked
days) it is over Opus's 4,096-token minimum, so turns 2.. of a run read it from the cache at
a tenth of the input price instead of paying for it again.

The worked days are built here from fictional transactions (not the warehouse's), with the
same rules as the tools, so what they show is what the tools would answer.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

DISCREPANCY_LIMIT = Decimal("100")
LARGE_AMOUNT = Decimal("10000")

AGENTS = """\
## Agents, as the seed defines them
1. fetch_transactions: retrieve one day's transactions from the data warehouse.
   Input: {date: ISO 8601 date, account_filter: optional account id}
   Output: {transactions: [{id, amount, date, status, account}], record_count: int}
   Failure recovery: retry with account_filter if record_count is 0 for an account you were
   asked about; a day with no transactions at all is escalated by the engine.
2. reconcile_ledger: compare the fetched transactions with the general ledger of that day.
   Input: {transactions: [...exactly as fetched], date}
   Output: {reconciled: bool, differences: [{transaction_id, transaction_amount,
   ledger_amount, discrepancy}], total_discrepancy: decimal}
   Failure recovery: differences totalling over $100 are escalated to manual review.
3. validate_apra: check the transactions against APRA CPS 234 and ASIC RG 271 rules.
   Input: {transactions: [...exactly as fetched], date}
   Output: {compliant: bool, violations: [{rule_id, transaction_id, reason}]}
   Failure recovery: violations are escalated; the report is not published.
4. publish_report: write the day's report to the reporting system.
   Input: {date, record_count, total_amount, total_discrepancy, transactions}
   Output: {published: bool, report_id, date, record_count, total_amount, total_discrepancy}
5. audit_log: log the workflow's steps and results.
   Input: {step_name, input, output, status, timestamp}
   Output: {logged: bool, entry_id}
"""

RULES = """\
## The rules validate_apra applies (so you can explain a violation, never to decide one)
- CPS234-KYC-01: a transaction of 10,000 AUD or more to a customer whose identity is not
  verified. The customer's verification is in the warehouse, not in the transaction row.
- RG271-FAIL-02: a failed transaction of 10,000 AUD or more that has not been remediated.
A transaction may break both rules; each is listed as its own violation. Only the tool
decides compliance: never drop, split or re-date a transaction to make a day compliant (the
engine refuses any input that is not exactly what fetch_transactions returned).

## Reconciliation, step by step
- Every fetched transaction must have ledger postings on the same day that add up to its
  amount. A missing posting is a difference with ledger_amount null; a posting that differs
  is a difference of the absolute gap.
- total_discrepancy is the sum of the differences. Up to $100 the day is published with the
  differences reported; over $100 the engine escalates before anything is published.
- Amounts are AUD with two decimals. Never round a discrepancy away.

## What the answer must say
Every figure in the final answer comes from a recorded tool result: report_id, date,
record_count, total_amount and total_discrepancy from publish_report, audit_entry_id from
audit_log. The engine checks each of them against what the tools returned.
"""


def _transactions(day: str, amounts: list[str], statuses: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"TXN-{day.replace('-', '')}-{n:03d}",
            "amount": float(Decimal(a)),
            "date": day,
            "status": s,
            "account": f"ACC-{100 + (n * 7) % 23:03d}",
        }
        for n, (a, s) in enumerate(zip(amounts, statuses, strict=True), 1)
    ]


def _call(name: str, args: dict[str, Any], result: dict[str, Any]) -> str:
    return (
        f"- {name}({json.dumps(args, separators=(',', ':'))})\n"
        f"  -> {json.dumps(result, separators=(',', ':'))}"
    )


def _day(
    title: str,
    day: str,
    txns: list[dict[str, Any]],
    *,
    ledger_gaps: dict[str, str | None] | None = None,
    violations: list[dict[str, str]] | None = None,
) -> str:
    lines = [f"### {title} ({day})"]
    lines.append(
        _call(
            "fetch_transactions", {"date": day}, {"transactions": txns, "record_count": len(txns)}
        )
    )
    if not txns:
        lines.append("  The engine escalates: no transactions to process. Nothing else is called.")
        return "\n".join(lines)
    refs = [{"id": t["id"], "amount": t["amount"]} for t in txns]
    differences = []
    for t in txns:
        if t["id"] in (ledger_gaps or {}):
            posted = (ledger_gaps or {})[t["id"]]
            amount = Decimal(str(t["amount"]))
            gap = abs(amount - Decimal(posted or "0"))
            differences.append(
                {
                    "transaction_id": t["id"],
                    "transaction_amount": t["amount"],
                    "ledger_amount": float(Decimal(posted)) if posted is not None else None,
                    "discrepancy": float(gap),
                }
            )
    total = sum((Decimal(str(d["discrepancy"])) for d in differences), Decimal(0))
    lines.append(
        _call(
            "reconcile_ledger",
            {"date": day, "transactions": refs},
            {
                "reconciled": not differences,
                "differences": differences,
                "total_discrepancy": float(total),
            },
        )
    )
    if total > DISCREPANCY_LIMIT:
        lines.append(
            f"  The engine escalates: differences of ${total} exceed $100. Nothing is published."
        )
        return "\n".join(lines)
    found = violations or []
    lines.append(
        _call(
            "validate_apra",
            {"date": day, "transactions": refs},
            {"compliant": not found, "violations": found},
        )
    )
    if found:
        lines.append(
            "  The engine escalates (regulatory trigger): the report must not be published."
        )
        return "\n".join(lines)
    amount = float(sum((Decimal(str(t["amount"])) for t in txns), Decimal(0)))
    report = f"RPT-{day}-5E1F9A2C"
    figures = {"record_count": len(txns), "total_amount": amount, "total_discrepancy": float(total)}
    lines.append(
        _call(
            "publish_report",
            {"date": day, **figures, "transactions": refs},
            {"published": True, "report_id": report, "date": day, **figures},
        )
    )
    lines.append(
        _call(
            "audit_log",
            {
                "step_name": "daily_report",
                "status": "published",
                "output": {"report_id": report, **figures},
            },
            {"logged": True, "entry_id": "AL-4471"},
        )
    )
    answer = {
        "status": "success",
        "report_id": report,
        "date": day,
        **figures,
        "audit_entry_id": "AL-4471",
    }
    lines.append(f"  Answer: {json.dumps(answer, separators=(',', ':'))}")
    return "\n".join(lines)


def worked_days() -> str:
    normal = _transactions(
        "2026-10-05",
        [
            "1250.00",
            "89.90",
            "4310.55",
            "15.00",
            "760.20",
            "2200.00",
            "49.99",
            "930.10",
            "118.45",
            "3075.00",
        ],
        ["completed"] * 8 + ["pending", "completed"],
    )
    small_gap = _transactions(
        "2026-10-06",
        ["540.00", "2890.75", "61.30", "1999.99", "305.00", "84.15", "7420.00", "12.50"],
        [
            "completed",
            "completed",
            "failed",
            "completed",
            "pending",
            "completed",
            "completed",
            "completed",
        ],
    )
    big_gap = _transactions(
        "2026-10-07",
        ["1500.00", "275.40", "9800.00", "64.00", "1120.80", "3300.00"],
        ["completed", "completed", "completed", "pending", "completed", "completed"],
    )
    breach = _transactions(
        "2026-10-08",
        ["18500.00", "420.00", "12750.00", "95.60", "2610.00", "58.25", "7340.10"],
        ["completed", "completed", "failed", "completed", "completed", "pending", "completed"],
    )
    return "\n\n".join(
        [
            "## Worked days",
            _day("A normal day: published", "2026-10-05", normal),
            _day(
                "Small ledger differences: published with them",
                "2026-10-06",
                small_gap,
                ledger_gaps={small_gap[2]["id"]: "61.00", small_gap[5]["id"]: "84.00"},
            ),
            _day(
                "A missing ledger posting: escalated",
                "2026-10-07",
                big_gap,
                ledger_gaps={big_gap[2]["id"]: None},
            ),
            _day(
                "APRA violations: escalated, not published",
                "2026-10-08",
                breach,
                violations=[
                    {
                        "rule_id": "CPS234-KYC-01",
                        "transaction_id": breach[0]["id"],
                        "reason": "18500.00 AUD to an unverified customer",
                    },
                    {
                        "rule_id": "RG271-FAIL-02",
                        "transaction_id": breach[2]["id"],
                        "reason": "large failed transaction not remediated",
                    },
                ],
            ),
            _day("A day with no transactions: escalated", "2026-10-11", []),
        ]
    )


REFERENCE: tuple[str, ...] = (AGENTS, RULES, worked_days())
