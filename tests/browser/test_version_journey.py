"""A workflow change being reviewed and approved (and, where its workflow requires one, only
after its evaluation): the change is deployed beside the approved
version (which keeps serving), the operator who wrote it proposes it from the version page and
reads its diff, a manager approves it, and then rolls back in one action.

The journey is a list of steps (``STEPS``) sharing one ``Journey``: a step that belongs between
proposing and approving (an evaluation of the pending version, say) is one more function
inserted there."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from orchestration.models import AuditEvent, WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.versions import hash_of, serving, snapshot
from tests.browser.conftest import shot, sign_in

pytestmark = pytest.mark.browser

NAME = "financial_reporting"


@dataclass
class Journey:
    page: Any
    base: str
    v1: WorkflowVersion
    v2: WorkflowVersion

    def version_url(self, version: WorkflowVersion) -> str:
        return f"{self.base}/workflows/{NAME}/versions/{version.pk}/"

    def sign_in_as(self, username: str) -> None:
        if self.page.locator("button:has-text('Sign out')").count():
            self.page.click("button:has-text('Sign out')")
        sign_in(self.page, self.base, username)


def author_finds_the_pending_change(j: Journey) -> None:
    j.sign_in_as("operator")
    j.page.click("nav >> text=Workflows")
    row = j.page.locator("#workflow-table tr", has_text=NAME)
    assert "1" in row.locator("td").nth(2).inner_text()  # one version pending approval
    row.locator(f"a:has-text('{NAME}')").click()
    j.page.wait_for_url(re.compile(rf"/workflows/{NAME}/versions/$"))
    pending_row = j.page.locator(f"#version-{j.v2.pk}")
    assert (
        "pending approval" in pending_row.inner_text()
        and "not proposed yet" in pending_row.inner_text()
    )
    assert "serving" in j.page.locator(f"#version-{j.v1.pk}").inner_text()
    shot(j.page, "versions-list")
    pending_row.locator("a", has_text="v").first.click()
    j.page.wait_for_url(j.version_url(j.v2))


def author_reads_the_diff_and_proposes(j: Journey) -> None:
    diff = j.page.inner_text("#version-diff")
    assert "Prompt" in diff and re.search(
        r"\+ \d+\. Never publish a report without its reconciliation line\.", diff
    ), diff
    assert "Limits" in diff and '"max_steps": 8' in diff
    assert "Unchanged:" in diff and "Models per role" in diff
    shot(j.page, "version-diff")
    j.page.fill(
        "#version-propose input[name=note]", "A rule for the reconciliation line; fewer turns"
    )
    j.page.click("#version-propose button")
    j.page.wait_for_selector(".messages >> text=you are its author")
    assert "operator" in j.page.inner_text("#version-author")
    # An operator is not a manager: no decision form, and the page says who may decide.
    assert j.page.locator("#version-decide").count() == 0
    assert "Only a manager" in j.page.inner_text("#approval-blockers")


# Helper G (evaluation) inserts its step here: the pending version evaluated on the workflow's
# dataset, and its thresholds shown among the approval blockers until they pass.


def manager_approves(j: Journey) -> None:
    j.sign_in_as("manager")
    j.page.goto(j.version_url(j.v2))
    assert j.page.locator("#approval-blockers").count() == 0
    assert re.search(r"\+ \d+\. Never publish a report", j.page.inner_text("#version-diff"))
    shot(j.page, "version-pending-manager")
    j.page.fill("#version-decide input[name=note]", "Read the diff; fine")
    j.page.click("#version-decide button:has-text('Approve')")
    j.page.wait_for_selector(".messages >> text=serves new runs from now on")
    assert "serving" in j.page.inner_text("#version-status")
    assert "approved by manager" in j.page.inner_text("#version-decision").lower()
    j.v2.refresh_from_db()
    assert j.v2.serving and serving(NAME)[1] == j.v2
    event = AuditEvent.objects.get(kind="version.approved")
    assert event.actor_label == "manager" and event.payload["author"] == "operator"
    shot(j.page, "version-approved")


def manager_rolls_back(j: Journey) -> None:
    j.page.goto(j.version_url(j.v1))
    j.page.fill("#version-rollback input[name=note]", "Back to the report we know")
    j.page.click("#version-rollback button")
    j.page.wait_for_selector(".messages >> text=serves new runs again")
    assert serving(NAME)[1] == j.v1
    assert AuditEvent.objects.filter(kind="version.rolled_back", actor_label="manager").count() == 1
    assert "version.rolled_back by manager: Back to the report we know" in j.page.inner_text(
        "#version-history"
    )
    # The page compares it with the version it replaced: the rule that is gone again.
    assert re.search(r"- \d+\. Never publish a report", j.page.inner_text("#version-diff"))
    shot(j.page, "version-rolled-back")


STEPS: list[Callable[[Journey], None]] = [
    author_finds_the_pending_change,
    author_reads_the_diff_and_proposes,
    manager_approves,
    manager_rolls_back,
]


def test_a_workflow_change_is_reviewed_approved_and_rolled_back(
    live_server, page, seeded, monkeypatch
):
    current = registry.get(NAME)
    v1 = snapshot(current)  # the workflow's first version: the system's bootstrap
    changed = dataclasses.replace(
        current,
        version=f"{current.version}.1",
        rules=(*current.rules, "Never publish a report without its reconciliation line."),
        constraints=dataclasses.replace(current.constraints, max_steps=8),
    )
    # The change is deployed beside the approved declaration, which keeps serving meanwhile.
    monkeypatch.setitem(registry._REGISTRY, NAME, changed)
    monkeypatch.setitem(registry._PREVIOUS, NAME, [current])
    v2 = snapshot(changed)
    assert v2.status == WorkflowVersion.Status.PENDING and v2.content_hash == hash_of(changed)
    assert serving(NAME)[1] == v1
    journey = Journey(page, live_server.url, v1, v2)
    for step in STEPS:
        step(journey)


def test_a_workflow_change_is_approved_only_after_its_evaluation(
    live_server, page, seeded, drive, manager
):
    """The change's workflow requires an evaluation (``balance_check``: 80% accuracy on its
    "regression" dataset, no hallucination). The operator proposes version 2; the manager is
    refused until the evaluation has run, runs it from the dataset page, reads the report,
    and then approves."""
    from evaluation import datasets
    from evaluation.models import Evaluation
    from tests.evaluation_workflow import BALANCE_CHECK, BALANCE_CHECK_V1, REGRESSION_JSONL

    name = BALANCE_CHECK.name
    v1 = snapshot(BALANCE_CHECK_V1)  # the first version seen: bootstrapped, serving
    v2 = snapshot(BALANCE_CHECK)
    assert v1.serving and v2.status == WorkflowVersion.Status.PENDING
    dataset = datasets.create_dataset(name, "regression", "balances", manager)
    assert datasets.import_jsonl(dataset, REGRESSION_JSONL, manager).errors == []
    v2_url = f"{live_server.url}/workflows/{name}/versions/{v2.pk}/"

    sign_in(page, live_server.url, "operator")
    page.goto(v2_url)
    page.fill("#version-propose input[name=note]", "Quote the balance exactly")
    page.click("#version-propose button")
    page.wait_for_selector(".messages >> text=you are its author")

    page.click("button:has-text('Sign out')")
    sign_in(page, live_server.url, "manager")
    page.goto(v2_url)
    blockers = page.inner_text("#approval-blockers")
    assert "has not been evaluated on 'regression': run an evaluation first" in blockers
    shot(page, "version-blocked-by-evaluation")

    page.goto(f"{live_server.url}/evaluations/datasets/{dataset.pk}/")
    page.select_option("#version-select", "current")  # version 2 is the one declared now
    page.click("#start-evaluation button:has-text('Run evaluation')")
    page.wait_for_selector("#tile-accuracy")
    evaluation = Evaluation.objects.latest("created_at")
    assert evaluation.version_id == v2.pk
    for case in evaluation.cases.select_related("run"):
        drive(case.run)
    page.wait_for_selector("#report:not([hx-get])", timeout=15_000)
    assert "80.0%" in page.inner_text("#tile-accuracy")

    page.goto(v2_url)
    assert page.locator("#approval-blockers").count() == 0
    page.fill("#version-decide input[name=note]", "Evaluated: 80% on regression")
    page.click("#version-decide button:has-text('Approve')")
    page.wait_for_selector(".messages >> text=serves new runs from now on")
    v2.refresh_from_db()
    assert v2.serving and serving(name)[1] == v2
    shot(page, "version-approved-after-evaluation")
