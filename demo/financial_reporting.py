"""The seed's daily financial-reporting workflow (an Australian fintech under APRA rules).

fetch_transactions -> reconcile_ledger -> validate_apra -> publish_report -> audit_log.
Enforced in code: no transactions escalates; a ledger that does not reconcile escalates (the
seed's workflow: "If reconciled == false, escalate"; differences over $100 say "manual
review" in the ticket), and the tool's ``reconciled`` must agree with its differences; APRA
violations escalate; audit_log is required before the run may finish; the figures in the
answer must come from recorded tool calls.

The seed's limits and fallbacks, declared: a step over 30 seconds times out and escalates
(``latency_limit``); fetch_transactions has two attempts, and a timeout (the warehouse's
statement timeout on a busy day) is retried once with the narrower window 00:00-12:00, after
which the model fetches the rest of the day; when the APRA rules change after validate_apra
ran (a new ``ApraRuleSet`` version), publish_report and the answer are refused until
validate_apra runs again under the rules in force. A manual start defaults to the previous
calendar day in Sydney; the finance team (``recipients``) gets every ticket and run end.

Preconditions (checked against the recorded tool calls, never the model's claims):
reconcile_ledger and validate_apra must be given exactly the transactions fetch_transactions
returned for that day (dropping the one that breaks a rule is refused); publish_report needs
a compliant validate_apra of the same day and publishes only the fetched and reconciled
figures of the requested date; audit_log may say "published" only after a publication.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
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
    RerunWhenChanged,
    Tool,
    ToolContext,
    TurnRoles,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn
from warehouse.demo_data import BUSY_DAYS, SLOW_DAYS
from warehouse.models import ApraRuleSet, AuditLogEntry, LedgerEntry, PublishedReport, Transaction

ALLOWED_STATUSES = ("pending", "completed", "failed")
DISCREPANCY_LIMIT = Decimal("100")
LARGE_AMOUNT = Decimal("10000")  # CPS234-KYC-01 when no ApraRuleSet row exists
DAY_START, DAY_END = "00:00", "24:00"
FINANCE_TEAM = ("finance-team@example.com",)

TXN_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "amount": {"type": "number"},
        "date": {"type": "string", "format": "date"},
        "status": {"type": "string"},
        "account": {"type": "string"},
        "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
    },
    "required": ["id", "amount", "date", "status", "account"],
}
TIME = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"}
TXN_REF = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["id", "amount"],
}


# --- tools ------------------------------------------------------------------------------


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _window(args: dict[str, Any]) -> tuple[str, str]:
    return args.get("from_time") or DAY_START, args.get("until_time") or DAY_END


def fetch_transactions(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    day = dt.date.fromisoformat(args["date"])
    start, end = _window(args)
    if (hours := (_minutes(end) - _minutes(start)) / 60) > BUSY_DAYS.get(day, 24):
        # What the warehouse does on a day it is reprocessing: the query hits its statement timeout.
        raise TimeoutError(f"canceling statement due to statement timeout ({hours:g} hours of {day} "
                           f"while the warehouse reprocesses it; query at most {BUSY_DAYS[day]} hours)")
    if day in SLOW_DAYS:  # a degraded warehouse: every query is slow (the latency-limit demo)
        time.sleep(SLOW_DAYS[day])
    qs = Transaction.objects.filter(booked_on=day)
    if start != DAY_START:
        qs = qs.filter(booked_at__gte=dt.time.fromisoformat(start))
    if end != DAY_END:
        qs = qs.filter(booked_at__lt=dt.time.fromisoformat(end))
    if args.get("account_filter"):
        qs = qs.filter(account=args["account_filter"])
    rows = [
        {"id": t.txn_id, "amount": float(t.amount), "date": t.booked_on.isoformat(),
         "status": t.status, "account": t.account, "time": (t.booked_at or dt.time(0)).strftime("%H:%M")}
        for t in qs
    ]
    return {"transactions": rows, "record_count": len(rows), "window": {"from": start, "until": end}}


def first_half(args: dict[str, Any]) -> dict[str, Any] | None:
    """The narrower window a timed-out fetch is retried with, once: the first half of its
    window, on the hour (None when the window is an hour or less)."""
    start, end = _minutes(_window(args)[0]), _minutes(_window(args)[1])
    if end - start <= 60:
        return None
    middle = start + (end - start) // 2 // 60 * 60
    return {**args, "from_time": f"{start // 60:02d}:{start % 60:02d}", "until_time": f"{middle // 60:02d}:{middle % 60:02d}"}


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
        start, end = _window(ctx.tool_input)
        if "time" in t and not _minutes(start) <= _minutes(t["time"]) < _minutes(end):
            problems.append(f"{t['id']}: booked at {t['time']}, outside the requested {start}-{end}")
    if output.get("window") != {"from": _window(ctx.tool_input)[0], "until": _window(ctx.tool_input)[1]}:
        problems.append(f"window {output.get('window')} is not the requested {_window(ctx.tool_input)}")
    return problems


def _check_reconciliation(output: dict[str, Any], ctx: ToolContext) -> list[str]:
    """``reconciled`` must say what the differences say, and the total must be their sum: the
    escalation rule reads them."""
    problems = []
    if output["reconciled"] != (not output["differences"]):
        problems.append(f"reconciled is {output['reconciled']} but {len(output['differences'])} difference(s) are listed")
    total = sum(Decimal(str(d["discrepancy"])) for d in output["differences"])
    if abs(total - Decimal(str(output["total_discrepancy"]))) > Decimal("0.005"):
        problems.append(f"total_discrepancy {output['total_discrepancy']} is not the differences' sum {total}")
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


def rules_in_force() -> tuple[str, Decimal]:
    """(version, large-amount threshold) of the APRA rules in force now."""
    rules = ApraRuleSet.in_force()
    return (str(rules.version), rules.large_amount) if rules else ("0", LARGE_AMOUNT)


def current_rules_version() -> str:
    return rules_in_force()[0]


def validate_apra(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    version, large = rules_in_force()
    ids = [t["id"] for t in args["transactions"]]
    violations = []
    for t in Transaction.objects.filter(txn_id__in=ids):
        if t.amount >= large and not t.customer_verified:
            violations.append({"rule_id": "CPS234-KYC-01", "transaction_id": t.txn_id,
                               "reason": f"{t.amount} AUD to an unverified customer"})
        if t.status == "failed" and t.amount >= large:
            violations.append({"rule_id": "RG271-FAIL-02", "transaction_id": t.txn_id,
                               "reason": "large failed transaction not remediated"})
    return {"compliant": not violations, "violations": violations, "rules_version": version}


# --- preconditions: read the recorded state (ctx.record), never the model's claims ------


def fetched_day(record: Record, date: str) -> list[dict[str, Any]] | None:
    """The transactions of ``date``: the latest fetch of each window, when the windows fetched
    (latest first) cover the whole day without overlap; None while part of the day is missing."""
    latest: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in record.of("fetch_transactions"):
        if c.input.get("date") == date:
            latest[_window(c.input)] = c.output["transactions"]
    if (DAY_START, DAY_END) in latest:
        return latest[(DAY_START, DAY_END)]
    covered, txns = DAY_START, []
    for (start, end), rows in sorted(latest.items(), key=lambda w: (_minutes(w[0][0]), -_minutes(w[0][1]))):
        if start == covered:
            covered, txns = end, txns + rows
    return txns if covered == DAY_END else None


def _fetched_windows(record: Record, date: str) -> str:
    windows = sorted({_window(c.input) for c in record.of("fetch_transactions") if c.input.get("date") == date})
    return ", ".join(f"{a}-{b}" for a, b in windows)


def _same(refs: list[dict[str, Any]], txns: list[dict[str, Any]]) -> bool:
    return sorted((str(t["id"]), float(t["amount"])) for t in refs) == sorted(
        (str(t["id"]), float(t["amount"])) for t in txns)


def _covers_the_fetched_day(args: dict[str, Any], ctx: ToolContext) -> str | None:
    """Checks and sign-off rules read these outputs: their input must be the whole fetched day."""
    txns = fetched_day(ctx.record, args["date"])
    if txns is None and (windows := _fetched_windows(ctx.record, args["date"])):
        return (f"fetch_transactions covered only {windows} of {args['date']}: fetch the rest of the day "
                "(from_time/until_time) first")
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
                "from_time": {**TIME, "description": "Start of the window (HH:MM, default 00:00)"},
                "until_time": {**TIME, "description": "End of the window, exclusive (HH:MM, default 24:00)"},
            },
            "required": ["date"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {"transactions": {"type": "array", "items": TXN_SCHEMA}, "record_count": {"type": "integer"},
                           "window": {"type": "object", "properties": {"from": TIME, "until": TIME},
                                      "required": ["from", "until"]}},
            "required": ["transactions", "record_count", "window"],
        },
        handler=fetch_transactions,
        version="3",
        timeout_seconds=20,
        invoke_when="first, for the report date",
        recovery="if record_count is 0 the engine escalates; do not invent data; a timeout is retried once "
                 "with the first half of the window: then fetch the rest of the day",
        validators=(_check_transactions,),
        # The seed: "Failure recovery: If timeout, retry once with a shorter date_range".
        max_attempts=2,
        narrow_on_timeout=first_half,
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
        recovery="any difference (reconciled false) escalates to a reviewer; over $100 for manual review",
        validators=(_check_reconciliation,),
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
                "rules_version": {"type": "string"},
            },
            "required": ["compliant", "violations", "rules_version"],
        },
        handler=validate_apra,
        version="2",
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


def previous_calendar_day(local_now: dt.datetime) -> dict[str, Any]:
    """A manual start reports on the previous calendar day (in the workflow's time zone)."""
    return {"date": (local_now.date() - dt.timedelta(days=1)).isoformat()}


# --- the simulated orchestrator ----------------------------------------------------------


def _day_so_far(conv: Conversation) -> tuple[list[dict[str, Any]], str | None]:
    """The transactions fetched so far, window after window, and where the next window starts
    (None once the day is covered)."""
    covered, txns = DAY_START, []
    for r in conv.results("fetch_transactions"):
        content = r["content"]
        if r["is_error"] or not isinstance(content, dict):
            continue
        if content.get("window", {}).get("from") == covered:
            covered, txns = content["window"]["until"], txns + content["transactions"]
    return txns, (None if covered == DAY_END else covered)


def _index(conv: Conversation, name: str, *, error: bool) -> int:
    """Position of the latest result of ``name`` (error or not) in the conversation, or -1."""
    found = [i for i, r in enumerate(conv.tool_results) if r["name"] == name and r["is_error"] == error]
    return found[-1] if found else -1


def policy(conv: Conversation) -> Turn:
    """Plays Opus on this workflow: one tool per turn, in the seed's order."""
    date = conv.input["date"]
    txns, next_from = _day_so_far(conv)
    if next_from is not None:
        args = {"date": date}
        if conv.input.get("account_filter"):
            args["account_filter"] = conv.input["account_filter"]
        if next_from != DAY_START:
            return call("fetch_transactions", {**args, "from_time": next_from},
                        f"The warehouse answered up to {next_from}; fetching the rest of {date}.")
        return call("fetch_transactions", args, f"Fetching the transactions booked on {date}.")
    fetch = {"transactions": txns, "record_count": len(txns)}
    refs = [{"id": t["id"], "amount": t["amount"]} for t in fetch["transactions"]]
    recon = result(conv, "reconcile_ledger")
    if recon is None:
        return call("reconcile_ledger", {"date": date, "transactions": refs},
                    f"{fetch['record_count']} transactions found; reconciling against the ledger.")
    apra = result(conv, "validate_apra")
    if apra is None:
        return call("validate_apra", {"date": date, "transactions": refs}, "Reconciled. Checking APRA rules.")
    refused = conv.last_result("publish_report")
    if (refused is not None and refused["is_error"] and "rules changed" in str(refused["content"])
            and _index(conv, "validate_apra", error=False) < _index(conv, "publish_report", error=True)):
        return call("validate_apra", {"date": date, "transactions": refs},
                    "The APRA rules changed since the validation: validating again under the rules in force.")
    total = round(sum(t["amount"] for t in fetch["transactions"]), 2)
    published = result(conv, "publish_report")
    revalidated = _index(conv, "validate_apra", error=False) > _index(conv, "publish_report", error=True)
    if published is None and (not failed_last(conv, "publish_report") or revalidated):
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
    version="5",
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
        "If fetch_transactions answers for part of the day only (its window), fetch the rest of the day next.",
        "Call reconcile_ledger with the fetched transactions; any difference escalates (over $100: manual review).",
        "Call validate_apra; if it is not compliant, do not publish: the engine escalates.",
        "Call publish_report only after a compliant validation, with the fetched and reconciled figures.",
        "Always call audit_log with all results before answering.",
        "Do not skip steps. Do not invent tool results.",
    ),
    # The seed: "If any step takes > 30 seconds, timeout and escalate" (step_latency_seconds);
    # the run's model and tool time is bounded too (run_latency_seconds).
    constraints=Constraints(max_attempts_per_tool=3, max_steps=12, max_cost_usd=Decimal("2.00"),
                            tool_timeout_seconds=30, run_timeout_seconds=600, max_output_tokens=2048,
                            step_latency_seconds=30, run_latency_seconds=180),
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
                       lambda out, ctx: out["record_count"] == 0 and out["window"] == {"from": DAY_START,
                                                                                     "until": DAY_END}),
        # The seed's rule for unreconciled differences: "If differences > $100, escalate to
        # manual_review" and "If reconciled == false, escalate": any difference stops the run
        # before validation and publication; over $100 the ticket says manual review.
        EscalationRule("reconcile_ledger", "validation_failed",
                       "Ledger differences exceed $100: manual review (the report is not published).",
                       lambda out, ctx: Decimal(str(out["total_discrepancy"])) > DISCREPANCY_LIMIT),
        EscalationRule("reconcile_ledger", "validation_failed",
                       "The ledger does not reconcile (reconciled is false): the report is not published "
                       "unless a reviewer resumes the run.",
                       lambda out, ctx: not out["reconciled"]),
        EscalationRule("validate_apra", "regulatory_trigger",
                       "APRA validation found violations: the report must not be published.",
                       lambda out, ctx: not out["compliant"]),
    ),
    required_tools=("audit_log",),
    reruns=(RerunWhenChanged("validate_apra", "rules_version", current_rules_version, before=("publish_report",)),),
    time_zone="Australia/Sydney",
    input_defaults=previous_calendar_day,
    scenarios=(
        Example("A normal day", {"date": "2026-11-20"}, (
            "fetch, reconcile, validate, publish, log: the report is published.",)),
        Example("A timeout, retried once with a narrower range", {"date": "2026-11-13"}, (
            "The warehouse is reprocessing the 13th: the full-day fetch hits its statement timeout.",
            "The engine retries it once with 00:00-12:00 (fetch_transactions: max 2 attempts).",
            "The model fetches 12:00-24:00 itself; reconcile needs the whole day; the report is published.")),
        Example("An unreconciled difference under $100", {"date": "2026-11-17"}, (
            "A $3.50 ledger difference: reconciled is false, so the run escalates before validation "
            "(the seed's rule); the finance team is emailed the ticket.",)),
        Example("Differences over $100: manual review", {"date": "2026-11-18"}, (
            "A $250 difference: the ticket says manual review; nothing is published.",)),
        Example("The rules changed: re-run the validation", {"date": "2026-11-19"}, (
            "Under APRA rules v1 a $25,000 transfer to an unverified customer is a violation: the run pauses.",
            "Change the rules in the admin (Warehouse > APRA rule sets: raise the amount above 25,000; "
            "saving makes version 2), then resume the ticket.",
            "publish_report is refused (the rules changed since validate_apra ran); the model validates "
            "again under v2, and the report is published.")),
        Example("A step over 30 seconds", {"date": "2026-11-11"}, (
            "The warehouse is degraded: every query takes 25 s; the fetch times out after 20 s.",
            "Its retry gets only what is left of the step's 30 s: it is stopped and the run escalates "
            "(latency limit exceeded).")),
    ),
    recipients=FINANCE_TEAM,
    recipient_events=("ticket.opened", "run.ended"),
    expectation=Expectation(turns=6, output_tokens_per_turn=120, tool_result_tokens=600, final_output_tokens=150),
    input_example={"date": "2026-11-20"},
    policy=policy,
    # Opus fetches, reconciles and validates (and recovers after an error or a resume); once
    # the report is published, Sonnet writes the audit entry and formats the answer.
    turn_roles=TurnRoles(after={"publish_report": "formatter", "audit_log": "formatter"}),
    # The seed's full orchestration prompt, cached (demo/financial_reference.py); a daily report
    # nobody waits on may run through Message Batches (a batch call's queueing is not counted
    # against the run's latency limit: orchestration.limits.run_work_seconds).
    reference=REFERENCE,
    batch=True,
))
