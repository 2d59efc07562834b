"""Fan-out cost levers and roles, against the simulator: the escalation reviewer, batch mode
(Message Batches for specialists and validators), the shared cached prefix (1h TTL where a
run outlives 5 minutes, cache lines in the estimate, recorded savings), and the plan-size
check ("decompose into exactly N jobs").

Runs are driven in this process as in tests/test_fanout.py: steps and job tasks are
collected instead of sent to Celery, and beat's batch poll is called when nothing else is
left to do.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

import tests.fanout_levers_workflows as probes
from costs.pricing import Usage, batch_saving, cache_saving, cost_of
from costs.reports import run_savings, spend_report
from demo import ad_variants, security_scan
from orchestration import engine, model_calls
from orchestration.fanout import jobs as fanout_jobs
from orchestration.fanout import prompts, slots
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.launch import RunRefused, preview, start_run
from orchestration.models import AuditEvent, ModelCall, Run
from reviews import resolutions

S = Run.Status
J = FanoutJob.Status


@pytest.fixture(autouse=True)
def _fanout_settings(settings: Any, tmp_path: Any) -> None:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.FANOUT_SLOT_KEY = f"test:fanout:slots:{tmp_path.name}"
    settings.SIMULATOR = {**settings.SIMULATOR, "batch_seconds": 0.0}
    slots.reset()


@pytest.fixture
def drive(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    steps: list[str] = []
    queued: list[int] = []
    lock = threading.Lock()

    def _enqueue_job(pk: int, countdown: float | None = None) -> None:
        with lock:
            queued.append(pk)

    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: steps.append(str(run_id)),
    )
    monkeypatch.setattr("orchestration.fanout.jobs.enqueue", _enqueue_job)
    from django.db import connection

    from orchestration import tasks

    def _run_job(pk: int) -> None:
        try:
            tasks.run_fanout_job(pk)
        finally:
            connection.close()

    def _drive(run: Run, rounds: int = 600) -> Run:
        # Like a worker pool: a job task starts as soon as it is sent (see tests/test_fanout.py).
        running: set[Future] = set()
        polled = False
        with ThreadPoolExecutor(8) as pool:
            while rounds:
                with lock:
                    batch, queued[:] = list(queued), []
                running.update(pool.submit(_run_job, pk) for pk in batch)
                if running:
                    done, running = wait(running, timeout=0.05, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                    polled = False
                    continue
                rounds -= 1
                run.refresh_from_db()
                if steps:
                    steps.pop()
                    engine.run_step(run.pk)
                    polled = False
                    continue
                if run.status not in (S.QUEUED, S.RUNNING):
                    return run
                if not polled:  # beat: enqueue the jobs whose batch has ended
                    engine.poll_batches()
                    polled = True
                    continue
                raise AssertionError(f"run {run.pk} is {run.status} with nothing left to do")
        raise AssertionError("the run did not stop")

    def _start(run_input: dict, workflow: str = "fanout_review_probe", **options: Any) -> Run:
        user = get_user_model().objects.get(username="operator")
        run = start_run(workflow, run_input, user, options=options or None)
        steps.append(str(run.pk))
        return run

    _drive.start = _start
    _drive.steps = steps
    return _drive


def _job(run: Run, job_id: str) -> FanoutJob:
    return FanoutJob.objects.get(run=run, job_id=job_id)


def _reviewer_calls(run: Run) -> Any:
    return ModelCall.objects.filter(run=run, role=ModelCall.Role.REVIEWER)


# --- the escalation reviewer ----------------------------------------------------------------


def test_the_reviewer_settles_twice_failed_and_edge_case_jobs(seeded, drive) -> None:
    run = drive(
        drive.start(
            {
                "n": 8,
                "fail_twice": ["j001", "j002"],
                "edge": ["j003"],
                "review": {"j002": "fail"},
            }
        )
    )
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    accepted, failed, edge = _job(run, "j001"), _job(run, "j002"), _job(run, "j003")
    # Failed twice, then accepted by the reviewer with its reason: the attempt-2 output stands.
    assert (accepted.status, accepted.attempts, accepted.verdict) == (J.SUCCEEDED, 2, "FAIL")
    assert (accepted.review, accepted.review_attempt) == ("accept", 2)
    assert (
        accepted.review_reason
        == "Accepted by the escalation reviewer: j001's value is the job id: the validator was wrong"
    )
    assert accepted.output == {"value": "j001"}
    # Failed twice, and the reviewer agrees: failed with the reviewer's reason.
    assert (failed.status, failed.review) == (J.FAILED, "fail")
    assert failed.reason == "Failed by the escalation reviewer: j002 is not right after all"
    # An edge case goes to the reviewer at once: no retry.
    assert (edge.status, edge.attempts, edge.verdict, edge.review) == (
        J.SUCCEEDED,
        1,
        "EDGE",
        "accept",
    )
    # One reviewer call per reviewed job, on the reviewer's model (the orchestrator's: Opus),
    # with the job, both outputs and the validator's reasons; charged to the run.
    calls = list(_reviewer_calls(run).order_by("job__seq"))
    assert [c.job.job_id for c in calls] == ["j001", "j002", "j003"] and all(
        c.status == "ok" for c in calls
    )
    assert {c.model for c in calls} == {probes.REVIEW_PROBE.orchestrator_model}
    sent = calls[0].request_content[0]["text"]
    assert (
        '"attempt": 1' in sent
        and '"attempt": 2' in sent
        and "planted FAIL of j001 attempt 1" in sent
    )
    assert "planted FAIL of j001 attempt 2" in sent and '"acceptable_attempts": [1, 2]' in sent
    assert all(c.cost_usd > 0 for c in calls)
    assert run.cost_usd == sum(c.cost_usd for c in ModelCall.objects.filter(run=run, status="ok"))
    # No human saw anything: every disputed job was settled.
    assert not run.tickets.exists()
    kinds = Counter(
        e.payload["review"] for e in AuditEvent.objects.filter(run=run, kind="fanout.job.reviewed")
    )
    assert kinds == {"accept": 2, "fail": 1}
    assert run.result == {
        "passed": 7,
        "failed": 1,
        "echoed": [f"j{i:03d}" for i in range(8) if i != 2],
    }


def test_a_job_with_no_output_that_passed_the_schema_never_reaches_the_reviewer(
    seeded, drive
) -> None:
    run = drive(drive.start({"n": 4, "bad_twice": ["j000"], "review": {"j000": "accept"}}))
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    job = _job(run, "j000")
    assert (job.status, job.review) == (J.FAILED, "")
    assert "no output passed the schema" in job.reason
    assert not _reviewer_calls(run).exists()


def test_an_output_telling_the_reviewer_to_accept_cannot_pass_the_schema(
    seeded, drive, settings
) -> None:
    """Attempt 1 broke the schema and tells the reviewer to accept it; the (obedient) reviewer
    does. The engine refuses that answer every time; the job goes to a human, and its
    schema-breaking output is never stored as a result."""
    run = drive(drive.start({"n": 4, "hostile": ["j001"], "review": {"j001": "obey"}}))
    assert run.status == S.AWAITING_REVIEW
    job = _job(run, "j001")
    assert job.status == J.QUEUED and job.review == "escalate"
    assert "no usable answer from the reviewer" in job.review_reason
    calls = list(_reviewer_calls(run))
    assert len(calls) == settings.LLM_STEP_MAX_ATTEMPTS
    assert all("attempt 1 cannot be accepted (acceptable: [2]" in c.error for c in calls)
    ticket = run.tickets.get()
    assert ticket.reason == "ambiguity" and ticket.failing_model_call.job_id == job.pk
    review = ticket.context["details"]["fanout_review"]
    assert review["proposed_attempt"] == 2 and [a["schema_ok"] for a in review["attempts"]] == [
        False,
        True,
    ]
    assert "Approve accepts attempt 2's output" in ticket.message


def test_what_the_reviewer_cannot_settle_goes_to_a_human_who_decides(
    seeded, drive, reviewer, client
) -> None:
    run = drive(
        drive.start(
            {
                "n": 6,
                "fail_twice": ["j001", "j004"],
                "review": {"j001": "escalate", "j004": "escalate"},
            }
        )
    )
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    job_id = ticket.context["details"]["fanout_review"]["job_id"]
    other = "j004" if job_id == "j001" else "j001"
    assert ticket.message.startswith(
        f"The escalation reviewer (claude-opus-5) could not settle job {job_id}: "
    )
    assert "needs a person: the brief is unclear" in ticket.message
    # The ticket page shows what the reviewer decided and why, and both attempts.
    client.force_login(reviewer)
    page = client.get(f"/reviews/tickets/{ticket.pk}/").content.decode()
    assert "what the escalation reviewer decided" in page and "the brief is unclear" in page
    assert "planted FAIL of" in page and "Approve accepts attempt 2" in page
    # A human approves: the job is accepted with the human's words; the run goes on, and the
    # other escalated job opens its own ticket.
    resolutions.resolve(ticket.pk, reviewer, "approve", comment="the value is right")
    run = drive(run)
    first = _job(run, job_id)
    assert first.status == J.SUCCEEDED and first.output == {"value": job_id}
    assert first.review_reason == f"Accepted by reviewer on ticket #{ticket.pk}: the value is right"
    assert run.status == S.AWAITING_REVIEW
    second = run.tickets.exclude(pk=ticket.pk).get()
    assert second.context["details"]["fanout_review"]["job_id"] == other
    resolutions.resolve(second.pk, reviewer, "resume", note="not an echo: leave it out")
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    last = _job(run, other)
    assert last.status == J.FAILED
    assert (
        last.reason
        == f"Failed by reviewer on ticket #{second.pk} (resume): not an echo: leave it out"
    )
    # The reviewer model was asked once per job: a human's decision costs no second review.
    assert _reviewer_calls(run).count() == 2
    assert run.result["failed"] == 1 and run.result["passed"] == 5


def test_reviews_are_limited_per_run_in_code(seeded, drive) -> None:
    planted = {"j001", "j002", "j003", "j005"}
    run = drive(drive.start({"n": 10, "fail_twice": sorted(planted)}))
    assert run.status == S.AWAITING_REVIEW
    assert Fanout.objects.get(run=run).reviews_used == 3  # max_reviews
    reviewed = {c.job.job_id for c in _reviewer_calls(run)}
    assert len(reviewed) == 3 and _reviewer_calls(run).count() == 3
    (left,) = planted - reviewed
    job = _job(run, left)
    assert (
        job.review == "escalate"
        and "the run's 3 escalation review(s) are used" in job.review_reason
    )
    ticket = run.tickets.get()
    assert ticket.context["details"]["fanout_review"]["decided_by"] == "engine"
    assert ticket.message.startswith(
        f"Job {left} needs a human: the run's 3 escalation review(s) are used"
    )


def test_the_estimate_prices_the_reviewer(seeded, operator) -> None:
    result = preview("fanout_review_probe", {"n": 100}, operator)
    lines = {line["item"]: line for line in result.estimate.lines}
    reviewer = lines["Escalation reviewer (claude-opus-5)"]
    assert reviewer["calc"].startswith("2 expected review(s) (2% of jobs, at most 3)")
    per_review = Decimal(2500) * 5 / 1_000_000 + Decimal(200) * 25 / 1_000_000
    assert reviewer["usd"] == f"${2 * per_review:.6f}"
    assert lines["Review allowance"]["usd"] == f"${per_review:.6f}"  # the third review


# --- exactly N jobs -------------------------------------------------------------------------


def test_a_plan_of_another_size_than_the_estimate_priced_is_refused(seeded, drive) -> None:
    run = drive.start({"n": 5, "priced": 6})
    assert run.estimate["jobs"] == 6
    run = drive(run)
    assert run.status == S.AWAITING_REVIEW
    assert not FanoutJob.objects.filter(run=run).exists()
    refusals = AuditEvent.objects.filter(run=run, kind="fanout.plan_rejected")
    assert refusals.count() == 2
    problem = "the plan has 5 job(s) but the estimate priced exactly 6"
    assert all(problem in e.payload["problems"][0] for e in refusals)
    assert problem in run.tickets.get().message
    fine = drive(drive.start({"n": 5, "priced": 5}))
    assert fine.status == S.SUCCEEDED and FanoutJob.objects.filter(run=fine).count() == 5


# --- batch mode -----------------------------------------------------------------------------


def test_batch_mode_sends_specialists_and_validators_through_message_batches(seeded, drive) -> None:
    realtime = drive.start({"n": 6, "fail_twice": ["j002"]})
    run = drive.start({"n": 6, "fail_twice": ["j002"]}, batch=True)
    assert run.estimate_usd < realtime.estimate_usd
    assert "Batch mode (specialists and validators)" in [
        line["item"] for line in run.estimate["lines"]
    ]
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    calls = ModelCall.objects.filter(run=run, status="ok")
    jobs_calls = list(calls.filter(role__in=("specialist", "validator")))
    assert len(jobs_calls) == 6 + 6 + 2  # j002 twice
    for mc in jobs_calls:
        assert mc.is_batch and mc.batch_id.startswith("msgbatch_")
        usage = Usage.from_api(mc.usage)
        assert mc.cost_usd == cost_of(usage, mc.price, batch=True) == cost_of(usage, mc.price) / 2
    # The orchestrator and the reviewer answer in real time, at the list price.
    for mc in calls.filter(role__in=("orchestrator", "reviewer")):
        assert not mc.is_batch and not mc.batch_id
    assert calls.filter(role="reviewer").count() == 1
    assert len({mc.batch_id for mc in jobs_calls}) == len(jobs_calls)
    assert AuditEvent.objects.filter(run=run, kind="model.batch_submitted").count() == len(
        jobs_calls
    )
    assert (
        run_savings(run)["batch"]
        == sum(batch_saving(Usage.from_api(c.usage), c.price, batch=True) for c in jobs_calls)
        > 0
    )


class _Killed(BaseException):
    """The worker dies (SIGKILL) right after the batch was created."""


def test_a_worker_killed_after_creating_a_batch_never_creates_a_second(
    seeded, drive, monkeypatch
) -> None:
    run = drive.start({"n": 2}, batch=True)
    drive.steps.pop()
    engine.run_step(run.pk)  # the decomposition; the first job is dispatched
    job = FanoutJob.objects.filter(run=run, status=J.RUNNING).order_by("seq").first()
    real_submit = model_calls.submit_batch
    created: list[str] = []

    def submit_then_die(mc: ModelCall, *args: Any, **kwargs: Any) -> Any:
        assert real_submit(mc, *args, **kwargs) is None
        created.append(ModelCall.objects.get(pk=mc.pk).batch_id)
        raise _Killed

    monkeypatch.setattr(model_calls, "submit_batch", submit_then_die)
    with pytest.raises(_Killed):
        fanout_jobs.run_job(job.pk)
    monkeypatch.setattr(model_calls, "submit_batch", real_submit)
    pending = ModelCall.objects.get(job=job, role="specialist")
    assert pending.status == "pending" and pending.batch_id == created[0]
    # Its lease runs out; the reaper (or beat) sends the job again: it collects that batch.
    FanoutJob.objects.filter(pk=job.pk).update(lease_expires_at=job.created_at)
    fanout_jobs.run_job(job.pk)  # the specialist answer collected, the validator submitted
    specialist = ModelCall.objects.filter(job=job, role="specialist")
    assert (
        specialist.count() == 1
        and specialist.get().status == "ok"
        and specialist.get().batch_id == created[0]
    )
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    assert ModelCall.objects.filter(job=job, role="specialist").count() == 1
    submitted = AuditEvent.objects.filter(
        run=run, kind="model.batch_submitted", payload__batch_id=created[0]
    )
    assert submitted.count() == 1


def test_batch_is_offered_only_where_it_applies(seeded, operator, client) -> None:
    with pytest.raises(RunRefused, match="Batch mode does not apply to fanout_short_probe"):
        start_run("fanout_short_probe", {"n": 2}, operator, options={"batch": True})
    assert not Run.objects.filter(workflow_name="fanout_short_probe").exists()
    client.force_login(operator)
    assert 'value="batch"' not in client.get("/runs/new/fanout_short_probe/").content.decode()
    page = client.get("/runs/new/security_scan/").content.decode()
    assert 'value="batch"' in page and "for the specialists and validators" in page


# --- prompt caching -------------------------------------------------------------------------


def test_specialists_share_one_cached_prefix_written_once_and_read_by_the_others(
    seeded, drive
) -> None:
    run = drive.start({"n": 10})
    assert run.estimate["cache"]["specialist_cached"] and run.estimate["cache"]["ttl"] == "5m"
    items = [line["item"] for line in run.estimate["lines"]]
    assert (
        "Specialist prefix: cache write (5m)" in items and "Specialist prefix: cache reads" in items
    )
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    assert Fanout.objects.get(run=run).warm_first
    for role in ("specialist", "validator"):
        calls = list(
            ModelCall.objects.filter(run=run, role=role, status="ok").order_by("created_at")
        )
        prefix = calls[0].cache_write_5m_tokens
        assert prefix >= 1024  # over Sonnet's minimum: cached
        # The first job ran alone: its calls wrote the prefix, every other call read it.
        assert [c.cache_write_tokens for c in calls[1:]] == [0] * 9
        assert [c.cache_read_tokens for c in calls[1:]] == [prefix] * 9
        assert calls[0].cache_read_tokens == 0
    saved = run_savings(run)["cache"]
    calls = ModelCall.objects.filter(run=run, status="ok")
    assert saved == sum(cache_saving(Usage.from_api(c.usage), c.price) for c in calls) > 0


def test_a_run_that_outlives_five_minutes_caches_for_an_hour(seeded, drive) -> None:
    run = drive.start({"n": 3}, workflow="fanout_slow_probe")
    assert run.estimate["cache"]["ttl"] == "1h"
    assert "Specialist prefix: cache write (1h)" in [line["item"] for line in run.estimate["lines"]]
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    first = ModelCall.objects.filter(run=run, role="specialist").order_by("created_at").first()
    assert first.cache_write_1h_tokens >= 1024 and first.cache_write_5m_tokens == 0
    batch_run = drive.start({"n": 3}, batch=True)  # a batch run may wait minutes between answers
    assert batch_run.estimate["cache"]["ttl"] == "1h"


def test_a_prefix_under_the_minimum_is_not_cached_and_the_estimate_says_so(seeded, drive) -> None:
    run = drive.start({"n": 3}, workflow="fanout_short_probe")
    lines = {line["item"]: line["calc"] for line in run.estimate["lines"]}
    assert "under claude-sonnet-5's 1,024-token minimum" in lines["Specialist prefix, not cached"]
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert not Fanout.objects.get(run=run).warm_first
    calls = ModelCall.objects.filter(run=run, role="specialist")
    assert all(c.cache_write_tokens == 0 and c.cache_read_tokens == 0 for c in calls)


def test_the_demos_share_a_prefix_over_the_minimum(seeded, operator) -> None:
    for workflow, run_input in (
        (security_scan.WORKFLOW, {"repository": "demo-scan-tree", "limit": 200}),
        (ad_variants.WORKFLOW, {"catalog": "demo", "skus": 1000}),
    ):
        estimate = preview(workflow.name, run_input, operator).estimate
        assert estimate.cache["specialist_cached"] and estimate.cache["validator_cached"], (
            workflow.name
        )
        assert estimate.cache["specialist_prefix_tokens"] >= 1024
        assert prompts.specialist_system(workflow.fanout).count("<worked_example") >= 3


def test_the_costs_page_shows_what_caching_and_batch_saved_per_workflow(
    seeded, drive, manager, client
) -> None:
    drive(drive.start({"n": 6}))
    drive(drive.start({"n": 4}, batch=True))
    report = spend_report(7)
    row = next(r for r in report.by_workflow if r["name"] == "fanout_review_probe")
    calls = ModelCall.objects.filter(run__workflow_name="fanout_review_probe", status="ok")
    assert (
        row["cache_saving"]
        == sum(cache_saving(Usage.from_api(c.usage), c.price, batch=c.is_batch) for c in calls)
        > 0
    )
    assert (
        row["batch_saving"]
        == sum(batch_saving(Usage.from_api(c.usage), c.price, batch=c.is_batch) for c in calls)
        > 0
    )
    client.force_login(manager)
    page = client.get("/costs/").content.decode()
    assert "Batch saved" in page and "fanout_review_probe" in page


def test_the_daily_reports_prompt_is_read_from_the_cache_after_the_first_turn(
    seeded, drive
) -> None:
    run = drive.start({"date": "2026-11-12"}, workflow="financial_reporting")
    # The estimate's cache lines: each model's line prices its prefix's cache write and reads.
    opus = next(
        line for line in run.estimate["lines"] if line["item"].startswith("claude-opus-5 (")
    )
    assert "cache write x" in opus["calc"] and "cache read x" in opus["calc"], opus
    run = drive(run)
    assert run.status == S.SUCCEEDED, (run.error, [t.message for t in run.tickets.all()])
    calls = list(run.model_calls.filter(status="ok").order_by("turn"))
    # The prefix is cached per model (turn_roles: Opus, then Sonnet formats): each model's
    # first call writes it, its later calls read it.
    per_model: dict[str, list] = {}
    for call in calls:
        per_model.setdefault(call.model, []).append(call)
    opus = per_model["claude-opus-5"]
    prefix = opus[0].cache_write_5m_tokens
    assert prefix >= 4096 and opus[0].cache_read_tokens == 0  # over Opus's minimum
    assert len(opus) >= 3 and all(c.cache_read_tokens >= prefix for c in opus[1:])
    for model, own in per_model.items():
        assert all(c.cache_read_tokens > 0 for c in own[1:]), model
    saved = run_savings(run)["cache"]
    assert saved == sum(cache_saving(Usage.from_api(c.usage), c.price) for c in calls) > 0
    # What the run would have cost without the cache: the savings are a real share of it.
    share = saved / (run.cost_usd + saved)
    print(f"financial_reporting: cost ${run.cost_usd:.4f}, cache saved ${saved:.4f} ({share:.0%})")
    assert share > Decimal("0.3")


def test_the_security_scan_demo_saves_by_caching_and_by_batch(seeded, drive) -> None:
    """What the demo really saves, from the recorded usage of its calls (the costs page's
    figures). DEMO_FILES=200 measures the full demo (slower)."""
    import os

    files = int(os.environ.get("DEMO_FILES", "40"))
    runs = {}
    for mode, options in (("real time", {}), ("batch", {"batch": True})):
        run = drive(
            drive.start(
                {"repository": "demo-scan-tree", "limit": files}, "security_scan", **options
            )
        )
        assert run.status == S.SUCCEEDED, [t.message for t in run.tickets.all()]
        runs[mode] = run
        saved = run_savings(run)
        calls = ModelCall.objects.filter(run=run, status="ok", role__in=("specialist", "validator"))
        reads = sum(c.cache_read_tokens for c in calls)
        print(
            f"security_scan {files} files, {mode}: cost ${run.cost_usd:.4f}, cache saved ${saved['cache']:.4f}, "
            f"batch saved ${saved['batch']:.4f}, prefix reads {reads:,} tokens over {calls.count()} job calls, "
            f"estimate ${Decimal(run.estimate['upper_usd']):.4f}"
        )
        assert saved["cache"] > 0 and run.cost_usd <= Decimal(run.estimate["upper_usd"])
    assert run_savings(runs["batch"])["batch"] > 0
    assert runs["batch"].cost_usd < runs["real time"].cost_usd
