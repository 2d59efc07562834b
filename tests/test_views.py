"""Run pages for every persona: allowed, refused (404 for someone else's run), HTMX variant."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestration import lifecycle
from orchestration.launch import start_run
from orchestration.models import Run
from orchestration.templatetags.countersign import duration


@pytest.fixture
def runs(operator, manager):
    mine = start_run("financial_reporting", {"date": "2026-11-20"}, operator)
    theirs = start_run("payment_approval", {"payment_id": "PAY-1001"}, manager)
    return mine, theirs


@pytest.mark.parametrize("url_name", ["dashboard", "run_list", "start_choose"])
def test_anonymous_is_sent_to_login(client, db, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_anonymous_cannot_open_a_run(client, runs):
    response = client.get(reverse("run_detail", args=[runs[0].pk]))
    assert response.status_code == 302


def test_operator_sees_own_run_and_not_others(client, operator, runs):
    mine, theirs = runs
    client.force_login(operator)
    assert client.get(reverse("run_detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("run_detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("run_live", args=[theirs.pk])).status_code == 404
    listing = client.get(reverse("run_list")).content.decode()
    assert str(mine.pk)[:8] in listing and str(theirs.pk)[:8] not in listing


@pytest.mark.parametrize("persona", ["manager", "auditor"])
def test_managers_and_auditors_see_every_run(client, request, runs, persona):
    client.force_login(request.getfixturevalue(persona))
    for run in runs:
        assert client.get(reverse("run_detail", args=[run.pk])).status_code == 200


def test_reviewer_sees_only_runs_behind_tickets(client, reviewer, runs):
    from reviews.escalation import escalate

    mine, theirs = runs
    client.force_login(reviewer)
    assert client.get(reverse("run_detail", args=[mine.pk])).status_code == 404
    lifecycle.transition(mine.pk, Run.Status.RUNNING)
    escalate(mine.pk, "ambiguity", "unsure")
    assert client.get(reverse("run_detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("run_detail", args=[theirs.pk])).status_code == 404


def test_outsider_sees_nothing(client, outsider, runs):
    client.force_login(outsider)
    assert client.get(reverse("run_detail", args=[runs[0].pk])).status_code == 404
    assert client.get(reverse("start_choose")).status_code == 403


def test_live_partial_polls_while_running_and_stops_when_final(client, operator, runs):
    mine = runs[0]
    client.force_login(operator)
    url = reverse("run_live", args=[mine.pk])
    running = client.get(url, headers={"HX-Request": "true"})
    assert running.status_code == 200
    body = running.content.decode()
    assert 'hx-trigger="every 1500ms"' in body and "<html" not in body
    lifecycle.transition(mine.pk, Run.Status.CANCELLED)
    final = client.get(url, headers={"HX-Request": "true"})
    assert final.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in final.content.decode() and "cancelled" in final.content.decode()


def test_wrong_method_is_refused(client, operator, runs):
    client.force_login(operator)
    assert client.post(reverse("run_detail", args=[runs[0].pk])).status_code == 405
    assert client.post(reverse("run_list")).status_code == 405


def test_payloads_render_escaped(client, operator):
    run = start_run(
        "customer_router",
        {"customer_account": "ACC-100", "question": "<script>alert(1)</script> loan please"},
        operator,
    )
    client.force_login(operator)
    body = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (None, "-"),
        (0, "0 ms"),
        (999, "999 ms"),
        (1000, "1.0 s"),
        (59_949, "59.9 s"),
        (60_000, "1 min 0 s"),
        (367_529, "6 min 8 s"),
        (3_600_000, "1 h 0 min"),
        (7_512_000, "2 h 5 min"),
    ],
)
def test_durations_are_shown_in_the_unit_a_person_reads(ms, shown):
    assert duration(ms) == shown


def test_the_latency_tile_of_a_paused_run_does_not_say_running(client, operator, runs):
    mine, _ = runs
    Run.objects.filter(pk=mine.pk).update(
        status=Run.Status.AWAITING_REVIEW, started_at=timezone.now()
    )
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[mine.pk])).content.decode()
    tile = page[page.index('id="latency-tile"') :][:400]
    assert "not finished" in tile and "running" not in tile
