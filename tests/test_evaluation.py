"""Evaluations: datasets in and out, real runs of a chosen version on the simulator, the
report's numbers, two versions side by side, the gate on approving a version, the approval
threshold on an evaluation's whole estimate, budgets, who may do what, and the command.

The workflow is tests/evaluation_workflow.py ("balance_check"): version 1 rounds balances
(a provenance failure on ACC-2), version 2 quotes them exactly; its "regression" dataset has
a case designed to fail on every version.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from alerts import rules
from costs.models import Budget
from costs.reports import spend_report
from evaluation import datasets, gate, report, runner
from evaluation.models import Case, Dataset, Evaluation
from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run
from orchestration.workflows.versions import snapshot
from reviews import access, approvals
from reviews.models import ApprovalRequest, EscalationTicket
from reviews.roles import assign
from tests.evaluation_workflow import BALANCE_CHECK, BALANCE_CHECK_V1, REGRESSION_JSONL
from tests.test_fanout import drive_fanout  # noqa: F401 - the fixture that drives fan-out jobs

WF = "balance_check"


@pytest.fixture
def dataset(manager) -> Dataset:
    d = datasets.create_dataset(WF, "regression", "balances", manager)
    result = datasets.import_jsonl(d, REGRESSION_JSONL, manager)
    assert result.errors == [] and len(result.created) == 5
    return d


@pytest.fixture
def v1(db):
    return snapshot(BALANCE_CHECK_V1)


@pytest.fixture
def v2(db):
    return snapshot(BALANCE_CHECK)


def _evaluate(drive, version, dataset, user) -> report.Report:
    evaluation = runner.start_evaluation(version, dataset, user)
    for case in evaluation.cases.select_related("run"):
        drive(case.run)
    return report.report(evaluation)


def test_an_evaluation_reports_outcomes_from_real_runs(manager, reviewer, drive, v1, v2, dataset):
    r = _evaluate(drive, v2, dataset, manager)

    assert r.complete and r.cases == 5 and r.finished == 5
    assert r.passed == 4 and r.accuracy == pytest.approx(0.8)
    assert r.escalations == {"regulatory_trigger": 1, "retries_exhausted": 1}
    assert r.escalation_rate == pytest.approx(0.4)
    assert r.hallucinations == 0
    # ACC-404 failed its three attempts; every other case looked its account up once.
    assert (r.tool_errors, r.tool_calls) == (3, 7)
    runs = [o.case.run for o in r.outcomes]
    assert r.cost_usd == sum(run.cost_usd for run in runs) and r.cost_usd > 0
    assert len(r.latencies_ms) == 5 and r.latency_max_ms == max(run.latency_ms for run in runs)
    by_name = {o.case.name: o for o in r.outcomes}
    assert by_name["wrong"].problems == ["output balance: expected 999, got 100"]
    assert (by_name["big"].outcome, by_name["big"].reason, by_name["big"].passed) == (
        "escalated",
        "regulatory_trigger",
        True,
    )

    # Real runs of the version under test, marked as evaluation runs.
    assert {run.workflow_version_id for run in runs} == {v2.pk}
    assert all(run.is_evaluation for run in runs)
    # Their escalations ended the runs and closed their tickets: nothing reached the queue.
    tickets = EscalationTicket.objects.filter(run__in=runs)
    assert tickets.count() == 2
    assert set(tickets.values_list("status", "resolution", "assignee")) == {
        ("resolved", "evaluation", None)
    }
    assert {by_name["big"].case.run.status, by_name["missing"].case.run.status} == {
        Run.Status.HALTED
    }
    assert (
        not access.visible_tickets(reviewer)
        .exclude(status=EscalationTicket.Status.RESOLVED)
        .exists()
    )
    # Production's alerts do not count them (the error rate, escalation spikes, retry bursts).
    now = timezone.now()
    assert WF not in rules.run_outcomes(now, 24)
    assert rules.ticket_events(now - timezone.timedelta(hours=1), now) == []
    assert rules.retry_events(now - timezone.timedelta(hours=1), now) == []
    # The costs page shows their spend apart.
    spend = spend_report(1)
    assert spend.evaluation == r.cost_usd
    assert (
        spend.evaluation_calls == ModelCall.objects.filter(run__in=runs, status="ok").count() == 9
    )
    started = AuditEvent.objects.get(kind="evaluation.started")
    assert started.payload["cases"] == 5 and started.payload["version"] == v2.content_hash


def test_two_versions_side_by_side_on_one_dataset(manager, drive, v1, v2, dataset):
    r1 = _evaluate(drive, v1, dataset, manager)
    r2 = _evaluate(drive, v2, dataset, manager)
    assert (r1.accuracy, r1.hallucinations) == (pytest.approx(0.6), 1)
    assert r1.escalations == {"hallucination": 1, "regulatory_trigger": 1, "retries_exhausted": 1}

    c = report.compare(r1.evaluation, r2.evaluation)
    assert c.same_dataset and c.changed == 1
    rows = {name: (a.passed, b.passed) for name, a, b in c.rows}
    assert rows == {
        "acc1": (True, True),
        "acc2": (False, True),
        "big": (True, True),
        "missing": (True, True),
        "wrong": (False, False),
    }


def test_the_gate_blocks_a_version_until_its_evaluation_meets_the_thresholds(
    manager, drive, v1, v2, dataset
):
    assert gate.blockers(v2) == [
        f"v2 ({v2.content_hash[:8]}) has not been evaluated on 'regression': run an evaluation first."
    ]

    pending = runner.start_evaluation(v1, dataset, manager)
    assert "is not finished: 5 of 5 case(s)" in gate.blockers(v1)[0]
    for case in pending.cases.select_related("run"):
        drive(case.run)
    blocked = gate.blockers(v1)
    assert blocked == [
        f"Evaluation {pending.pk}: Outcome accuracy 60% (3 of 5) is below the required 80%.",
        f"Evaluation {pending.pk}: 1 provenance (hallucination) failure(s); at most 0 allowed.",
    ]

    _evaluate(drive, v2, dataset, manager)
    assert gate.blockers(v2) == []
    # The dataset changed after the evaluation: it no longer counts.
    Case.objects.filter(dataset=dataset, name="wrong").delete()
    assert "changed after evaluation" in gate.blockers(v2)[0]


def test_a_workflow_without_thresholds_has_no_blockers(db):
    from orchestration.workflows import registry

    assert gate.blockers(snapshot(registry.get("payment_approval"))) == []


def test_over_the_threshold_in_total_every_run_waits_for_another_manager(
    manager, drive, v2, dataset, settings
):
    plan = runner.plan(v2, dataset)
    # Each case alone is under the threshold; the five together are over it.
    settings.APPROVAL_THRESHOLD_USD = plan.estimate_usd / 2
    alone = start_run(WF, {"account": "ACC-1"}, manager, version=v2)
    assert alone.status == Run.Status.QUEUED

    evaluation = runner.start_evaluation(v2, dataset, manager)
    assert evaluation.needs_approval and evaluation.estimate_usd == plan.estimate_usd
    runs = [c.run for c in evaluation.cases.select_related("run")]
    assert {r.status for r in runs} == {Run.Status.AWAITING_APPROVAL}
    requests = ApprovalRequest.objects.filter(run__in=runs)
    assert requests.count() == 5 and report.report(evaluation).awaiting_approval == 5
    assert "not finished" in gate.blockers(v2)[0]

    # Four eyes: the manager who started it cannot approve it; another manager can.
    own = approvals.approve_many(list(requests.values_list("pk", flat=True)), manager)
    assert own.approved == [] and len(own.refused) == 5
    other = get_user_model().objects.create_user("manager2", password="x-manager-2")
    assign("manager2", "managers")
    assert (
        len(approvals.approve_many(list(requests.values_list("pk", flat=True)), other).approved)
        == 5
    )
    for run in runs:
        drive(run)
    r = report.report(evaluation)
    assert r.accuracy == pytest.approx(0.8), [
        (o.case.name, o.problems, o.case.run.error) for o in r.outcomes
    ]


def test_a_hard_budget_the_whole_evaluation_would_pass_refuses_it_and_starts_nothing(
    manager, v2, dataset
):
    plan = runner.plan(v2, dataset)
    Budget.objects.create(
        scope=Budget.Scope.WORKFLOW,
        workflow_name=WF,
        period=Budget.Period.DAY,
        limit_usd=(plan.estimate_usd / 2).quantize(Decimal("0.01")),
        hard=True,
        effective_from=timezone.now() - timezone.timedelta(days=1),
    )
    with pytest.raises(runner.EvaluationRefused) as refused:
        runner.start_evaluation(v2, dataset, manager)
    assert "budget" in refused.value.errors
    assert not Evaluation.objects.exists() and not Run.objects.filter(workflow_name=WF).exists()


@pytest.mark.parametrize("persona", ["operator", "reviewer", "auditor"])
def test_only_managers_run_evaluations(request, persona, v2, dataset):
    user = request.getfixturevalue(persona)
    with pytest.raises(runner.EvaluationRefused, match="Only managers"):
        runner.start_evaluation(v2, dataset, user)
    assert not Run.objects.filter(workflow_name=WF).exists()


def test_a_case_whose_input_the_workflow_refuses_stops_the_evaluation_before_any_run(
    manager, v2, dataset
):
    Case.objects.filter(dataset=dataset, name="acc1").update(input={"account": "not-an-account"})
    with pytest.raises(runner.EvaluationRefused) as refused:
        runner.start_evaluation(v2, dataset, manager)
    assert (
        list(refused.value.errors) == ["case acc1"]
        and "account" in refused.value.errors["case acc1"]
    )
    assert not Evaluation.objects.exists()


# --- datasets ------------------------------------------------------------------------------


def test_an_import_with_bad_lines_imports_nothing_and_names_every_line(manager, dataset):
    before = datasets.export_jsonl(dataset)
    text = "\n".join(
        [
            '{"name": "new-ok", "input": {"account": "ACC-2"}, "expected": {"status": "succeeded"}}',
            '{"name": "x", "input": {"account": "nope"}, "expected": {"status": "succeeded"}}',
            "not json",
            '{"name": "y", "input": {"account": "ACC-1"}, "expected": {"status": "escalated", "reason": "bogus"}}',
            '{"name": "new-ok", "input": {"account": "ACC-1"}, "expected": {"status": "failed"}}',
            '{"name": "z", "input": {"account": "ACC-1"}, "expected": {"status": "failed", "output": {"a": 1}}}',
        ]
    )
    result = datasets.import_jsonl(dataset, text, manager)
    assert [e.split(":")[0] for e in result.errors] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert "does not match" in result.errors[0] and "not valid JSON" in result.errors[1]
    assert "'bogus' is not an escalation reason" in result.errors[2]
    assert "already used on line 1" in result.errors[3]
    assert "only checked on a run that succeeded" in result.errors[4]
    assert result.created == [] and datasets.export_jsonl(dataset) == before


def test_export_then_import_round_trips_and_replaces_by_name(manager, dataset):
    exported = datasets.export_jsonl(dataset)
    assert len(exported.splitlines()) == 5
    copy = datasets.create_dataset(WF, "copy", "", manager)
    assert len(datasets.import_jsonl(copy, exported, manager).created) == 5
    assert datasets.export_jsonl(copy) == exported
    assert datasets.digest(copy.cases.all()) == datasets.digest(dataset.cases.all())
    again = datasets.import_jsonl(copy, exported.splitlines()[0].replace("100", "101"), manager)
    assert (again.created, again.updated) == ([], ["acc1"])
    assert copy.cases.get(name="acc1").expected_output == {"balance": 101}
    assert AuditEvent.objects.filter(kind="dataset.changed", payload__dataset="copy").count() == 3


def test_demo_seeding_ships_a_dataset_per_demo_workflow(seeded):
    """One JSONL file per demo workflow (demo/datasets/), loaded by seed_demo once."""
    from demo.datasets import HERE

    files = {p.stem for p in HERE.glob("*.jsonl")}
    assert files == {
        "payment_approval",
        "financial_reporting",
        "customer_router",
        "security_scan",
        "ad_variants",
    }
    shipped = {d.workflow_name: d.cases.count() for d in Dataset.objects.filter(name="demo")}
    assert set(shipped) == files
    assert shipped == {p.stem: len(p.read_text().splitlines()) for p in HERE.glob("*.jsonl")}
    # Seeding again changes nothing (a manager's edits to a demo dataset survive).
    Case.objects.filter(dataset__workflow_name="payment_approval").delete()
    call_command("seed_demo", stdout=io.StringIO())
    assert not Case.objects.filter(dataset__workflow_name="payment_approval").exists()


@pytest.mark.parametrize("workflow", ["payment_approval", "financial_reporting", "customer_router"])
def test_the_demo_datasets_pass_on_the_simulator(manager, drive, workflow):
    from orchestration.workflows import registry

    demo = Dataset.objects.get(workflow_name=workflow, name="demo")
    r = _evaluate(drive, snapshot(registry.get(workflow)), demo, manager)
    assert r.complete and r.passed == r.cases, [
        (o.case.name, o.problems) for o in r.outcomes if not o.passed
    ]


@pytest.mark.parametrize("workflow", ["security_scan", "ad_variants"])
def test_the_fanout_demo_datasets_pass_on_the_simulator(manager, drive_fanout, workflow):  # noqa: F811
    from orchestration.workflows import registry

    demo = Dataset.objects.get(workflow_name=workflow, name="demo")
    evaluation = runner.start_evaluation(snapshot(registry.get(workflow)), demo, manager)
    assert not evaluation.needs_approval
    for case in evaluation.cases.select_related("run"):
        # The fixture runs "a step" for the run it drives: a step queued for another run may
        # have been taken by an earlier one, so give each run its first step again.
        drive_fanout.steps.append(str(case.run.pk))
        drive_fanout(case.run)
    r = report.report(evaluation)
    assert r.complete and r.passed == r.cases, [
        (o.case.name, o.problems) for o in r.outcomes if not o.passed
    ]


# --- the command -----------------------------------------------------------------------------


def test_manage_py_evaluate_runs_the_named_version(manager, drive, v1, v2, dataset):
    out = io.StringIO()
    call_command("evaluate", WF, "--version", "1", "--dataset", "regression", stdout=out)
    evaluation = Evaluation.objects.get()
    assert out.getvalue().strip() == f"evaluation {evaluation.pk}" and evaluation.version == v1
    for case in evaluation.cases.select_related("run"):
        drive(case.run)
    call_command(
        "evaluate",
        WF,
        "--version",
        v2.content_hash[:10],
        "--dataset",
        "regression",
        stdout=io.StringIO(),
    )
    assert Evaluation.objects.latest("created_at").version == v2
    with pytest.raises(CommandError, match=r"has no version '7'. Known versions: 2, 1"):
        call_command("evaluate", WF, "--version", "7", "--dataset", "regression")
    with pytest.raises(CommandError, match="no dataset 'nope'; its datasets: regression"):
        call_command("evaluate", WF, "--dataset", "nope")
    with pytest.raises(CommandError, match="Only managers"):
        call_command("evaluate", WF, "--dataset", "regression", "--user", "auditor")
    assert report.report(evaluation).accuracy == pytest.approx(0.6)


def test_manage_py_evaluate_wait_prints_the_report(manager, v2, dataset, monkeypatch):
    """--wait with nothing to drive the runs: it gives up, and says how many did not finish."""
    with pytest.raises(CommandError, match="5 of 5 case"):
        call_command(
            "evaluate", WF, "--dataset", "regression", "--wait", "0.5", stdout=io.StringIO()
        )


# --- pages -----------------------------------------------------------------------------------


def _client(client, user):
    client.force_login(user)
    return client


def test_pages_for_managers_auditors_and_others(client, manager, auditor, operator, v2, dataset):
    c = _client(client, manager)
    page = c.get(reverse("evaluation_dataset", args=[dataset.pk]))
    assert page.status_code == 200 and b"Run evaluation" in page.content and b"acc2" in page.content
    assert c.get(reverse("evaluation_index")).status_code == 200
    c.force_login(auditor)
    page = c.get(reverse("evaluation_dataset", args=[dataset.pk]))
    assert page.status_code == 200 and b"Run evaluation" not in page.content
    assert (
        c.post(reverse("evaluation_start", args=[dataset.pk]), {"version": "current"}).status_code
        == 403
    )
    c.force_login(operator)
    assert c.get(reverse("evaluation_index")).status_code == 403
    assert not Evaluation.objects.exists()


def test_the_import_form_shows_the_errors_and_keeps_the_text(client, manager, dataset):
    c = _client(client, manager)
    text = '{"name": "bad", "input": {"account": "ACC-1"}, "expected": {"status": "maybe"}}'
    page = c.post(reverse("evaluation_dataset_import", args=[dataset.pk]), {"jsonl": text})
    assert page.status_code == 422
    assert (
        "line 1: expected/status: must be one of succeeded, escalated, failed"
        in page.content.decode()
    )
    assert "&quot;maybe&quot;" in page.content.decode()  # the text is shown again, nothing lost
    assert dataset.cases.count() == 5


def test_the_case_form_saves_a_case_and_keeps_bad_input(client, manager, dataset):
    c = _client(client, manager)
    url = reverse("evaluation_case_new", args=[dataset.pk])
    bad = c.post(url, {"name": "c6", "input": '{"account": ', "expected_status": "succeeded"})
    assert bad.status_code == 422 and "input: is not valid JSON" in bad.content.decode()
    assert "{&quot;account&quot;: " in bad.content.decode()
    good = c.post(
        url,
        {
            "name": "c6",
            "input": '{"account": "ACC-2"}',
            "expected_status": "succeeded",
            "expected_output": '{"balance": 250}',
        },
    )
    assert good.status_code == 302
    assert dataset.cases.get(name="c6").expected_output == {"balance": 250}


def test_the_evaluation_and_comparison_pages(client, manager, drive, v1, v2, dataset):
    r1 = _evaluate(drive, v1, dataset, manager)
    r2 = _evaluate(drive, v2, dataset, manager)
    c = _client(client, manager)
    page = c.get(reverse("evaluation_detail", args=[r2.evaluation.pk])).content.decode()
    assert (
        "80.0%" in page and "retries_exhausted: 1 (20.0%)" in page and "3 of 7 tool calls" in page
    )
    partial = c.get(
        reverse("evaluation_detail", args=[r2.evaluation.pk]), headers={"HX-Request": "true"}
    )
    assert partial.status_code == 286  # complete: htmx stops polling
    page = c.get(
        reverse("evaluation_compare") + f"?a={r1.evaluation.pk}&b={r2.evaluation.pk}"
    ).content.decode()
    assert "60.0%" in page and "80.0%" in page and "1 case with a different verdict" in page
