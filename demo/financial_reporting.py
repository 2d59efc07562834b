"""The seed's daily financial-reporting workflow (an Australian fintech under APRA rules).

fetch_transactions -> reconcile_ledger -> validate_apra -> publish_report -> audit_log.
Enforced in code: no transactions escalates; ledger differences over $100 escalate; APRA
violations escalate; audit_log is required before the run may finish; the figures in the
answer must come from recorded tool calls.

Preconditions (checked against the recorded tool calls, never the model's claims):
reconcile_ledger and validate_apra must be given exactly the transactions fetch_transactions
returned for that day (dropping the one that breaks a rule is refused); publish_report needs
a compliant validate_apra of the same day and publishes only the fetched and reconciled
figures of the requested date; audit_log may say "published" only after a publication.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from decimal import Decimal
from typing import Any

from demo.financial_reference import REFERENCE
from demo.playbook import answer, call, failed_last, result
from orchestration.workflows.declaration import (
    Constraints,
    EscalationRule,
    Example,
    Expectation,
    Precondition,
    Record,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn
from warehouse.models import AuditLogEntry, LedgerEntry, PublishedReport, Transaction

ALLOWED_STATUSES = ("pending", "completed", "failed")
DISCREPANCY_LIMIT = Decimal("100")
LARGE_AMOUNT = Decimal("10000")

TXN_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "amount": {"type": "number"},
        "date": {"type": "string", "format": "date"},
        "status": {"type": "string"},
        "account": {"type": "string"},
    },
    "required": ["id", "amount", "date", "status", "account"],
}
TXN_REF = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["id", "amount"],
}


# --- tools ------------------------------------------------------------------------------


def fetch_transactions(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    qs = Transaction.objects.filter(booked_on=dt.date.fromisoformat(args["date"]))
    if args.get("account_filter"):
        qs = qs.filter(account=args["account_filter"])
    rows = [
        {"id": t.txn_id, "amount": float(t.amount), "date": t.booked_on.isoformat(),
         "status": t.status, "account": t.account}
        for t in qs
    ]
    return {"transactions": rows, "record_count": len(rows)}


def _check_transactions(output: dict[str, Any], ctx: ToolContext) -> list[str]:
    problems = []
    txns = output["transactions"]
    if output["record_count"] != len(txns):
        problems.append(f"record_count {output['record_count']} != {len(txns)} transactions returned")
    ids = [t["id"] for t in txns]
    if len(ids) != len(set(ids)):
        problems.append("duplicate transaction ids")
    for t in txns:
        if t["amount"] <= 0:
            problems.append(f"{t['id']}: amount {t['amount']} is not positive")
        if t["status"] not in ALLOWED_STATUSES:
            problems.append(f"{t['id']}: status {t['status']!r} not one of {ALLOWED_STATUSES}")
        if t["date"] != ctx.tool_input["date"]:
            problems.append(f"{t['id']}: dated {t['date']}, outside the requested {ctx.tool_input['date']}")
    return problems


def reconcile_ledger(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    day = dt.date.fromisoformat(args["date"])
    ledger: dict[str, Decimal] = defaultdict(Decimal)
    for entry in LedgerEntry.objects.filter(posted_on=day):
        ledger[entry.txn_id] += entry.amount
    differences = []
    for txn in args["transactions"]:
        amount = Decimal(str(txn["amount"]))
        posted = ledger.get(txn["id"])
        if posted is None or posted != amount:
            differences.append({
                "transaction_id": txn["id"],
                "transaction_amount": float(amount),
                "ledger_amount": float(posted) if posted is not None else None,
                "discrepancy": float(abs(amount - (posted or Decimal(0)))),
            })
    total = sum((Decimal(str(d["discrepancy"])) for d in differences), Decimal(0))
    return {"reconciled": not differences, "differences": differences, "total_discrepancy": float(total)}


def validate_apra(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ids = [t["id"] for t in args["transactions"]]
    violations = []
    for t in Transaction.objects.filter(txn_id__in=ids):
        if t.amount >= LARGE_AMOUNT and not t.customer_verified:
            violations.append({"rule_id": "CPS234-KYC-01", "transaction_id": t.txn_id,
                               "reason": f"{t.amount} AUD to an unverified customer"})
        if t.status == "failed" and t.amount >= LARGE_AMOUNT:
            violations.append({"rule_id": "RG271-FAIL-02", "transaction_id": t.txn_id,
                               "reason": "large failed transaction not remediated"})
    return {"compliant": not violations, "violations": violations}


# --- preconditions: read the recorded state (ctx.record), never the model's claims ------


def fetched_day(record: Record, date: str) -> list[dict[str, Any]] | None:
    """The transactions fetch_transactions last returned for ``date`` (None if never fetched)."""
    found = [c.output["transactions"] for c in record.of("fetch_transactions") if c.input.get("date") == date]
    return found[-1] if found else None


def _same(refs: list[dict[str, Any]], txns: list[dict[str, Any]]) -> bool:
    return sorted((str(t["id"]), float(t["amount"])) for t in refs) == sorted(
        (str(t["id"]), float(t["amount"])) for t in txns)


def _covers_the_fetched_day(args: dict[str, Any], ctx: ToolContext) -> str | None:
    """Checks and sign-off rules read these outputs: their input must be the whole fetched day."""
    txns = fetched_day(ctx.record, args["date"])
    if txns is None:
        return f"fetch_transactions has not run for {args['date']}: fetch the day first"
    if not _same(args["transactions"], txns):
        return (f"the transactions given ({len(args['transactions'])}) are not exactly the {len(txns)} "
                f"fetch_transactions returned for {args['date']}: pass every fetched id with its amount")
    return None


def _latest_for_day(record: Record, name: str, date: str) -> dict[str, Any] | None:
    found = [c.output for c in record.of(name) if c.input.get("date") == date]
    return found[-1] if found else None


def _compliant_day(args: dict[str, Any], ctx: ToolContext) -> str | None:
    apra = _latest_for_day(ctx.record, "validate_apra", args["date"])
    if apra is None:
        return f"validate_apra has not passed for {args['date']}"
    if not apra.get("compliant"):
        return "the APRA validation found violations; a non-compliant report is never published"
    return None


def _publishes_the_recorded_figures(args: dict[str, Any], ctx: ToolContext) -> str | None:
    if args["date"] != ctx.run_input["date"]:
        return f"this run reports on {ctx.run_input['date']}, not {args['date']}"
    txns = fetched_day(ctx.record, args["date"]) or []
    recon = _latest_for_day(ctx.record, "reconcile_ledger", args["date"])
    if recon is None:
        return f"reconcile_ledger has not run for {args['date']}"
    expected = {"record_count": len(txns), "total_amount": round(sum(t["amount"] for t in txns), 2),
                "total_discrepancy": recon["total_discrepancy"]}
    wrong = [f"{k} {args[k]!r} (recorded: {v!r})" for k, v in expected.items() if abs(args[k] - v) > 0.005]
    return ("publish the recorded figures: " + ", ".join(wrong)) if wrong else None


def _logs_what_happened(args: dict[str, Any], ctx: ToolContext) -> str | None:
    if args["status"] == "published" and not ctx.record.of("publish_report"):
        return "nothing was published in this run: the status may not say 'published'"
    report_id = (args.get("details") or {}).get("report_id")
    if report_id is not None and report_id not in ctx.record.values("publish_report", "report_id"):
        return f"report {report_id!r} was not published by this run"
    return None


def publish_report(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    digest = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8].upper()
    report, _ = PublishedReport.objects.get_or_create(
        idempotency_key=ctx.idempotency_key,
        defaults={"report_id": f"RPT-{args['date']}-{digest}", "report_date": args["date"], "payload": args},
    )
    # What was published (the answer's figures must come from here).
    figures = {k: report.payload[k] for k in ("record_count", "total_amount", "total_discrepancy")}
    return {"published": True, "report_id": report.report_id, "date": str(report.report_date), **figures}


def audit_log(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    entry, _ = AuditLogEntry.objects.get_or_create(
        idempotency_key=ctx.idempotency_key,
        defaults={"step_name": args["step_name"], "payload": args},
    )
    return {"logged": True, "entry_id": f"AL-{entry.pk}"}


TOOLS = (
    Tool(
        name="fetch_transactions",
        description="Retrieve one day's transactions from the data warehouse.",
        input_schema={
            "type": "object",
            "properties": {
                "date": {"type": "string", "format": "date"},
                "account_filter": {"type": "string"},
            },
            "required": ["date"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {"transactions": {"type": "array", "items": TXN_SCHEMA}, "record_count": {"type": "integer"}},
            "required": ["transactions", "record_count"],
        },
        handler=fetch_transactions,
        version="2",
        timeout_seconds=20,
        invoke_when="first, for the report date",
        recovery="if record_count is 0 the engine escalates; do not invent data",
        validators=(_check_transactions,),
    ),
    Tool(
        name="reconcile_ledger",
        description="Compare the day's transactions against the general ledger.",
        input_schema={
            "type": "object",
            "properties": {"date": {"type": "string", "format": "date"}, "transactions": {"type": "array", "items": TXN_REF}},
            "required": ["date", "transactions"],
        },
        output_schema={
            "type": "object",
            "properties": {
                "reconciled": {"type": "boolean"},
                "differences": {"type": "array", "items": {"type": "object", "properties": {
                    "transaction_id": {"type": "string"}, "transaction_amount": {"type": "number"},
                    "ledger_amount": {"type": ["number", "null"]}, "discrepancy": {"type": "number"}},
                    "required": ["transaction_id", "discrepancy"]}},
                "total_discrepancy": {"type": "number", "minimum": 0},
            },
            "required": ["reconciled", "differences", "total_discrepancy"],
        },
        handler=reconcile_ledger,
        preconditions=(Precondition("covers_the_fetched_day", _covers_the_fetched_day),),
        invoke_when="after fetch_transactions",
        recovery="differences over $100 escalate to a reviewer",
    ),
    Tool(
        name="validate_apra",
        description="Check the transactions against APRA CPS 234 / ASIC RG 271 rules.",
        input_schema={
            "type": "object",
            "properties": {"date": {"type": "string", "format": "date"}, "transactions": {"type": "array", "items": TXN_REF}},
            "required": ["date", "transactions"],
        },
        output_schema={
            "type": "object",
            "properties": {
                "compliant": {"type": "boolean"},
                "violations": {"type": "array", "items": {"type": "object", "properties": {
                    "rule_id": {"type": "string"}, "transaction_id": {"type": "string"}, "reason": {"type": "string"}},
                    "required": ["rule_id", "transaction_id", "reason"]}},
            },
            "required": ["compliant", "violations"],
        },
        handler=validate_apra,
        preconditions=(Precondition("covers_the_fetched_day", _covers_the_fetched_day),),
        invoke_when="after reconcile_ledger",
        recovery="violations escalate; never publish a non-compliant report",
        validators=(lambda out, ctx: ["compliant is true but violations are listed"] if out["compliant"] and out["violations"] else [],),
    ),
    Tool(
        name="publish_report",
        description="Write the day's report to the reporting system.",
        input_schema={
            "type": "object",
            "properties": {
                "date": {"type": "string", "format": "date"},
                "record_count": {"type": "integer", "minimum": 0},
                "total_amount": {"type": "number"},
                "total_discrepancy": {"type": "number"},
            },
            "required": ["date", "record_count", "total_amount", "total_discrepancy"],
        },
        output_schema={
            "type": "object",
            "properties": {"published": {"type": "boolean"}, "report_id": {"type": "string"},
                           "date": {"type": "string", "format": "date"}, "record_count": {"type": "integer"},
                           "total_amount": {"type": "number"}, "total_discrepancy": {"type": "number"}},
            "required": ["published", "report_id", "date", "record_count", "total_amount", "total_discrepancy"],
        },
        handler=publish_report,
        version="2",
        invoke_when="only after validate_apra is compliant",
        side_effect=True,
        preconditions=(
            Precondition("compliant_validation_of_the_day", _compliant_day),
            Precondition("publishes_the_recorded_figures", _publishes_the_recorded_figures),
        ),
    ),
    Tool(
        name="audit_log",
        description="Record a workflow step in the customer's audit system.",
        input_schema={
            "type": "object",
            "properties": {
                "step_name": {"type": "string"},
                "status": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["step_name", "status"],
        },
        output_schema={
            "type": "object",
            "properties": {"logged": {"type": "boolean", "const": True}, "entry_id": {"type": "string"}},
            "required": ["logged", "entry_id"],
        },
        handler=audit_log,
        invoke_when="always, after publishing, with all results",
        side_effect=True,
        preconditions=(Precondition("logs_what_happened", _logs_what_happened),),
    ),
)


# --- the simulated orchestrator ----------------------------------------------------------


def policy(conv: Conversation) -> Turn:
    """Plays Opus on this workflow: one tool per turn, in the seed's order."""
    date = conv.input["date"]
    fetch = result(conv, "fetch_transactions")
    if fetch is None:
        args = {"date": date}
        if conv.input.get("account_filter"):
            args["account_filter"] = conv.input["account_filter"]
        return call("fetch_transactions", args, f"Fetching the transactions booked on {date}.")
    refs = [{"id": t["id"], "amount": t["amount"]} for t in fetch["transactions"]]
    recon = result(conv, "reconcile_ledger")
    if recon is None:
        return call("reconcile_ledger", {"date": date, "transactions": refs},
                    f"{fetch['record_count']} transactions found; reconciling against the ledger.")
    apra = result(conv, "validate_apra")
    if apra is None:
        return call("validate_apra", {"date": date, "transactions": refs}, "Reconciled. Checking APRA rules.")
    total = round(sum(t["amount"] for t in fetch["transactions"]), 2)
    published = result(conv, "publish_report")
    if published is None and not failed_last(conv, "publish_report"):
        return call("publish_report", {
            "date": date, "record_count": fetch["record_count"], "total_amount": total,
            "total_discrepancy": recon["total_discrepancy"],
        }, "Compliant. Publishing the report.")
    logged = result(conv, "audit_log")
    if logged is None:
        return call("audit_log", {
            "step_name": "daily_financial_report",
            "status": "published" if published else "not_published",
            "details": {"date": date, "record_count": fetch["record_count"],
                        "report_id": (published or {}).get("report_id"),
                        "total_discrepancy": recon["total_discrepancy"], "compliant": apra["compliant"]},
        }, "Logging the workflow to the audit system.")
    return answer({
        "status": "success",
        "report_id": published["report_id"] if published else None,
        "date": date,
        "record_count": fetch["record_count"],
        "total_amount": total,
        "total_discrepancy": recon["total_discrepancy"],
        "audit_entry_id": logged["entry_id"],
    })


WORKFLOW = register(Workflow(
    name="financial_reporting",
    title="Daily financial report",
    version="4",
    domain="financial reporting at an Australian fintech (APRA CPS 234, ASIC RG 271)",
    role="Each day, fetch the transactions, reconcile them with the general ledger, validate them "
         "against APRA rules, publish the report and log every step.",
    description="The seed's daily reporting pipeline: fetch, reconcile, validate, publish, log.",
    input_schema={
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date", "description": "Report date (YYYY-MM-DD)"},
            "account_filter": {"type": "string", "description": "Only this account (optional)", "maxLength": 40},
        },
        "required": ["date"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {
            "status": {"const": "success"},
            "report_id": {"type": "string", "x-from-tool": "publish_report.report_id"},
            "date": {"type": "string", "format": "date", "x-from-tool": "publish_report.date"},
            "record_count": {"type": "integer", "minimum": 0, "x-from-tool": "publish_report.record_count"},
            "total_amount": {"type": "number", "x-from-tool": "publish_report.total_amount"},
            "total_discrepancy": {"type": "number", "x-from-tool": "publish_report.total_discrepancy"},
            "audit_entry_id": {"type": "string", "x-from-tool": "audit_log.entry_id"},
        },
        "required": ["status", "report_id", "date", "record_count", "total_amount", "audit_entry_id"],
        "additionalProperties": False,
    },
    tools=TOOLS,
    rules=(
        "Always call fetch_transactions first, for the date in the request.",
        "If record_count is 0, stop: the engine escalates (no transactions to process).",
        "Call reconcile_ledger with the fetched transactions; differences over $100 escalate.",
        "Call validate_apra; if it is not compliant, do not publish: the engine escalates.",
        "Call publish_report only after a compliant validation, with the fetched and reconciled figures.",
        "Always call audit_log with all results before answering.",
        "Do not skip steps. Do not invent tool results.",
    ),
    constraints=Constraints(max_attempts_per_tool=3, max_steps=10, max_cost_usd=Decimal("2.00"),
                            tool_timeout_seconds=30, run_timeout_seconds=600, max_output_tokens=2048),
    examples=(
        Example("A normal day", {"date": "2026-11-20"}, (
            "fetch_transactions(date) -> 8 transactions", "reconcile_ledger -> reconciled",
            "validate_apra -> compliant", "publish_report -> report_id", "audit_log(all results)",
            "answer with report_id")),
        Example("A non-compliant day", {"date": "2026-11-19"}, (
            "fetch_transactions -> 13 transactions", "reconcile_ledger -> reconciled",
            "validate_apra -> violations: the engine escalates; do not publish")),
    ),
    escalation_rules=(
        EscalationRule("fetch_transactions", "validation_failed",
                       "No transactions for the report date (record_count is 0).",
                       lambda out, ctx: out["record_count"] == 0),
        EscalationRule("reconcile_ledger", "validation_failed",
                       "Ledger differences exceed $100.",
                       lambda out, ctx: Decimal(str(out["total_discrepancy"])) > DISCREPANCY_LIMIT),
        EscalationRule("validate_apra", "regulatory_trigger",
                       "APRA validation found violations: the report must not be published.",
                       lambda out, ctx: not out["compliant"]),
    ),
    required_tools=("audit_log",),
    expectation=Expectation(turns=6, output_tokens_per_turn=120, tool_result_tokens=600, final_output_tokens=150),
    input_example={"date": "2026-11-20"},
    policy=policy,
    # The seed's full orchestration prompt, cached (demo/financial_reference.py); a daily report
    # nobody waits on may run through Message Batches.
    reference=REFERENCE,
    batch=True,
))
