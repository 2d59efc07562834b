"""A manager builds a dataset on the pages (an import with a bad line first: the errors, the
text kept; then the fixed file), evaluates two versions of a workflow, reads the report while
it fills in, and compares the two side by side. An auditor reads it all and may not act."""

from __future__ import annotations

import pytest

from evaluation.models import Dataset, Evaluation
from orchestration.workflows.versions import snapshot
from tests.browser.conftest import shot, sign_in
from tests.evaluation_workflow import BALANCE_CHECK_V1, REGRESSION_JSONL

pytestmark = [pytest.mark.browser]


def test_manager_evaluates_two_versions_and_compares_them(live_server, page, seeded, drive):
    v1 = snapshot(BALANCE_CHECK_V1)
    sign_in(page, live_server.url, "manager")
    page.click("nav >> text=Evaluations")
    page.select_option("#new-dataset select[name=workflow]", "balance_check")
    page.fill("#new-dataset input[name=name]", "regression")
    page.click("#new-dataset button:has-text('Create dataset')")
    page.wait_for_selector(".messages >> text=Dataset balance_check/regression created")

    bad = REGRESSION_JSONL.replace('"reason": "retries_exhausted"', '"reason": "flaky"')
    page.fill("#import textarea[name=jsonl]", bad)
    page.click("#import button:has-text('Import')")
    errors = page.inner_text("#import-errors")
    assert (
        "Nothing was imported" in errors
        and "line 4: expected/reason: 'flaky' is not an escalation reason" in errors
    )
    assert page.input_value("#import textarea[name=jsonl]").strip() == bad.strip()  # nothing lost
    shot(page, "evaluation-import-errors")
    page.fill("#import textarea[name=jsonl]", REGRESSION_JSONL)
    page.click("#import button:has-text('Import')")
    page.wait_for_selector(".messages >> text=5 case(s) added")
    assert Dataset.objects.get(name="regression").cases.count() == 5
    shot(page, "evaluation-dataset")

    for version in (str(v1.pk), "current"):
        page.select_option("#version-select", version)
        page.click("#start-evaluation button:has-text('Run evaluation')")
        page.wait_for_selector("#tile-accuracy")
        evaluation = Evaluation.objects.latest("created_at")
        if version == "current":
            assert "0 of 5 cases finished" in page.inner_text("#report")
        for case in evaluation.cases.select_related("run"):
            drive(case.run)
        page.wait_for_selector("#report:not([hx-get])", timeout=15_000)  # polled until complete
        page.goto(f"{live_server.url}/evaluations/datasets/{evaluation.dataset_id}/")
    page.goto(f"{live_server.url}/evaluations/{evaluation.pk}/")
    assert "80.0%" in page.inner_text("#tile-accuracy")
    assert "retries_exhausted: 1 (20.0%)" in page.inner_text("#tile-escalations")
    assert "3 of 7 tool calls" in page.inner_text("#tile-tools")
    assert "expected 999, got 100" in page.inner_text("#outcome-wrong")
    shot(page, "evaluation-report")

    page.click("button:has-text('Side by side')")
    page.wait_for_selector("#compare-summary")
    assert "60.0%" in page.inner_text("#row-accuracy") and "80.0%" in page.inner_text(
        "#row-accuracy"
    )
    assert "1 case with a different verdict" in page.inner_text("body")
    assert "hallucination" in page.inner_text("#cmp-acc2")
    shot(page, "evaluation-compare")

    # A case typed on the form: bad JSON is refused with the field named, and kept as typed.
    page.goto(f"{live_server.url}/evaluations/datasets/{evaluation.dataset_id}/")
    page.click("text=Add a case")
    page.fill("input[name=name]", "acc3-exact")
    page.fill("textarea[name=input]", '{"account": "ACC-2"')
    page.fill("textarea[name=expected_output]", '{"balance": 250}')
    page.click("button:has-text('Save case')")
    assert "input: is not valid JSON" in page.inner_text("#case-errors")
    assert page.input_value("textarea[name=input]") == '{"account": "ACC-2"'
    shot(page, "evaluation-case-form-error")
    page.fill("textarea[name=input]", '{"account": "ACC-2"}')
    page.click("button:has-text('Save case')")
    page.wait_for_selector(".messages >> text=Case acc3-exact saved")

    page.context.clear_cookies()
    sign_in(page, live_server.url, "auditor")
    page.goto(f"{live_server.url}/evaluations/datasets/{evaluation.dataset_id}/")
    assert page.locator("#start-evaluation").count() == 0 and page.locator("#import").count() == 0
    assert "acc2" in page.inner_text("#cases")
    page.click("nav >> text=Evaluations")
    assert "regression (6 cases)" in page.inner_text("#workflow-balance_check")
    assert "accuracy ≥ 80.0%" in page.inner_text("#workflow-balance_check")
    assert page.locator("#new-dataset").count() == 0
    shot(page, "evaluation-index-auditor")
