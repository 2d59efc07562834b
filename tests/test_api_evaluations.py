"""Evaluations through the JSON API (issue 16 §5): start one with evaluation.runner and read
the report the page shows; managers start, managers and auditors read."""

from __future__ import annotations

import pytest

from evaluation import datasets
from evaluation.models import Dataset, Evaluation
from orchestration.workflows.versions import snapshot
from tests.api_helpers import assert_documented, call, token_for
from tests.evaluation_workflow import BALANCE_CHECK, REGRESSION_JSONL

WF = "balance_check"


@pytest.fixture
def dataset(manager) -> Dataset:
    d = datasets.create_dataset(WF, "regression", "balances", manager)
    assert datasets.import_jsonl(d, REGRESSION_JSONL, manager).errors == []
    return d


def test_a_manager_starts_an_evaluation_and_reads_its_report(
    client, manager, auditor, drive, dataset
):
    version = snapshot(BALANCE_CHECK)
    response = call(
        client,
        "POST",
        "/api/evaluations",
        token_for(manager),
        {"dataset": dataset.pk, "version": version.pk},
    )
    body = assert_documented(response, "/api/evaluations", "post")
    assert response.status_code == 201 and body["cases"] == 5 and body["complete"] is False
    evaluation = Evaluation.objects.get(pk=body["id"])
    assert evaluation.version == version and evaluation.requested_by == manager
    for case in evaluation.cases.select_related("run"):
        drive(case.run)
    report = call(client, "GET", f"/api/evaluations/{evaluation.pk}", token_for(auditor))
    body = assert_documented(report, "/api/evaluations/{evaluation_id}", "get")
    assert body["complete"] is True and body["passed"] == 4
    assert body["accuracy"] == pytest.approx(0.8)
    assert body["escalations"] == {"regulatory_trigger": 1, "retries_exhausted": 1}


def test_evaluation_refusals(client, manager, operator, auditor, dataset):
    for who in (operator, auditor):
        response = call(client, "POST", "/api/evaluations", token_for(who), {"dataset": dataset.pk})
        assert response.status_code == 403
        assert_documented(response, "/api/evaluations", "post")
    token = token_for(manager, "m")
    missing = call(client, "POST", "/api/evaluations", token, {"dataset": dataset.pk + 99})
    assert missing.status_code == 404
    wrong = call(
        client, "POST", "/api/evaluations", token, {"dataset": dataset.pk, "version": 999999}
    )
    assert wrong.status_code == 422
    assert "version" in assert_documented(wrong, "/api/evaluations", "post")["error"]["fields"]
    assert not Evaluation.objects.exists()
    hidden = call(client, "GET", "/api/evaluations/1", token_for(operator, "o"))
    assert hidden.status_code == 403
