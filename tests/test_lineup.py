"""Issue 14 section 1: models per role inside the tool loop, the December 2026 lineup priced with
history, unpriced and retired models refused, deprecated ones warned about, a line per model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import typing
from decimal import Decimal

import anthropic
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

import tests.lineup_workflows  # noqa: F401 - registers the lineup_* workflows
from costs import lineup
from costs.estimates import PromptSize, estimate_run
from costs.models import ModelLifecycle, ModelPrice
from costs.pricing import Usage, cost_of, price_for
from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, Run, WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.declaration import TurnRoles
from orchestration.workflows.versions import snapshot
from reviews import resolutions
from simulator.config import MODELS, sdk_model_names
from tests.engine_workflows import LEDGER

DAY = {"day": "2026-11-20"}
S = Run.Status


def _start(user, workflow, value=DAY, faults=None):
    return start_run(
        workflow, value, user, options={"simulator_faults": faults} if faults else None
    )


def _roles(run):
    return [
        (mc.turn, mc.role, mc.model) for mc in run.model_calls.filter(status="ok").order_by("turn")
    ]


# --- the declaration ---------------------------------------------------------------------


def test_turn_roles_are_validated_when_the_workflow_is_registered():
    bad_role = dataclasses.replace(
        LEDGER, name="lineup_bad_role", turn_roles=TurnRoles(first="planner")
    )
    with pytest.raises(
        ValueError, match="turn_roles.first = 'planner' is not a role of the tool-use loop"
    ):
        registry.register(bad_role)
    bad_tool = dataclasses.replace(
        LEDGER, name="lineup_bad_tool", turn_roles=TurnRoles(after={"post": "formatter"})
    )
    with pytest.raises(ValueError, match="turn_roles.after names 'post', which is not a tool"):
        registry.register(bad_tool)
    no_model = dataclasses.replace(
        LEDGER, name="lineup_no_model", turn_roles=TurnRoles(recovery="reviewer")
    )
    with pytest.raises(ValueError, match="names no model for the role 'reviewer'"):
        registry.register(no_model)
    bad_models = dataclasses.replace(
        LEDGER, name="lineup_bad_models", models={"planner": "claude-opus-5"}
    )
    with pytest.raises(ValueError, match="models names the role 'planner'"):
        registry.register(bad_models)
    short = dataclasses.replace(
        LEDGER,
        name="lineup_short_roles",
        turn_roles=TurnRoles(first="classifier"),
        expectation=dataclasses.replace(LEDGER.expectation, roles=("classifier", "orchestrator")),
    )
    with pytest.raises(ValueError, match="expectation.roles names 2 roles for 4 turns"):
        registry.register(short)
    never = dataclasses.replace(
        LEDGER,
        name="lineup_never_picked",
        turn_roles=TurnRoles(first="classifier"),
        expectation=dataclasses.replace(
            LEDGER.expectation, roles=("classifier", "formatter", "formatter", "formatter")
        ),
    )
    with pytest.raises(
        ValueError, match="expectation.roles names formatter, which turn_roles never picks"
    ):
        registry.register(never)
    for name in (
        "lineup_bad_role",
        "lineup_bad_tool",
        "lineup_no_model",
        "lineup_bad_models",
        "lineup_short_roles",
        "lineup_never_picked",
    ):
        with pytest.raises(registry.UnknownWorkflow):
            registry.get(name)


def test_the_turn_rule_is_part_of_the_version_snapshot(db):
    routed = registry.get("lineup_routed")
    version = snapshot(routed)
    assert version.constraints["turn_roles"] == {
        "first": "classifier",
        "default": "formatter",
        "recovery": "orchestrator",
        "after": {"post_summary": "formatter"},
    }
    assert version.model_roles["classifier"] == "claude-haiku-4-5"
    changed = dataclasses.replace(
        routed, turn_roles=TurnRoles(first="orchestrator", default="formatter")
    )
    assert snapshot(changed).content_hash != version.content_hash
    assert WorkflowVersion.objects.filter(name="lineup_routed").count() == 2


# --- routing inside the tool-use loop ----------------------------------------------------


def test_each_turn_calls_the_model_of_the_role_that_plays_it(operator, drive):
    run = drive(_start(operator, "lineup_routed"))
    assert run.status == S.SUCCEEDED
    assert _roles(run) == [
        (0, "classifier", "claude-haiku-4-5"),  # first
        (1, "formatter", "claude-sonnet-5"),  # default
        (2, "formatter", "claude-sonnet-5"),  # default
        (3, "formatter", "claude-sonnet-5"),  # after post_summary
    ]
    # Each call was priced with its own model's row.
    for mc in run.model_calls.all():
        usage = Usage(
            input_tokens=mc.input_tokens,
            output_tokens=mc.output_tokens,
            cache_read=mc.cache_read_tokens,
            cache_write_5m=mc.cache_write_5m_tokens,
            cache_write_1h=mc.cache_write_1h_tokens,
        )
        assert mc.price.model == mc.model and mc.cost_usd == cost_of(usage, mc.price) > 0


def test_a_tool_error_hands_the_next_turn_to_the_recovery_role(operator, drive):
    run = drive(
        _start(operator, "lineup_routed", faults=[{"fault": "hallucinated_tool", "turn": 0}])
    )
    assert run.status == S.SUCCEEDED
    turns = _roles(run)
    assert turns[0] == (0, "classifier", "claude-haiku-4-5")
    assert turns[1] == (1, "orchestrator", "claude-opus-5")  # after the unknown-tool error
    assert turns[2][1] == "formatter"  # back to the default once it went right


def test_a_reviewer_resume_is_a_recovery_turn(operator, reviewer, drive):
    run = drive(_start(operator, "lineup_routed", faults=[{"fault": "ambiguity", "turn": 1}]))
    assert run.status == S.AWAITING_REVIEW
    ticket = run.tickets.get()
    resolutions.resolve(ticket.pk, reviewer, "resume", note="The day is the one in the request.")
    run = drive(run)
    assert run.status == S.SUCCEEDED
    resumed = run.model_calls.filter(
        status="ok", created_at__gt=run.tickets.get().resolved_at
    ).order_by("turn")
    assert [(mc.role, mc.model) for mc in resumed][:2] == [
        ("orchestrator", "claude-opus-5"),
        ("formatter", "claude-sonnet-5"),
    ]


def test_a_workflow_without_a_turn_rule_calls_only_the_orchestrator(operator, drive):
    run = drive(_start(operator, "ledger_close"))
    assert run.status == S.SUCCEEDED
    assert {(role, model) for _, role, model in _roles(run)} == {
        ("orchestrator", LEDGER.orchestrator_model)
    }


@pytest.mark.parametrize(
    "workflow, expected",
    [
        (
            "payment_approval",
            [
                ("classifier", "claude-haiku-4-5"),
                ("classifier", "claude-haiku-4-5"),
                ("orchestrator", "claude-opus-5"),
                ("orchestrator", "claude-opus-5"),
                ("formatter", "claude-sonnet-5"),
            ],
        ),
        (
            "financial_reporting",
            [("orchestrator", "claude-opus-5")] * 4 + [("formatter", "claude-sonnet-5")] * 2,
        ),
    ],
)
def test_demo_workflows_route_their_turns(operator, drive, workflow, expected):
    value = registry.get(workflow).input_example
    run = drive(start_run(workflow, value, operator))
    assert run.status == S.SUCCEEDED
    assert [(role, model) for _, role, model in _roles(run)] == expected


# --- the estimate, the run page and the costs page: a line per model ----------------------


def test_the_estimate_prices_each_turn_with_its_roles_model(db):
    routed = registry.get("lineup_routed")
    estimate = estimate_run(routed, DAY, PromptSize(prompt=1000, prefix=600))
    rows = {row["model"]: row for row in estimate.by_model}
    assert list(rows) == ["claude-haiku-4-5", "claude-sonnet-5"]
    assert (
        rows["claude-haiku-4-5"]["roles"] == "classifier" and rows["claude-haiku-4-5"]["turns"] == 1
    )
    assert rows["claude-sonnet-5"]["turns"] == 3
    # The lines: one per model, with its own rates (turn k reads 1000 + 500 k tokens).
    haiku, sonnet = price_for("claude-haiku-4-5"), price_for("claude-sonnet-5")
    exp = routed.expected()
    haiku_usd = (
        1000 * haiku.input_per_mtok + exp.output_tokens_per_turn * haiku.output_per_mtok
    ) / 1_000_000
    line = next(line for line in estimate.lines if line["item"].startswith("claude-haiku-4-5"))
    assert line["item"] == "claude-haiku-4-5 (classifier, turn 1)"
    assert line["usd"] == f"${haiku_usd.quantize(Decimal('0.000001'))}"
    sonnet_in = 3 * 1000 + 500 * (1 + 2 + 3)
    sonnet_out = 2 * exp.output_tokens_per_turn + exp.final_output_tokens
    sonnet_usd = (
        sonnet_in * sonnet.input_per_mtok + sonnet_out * sonnet.output_per_mtok
    ) / 1_000_000
    assert estimate.expected_usd == (haiku_usd + sonnet_usd).quantize(Decimal("0.000001"))
    assert "claude-sonnet-5 (formatter, turns 2-4)" in [line["item"] for line in estimate.lines]


def test_the_estimate_follows_the_roles_a_workflow_expects_per_turn(db):
    # payment_approval declares its typical path: two Haiku turns, two Opus, one Sonnet.
    workflow = registry.get("payment_approval")
    estimate = estimate_run(workflow, workflow.input_example, PromptSize(prompt=1400, prefix=1300))
    assert [(r["model"], r["roles"], r["turns"]) for r in estimate.by_model] == [
        ("claude-haiku-4-5", "classifier", 2),
        ("claude-opus-5", "orchestrator", 2),
        ("claude-sonnet-5", "formatter", 1),
    ]
    items = [line["item"] for line in estimate.lines]
    assert (
        "claude-haiku-4-5 (classifier, turns 1, 2)" in items
        and "claude-sonnet-5 (formatter, turn 5)" in items
    )
    # Sonnet's 1,024-token minimum: its prefix is written to the cache; Haiku's 4,096 is not met.
    sonnet = next(line for line in estimate.lines if line["item"].startswith("claude-sonnet-5"))
    assert sonnet["calc"].startswith("1,300 cache write x $2.50 + 0 cache read x $0.20")
    assert (
        "under claude-haiku-4-5's 4,096-token minimum"
        in next(line for line in estimate.lines if line["item"].startswith("claude-haiku"))["calc"]
    )
    assert sum(Decimal(r["usd"].lstrip("$")) for r in estimate.by_model) == estimate.expected_usd


def test_run_page_and_costs_page_show_a_line_per_model(client, operator, manager, drive):
    run = drive(_start(operator, "lineup_routed"))
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    section = page[page.index('id="run-models"') :]
    section = section[: section.index("</section>")]
    assert '<code>claude-haiku-4-5</code></td><td>classifier</td><td class="num">1</td>' in section
    assert '<code>claude-sonnet-5</code></td><td>formatter</td><td class="num">3</td>' in section
    assert (
        "by-model" in page and "claude-haiku-4-5 (classifier, turn 1)" in page
    )  # the estimate's lines
    client.force_login(manager)
    costs = client.get(reverse("costs")).content.decode()
    by_model = costs[costs.index("<h2>By model</h2>") :]
    by_model = by_model[: by_model.index("</section>")]
    assert (
        '<code>claude-haiku-4-5</code> <span class="muted small roles">classifier</span>'
        in by_model
    )
    assert (
        '<code>claude-sonnet-5</code> <span class="muted small roles">formatter</span>' in by_model
    )


# --- the December 2026 lineup, priced as data with history --------------------------------


def test_the_lineup_is_priced_with_new_rows_and_old_rows_untouched(db):
    sonnet5, opus5 = price_for("claude-sonnet-5"), price_for("claude-opus-5")
    assert (sonnet5.input_per_mtok, sonnet5.output_per_mtok) == (Decimal(2), Decimal(10))
    assert (opus5.input_per_mtok, opus5.output_per_mtok) == (Decimal(5), Decimal(25))
    assert sonnet5.effective_from == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    # The 2025 rows are still the only rows of their models, as they were.
    old = ModelPrice.objects.get(model="claude-opus-4-6")
    assert old.effective_from == dt.datetime(
        2025, 11, 24, tzinfo=dt.UTC
    ) and old.input_per_mtok == Decimal(5)
    # A dated snapshot is priced as its model, and a longer name never as a shorter one.
    assert price_for("claude-sonnet-5-5-20261001").model == "claude-sonnet-5-5"
    assert price_for("claude-fable-5-1").cache_read_per_mtok == Decimal("0.25")
    assert price_for("claude-fable-5").cache_read_per_mtok == Decimal("1")
    # The existing formula (costs owns it): cache multipliers as listed, batch at half price.
    usage = Usage(input_tokens=1_000_000, cache_read=1_000_000, output_tokens=1_000_000)
    assert cost_of(usage, sonnet5) == Decimal("12.2")
    assert cost_of(usage, sonnet5, batch=True) == Decimal("6.1")


def test_the_simulator_answers_for_every_model_the_sdk_knows(db):
    from orchestration.llm import client_for

    names = sdk_model_names()
    assert {
        "claude-opus-5",
        "claude-sonnet-5",
        "claude-opus-4-8",
        "claude-fable-5-2",
        "claude-haiku-5-5",
    } <= set(names)
    assert set(typing.get_args(typing.get_args(anthropic.types.Model)[0])) == set(names)
    client = client_for(workflow=None)
    listed = {m.id for m in client.models.list()}
    for name in names:
        answer = client.messages.create(
            model=name, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.model == name and answer.usage.output_tokens > 0
        if not name[-8:].isdigit():  # dated snapshots resolve to their model
            assert name in listed and name in MODELS
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="claude-opus-9", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )


# --- refusals: no price, past end of life; a warning when deprecated -----------------------


def test_an_unpriced_model_is_refused_with_what_to_add(operator, client):
    runs = Run.objects.count()
    with pytest.raises(RunRefused) as refused:
        _start(operator, "lineup_unpriced")
    assert refused.value.code == RunRefused.MODEL_UNAVAILABLE
    message = refused.value.errors["models"]
    assert "Model claude-haiku-5-5 (role classifier) has no price" in message
    assert (
        "Costs > Model prices > Add" in message
        and "manage.py add_model_price claude-haiku-5-5" in message
    )
    assert Run.objects.count() == runs  # nothing written
    # The start page says so as soon as the workflow is loaded, and will not start it.
    client.force_login(operator)
    page = client.get(reverse("start_form", args=["lineup_unpriced"])).content.decode()
    assert (
        "This workflow cannot start" in page
        and "manage.py add_model_price claude-haiku-5-5" in page
    )
    assert "disabled" in page[page.index('type="submit"') :][:200]
    # The management command checks every registered workflow.
    out = io.StringIO()
    with pytest.raises(CommandError, match="cannot start"):
        call_command("check_lineup", stdout=out)
    assert "lineup_unpriced: REFUSED" in out.getvalue() and "lineup_routed: ok" in out.getvalue()


def test_the_command_adds_the_missing_price_as_a_new_audited_row(db, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="x-root-1")
    later = timezone.now() + dt.timedelta(hours=2)
    call_command(
        "add_model_price",
        "claude-haiku-5-5",
        "--input",
        "0.50",
        "--cache-write-5m",
        "0.625",
        "--cache-write-1h",
        "1.00",
        "--cache-read",
        "0.05",
        "--output",
        "2.50",
        "--by",
        "root",
        "--effective-from",
        later.isoformat(),
        stdout=io.StringIO(),
    )
    row = ModelPrice.objects.get(model="claude-haiku-5-5")
    assert row.output_per_mtok == Decimal("2.5") and row.effective_from == later
    assert AuditEvent.objects.filter(kind="price.added", payload__model="claude-haiku-5-5").exists()
    models = registry.get("lineup_unpriced").models_in_use()
    assert not lineup.verdict(models).ok  # not in force yet
    assert lineup.verdict(models, at=later + dt.timedelta(seconds=1)).ok
    with pytest.raises(CommandError, match="Only a superuser"):
        django_user_model.objects.create_user("plain", password="x-plain-1")
        call_command(
            "add_model_price",
            "claude-haiku-5-5",
            "--input",
            "1",
            "--cache-write-5m",
            "1",
            "--cache-write-1h",
            "1",
            "--cache-read",
            "1",
            "--output",
            "1",
            "--by",
            "plain",
        )
    assert admin.is_superuser and ModelPrice.objects.filter(model="claude-haiku-5-5").count() == 1


def test_a_model_past_its_end_of_life_is_refused_at_start(operator):
    row = ModelLifecycle.objects.get(model="claude-sonnet-4-5")
    assert row.end_of_life == dt.date(2026, 11, 30)
    with pytest.raises(RunRefused) as refused:
        _start(operator, "lineup_retired")
    message = refused.value.errors["models"]
    assert refused.value.code == "model_unavailable"
    assert "claude-sonnet-4-5 (role orchestrator) reached its end of life on 2026-11-30" in message
    assert "the replacement is claude-sonnet-5" in message and "Costs > Model lifecycles" in message
    assert not Run.objects.filter(workflow_name="lineup_retired").exists()


def test_a_deprecated_model_warns_on_the_start_page_and_still_starts(operator, client):
    today = timezone.now().astimezone(dt.UTC).date()
    ModelLifecycle.objects.update_or_create(
        model="claude-opus-4-5",
        defaults={
            "deprecated_on": today - dt.timedelta(days=1),
            "end_of_life": today + dt.timedelta(days=30),
            "replacement": "claude-opus-5-5",
        },
    )
    client.force_login(operator)
    page = client.get(reverse("start_form", args=["lineup_deprecated"])).content.decode()
    assert (
        "lineup-warning" in page
        and "Model claude-opus-4-5 (role orchestrator) is deprecated since" in page
    )
    assert "This workflow cannot start" not in page
    preview = client.post(
        reverse("start_estimate", args=["lineup_deprecated"]), {"day": "2026-11-20"}
    )
    assert "is deprecated since" in preview.content.decode()
    run = _start(operator, "lineup_deprecated")
    assert run.status == S.QUEUED and "is deprecated since" in run.estimate["model_warnings"][0]
    # On its end-of-life day it is refused.
    ModelLifecycle.objects.filter(model="claude-opus-4-5").update(end_of_life=today)
    with pytest.raises(RunRefused, match="reached its end of life"):
        _start(operator, "lineup_deprecated")


def test_lifecycle_dates_are_edited_in_the_admin_by_a_superuser_and_audited(
    client, django_user_model, manager
):
    root = django_user_model.objects.create_superuser("root2", password="x-root-2")
    row = ModelLifecycle.objects.get(model="claude-opus-4-5")
    client.force_login(root)
    url = reverse("admin:costs_modellifecycle_change", args=[row.pk])
    response = client.post(
        url,
        {
            "model": "claude-opus-4-5",
            "deprecated_on": "2026-11-23",
            "end_of_life": "2027-02-01",
            "replacement": "claude-opus-5-5",
            "source": "moved",
        },
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.end_of_life == dt.date(2027, 2, 1)
    event = AuditEvent.objects.get(kind="model_lifecycle.changed")
    assert (
        event.payload["end_of_life"] == "2027-02-01"
        and event.payload["was"]["end_of_life"] == "2027-01-22"
    )
    bad = client.post(
        url,
        {"model": "claude-opus-4-5", "deprecated_on": "2027-03-01", "end_of_life": "2027-02-01"},
    )
    assert (
        bad.status_code == 200 and "deprecated on or before its end of life" in bad.content.decode()
    )
    client.force_login(manager)
    assert client.post(
        url, {"model": "claude-opus-4-5", "end_of_life": "2026-01-01"}
    ).status_code in (302, 403)
    row.refresh_from_db()
    assert row.end_of_life == dt.date(2027, 2, 1)  # a manager cannot move it
