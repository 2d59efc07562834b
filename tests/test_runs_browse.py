"""The runs list (filters, search, sorting, keyset pages, HTMX), exports and the run download,
for every persona."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestration.models import AuditEvent, Run
from reviews.models import EscalationTicket
from tests.audit_factories import make_run

DAY = dt.timedelta(days=1)


@pytest.fixture
def corpus(operator, manager):
    now = timezone.now()
    runs = {
        "txn": make_run(
            operator,
            created_at=now - 2 * DAY,
            cost="1.50",
            tool_output={"transactions": [{"txn_id": "TX-20261120-007", "amount": 99.5}]},
        ),
        "payment": make_run(
            manager,
            workflow="payment_approval",
            input={"payment_id": "PAY-1003"},
            status=Run.Status.FAILED,
            created_at=now - 5 * DAY,
            cost="0.02",
            model="claude-haiku-4-5",
        ),
        "old": make_run(
            operator, created_at=now - 30 * DAY, cost="0.30", result={"summary": "quarter closed"}
        ),
        "running": make_run(manager, status=Run.Status.RUNNING, created_at=now - DAY, cost="5.00"),
    }
    EscalationTicket.objects.create(
        run=runs["payment"], reason="ambiguity", message="?", context={}, due_at=now + DAY
    )
    return runs


def _list(client, **params):
    response = client.get(reverse("run_list"), params)
    assert response.status_code == 200
    return [str(r.pk) for r in response.context["page"].runs]


def test_filters_each_narrow_the_list(client, auditor, corpus):
    client.force_login(auditor)
    pk = {k: str(v.pk) for k, v in corpus.items()}
    today = timezone.localdate()
    assert _list(client) == [pk["running"], pk["txn"], pk["payment"], pk["old"]]
    assert _list(client, workflow="payment_approval") == [pk["payment"]]
    assert _list(client, status="running") == [pk["running"]]
    assert _list(client, requester="operator") == [pk["txn"], pk["old"]]
    assert _list(
        client,
        date_from=str(today - dt.timedelta(days=6)),
        date_to=str(today - dt.timedelta(days=2)),
    ) == [pk["txn"], pk["payment"]]
    assert _list(client, cost_min="0.25", cost_max="2") == [pk["txn"], pk["old"]]
    assert _list(client, escalated="yes") == [pk["payment"]]
    assert pk["payment"] not in _list(client, escalated="no")
    assert _list(client, model="claude-haiku-4-5") == [pk["payment"]]


def test_full_text_search_finds_tool_payloads_inputs_and_results(client, auditor, corpus):
    client.force_login(auditor)
    assert _list(client, q="TX-20261120-007") == [str(corpus["txn"].pk)]
    assert _list(client, q="PAY-1003") == [str(corpus["payment"].pk)]
    assert _list(client, q="quarter closed") == [str(corpus["old"].pk)]
    assert _list(client, q=str(corpus["running"].pk)) == [str(corpus["running"].pk)]
    assert _list(client, q="TX-20261120-999") == []
    body = client.get(reverse("run_list"), {"q": "TX-20261120-999"}).content.decode()
    assert "No runs match these filters" in body


def test_sorting_by_cost_both_ways(client, auditor, corpus):
    client.force_login(auditor)
    by_cost = [str(corpus[k].pk) for k in ("running", "txn", "old", "payment")]
    assert _list(client, sort="cost") == by_cost
    assert _list(client, sort="cost", dir="asc") == by_cost[::-1]
    assert _list(client, sort="workflow", dir="asc")[-1] == str(corpus["payment"].pk)


def test_keyset_pages_walk_forward_and_back_without_gaps(client, auditor):
    now = timezone.now()
    made = [
        make_run(auditor, created_at=now - dt.timedelta(minutes=i), cost=str(i % 3))
        for i in range(60)
    ]
    client.force_login(auditor)
    for sort in ("created", "cost"):
        seen, pages, cursor = [], [], ""
        while True:
            response = client.get(
                reverse("run_list"), {"sort": sort, **({"after": cursor} if cursor else {})}
            )
            page = response.context["page"]
            pages.append(page)
            seen += [str(r.pk) for r in page.runs]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert len(pages) == 3 and len(seen) == 60 and set(seen) == {str(r.pk) for r in made}
        back = client.get(
            reverse("run_list"), {"sort": sort, "before": pages[2].prev_cursor}
        ).context["page"]
        assert [r.pk for r in back.runs] == [r.pk for r in pages[1].runs]


def test_bad_filter_values_and_cursors_say_what_was_wrong(client, auditor, corpus):
    client.force_login(auditor)
    body = client.get(
        reverse("run_list"), {"date_from": "20/11/2026", "cost_min": "lots", "after": "garbage"}
    ).content.decode()
    assert (
        "is not a date; use YYYY-MM-DD" in body
        and "is not an amount" in body
        and "That page link is not valid" in body
    )
    assert len(client.get(reverse("run_list"), {"after": "garbage"}).context["page"].runs) == 4


def test_htmx_request_gets_only_the_results_partial(client, auditor, corpus):
    client.force_login(auditor)
    response = client.get(
        reverse("run_list"), {"workflow": "payment_approval"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="results"' in body
    assert str(corpus["payment"].pk)[:8] in body and str(corpus["txn"].pk)[:8] not in body
    assert "export.csv?workflow=payment_approval" in body


# --- exports ------------------------------------------------------------------------------


def _csv(response) -> list[dict]:
    assert response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_csv_export_streams_the_filtered_set_redacted(client, auditor, operator, corpus):
    make_run(operator, input={"date": "2026-11-20", "notify": "cfo@example.com"}, cost="0.77")
    client.force_login(auditor)
    response = client.get(
        reverse("run_export", args=["csv"]), {"requester": "operator", "sort": "cost"}
    )
    assert (
        response["Content-Type"].startswith("text/csv")
        and "attachment" in response["Content-Disposition"]
    )
    rows = _csv(response)
    assert [r["cost_usd"] for r in rows] == ["1.500000", "0.770000", "0.300000"]
    assert json.loads(rows[1]["input"]) == {"date": "2026-11-20", "notify": "[REDACTED:email]"}
    assert rows[0]["requested_by"] == "operator" and rows[0]["escalated"] == "False"
    exported = AuditEvent.objects.filter(kind="runs.exported").get()
    assert exported.actor_label == "auditor" and exported.payload == {
        "format": "csv",
        "filters": {"requester": "operator", "sort": "cost"},
    }


def test_jsonl_export_matches_the_search(client, auditor, corpus):
    client.force_login(auditor)
    response = client.get(reverse("run_export", args=["jsonl"]), {"q": "TX-20261120-007"})
    lines = [
        json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()
    ]
    assert [line["id"] for line in lines] == [str(corpus["txn"].pk)]
    assert lines[0]["cost_usd"] == "1.500000" and lines[0]["workflow"] == "financial_reporting"


def test_export_refuses_bad_filters_and_formats(client, auditor, corpus):
    client.force_login(auditor)
    bad = client.get(reverse("run_export", args=["csv"]), {"cost_max": "-1"})
    assert bad.status_code == 400 and "Maximum cost must be zero or more" in bad.content.decode()
    assert client.get("/runs/export.xml").status_code == 404


def test_operator_exports_only_their_own_runs(client, operator, corpus):
    client.force_login(operator)
    ids = {r["id"] for r in _csv(client.get(reverse("run_export", args=["csv"])))}
    assert ids == {str(corpus["txn"].pk), str(corpus["old"].pk)}


# --- whole-run download ---------------------------------------------------------------------


def test_run_download_is_one_redacted_document_with_its_chain(client, auditor, operator):
    from orchestration import audit

    run = make_run(
        operator, tool_output={"customer": "jane@example.com", "txn_id": "TX-20261120-007"}
    )
    audit.record("ticket.resolved", run=run, actor="reviewer", payload={"comment": "ok"})
    client.force_login(auditor)
    response = client.get(reverse("run_download", args=[run.pk]))
    assert response.status_code == 200 and f"run-{run.pk}.json" in response["Content-Disposition"]
    doc = response.json()
    assert doc["document"] == "countersign.run" and doc["run"]["id"] == str(run.pk)
    assert doc["workflow_version"]["name"] == "financial_reporting"
    assert len(doc["model_calls"]) == 1 and doc["model_calls"][0]["model"] == "claude-opus-4-6"
    assert doc["tool_calls"][0]["output"] == {
        "customer": "[REDACTED:email]",
        "txn_id": "TX-20261120-007",
    }
    assert [e["kind"] for e in doc["audit_events"]] == [
        "run.requested",
        "tool.called",
        "run.succeeded",
        "ticket.resolved",
    ]
    assert doc["chain"] == {
        "ok": True,
        "checked": 4,
        "broken_at": None,
        "problem": "",
        "run": str(run.pk),
        # What the chain covers besides its events (tests/test_tamper_evidence.py).
        "evidence": {"model calls": 1, "tool calls": 1},
        "checkpoint": None,
        "after_checkpoint": 0,
        # Not yet linked into the global chain by the sequencer (beat): checked in the run's.
        "pending": 4,
    }


def test_run_page_shows_whether_its_chain_verifies(client, auditor, operator):
    from django.db import connection

    run = make_run(operator)
    client.force_login(auditor)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert (
        "Audit chain verified: 2 events, 1 model call; no signed checkpoint yet" in page
        and reverse("run_download", args=[run.pk]) in page
    )
    first = AuditEvent.objects.filter(run=run).order_by("run_seq").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET payload = '{\"input\": {}}' WHERE id = %s",
            [first.pk],
        )
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    # Not yet anchored (beat's sequencer has not run): named by its place in the run.
    assert f"Audit chain broken: event 1 of run {run.pk} (not yet anchored): its payload" in page


# --- who sees what ------------------------------------------------------------------------


def test_someone_elses_run_is_404_on_every_run_url(client, operator, corpus):
    theirs = corpus["payment"]
    client.force_login(operator)
    for name in ("run_detail", "run_live", "run_download"):
        assert client.get(reverse(name, args=[theirs.pk])).status_code == 404, name
    assert str(theirs.pk) not in _list(client)
    assert _list(client, q="PAY-1003") == []


def test_reviewer_sees_runs_behind_open_and_their_own_tickets_only(
    client, reviewer, operator, corpus
):
    from django.contrib.auth import get_user_model

    other = get_user_model().objects.create_user("reviewer2")
    other.groups.add(*reviewer.groups.all())
    now = timezone.now()
    open_run, claimed_by_other, mine, none = (make_run(operator) for _ in range(4))
    EscalationTicket.objects.create(
        run=open_run, reason="ambiguity", message="?", context={}, due_at=now
    )
    EscalationTicket.objects.create(
        run=claimed_by_other,
        reason="ambiguity",
        message="?",
        context={},
        due_at=now,
        status="claimed",
        assignee=other,
    )
    EscalationTicket.objects.create(
        run=mine,
        reason="ambiguity",
        message="?",
        context={},
        due_at=now,
        status="resolved",
        resolved_by=reviewer,
    )
    client.force_login(reviewer)
    assert client.get(reverse("run_detail", args=[open_run.pk])).status_code == 200
    assert client.get(reverse("run_download", args=[mine.pk])).status_code == 200
    assert client.get(reverse("run_detail", args=[claimed_by_other.pk])).status_code == 404
    assert client.get(reverse("run_download", args=[none.pk])).status_code == 404
    listed = set(_list(client))
    assert {str(open_run.pk), str(mine.pk), str(corpus["payment"].pk)} <= listed
    assert str(claimed_by_other.pk) not in listed and str(none.pk) not in listed


def test_managers_and_auditors_see_and_export_everything(client, manager, auditor, corpus):
    for user in (manager, auditor):
        client.force_login(user)
        assert len(_list(client)) == 4
        assert len(_csv(client.get(reverse("run_export", args=["csv"])))) == 4


def test_outsider_sees_nothing(client, outsider, corpus):
    client.force_login(outsider)
    assert _list(client) == []
    assert _csv(client.get(reverse("run_export", args=["csv"]))) == []
    assert client.get(reverse("run_download", args=[corpus["txn"].pk])).status_code == 404


def test_anonymous_is_sent_to_login_from_exports(client, corpus):
    for url in (
        reverse("run_export", args=["csv"]),
        reverse("run_download", args=[corpus["txn"].pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_auditor_reads_everything_and_changes_nothing(client, auditor, corpus):
    ticket = EscalationTicket.objects.get(run=corpus["payment"])
    client.force_login(auditor)
    assert client.get(reverse("ticket_detail", args=[ticket.pk])).status_code == 403
    assert client.post(reverse("ticket_claim", args=[ticket.pk])).status_code == 403
    assert client.get(reverse("start_choose")).status_code == 403
    assert (
        client.post(
            reverse("start_form", args=["financial_reporting"]), {"date": "2026-11-20"}
        ).status_code
        == 403
    )
    # The admin is read-only for auditors.
    assert client.get(reverse("admin:orchestration_run_changelist")).status_code == 200
    change = client.post(
        reverse("admin:orchestration_run_change", args=[corpus["txn"].pk]), {"status": "failed"}
    )
    assert change.status_code == 403
    corpus["txn"].refresh_from_db()
    assert corpus["txn"].status == "succeeded"


@pytest.mark.parametrize("url_name", ["run_list", "run_export"])
def test_wrong_method_is_refused(client, auditor, url_name):
    client.force_login(auditor)
    url = reverse(url_name, args=["csv"]) if url_name == "run_export" else reverse(url_name)
    assert client.post(url).status_code == 405


def test_admin_pages_of_runs_and_tool_calls_render_for_auditors(client, auditor, corpus):
    from orchestration.models import ToolCall

    client.force_login(auditor)
    tc = ToolCall.objects.get(run=corpus["txn"])
    assert (
        client.get(reverse("admin:orchestration_run_change", args=[corpus["txn"].pk])).status_code
        == 200
    )
    page = client.get(reverse("admin:orchestration_toolcall_change", args=[tc.pk]))
    assert page.status_code == 200 and "TX-20261120-007" in page.content.decode()
