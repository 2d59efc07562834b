"""Enterprise fan-out: decomposition, validation, retry once, the breaker, fan-in, costs.

Most tests drive a run in this process: the run's steps and its job tasks are collected
instead of sent to Celery and run here (jobs concurrently, in threads, as the threads-pool
worker would). The worker tests at the end use real Celery subprocesses and SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

import tests.workflows_for_tests as probes
from demo import ad_variants
from orchestration import engine
from orchestration.fanout import aggregate, artifacts, prompts, slots
from orchestration.fanout.coordinator import max_failures
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.fanout.plan import (
    InvalidItems,
    InvalidPlan,
    PlannedJob,
    coverage_problems,
    item_keys,
    parse_plan,
)
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run
from reviews.models import EscalationTicket
from tests.attack import fanout_injection_workflow as fanout_injection
from tests.conftest import wait_for

S = Run.Status
J = FanoutJob.Status


@pytest.fixture(autouse=True)
def _fanout_settings(settings: Any, tmp_path: Any) -> None:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.FANOUT_SLOT_KEY = f"test:fanout:slots:{tmp_path.name}"
    slots.reset()


@pytest.fixture
def drive_fanout(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    steps: list[str] = []
    jobs_queued: list[int] = []
    lock = threading.Lock()

    def _enqueue_job(pk: int, countdown: float | None = None) -> None:
        with lock:
            jobs_queued.append(pk)

    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: steps.append(str(run_id)),
    )
    monkeypatch.setattr("orchestration.fanout.jobs.enqueue", _enqueue_job)
    from django.db import connection

    from orchestration import tasks

    def _run_job(pk: int) -> None:
        try:
            tasks.run_fanout_job(pk)  # the job, then the fan-in (coordinator.job_settled)
        finally:
            connection.close()  # this pool's threads must not keep the test database open

    def _drive(run: Run, rounds: int = 400, threads: int = 16) -> Run:
        # Like a worker pool: a job task starts as soon as it is sent, not when the tasks sent
        # before it have finished (a job task may chain for many jobs; see tasks.run_fanout_job).
        running: set[Future] = set()
        with ThreadPoolExecutor(threads) as pool:
            while rounds:
                with lock:
                    batch, jobs_queued[:] = list(jobs_queued), []
                running.update(pool.submit(_run_job, pk) for pk in batch)
                if running:
                    done, running = wait(running, timeout=0.05, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                    continue
                rounds -= 1
                run.refresh_from_db()
                if steps:
                    steps.pop()
                    engine.run_step(run.pk)
                    continue
                if run.status not in (S.QUEUED, S.RUNNING):
                    return run
                raise AssertionError(f"run {run.pk} is {run.status} with nothing left to do")
        raise AssertionError("the run did not stop")

    def _start(run_input: dict, workflow: str = "fanout_probe") -> Run:
        run = start_run(workflow, run_input, get_user_model().objects.get(username="operator"))
        steps.append(str(run.pk))
        return run

    _drive.start = _start
    _drive.steps = steps
    return _drive


def _operator() -> Any:
    return get_user_model().objects.get(username="operator")


# --- the plan -----------------------------------------------------------------------------


def test_plan_validation_names_every_problem() -> None:
    items = ["1", "2", "3"]
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(
            '[{"job_id": 1, "prompt": "a"}, {"job_id": "1", "prompt": ""}, {"job_id": 2}]',
            items,
        )
    problems = " | ".join(caught.value.problems)
    assert "prompt must be a non-empty string" in problems
    assert "job #2: missing prompt" in problems
    assert "item(s) have more than one job: '1'" in problems
    assert "1 item(s) have no job: '2', '3'" not in problems  # job #2 was refused, so:
    assert "2 item(s) have no job: '2', '3'" in problems
    # The plan may not choose the jobs' schema: a schema, or a map of them, is refused.
    with pytest.raises(InvalidPlan, match="schema is set by the workflow, not by the plan"):
        parse_plan('[{"job_id": 1, "prompt": "a", "schema": {}}]', ["1"])
    with pytest.raises(InvalidPlan, match="schemas besides jobs.*set by the workflow"):
        parse_plan('{"schemas": {"a": {}}, "jobs": [{"job_id": 1, "prompt": "a"}]}', ["1"])
    jobs = parse_plan('{"jobs": [{"job_id": 7, "prompt": "p"}]}', ["7"])
    assert jobs == [PlannedJob(job_id="7", prompt="p")]


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        (["a", "b"], "1 item(s) have no job: 'c'"),
        (["a", "b", "c", "c"], "1 item(s) have more than one job: 'c'"),
        (["a", "b", "c", "payments/x"], "1 job(s) are for no item of this run: 'payments/x'"),
    ],
)
def test_the_plan_must_cover_every_item_exactly_once(ids: list[str], problem: str) -> None:
    text = json.dumps([{"job_id": i, "prompt": f"do {i}"} for i in ids])
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(text, ["a", "b", "c"])
    assert caught.value.problems == [problem]
    fine = json.dumps([{"job_id": i, "prompt": f"do {i}"} for i in ("c", "a", "b")])
    assert [j.job_id for j in parse_plan(fine, ["a", "b", "c"])] == ["c", "a", "b"]


ITEMS = ["src/billing/a.py", "src/billing/b.py", "src/auth/c.py", "src/web/d.py"]


def _kinds(*kinds: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"job_kinds": list(kinds), **({"jobs": jobs} if jobs is not None else {})})


def test_job_kinds_are_written_once_and_expanded_over_the_items() -> None:
    """The orchestrator writes a prompt per kind; the engine makes one job per item, in the
    workflow's item order, with {item} replaced by the item's key."""
    text = _kinds(
        {"kind": "other", "items": "*", "prompt": "Review {item}."},
        {"kind": "money", "items": ["src/billing/*"], "prompt": "Review {item}; it moves money."},
        jobs=[{"job_id": "src/auth/c.py", "prompt": "Check the login of src/auth/c.py."}],
    )
    assert parse_plan(text, ITEMS) == [
        PlannedJob("src/billing/a.py", "Review src/billing/a.py; it moves money."),
        PlannedJob("src/billing/b.py", "Review src/billing/b.py; it moves money."),
        PlannedJob("src/auth/c.py", "Check the login of src/auth/c.py."),
        PlannedJob("src/web/d.py", "Review src/web/d.py."),
    ]
    # Keys and patterns may be mixed; a kind needs no placeholder.
    listed = _kinds(
        {"items": ["src/web/d.py", "src/a*/*"], "prompt": "Look."},
        {"items": ["src/billing/?.py"], "prompt": "Look hard."},
    )
    assert [(j.job_id, j.prompt) for j in parse_plan(listed, ITEMS)] == [
        ("src/billing/a.py", "Look hard."),
        ("src/billing/b.py", "Look hard."),
        ("src/auth/c.py", "Look."),
        ("src/web/d.py", "Look."),
    ]


@pytest.mark.parametrize(
    ("kinds", "problems"),
    [
        (  # no kind covers the rest
            [{"items": ["src/billing/*"], "prompt": "p"}],
            ["2 item(s) have no job: 'src/auth/c.py', 'src/web/d.py'"],
        ),
        (  # two kinds name the same file: it would get two jobs
            [
                {"items": ["src/billing/*"], "prompt": "p"},
                {"items": ["src/billing/a.py"], "prompt": "q"},
                {"items": "*", "prompt": "r"},
            ],
            ["1 item(s) have more than one job: 'src/billing/a.py'"],
        ),
        (  # invented items: a key and a pattern that name nothing of this run
            [
                {"items": ["src/payments/*", "/etc/passwd"], "prompt": "p"},
                {"items": "*", "prompt": "q"},
            ],
            ["2 job(s) are for no item of this run: 'src/payments/*', '/etc/passwd'"],
        ),
        (
            [
                {"kind": "a", "items": "*", "prompt": "p"},
                {"kind": "b", "items": "*", "prompt": "q"},
            ],
            [
                "job kind #1 ('b'): only one kind may cover the other items ('*'); "
                "job kind #0 ('a') does already"
            ],
        ),
        (  # a refused kind is named; its items are not also reported as missing
            [{"items": ["src/billing/*"], "prompt": " "}, {"items": "*", "prompt": "q"}],
            ["job kind #0: prompt must be a non-empty string"],
        ),
        (
            [{"items": [], "prompt": "p"}, {"items": "*", "prompt": "q", "when": "always"}],
            [
                "job kind #0: items must be a non-empty list of item keys and patterns, or '*' for every other item",
                "job kind #1: unexpected when",
                "4 item(s) have no job: 'src/billing/a.py', 'src/billing/b.py', 'src/auth/c.py', 'src/web/d.py'",
            ],
        ),
        (
            [{"items": "*", "prompt": "p", "schema": {}}],
            [
                "1 job(s) give a schema: the job output schema is set by the workflow, not by the plan"
            ],
        ),
    ],
)
def test_job_kinds_keep_the_coverage_check(
    kinds: list[dict[str, Any]], problems: list[str]
) -> None:
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(_kinds(*kinds), ITEMS)
    assert caught.value.problems == problems


def test_the_decomposition_asks_for_job_kinds_when_the_engine_expands_them(seeded) -> None:
    """security_scan and ad_variants expand job kinds: the orchestrator is asked for them, and
    its plan is a few hundred tokens (the estimate's line says so) instead of one prompt per
    item, which at 200 files took longer than a call may last."""
    from demo import security_scan
    from orchestration.fanout.plan import JOB_KINDS_FORMAT, JOB_LIST_FORMAT, decompose_turn

    turn = decompose_turn(security_scan.WORKFLOW.fanout, {"repository": "demo-scan-tree"})
    assert turn["job_format"] == JOB_KINDS_FORMAT and len(turn["items"]) == 200
    probe = decompose_turn(probes.FANOUT_PROBE.fanout, {"n": 3})
    assert probe["job_format"] == JOB_LIST_FORMAT
    run = start_run("ad_variants", {"catalog": "demo", "skus": 1000}, _operator())
    line = next(li for li in run.estimate["lines"] if li["item"].startswith("Decompose"))
    assert "job kinds, written once = 120 out" in line["calc"]


def test_coverage_problems_list_every_kind_at_once() -> None:
    problems = coverage_problems(["a", "a", "z"], ["a", "b"])
    assert problems == [
        "1 item(s) have no job: 'b'",
        "1 item(s) have more than one job: 'a'",
        "1 job(s) are for no item of this run: 'z'",
    ]
    assert coverage_problems(["b", "a"], ["a", "b"]) == []


def test_max_failures_is_the_floor_of_threshold_times_n() -> None:
    assert max_failures(Decimal("0.2"), 10) == 2
    assert max_failures(Decimal("0.2"), 14) == 2
    assert max_failures(Decimal("0.2"), 15) == 3
    assert max_failures(Decimal("0.2"), 1000) == 200


def _decompose_calls(run: Run) -> list[ModelCall]:
    return list(ModelCall.objects.filter(run=run, job__isnull=True, turn=0).order_by("attempt"))


def test_a_repeated_job_id_is_refused_twice_then_pauses_with_no_jobs(seeded, drive_fanout) -> None:
    run = drive_fanout(drive_fanout.start({"n": 4, "bad_plan": True}))
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.VALIDATION_FAILED
    assert "(2 answers)" in ticket.message
    assert "1 item(s) have more than one job: 'j000'" in ticket.context["details"]["errors"]
    assert "1 item(s) have no job: 'j003'" in ticket.context["details"]["errors"]
    assert not FanoutJob.objects.filter(run=run).exists()
    first, second = _decompose_calls(run)  # asked once more, with the reason, then no more
    assert "previous_answer_refused" not in first.request_content[0]["text"]
    assert "have more than one job: 'j000'" in second.request_content[0]["text"]
    assert AuditEvent.objects.filter(run=run, kind="fanout.plan_rejected").count() == 2


def test_a_refused_plan_is_asked_for_again_and_the_fixed_plan_runs(seeded, drive_fanout) -> None:
    run = drive_fanout(drive_fanout.start({"n": 3, "bad_plan_once": True}))
    assert run.status == S.SUCCEEDED and not run.tickets.exists()
    assert len(_decompose_calls(run)) == 2
    assert FanoutJob.objects.filter(run=run, status=J.SUCCEEDED).count() == 3


def test_a_reviewers_retry_of_a_refused_plan_asks_again_with_the_note(
    seeded, drive_fanout, reviewer
) -> None:
    from reviews import resolutions

    run = drive_fanout(drive_fanout.start({"n": 2, "bad_plan": True}))
    ticket = run.tickets.get()
    resolutions.resolve(ticket.pk, reviewer, "retry", comment="Use unique job ids.")
    drive_fanout.steps.append(str(run.pk))
    run = drive_fanout(run)
    calls = _decompose_calls(run)
    # Not the refused answer judged again: a fresh round of two answers, the note in the first.
    assert len(calls) == 4 and "Use unique job ids." in calls[2].request_content[0]["text"]
    assert run.status == S.AWAITING_REVIEW and run.tickets.filter(status="open").count() == 1


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        ("missing", "1 item(s) have no job: 'j003'"),
        ("unknown", "1 job(s) are for no item of this run: 'j999'"),
        ("schema", "the job output schema is set by the workflow, not by the plan"),
    ],
)
def test_a_plan_that_misses_adds_an_item_or_sets_a_schema_is_refused(
    seeded, drive_fanout, plan, problem
) -> None:
    run = drive_fanout(drive_fanout.start({"n": 4, "plan": plan}))
    assert run.status == S.AWAITING_REVIEW and run.result is None
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.VALIDATION_FAILED
    assert (
        problem in ticket.message and "The decomposition was refused (2 answers)" in ticket.message
    )
    assert not FanoutJob.objects.filter(run=run).exists()
    # Recorded each time, and sent back to the orchestrator with the second request.
    rejected = AuditEvent.objects.filter(run=run, kind="fanout.plan_rejected")
    assert [any(problem in p for p in e.payload["problems"]) for e in rejected] == [True, True]
    first, second = _decompose_calls(run)
    asked = json.loads(second.request_content[0]["text"])
    assert any(problem in p for p in asked["previous_answer_refused"])
    assert json.loads(first.request_content[0]["text"])["items"] == ["j000", "j001", "j002", "j003"]


def test_jobs_are_validated_against_the_workflows_schema_not_the_stored_copy(
    seeded, drive_fanout
) -> None:
    run = drive_fanout.start({"n": 10, "bad_output": ["j001"]})
    drive_fanout.steps.pop()
    engine.run_step(run.pk)  # the decomposition only
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.count() == 10 and all(j.schema == probes.VALUE_SCHEMA for j in jobs)
    jobs.update(schema={})  # someone with database access loosens the stored schema
    run = drive_fanout(run)
    assert run.status == S.SUCCEEDED, run.error
    job = FanoutJob.objects.get(run=run, job_id="j001")
    assert (job.status, job.attempts, job.verdict) == (J.FAILED, 2, "FAIL")
    assert "Schema: (root): 'value' is a required property" in job.reason
    assert not ModelCall.objects.filter(job=job, role="validator").exists()
    # What the specialist was told to produce is the workflow's schema too: it is in the
    # shared cached prefix (the system prompt, built from the workflow), not in the job's turn.
    sent = ModelCall.objects.filter(job=job, role="specialist").first()
    assert "output_schema" not in json.loads(sent.request_content[0]["text"])
    system = prompts.specialist_system(probes.FANOUT_PROBE.fanout)
    assert json.dumps(probes.VALUE_SCHEMA, sort_keys=True) in system
    assert run.result["echoed"] == [f"j{i:03d}" for i in range(10) if i != 1]


def test_job_rows_deleted_after_the_plan_stop_the_run_before_the_aggregate(
    seeded, drive_fanout
) -> None:
    run = drive_fanout.start({"n": 5})
    drive_fanout.steps.pop()
    engine.run_step(run.pk)  # the decomposition only
    FanoutJob.objects.filter(run=run, job_id="j004").delete()  # someone with database access
    run = drive_fanout(run)
    assert run.status == S.AWAITING_REVIEW and run.result is None
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.VALIDATION_FAILED
    assert (
        ticket.message == "The jobs no longer cover the run's items: 1 item(s) have no job: 'j004'"
    )
    assert not ModelCall.objects.filter(run=run, job=None, turn=1).exists()  # no aggregate paid


def test_the_workflows_items_must_be_usable() -> None:
    spec = probes.FANOUT_PROBE.fanout
    assert item_keys(spec, {"n": 3}) == ["j000", "j001", "j002"]
    broken = dataclasses.replace(spec, items=lambda i: ["a", "b", "a"])
    with pytest.raises(InvalidItems, match="more than once: a"):
        item_keys(broken, {})
    with pytest.raises(InvalidItems, match="at most 300 jobs"):
        item_keys(dataclasses.replace(spec, items=lambda i: [str(k) for k in range(301)]), {})
    with pytest.raises(InvalidItems, match="no items"):
        item_keys(dataclasses.replace(spec, items=lambda i: []), {})


@pytest.mark.parametrize(
    ("wrong", "problem"),
    [
        ("miscount", "passed is 5 but the job results give 4"),
        ("drop", 'echoed: 1 item(s) of the job results are missing: "j000"'),
        ("invent", 'echoed: 1 item(s) are not from any passing job: "j999"'),
    ],
)
def test_an_aggregate_that_miscounts_drops_or_invents_is_refused(
    seeded, drive_fanout, wrong, problem
) -> None:
    run = drive_fanout(drive_fanout.start({"n": 4, "aggregate": wrong}))
    assert run.status == S.AWAITING_REVIEW and run.result is None
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.VALIDATION_FAILED
    assert "The aggregated result is invalid (2 answers)" in ticket.message
    assert problem in ticket.message
    assert ticket.context["details"]["errors"] == [problem]
    rejected = AuditEvent.objects.filter(run=run, kind="final.rejected")
    assert [e.payload["problems"] for e in rejected] == [[problem], [problem]]
    aggregate_calls = ModelCall.objects.filter(run=run, job=None, turn=1).order_by("attempt")
    asked = json.loads(aggregate_calls[1].request_content[0]["text"])
    assert asked["previous_answer_refused"] == [problem]
    # The jobs' work is kept: a reviewer's retry asks for the aggregate again, not the jobs.
    assert FanoutJob.objects.filter(run=run, status=J.SUCCEEDED).count() == 4
    assert not AuditEvent.objects.filter(run=run, kind="run.succeeded").exists()


def test_aggregate_problems_compare_counts_and_items_on_the_expected_keys() -> None:
    expected = {
        "total": 2,
        "by_rule": {"eval": 1},
        "findings": [{"file": "a.py", "line": 3}, {"file": "a.py", "line": 3}],
    }
    good = {
        "total": 2,
        "by_rule": {"eval": 1},
        "findings": [
            {"file": "a.py", "line": 3, "note": "prose is allowed"},
            {"line": 3, "file": "a.py"},
        ],
        "summary": "left to the output schema",
    }
    assert aggregate.problems(good, expected) == []
    bad = {
        "total": True,
        "by_rule": {"eval": 1, "sql": 0},
        "findings": [{"file": "a.py", "line": 3}, {"file": "b.py", "line": 3}],
    }
    assert aggregate.problems(bad, expected) == [
        "total is true but the job results give 2",
        "by_rule has sql, which the job results do not give",
        'findings: 1 item(s) of the job results are missing: {"file":"a.py","line":3}',
        'findings: 1 item(s) are not from any passing job: {"file":"b.py","line":3}',
    ]
    assert aggregate.problems({}, {"total": 0}) == ["total is missing (the job results give 0)"]


FANOUT_CORPUS = fanout_injection.CORPUS
PLAN_ATTACKS = {"skip_items", "skip_items_own_schema", "own_schema", "unknown_item"}


@pytest.mark.parametrize("entry", FANOUT_CORPUS, ids=[e["id"] for e in FANOUT_CORPUS])
def test_a_scanned_file_cannot_steer_the_plan_or_the_aggregate(
    seeded, drive_fanout, monkeypatch, entry
) -> None:
    """A file of the scanned tree tells the orchestrator to skip payments/, to use its own
    schema, or to leave findings out of the report, and the orchestrator obeys. The run must
    not succeed with that report: the plan or the aggregate is refused and a reviewer gets
    a validation_failed ticket naming what was wrong."""
    from demo import security_scan
    from orchestration.audit import verify_run

    monkeypatch.setattr(security_scan, "scan_tree", lambda: fanout_injection.tree(entry["payload"]))
    run = drive_fanout(drive_fanout.start({"repository": "demo-scan-tree"}, "scan_injection_probe"))
    jobs = FanoutJob.objects.filter(run=run)
    if entry["obey"] == "hide_source":
        # The prompts hid the payments sources; the jobs got them from the workflow anyway.
        assert run.status == S.SUCCEEDED, run.error
        reported = {(f["file"], f["rule"]) for f in run.result["findings"]}
        assert {
            ("src/payments/charge.py", "hardcoded-secret"),
            ("src/payments/charge.py", "sql-injection"),
            ("src/payments/refund.py", "shell-injection"),
        } <= reported
        assert verify_run(run.pk).ok
        return
    assert run.status == S.AWAITING_REVIEW, (run.status, run.result)
    assert run.result is None
    assert not AuditEvent.objects.filter(run=run, kind="run.succeeded").exists()
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.VALIDATION_FAILED
    if entry["obey"] in PLAN_ATTACKS:
        assert "The decomposition was refused (2 answers)" in ticket.message
        assert not jobs.exists()  # nothing ran on a plan the workflow did not allow
        assert AuditEvent.objects.filter(run=run, kind="fanout.plan_rejected").count() == 2
        if entry["obey"].startswith("skip_items"):
            assert "2 item(s) have no job: 'src/payments/charge.py', 'src/payments/refund.py'" in (
                " ".join(ticket.context["details"]["errors"])
            )
    else:
        assert "The aggregated result is invalid (2 answers)" in ticket.message
        # Every file was scanned; only the report was refused.
        assert jobs.count() == 8 and jobs.filter(status=J.SUCCEEDED).count() == 7
        assert AuditEvent.objects.filter(run=run, kind="final.rejected").count() == 2
        errors = " ".join(ticket.context["details"]["errors"])
        if entry["obey"] == "invent_finding":
            assert "not from any passing job" in errors and "handler_001.py" in errors
        else:
            assert "of the job results are missing" in errors
    assert verify_run(run.pk).ok


# --- a whole run --------------------------------------------------------------------------


def test_fanout_runs_every_job_persists_before_validation_and_aggregates(
    seeded, drive_fanout
) -> None:
    probes.FANOUT_SEEN.clear()
    run = drive_fanout(drive_fanout.start({"n": 12}))
    assert run.status == S.SUCCEEDED, run.error
    assert run.result == {"passed": 12, "failed": 0, "echoed": [f"j{i:03d}" for i in range(12)]}
    jobs = list(FanoutJob.objects.filter(run=run))
    assert [j.status for j in jobs] == [J.SUCCEEDED] * 12
    assert all(
        j.verdict == "PASS" and j.attempts == 1 and j.output == {"value": j.job_id} for j in jobs
    )
    # Every output is a JSONL line, written before its validator call was made.
    lines = {line["job_id"]: line for line in artifacts.read_lines(run.pk)}
    assert set(lines) == {j.job_id for j in jobs}
    for job in jobs:
        validator = ModelCall.objects.get(job=job, role="validator")
        assert lines[job.job_id]["output"] == {"value": job.job_id}
        assert lines[job.job_id]["at"] < validator.created_at.isoformat()
    # Every call is a ModelCall charged to the run: 1 decompose + 12 x 2 + 1 aggregate.
    calls = ModelCall.objects.filter(run=run, status="ok")
    assert Counter(calls.values_list("role", flat=True)) == {
        "orchestrator": 2,
        "specialist": 12,
        "validator": 12,
    }
    assert run.cost_usd == sum(c.cost_usd for c in calls) > 0
    assert sum(j.cost_usd for j in jobs) == sum(c.cost_usd for c in calls.exclude(job=None))
    fan = Fanout.objects.get(run=run)
    assert fan.phase == "done" and fan.total == 12
    assert AuditEvent.objects.filter(run=run, kind="fanout.job.passed").count() == 12


def test_a_failed_job_is_retried_once_and_only_once(seeded, drive_fanout) -> None:
    probes.FANOUT_SEEN.clear()
    run = drive_fanout(drive_fanout.start({"n": 10, "fail_once": ["j001"], "fail_twice": ["j002"]}))
    assert run.status == S.SUCCEEDED, run.error
    once, twice = (
        FanoutJob.objects.get(run=run, job_id="j001"),
        FanoutJob.objects.get(run=run, job_id="j002"),
    )
    assert (once.status, once.attempts, once.verdict) == (J.SUCCEEDED, 2, "PASS")
    assert once.retry_reason == "planted FAIL of j001 attempt 1"
    assert (twice.status, twice.attempts, twice.verdict) == (J.FAILED, 2, "FAIL")
    assert "Failed validation twice" in twice.reason
    # Exactly two specialist answers for each retried job, one for every other job.
    assert probes.FANOUT_SEEN[("j001", 1)] == 1 and probes.FANOUT_SEEN[("j001", 2)] == 1
    assert probes.FANOUT_SEEN[("j002", 1)] == 1 and probes.FANOUT_SEEN[("j002", 2)] == 1
    assert ("j002", 3) not in probes.FANOUT_SEEN
    assert ModelCall.objects.filter(job=twice, role="specialist").count() == 2
    assert ModelCall.objects.filter(job=twice, role="validator").count() == 2
    assert run.result["passed"] == 9 and run.result["failed"] == 1
    assert AuditEvent.objects.filter(run=run, kind="fanout.job.retried").count() == 2


def test_schema_violation_fails_in_code_without_a_validator_call(seeded, drive_fanout) -> None:
    run = drive_fanout(drive_fanout.start({"n": 10, "bad_output": ["j003"]}))
    assert run.status == S.SUCCEEDED
    job = FanoutJob.objects.get(run=run, job_id="j003")
    assert (job.status, job.attempts, job.verdict) == (J.FAILED, 2, "FAIL")
    assert "Schema: (root): 'value' is a required property" in job.reason
    assert job.retry_reason.startswith("Schema:")
    assert ModelCall.objects.filter(job=job, role="specialist").count() == 2
    assert not ModelCall.objects.filter(job=job, role="validator").exists()


# --- the breaker ----------------------------------------------------------------------------


@pytest.mark.parametrize(("failing", "halts"), [(2, False), (3, True)])
def test_breaker_trips_exactly_past_the_threshold(seeded, drive_fanout, failing, halts) -> None:
    """N=10 at 20%: two failed jobs are allowed, the third halts the run."""
    fail = [f"j{i:03d}" for i in range(failing)]
    run = drive_fanout(drive_fanout.start({"n": 10, "fail_twice": fail}))
    jobs = FanoutJob.objects.filter(run=run)
    if not halts:
        assert run.status == S.SUCCEEDED
        assert (
            jobs.filter(status=J.FAILED).count() == 2
            and jobs.filter(status=J.SUCCEEDED).count() == 8
        )
        assert not run.tickets.exists()
        return
    assert run.status == S.HALTED
    assert jobs.filter(status=J.FAILED).count() == 3
    ticket = run.tickets.get()
    assert (
        ticket.reason == EscalationTicket.Reason.FAILURE_RATE_EXCEEDED and ticket.status == "open"
    )
    assert "3 of 10 jobs failed" in ticket.message
    assert Fanout.objects.get(run=run).phase == "halted"
    # Nothing runs after the halt and nothing is left outstanding.
    assert not jobs.filter(status__in=(J.QUEUED, J.RUNNING)).exists()
    assert not ModelCall.objects.filter(run=run, turn=1, job=None).exists()  # never aggregated
    assert AuditEvent.objects.filter(run=run, kind="fanout.halted").count() == 1


def test_breaker_cancels_outstanding_jobs_and_stops_dispatching(
    seeded, drive_fanout, settings
) -> None:
    settings.FANOUT_PER_RUN_CONCURRENCY = 4
    run = drive_fanout(drive_fanout.start({"n": 40, "fail_twice": [f"j{i:03d}" for i in range(9)]}))
    assert run.status == S.HALTED
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.filter(status=J.FAILED).count() == 9  # 40 x 20% = 8 allowed
    assert jobs.filter(status=J.CANCELLED).count() > 20
    assert not jobs.filter(status__in=(J.QUEUED, J.RUNNING)).exists()
    # The cancelled jobs were never started.
    assert not ModelCall.objects.filter(job__status=J.CANCELLED, job__attempts=0).exists()


def test_a_halt_waits_for_a_charge_in_flight_instead_of_deadlocking(seeded, drive_fanout) -> None:
    """A job recording its answer holds the run's row (the charge) and then updates its own
    job row (its cost); a halt decided meanwhile must take the run before it cancels the jobs,
    or each holds what the other wants and Postgres aborts one of them."""
    from django.db import connection, transaction
    from django.db.models import F

    from orchestration.fanout import coordinator

    run = drive_fanout.start({"n": 10})
    drive_fanout.steps.clear()
    engine.run_step(run.pk)  # the plan: 10 jobs, the first ones dispatched
    jobs = FanoutJob.objects.filter(run=run).order_by("seq")
    in_flight = jobs.filter(status=J.RUNNING).first()
    FanoutJob.objects.filter(pk__in=[j.pk for j in jobs.exclude(pk=in_flight.pk)[:3]]).update(
        status=J.FAILED
    )  # 3 failed > floor(20% x 10): the next decision halts
    locked, errors = threading.Event(), []

    def charge_in_flight() -> None:
        try:
            with transaction.atomic():
                list(Run.objects.locked().filter(pk=run.pk).values_list("pk"))
                locked.set()
                time.sleep(1.0)  # the halt starts meanwhile
                FanoutJob.objects.filter(pk=in_flight.pk).update(cost_usd=F("cost_usd") + 1)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            connection.close()

    charger = threading.Thread(target=charge_in_flight)
    charger.start()
    assert locked.wait(10)
    try:
        coordinator.job_settled(run.pk)
    except Exception as exc:  # noqa: BLE001 - the test reports it
        errors.append(exc)
    charger.join(30)
    assert errors == []
    run.refresh_from_db()
    assert run.status == S.HALTED
    in_flight.refresh_from_db()
    assert in_flight.status == J.CANCELLED and in_flight.cost_usd == 1


def test_a_halted_runs_ticket_can_only_be_acknowledged(seeded, drive_fanout, reviewer) -> None:
    from reviews.resolutions import ReviewError, resolve

    run = drive_fanout(drive_fanout.start({"n": 5, "fail_twice": ["j000", "j001"]}))
    assert run.status == S.HALTED
    ticket = run.tickets.get()
    with pytest.raises(ReviewError, match="only 'fail'"):
        resolve(ticket.pk, reviewer, "resume", note="go on")
    resolve(ticket.pk, reviewer, "fail", comment="seen; the data was bad")
    ticket.refresh_from_db()
    run.refresh_from_db()
    assert ticket.status == "resolved" and run.status == S.HALTED


# --- the per-run and global caps ----------------------------------------------------------


def _max_overlap(calls: Any) -> int:
    edges = []
    for created, finished in calls.values_list("created_at", "finished_at"):
        edges += [(created, 1), (finished, -1)]
    peak = current = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def test_the_per_run_cap_bounds_jobs_in_flight(seeded, drive_fanout, settings) -> None:
    settings.FANOUT_PER_RUN_CONCURRENCY = 5
    # Calls long enough to overlap: a thread goes on with the next job as soon as its job
    # settles, so the five slots are not refilled in step, and a call as short as a job's
    # bookkeeping between calls would rarely have all five in flight at once.
    settings.SIMULATOR = {**settings.SIMULATOR, "fixed_latency_seconds": 0.3}
    from orchestration.llm import reset_clients
    from simulator.django import build_api_from_settings, reset_api

    reset_api()
    reset_clients()
    run = drive_fanout(drive_fanout.start({"n": 30}), threads=16)
    assert run.status == S.SUCCEEDED
    job_calls = ModelCall.objects.filter(run=run).exclude(job=None)
    assert _max_overlap(job_calls) == 5  # reached, never exceeded
    assert build_api_from_settings().peak_in_flight <= 5


def test_the_global_slot_semaphore_never_exceeds_its_cap(settings) -> None:
    settings.FANOUT_GLOBAL_CONCURRENCY = 3
    held, peak, lock = [0], [0], threading.Lock()

    def worker(i: int) -> None:
        with slots.slot(f"t{i}", wait_seconds=10):
            with lock:
                held[0] += 1
                peak[0] = max(peak[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= 1

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(worker, range(36)))
    assert peak[0] == 3
    assert slots.in_use() == 0


def test_an_abandoned_slot_comes_back_after_its_lease(settings) -> None:
    settings.FANOUT_GLOBAL_CONCURRENCY = 1
    settings.FANOUT_SLOT_LEASE_SECONDS = 1
    assert slots.try_acquire("dead-worker")  # never released, as after a SIGKILL
    with pytest.raises(slots.NoSlot), slots.slot("live", wait_seconds=0.3):
        pass
    time.sleep(1.1)
    with slots.slot("live", wait_seconds=0.3):
        assert slots.in_use() == 1


# --- costs ------------------------------------------------------------------------------------


def test_budget_breach_pauses_the_run_and_resume_finishes_it(
    seeded, drive_fanout, monkeypatch, manager
) -> None:
    from costs import accounting
    from reviews.resolutions import resolve

    calls = {"n": 0}
    real = accounting.spend_breach

    def breach_once(run):
        calls["n"] += 1
        return "The run cost too much (test)." if calls["n"] == 6 else real(run)

    monkeypatch.setattr(accounting, "spend_breach", breach_once)
    run = drive_fanout(drive_fanout.start({"n": 8}), threads=2)
    assert run.status == S.AWAITING_REVIEW
    assert run.tickets.get().reason == EscalationTicket.Reason.BUDGET_EXCEEDED
    jobs = FanoutJob.objects.filter(run=run)
    assert not jobs.filter(status=J.RUNNING).exists()  # handed back, not lost
    resolve(run.tickets.get().pk, manager, "resume", note="approved by the budget owner")
    run = drive_fanout(run)
    assert run.status == S.SUCCEEDED
    assert jobs.filter(status=J.SUCCEEDED).count() == 8
    # No job was answered twice for the same attempt.
    for job in jobs:
        assert ModelCall.objects.filter(job=job, role="specialist", status="ok").count() == 1


def test_estimate_of_1000_skus_is_over_the_threshold_and_waits_for_a_manager(
    seeded, settings
) -> None:
    # On the December 2026 lineup (Sonnet 5 at $2/$10 for the 2,000 specialist and validator
    # calls) 1,000 SKUs are estimated at about $17: under the default $20, over a $10 threshold.
    settings.APPROVAL_THRESHOLD_USD = Decimal("10")
    run = start_run("ad_variants", {"catalog": "demo", "skus": 1000}, _operator())
    assert run.status == S.AWAITING_APPROVAL
    assert run.estimate_usd > Decimal("10")
    assert [row["model"] for row in run.estimate["by_model"]] == [
        "claude-opus-5",
        "claude-sonnet-5",
    ]
    items = [line["item"] for line in run.estimate["lines"]]
    assert "Fan-out size" in items and "Retry allowance" in items
    assert any(i.startswith("Specialists") for i in items) and any(
        i.startswith("Validators") for i in items
    )
    small = start_run("security_scan", {"repository": "demo-scan-tree"}, _operator())
    assert small.status == S.QUEUED and small.estimate_usd < Decimal("10")


def test_security_scan_demo_finds_the_planted_issues(seeded, drive_fanout) -> None:
    from demo import security_scan

    run = drive_fanout(
        drive_fanout.start({"repository": "demo-scan-tree", "limit": 60}, "security_scan")
    )
    assert run.status == S.SUCCEEDED, run.error
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.filter(status=J.FAILED).count() == 2  # the obfuscated evals in files 17 and 59
    assert jobs.filter(attempts=2, status=J.SUCCEEDED).count() == 6  # split secrets: 3, 13, ..., 53
    assert run.result["jobs_passed"] == 58 and run.result["files_scanned"] == 58
    assert run.result["findings_by_rule"]["sql-injection"] == 9  # 0, 7, ..., 56
    # Every finding of every passing job is in the report, with its file and line.
    reported = Counter(
        (f["file"], f["line"], f["rule"], f["severity"]) for f in run.result["findings"]
    )
    found = Counter(
        (j.job_id, f["line"], f["rule"], f["severity"])
        for j in jobs.filter(status=J.SUCCEEDED)
        for f in j.output["findings"]
    )
    assert reported == found and sum(run.result["findings_by_severity"].values()) == sum(
        found.values()
    )
    assert {f["file"] for f in run.result["not_scanned"]} == {
        "src/webhooks/handler_017.py",
        "src/storage/handler_059.py",
    }
    # The plan was two job kinds, written once and expanded by the engine over the 60 files.
    plan = ModelCall.objects.get(run=run, job__isnull=True, turn=0)
    assert len(plan.text) < 1_000 and '"job_kinds"' in plan.text
    assert [j.job_id for j in jobs.order_by("seq")] == security_scan.items({"limit": 60})
    billing = jobs.get(job_id="src/billing/handler_010.py").prompt
    assert billing.startswith("Review this file for security issues: src/billing/handler_010.py.")
    assert "look hard for secrets" in billing
    assert "look hard" not in jobs.get(job_id="src/reports/handler_012.py").prompt
    # What the plan cost is what the estimate priced (a few hundred tokens, not one per file),
    # and the whole run stays within the estimate's upper bound.
    declared = security_scan.WORKFLOW.fanout.decompose_output_tokens
    assert declared / 2 <= plan.output_tokens <= declared
    assert run.cost_usd <= Decimal(run.estimate["upper_usd"])


def test_ad_variants_demo_writes_8_ads_per_sku_and_lists_the_skus_without(
    seeded, drive_fanout
) -> None:
    run = drive_fanout(drive_fanout.start({"catalog": "demo", "skus": 30}, "ad_variants"))
    assert run.status == S.SUCCEEDED, run.error
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.count() == 30 and jobs.filter(status=J.FAILED).count() == 1  # SKU-0013 insists
    assert run.result["skus_total"] == 30 and run.result["skus_with_ads"] == 29
    assert run.result["ads_written"] == 29 * 8
    assert [s["sku"] for s in run.result["skus_without_ads"]] == ["SKU-0013"]
    assert all(j.schema == ad_variants.AD_SCHEMA for j in jobs)
    # One brief, written once with the tone, expanded over the SKUs by the engine.
    plan = ModelCall.objects.get(run=run, job__isnull=True, turn=0)
    declared = ad_variants.WORKFLOW.fanout.decompose_output_tokens
    assert declared / 2 <= plan.output_tokens <= declared
    assert {j.prompt for j in jobs} == {
        f"Write 2 ads per channel (search, social, display, email) for {j.job_id}, using only the "
        "product facts in item (name, price, features). Tone: friendly. Headline at most 40 "
        "characters, body at most 125. No unverifiable claims."
        for j in jobs
    }
    assert run.cost_usd <= Decimal(run.estimate["upper_usd"])


# --- a real worker: SIGKILL and the global cap across processes ------------------------------


FANOUT_ENV = {
    "FANOUT_JOB_LEASE_SECONDS": "3",
    "FANOUT_SLOT_LEASE_SECONDS": "3",
    "FANOUT_REAPER_INTERVAL_SECONDS": "1",
}


@pytest.mark.worker
def test_sigkill_mid_fanout_loses_no_job_and_finishes_none_twice(
    seeded, worker_factory, settings
) -> None:
    env = {
        **FANOUT_ENV,
        "SIMULATOR_FIXED_LATENCY_SECONDS": "0.3",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "FANOUT_SLOT_KEY": settings.FANOUT_SLOT_KEY,
    }
    first = worker_factory(env=env, pool="threads", concurrency=12)
    run = start_run("fanout_probe", {"n": 40, "fail_once": ["j005", "j020"]}, _operator())
    # Kill while jobs are in flight and some are done.
    deadline = time.monotonic() + 60
    while not (
        FanoutJob.objects.filter(run=run, status=J.SUCCEEDED).count() >= 5
        and ModelCall.objects.filter(run=run, status="pending").exclude(job=None).exists()
    ):
        assert time.monotonic() < deadline, "the fan-out did not get going"
        time.sleep(0.05)
    first.kill()
    in_flight = set(
        ModelCall.objects.filter(run=run, status="pending")
        .exclude(job=None)
        .values_list("job_id", flat=True)
    )
    assert in_flight
    worker_factory(env=env, pool="threads", concurrency=12)
    run = wait_for(run, (S.SUCCEEDED, S.FAILED, S.HALTED, S.AWAITING_REVIEW), timeout=120)
    assert run.status == S.SUCCEEDED, run.error
    jobs = FanoutJob.objects.filter(run=run)
    assert jobs.count() == 40 and jobs.filter(status=J.SUCCEEDED).count() == 40
    # Each job finished exactly once, and no attempt was answered twice.
    passed = Counter(
        e.payload["job_id"] for e in AuditEvent.objects.filter(run=run, kind="fanout.job.passed")
    )
    assert set(passed.values()) == {1} and len(passed) == 40
    for job in jobs:
        for role in ("specialist", "validator"):
            per_turn = Counter(
                ModelCall.objects.filter(job=job, role=role, status="ok").values_list(
                    "turn", flat=True
                )
            )
            assert all(n == 1 for n in per_turn.values()), (job.job_id, role, per_turn)
    interrupted = ModelCall.objects.filter(run=run, status="error", error__startswith="interrupted")
    assert set(interrupted.values_list("job_id", flat=True)) == in_flight
    assert {line["job_id"] for line in artifacts.read_lines(run.pk)} == set(
        jobs.values_list("job_id", flat=True)
    )


@pytest.mark.worker
def test_global_cap_holds_across_workers_and_runs(seeded, worker_factory, settings) -> None:
    env = {
        **FANOUT_ENV,
        "FANOUT_JOB_LEASE_SECONDS": "30",
        "FANOUT_SLOT_LEASE_SECONDS": "30",
        "SIMULATOR_FIXED_LATENCY_SECONDS": "0.1",
        "FANOUT_GLOBAL_CONCURRENCY": "4",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "FANOUT_SLOT_KEY": settings.FANOUT_SLOT_KEY,
    }
    worker_factory(env=env, pool="threads", concurrency=10)
    worker_factory(env=env, pool="threads", concurrency=10)
    runs = [start_run("fanout_probe", {"n": 25}, _operator()) for _ in range(2)]
    for run in runs:
        assert (
            wait_for(run, (S.SUCCEEDED, S.FAILED, S.HALTED, S.AWAITING_REVIEW), timeout=120).status
            == S.SUCCEEDED
        )
    job_calls = ModelCall.objects.filter(run__in=runs).exclude(job=None)
    assert job_calls.count() == 100
    assert _max_overlap(job_calls) == 4  # two workers x 10 threads x 2 runs, and never more than 4
