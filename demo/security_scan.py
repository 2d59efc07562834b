"""Enterprise fan-out demo: a security scan across 200 files, one specialist per file.

The tree is generated in code, deterministically (``scan_tree()``): 200 small Python files,
some with planted issues (hardcoded secrets, SQL built from strings, eval, shell=True,
pickle, weak hashes). The simulated models play it straight:

- the orchestrator writes the job instructions once per kind of file (code that handles
  money or identity, everything else) and the engine expands them over the files, one job
  per file (``expand_items``: the workflow declares the files as its items and the findings
  schema as the job output schema: the plan chooses neither);
- a specialist reports what its detectors see. Its first look misses a secret split over two
  lines (every file whose number ends in 3); told so by the validator, it finds it on the
  retry. It cannot place an obfuscated eval (files 17, 59, 101, 143, 187, 199) on a line, so
  it answers line 0, which the schema forbids: those jobs fail twice (6 of 200, 3%);
- the validator re-runs the full detectors and FAILs an answer that missed a finding;
- the specialists share one cached prefix (the review instructions, the findings schema and
  worked examples: reviews of six files outside the tree, and for the validator one answer
  that missed a split secret), over Sonnet's 1,024-token minimum: the first job writes it,
  the other 199 read it at a tenth of the input price;
- the orchestrator aggregates every finding (file, line, rule, severity), counts them by
  rule and by severity, and lists the files it could not scan. The engine checks all of it
  against the job results (``expected_aggregate``): no finding dropped, none invented.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from demo.playbook import fanout_roles
from orchestration.workflows.declaration import (
    Constraints,
    FanoutSpec,
    JobResult,
    WorkedExample,
    Workflow,
)
from orchestration.workflows.registry import register

FILES = 200
OBFUSCATED = frozenset({17, 59, 101, 143, 187, 199})
RULES = (
    "hardcoded-secret",
    "sql-injection",
    "eval",
    "shell-injection",
    "unsafe-deserialization",
    "weak-hash",
)
SEVERITY = {
    "hardcoded-secret": "high",
    "sql-injection": "critical",
    "eval": "critical",
    "shell-injection": "critical",
    "unsafe-deserialization": "high",
    "weak-hash": "medium",
}
MODULES = (
    "billing",
    "users",
    "reports",
    "export",
    "auth",
    "search",
    "admin",
    "webhooks",
    "jobs",
    "storage",
)

FINDINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {"type": "string"},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer", "minimum": 1},
                    "rule": {"enum": list(RULES)},
                    "severity": {"enum": ["low", "medium", "high", "critical"]},
                    "evidence": {"type": "string", "maxLength": 200},
                },
                "required": ["line", "rule", "severity", "evidence"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["file", "findings"],
    "additionalProperties": False,
}


def _file(i: int) -> tuple[str, str]:
    module = MODULES[i % len(MODULES)]
    path = f"src/{module}/handler_{i:03d}.py"
    lines = [
        f'"""{module.title()} handler #{i}."""',
        "",
        "import hashlib",
        "import subprocess",
        "",
        "",
    ]
    lines.append(f"def handle_{i}(request, db):")
    lines.append(f"    name = request.args.get('name', 'item-{i}')")
    if i % 5 == 0:
        lines.append(f'    api_key = "sk_live_{i:04d}a9f3c2e1b7d6"')
    if i % 7 == 0:
        lines.append('    rows = db.execute("SELECT * FROM items WHERE name = \'" + name + "\'")')
    else:
        lines.append('    rows = db.execute("SELECT * FROM items WHERE name = %s", [name])')
    if i % 11 == 0:
        lines.append("    total = eval(request.args.get('expr', '0'))")
    if i % 13 == 0:
        lines.append('    subprocess.run(f"convert {name}.png out.pdf", shell=True)')
    if i % 17 == 0 and i not in OBFUSCATED:
        lines.append("    import pickle; obj = pickle.loads(request.body)")
    if i % 6 == 1:
        lines.append("    digest = hashlib.md5(name.encode()).hexdigest()")
    if i % 10 == 3:
        lines.append('    password = ("hunter"')
        lines.append(f'                "{i:03d}-prod")')
    if i in OBFUSCATED:
        lines.append("    run = getattr(__builtins__, 'ev' + 'al'); run(request.body)")
    lines.append("    return rows")
    return path, "\n".join(lines) + "\n"


@functools.cache
def scan_tree() -> dict[str, str]:
    """The bundled demo tree: 200 small files, path -> source."""
    return dict(_file(i) for i in range(FILES))


# What a specialist's detectors look for (line by line), and what only a careful look finds.
DETECTORS = (
    ("hardcoded-secret", re.compile(r"(api_key|secret|token)\s*=\s*\"[^\"]{8,}\"")),
    ("sql-injection", re.compile(r"execute\(\s*\"[^\"]*'\"\s*\+")),
    ("eval", re.compile(r"\beval\(")),
    ("shell-injection", re.compile(r"shell=True")),
    ("unsafe-deserialization", re.compile(r"pickle\.loads\(")),
    ("weak-hash", re.compile(r"hashlib\.md5\(")),
)
SPLIT_SECRET = re.compile(r"password\s*=\s*\(\"")
OBFUSCATED_EVAL = re.compile(r"'ev'\s*\+\s*'al'")


def _finding(line_no: int, rule: str, text: str) -> dict[str, Any]:
    return {
        "line": line_no,
        "rule": rule,
        "severity": SEVERITY[rule],
        "evidence": text.strip()[:200],
    }


def detect(source: str, *, careful: bool) -> list[dict[str, Any]]:
    found = []
    for n, text in enumerate(source.splitlines(), 1):
        found += [_finding(n, rule, text) for rule, pattern in DETECTORS if pattern.search(text)]
        if careful and SPLIT_SECRET.search(text):
            found.append(_finding(n, "hardcoded-secret", text))
        if OBFUSCATED_EVAL.search(text):
            found.append({**_finding(n, "eval", text), "line": 0})  # cannot place it
    return found


def item_data(run_input: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The file a job reviews, given to its specialist and validator by the engine: the source
    comes from the tree, never from the orchestrator's retelling of it."""
    return {"path": path, "source": scan_tree().get(path, "")}


def context(run_input: Mapping[str, Any]) -> dict[str, Any]:
    files = list(scan_tree().items())[: run_input.get("limit", FILES)]
    return {"repository": "demo-scan-tree", "files": [{"path": p, "source": s} for p, s in files]}


def items(run_input: Mapping[str, Any]) -> list[str]:
    """The files the plan must cover, one job each (job_id = the path)."""
    return [f["path"] for f in context(run_input)["files"]]


SENSITIVE = ("src/billing/*", "src/auth/*", "src/users/*")


def decompose(data: dict[str, Any]) -> dict[str, Any]:
    """Two job kinds, written once: the money and identity code, and every other file. Like a
    model, it names only patterns that match files it was given."""
    sensitive = [p for p in SENSITIVE if any(fnmatch.fnmatchcase(k, p) for k in data["items"])]
    ask = "Review this file for security issues: {item}. Report every issue on its line."
    kinds = [{"kind": "other handlers", "items": "*", "prompt": ask}]
    if sensitive:
        kinds.insert(
            0,
            {
                "kind": "money and identity",
                "items": sensitive,
                "prompt": ask + " It handles payments or accounts: look hard for secrets.",
            },
        )
    return {"job_kinds": kinds}


def specialist(data: dict[str, Any]) -> dict[str, Any]:
    path, source = data["item"]["path"], data["item"]["source"]
    return {"file": path, "findings": detect(source, careful=bool(data.get("retry_reason")))}


def validator(data: dict[str, Any]) -> dict[str, Any]:
    source = data["item"]["source"]
    reported = {(f["line"], f["rule"]) for f in (data.get("output") or {}).get("findings", [])}
    missed = [f for f in detect(source, careful=True) if (f["line"], f["rule"]) not in reported]
    if missed:
        where = ", ".join(f"{f['rule']} on line {f['line']}" for f in missed)
        return {"job_id": data["job_id"], "status": "FAIL", "reason": f"Missed: {where}."}
    return {
        "job_id": data["job_id"],
        "status": "PASS",
        "reason": "Every finding is reported with its line.",
    }


def _worked_examples() -> tuple[WorkedExample, ...]:
    """Reviews of files outside the scanned tree (made like it): the answers a specialist
    should give, and one that missed a secret split over two lines, as the validator sees it."""
    examples = []
    for i in (910, 903, 918, 935, 946, 961):
        path, source = _file(i)
        examples.append(
            WorkedExample(
                title=f"Review of {path}",
                item={"path": path, "source": source},
                output={"file": path, "findings": detect(source, careful=True)},
                reason="Every finding is reported with its line.",
            )
        )
    path, source = _file(913)
    missed = [f for f in detect(source, careful=False) if f["line"] > 0]
    examples.append(
        WorkedExample(
            title=f"Review of {path} that missed a split secret",
            item={"path": path, "source": source},
            output={"file": path, "findings": missed},
            verdict="FAIL",
            reason="Missed: hardcoded-secret on the line where the password string starts.",
        )
    )
    return tuple(examples)


def _report(
    per_file: list[tuple[str, list[dict[str, Any]]]], failed: list[dict[str, str]], total: int
) -> dict[str, Any]:
    """The scan report from the passing files' findings: what the aggregator writes, and what
    the engine expects it to write."""
    findings = [
        {"file": path, "line": f["line"], "rule": f["rule"], "severity": f["severity"]}
        for path, found in per_file
        for f in found
    ]
    return {
        "files_scanned": len(per_file),
        "files_with_findings": len({f["file"] for f in findings}),
        "findings_by_rule": dict(sorted(Counter(f["rule"] for f in findings).items())),
        "findings_by_severity": dict(sorted(Counter(f["severity"] for f in findings).items())),
        "findings": findings,
        "jobs_total": total,
        "jobs_passed": len(per_file),
        "jobs_failed": len(failed),
        "not_scanned": failed,
    }


def aggregate(data: dict[str, Any]) -> dict[str, Any]:
    return _report(
        [(r["job_id"], (r["output"] or {}).get("findings", [])) for r in data["results"]],
        [{"file": f["job_id"], "reason": f["reason"]} for f in data["failed"]],
        data["counts"]["total"],
    )


def expected_aggregate(results: list[JobResult]) -> dict[str, Any]:
    """What the report must say, from the job rows: every finding of every passing file, the
    counts, and every file that failed (its reason is the aggregator's to word)."""
    return _report(
        [(r.item, (r.output or {}).get("findings", [])) for r in results if r.passed],
        [{"file": r.item} for r in results if not r.passed],
        len(results),
    )


OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "files_scanned": {"type": "integer", "minimum": 0},
        "files_with_findings": {"type": "integer", "minimum": 0},
        "findings_by_rule": {"type": "object", "additionalProperties": {"type": "integer"}},
        "findings_by_severity": {"type": "object", "additionalProperties": {"type": "integer"}},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": "integer"},
                    "rule": {"type": "string"},
                    "severity": {"type": "string"},
                },
                "required": ["file", "line", "rule", "severity"],
                "additionalProperties": False,
            },
        },
        "jobs_total": {"type": "integer"},
        "jobs_passed": {"type": "integer"},
        "jobs_failed": {"type": "integer"},
        "not_scanned": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"file": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["file", "reason"],
            },
        },
    },
    "required": [
        "files_scanned",
        "files_with_findings",
        "findings_by_rule",
        "findings_by_severity",
        "findings",
        "jobs_total",
        "jobs_passed",
        "jobs_failed",
        "not_scanned",
    ],
    "additionalProperties": False,
}

WORKFLOW = register(
    Workflow(
        name="security_scan",
        title="Security scan (fan-out, 200 files)",
        version="2",
        domain="an engineering organisation's application security team",
        role="Split a repository scan into one independent job per file, then aggregate the validated findings.",
        description="Enterprise fan-out: one Sonnet specialist per file, a validator per answer, Opus decomposes and aggregates.",
        input_schema={
            "type": "object",
            "properties": {
                "repository": {
                    "const": "demo-scan-tree",
                    "description": "The bundled demo tree of 200 files.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": FILES,
                    "default": FILES,
                    "description": "Scan only the first N files.",
                },
            },
            "required": ["repository"],
            "additionalProperties": False,
        },
        output_schema=OUTPUT_SCHEMA,
        tools=(),
        rules=(
            "Decompose by writing the job instructions once per kind of file (job_kinds): the engine "
            "expands each kind over the files it covers, one job per file. Every file must be covered "
            'exactly once; "*" covers every file no other kind names.',
            "A kind's prompt says what to look for ({item} is the file's path); the engine gives each "
            "job the file's source, and the output schema is set by the workflow.",
            "When aggregating, report every finding of every validated result (file, line, rule, severity), "
            "count them by rule and by severity, and list every file that could not be scanned.",
        ),
        constraints=Constraints(
            max_steps=4,
            max_cost_usd=Decimal("15.00"),
            # Every job call reads the ~1,700-token cached prefix (worked examples included):
            # ~2,000 tokens a call, 400 calls for 200 files, most of them at the cache-read price.
            max_tokens_per_run=2_000_000,
            run_timeout_seconds=3600,
            max_output_tokens=16_000,
        ),
        input_example={"repository": "demo-scan-tree", "limit": FILES},
        batch=True,
        fanout=FanoutSpec(
            specialist_instructions="You review one source file for security issues: hardcoded secrets, SQL built "
            "from strings, eval, shell=True, unsafe deserialization, weak hashes.",
            validator_instructions="You check one file review: every issue in the file must be reported on its "
            "line with the right rule; nothing may be invented.",
            job_output_schema=FINDINGS_SCHEMA,
            items=items,
            item_data=item_data,
            expected_aggregate=expected_aggregate,
            max_jobs=FILES,
            context=context,
            expected_jobs=lambda run_input: len(items(run_input)),  # one job per file
            expand_items=True,
            decompose_output_tokens=150,  # two job kinds: the engine expands them over the files
            specialist_input_tokens=350,
            specialist_output_tokens=150,
            validator_input_tokens=600,
            validator_output_tokens=40,
            aggregate_output_tokens=4_000,  # every finding, one line each
            worked_examples=_worked_examples(),
        ),
        policy=fanout_roles(
            decompose=decompose, specialist=specialist, validator=validator, aggregate=aggregate
        ),
    )
)
