"""The audit trail page: who sees it, newest first with keyset pages, every filter, the search,
the links to runs, tickets and approvals and back, and the per-person activity view."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from api.models import ApiToken
from costs import changes
from costs.models import ModelPrice
from orchestration import audit, trail_search
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from reviews.models import ApprovalRequest, EscalationTicket
from tests.audit_factories import make_run

TRAIL = reverse("audit_trail")


def _tool_event(run: Run, output: dict) -> AuditEvent:
    """A tool call and the event that records it, with the payload the engine writes."""
    mc = ModelCall.objects.filter(run=run).first()
    tu = f"toolu_{uuid.uuid4().hex[:10]}"
    tc = ToolCall.objects.create(
        run=run, model_call=mc, tool_use_id=tu, name="fetch_transactions", status="ok",
        settled=True, input={"date": "2026-11-20"}, output=output, raw_output=output,
    )  # fmt: skip
    return audit.record(
        "tool.called",
        run=run,
        evidence_of=[tc],
        payload={"tool_use_id": tu, "name": "fetch_transactions", "version": "1", "attempt": 1},
    )


@pytest.fixture
def world(operator, reviewer, manager):
    """Two runs of two workflows, a ticket, an approval, a tool call holding a transaction id."""
    report = make_run(operator)
    payment = make_run(manager, workflow="payment_approval", input={"payment_id": "PAY-1003"})
    tx_event = _tool_event(report, {"transactions": [{"txn_id": "TX-20261120-007"}]})
    ticket = EscalationTicket.objects.create(
        run=report, reason="ambiguity", message="Which ledger?", context={},
        due_at=timezone.now() + dt.timedelta(hours=1),
    )  # fmt: skip
    audit.record(
        "ticket.opened",
        run=report,
        actor="engine",
        payload={"ticket": ticket.pk, "reason": "ambiguity", "message": "Which ledger?"},
    )
    audit.record("ticket.claimed", run=report, actor=reviewer, payload={"ticket": ticket.pk})
    approval = ApprovalRequest.objects.create(
        run=payment, estimate_usd=25, threshold_usd=20, calculation={}, requested_by=manager,
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )  # fmt: skip
    audit.record(
        "approval.decided",
        run=payment,
        actor=manager,
        payload={
            "request": approval.pk,
            "decision": "approved",
            "comment": "ok",
            "estimate_usd": "25",
        },
    )
    audit.anchor()  # as beat's sequencer would: the events get their place in the global chain
    tx_event.refresh_from_db()
    return {
        "report": report,
        "payment": payment,
        "ticket": ticket,
        "approval": approval,
        "tx_event": tx_event,
    }


def _ids(response) -> list[int]:
    return [e.pk for e in response.context["page"].events]


# --- who sees it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "persona,status",
    [("manager", 200), ("auditor", 200), ("operator", 404), ("reviewer", 404), ("outsider", 404)],
)
def test_only_managers_and_auditors_see_the_trail(client, request, world, persona, status):
    client.force_login(request.getfixturevalue(persona))
    for url in (
        TRAIL,
        reverse("audit_trail_export", args=["jsonl"]),
        reverse("audit_trail_export", args=["csv"]),
        reverse("audit_verifier"),
        reverse("audit_public_key"),
        reverse("person_activity", args=["operator"]),
    ):
        assert client.get(url).status_code == status, url
    # The navigation shows the page only to those who may open it.
    page = client.get(reverse("dashboard")).content.decode()
    assert (reverse("audit_trail") in page) == (status == 200)


def test_anonymous_is_sent_to_login(client, world):
    response = client.get(TRAIL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_post_is_refused_before_anything_is_read(client, operator, auditor, world):
    client.force_login(operator)
    assert client.post(TRAIL).status_code == 404  # not even "method not allowed": no page here
    client.force_login(auditor)
    assert client.post(TRAIL).status_code == 405


# --- order and pages -----------------------------------------------------------------------


def test_every_event_newest_first_with_keyset_pages(client, auditor, world, monkeypatch):
    monkeypatch.setattr(trail_search, "PAGE_SIZE", 3)
    monkeypatch.setattr(trail_search.keyset_page, "__defaults__", ("", "", 3))
    client.force_login(auditor)
    everything = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))
    assert len(everything) > 7
    seen, after = [], ""
    while True:
        response = client.get(TRAIL + (f"?after={after}" if after else ""))
        page = response.context["page"]
        seen += _ids(response)
        if page.next_cursor is None:
            break
        after = str(page.next_cursor)
    assert seen == everything  # every event once, newest first, across pages
    # Back from the second page: the first again.
    second = client.get(TRAIL + f"?after={everything[2]}")
    back = client.get(TRAIL + f"?before={second.context['page'].prev_cursor}")
    assert _ids(back) == everything[:3]


def test_htmx_gets_only_the_results(client, auditor, world):
    client.force_login(auditor)
    response = client.get(TRAIL + "?kind=ticket.claimed", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and 'id="results"' in body and "<form" not in body
    assert "ticket.claimed" in body


# --- filters -------------------------------------------------------------------------------


def _filtered(client, query: str) -> list[AuditEvent]:
    response = client.get(f"{TRAIL}?{query}")
    assert response.status_code == 200
    assert not response.context["errors"], response.context["errors"]
    return response.context["page"].events


def test_filters(client, auditor, manager, reviewer, world):
    client.force_login(auditor)
    ticket, approval = world["ticket"], world["approval"]
    by_actor = _filtered(client, "actor=reviewer")
    assert [e.kind for e in by_actor] == ["ticket.claimed"]
    assert {e.actor_label for e in _filtered(client, "actor=engine")} == {"engine"}
    assert {e.kind for e in _filtered(client, "kind=ticket.opened")} == {"ticket.opened"}
    assert {e.kind for e in _filtered(client, "kind=ticket.*")} == {
        "ticket.opened",
        "ticket.claimed",
    }
    assert {e.run_id for e in _filtered(client, "workflow=payment_approval")} == {
        world["payment"].pk
    }
    run_events = _filtered(client, f"run={world['report'].pk}")
    assert {e.run_id for e in run_events} == {world["report"].pk}
    assert len(run_events) == AuditEvent.objects.filter(run=world["report"]).count()
    assert [e.kind for e in _filtered(client, f"ticket={ticket.pk}")] == [
        "ticket.claimed",
        "ticket.opened",
    ]
    assert [e.kind for e in _filtered(client, f"approval={approval.pk}")] == ["approval.decided"]
    # Time range: move one event to last week; a range around it finds only it.
    old = AuditEvent.objects.get(kind="approval.decided")
    week_ago = timezone.now() - dt.timedelta(days=7)
    AuditEvent.objects.filter(pk=old.pk).update(created_at=week_ago)
    day = timezone.localtime(week_ago).date()
    assert [e.seq for e in _filtered(client, f"since={day}&until={day}")] == [old.seq]
    assert old.seq not in [e.seq for e in _filtered(client, f"since={day + dt.timedelta(days=1)}")]
    # Filters combine.
    assert _filtered(client, "actor=reviewer&kind=ticket.opened") == []


def test_bad_filters_say_what_was_wrong_and_show_everything_else(client, auditor, world):
    client.force_login(auditor)
    response = client.get(TRAIL + "?run=nope&ticket=abc&since=yesterday&kind=ticket.opened")
    errors = " ".join(response.context["errors"])
    assert "'nope' is not a run id" in errors and "'abc' is not a number" in errors
    assert "'yesterday' is not a date" in errors
    assert {e.kind for e in response.context["page"].events} == {"ticket.opened"}
    export = client.get(reverse("audit_trail_export", args=["jsonl"]) + "?run=nope")
    assert export.status_code == 400 and b"is not a run id" in export.content


def test_search_over_payloads_and_tool_outputs(client, auditor, world):
    client.force_login(auditor)
    # A transaction id in a tool's stored output finds the event that recorded that tool call.
    assert [e.seq for e in _filtered(client, "q=TX-20261120-007")] == [world["tx_event"].seq]
    # Words of a payload.
    assert [e.kind for e in _filtered(client, "q=Which ledger")] == ["ticket.opened"]
    # A run id finds the run's events; #seq finds one event.
    by_run = _filtered(client, f"q={world['payment'].pk}")
    assert {e.run_id for e in by_run} == {world["payment"].pk}
    assert [e.seq for e in _filtered(client, f"q=%23{world['tx_event'].seq}")] == [
        world["tx_event"].seq
    ]
    assert _filtered(client, "q=TX-20990101-999") == []


def test_search_sees_only_redacted_payloads(client, auditor, operator, world):
    run = world["report"]
    audit.record(
        "run.note", run=run, actor=operator, payload={"note": "mail jane.doe@example.com today"}
    )
    client.force_login(auditor)
    assert _filtered(client, "q=jane.doe@example.com") == []  # the address was never stored
    hits = _filtered(client, "q=today")
    assert len(hits) == 1 and "[REDACTED:email]" in hits[0].payload["note"]


# --- links both ways -----------------------------------------------------------------------


def test_links_from_events_to_run_ticket_approval_and_back(client, manager, world):
    client.force_login(manager)
    ticket, approval, run = world["ticket"], world["approval"], world["report"]
    body = client.get(TRAIL).content.decode()
    assert reverse("run_detail", args=[run.pk]) in body
    assert reverse("ticket_detail", args=[ticket.pk]) in body
    assert f"{TRAIL}?approval={approval.pk}" in body
    # And back: the run page, the ticket page and the approvals page link to their events.
    assert (
        f"{TRAIL}?run={run.pk}" in client.get(reverse("run_detail", args=[run.pk])).content.decode()
    )
    assert (
        f"{TRAIL}?ticket={ticket.pk}"
        in client.get(reverse("ticket_detail", args=[ticket.pk])).content.decode()
    )
    assert (
        f"{TRAIL}?approval={approval.pk}" in client.get(reverse("approval_queue")).content.decode()
    )


def test_those_who_cannot_open_the_trail_get_no_link_to_it(client, operator, world):
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[world["report"].pk])).content.decode()
    assert "?run=" not in page and TRAIL not in page


# --- what one person did -------------------------------------------------------------------


def test_activity_of_a_person_for_a_period(
    client, auditor, manager, reviewer, operator, world, settings
):
    from reviews import resolutions

    settings.COST_CHANGE_MIN_DELAY_MINUTES = 1
    ticket = world["ticket"]
    # The reviewer resolves a ticket (with a comment), a superuser adds a price, the
    # manager creates a token: each shows under its person.
    Run.objects.filter(pk=ticket.run_id).update(status=Run.Status.AWAITING_REVIEW)
    resolutions.resolve(ticket.pk, reviewer, "fail", comment="ledger unknown")
    admin = type(manager).objects.create_superuser("root", "root@example.com", "x")
    changes.add_price(
        ModelPrice(model="claude-test-1", input_per_mtok=1, output_per_mtok=2, cache_write_5m_per_mtok=1,
                   cache_write_1h_per_mtok=2, cache_read_per_mtok=Decimal("0.1"),
                   effective_from=timezone.now() + dt.timedelta(minutes=5)),
        admin,
    )  # fmt: skip
    ApiToken.issue(manager, "nightly batch")
    client.force_login(auditor)

    page = client.get(reverse("person_activity", args=["reviewer"]))
    assert page.status_code == 200
    sections = {s.key: s for s in page.context["activity"].sections}
    assert [e.payload["resolution"] for e in sections["tickets"].events] == ["fail"]
    assert sections["runs"].total == 0 and "ledger unknown" in page.content.decode()

    page = client.get(reverse("person_activity", args=["manager"]))
    sections = {s.key: s for s in page.context["activity"].sections}
    assert sections["runs"].total == 1 and sections["runs"].events[0].run_id == world["payment"].pk
    assert [e.payload["decision"] for e in sections["approvals"].events] == ["approved"]
    assert [t.name for t in page.context["activity"].tokens] == ["nightly batch"]

    page = client.get(reverse("person_activity", args=["root"]))
    sections = {s.key: s for s in page.context["activity"].sections}
    assert [e.kind for e in sections["costs"].events] == ["price.added"]
    assert "claude-test-1" in page.content.decode()

    # A period before any of it: nothing.
    page = client.get(
        reverse("person_activity", args=["manager"]) + "?from=2020-01-01&to=2020-01-31"
    )
    assert page.context["activity"].empty and "Nothing recorded" in page.content.decode()
    # A bad period says so and falls back to the last 30 days.
    page = client.get(reverse("person_activity", args=["manager"]) + "?from=2026-13-01")
    assert "YYYY-MM-DD" in page.content.decode() and not page.context["activity"].empty
    # Another person from the page's field: the same period, that person.
    switched = client.get(
        reverse("person_activity", args=["manager"]) + "?person=reviewer&from=2026-01-01"
    )
    assert (
        switched.status_code == 302
        and switched["Location"]
        == reverse("person_activity", args=["reviewer"]) + "?from=2026-01-01"
    )
    assert client.get(reverse("person_activity", args=["nobody-here"])).status_code == 404


def test_correction_supplied_shows_on_the_activity(client, auditor, reviewer, world):
    ticket = world["ticket"]
    audit.record(
        "ticket.resolved", run=ticket.run, actor=reviewer,
        payload={"ticket": ticket.pk, "resolution": "correct", "comment": "fixed", "corrected": "tool",
                 "tool": "fetch_transactions", "output": {"transactions": [{"txn_id": "TX-CORRECTED-1"}]}},
    )  # fmt: skip
    client.force_login(auditor)
    body = client.get(reverse("person_activity", args=["reviewer"])).content.decode()
    assert "corrected the output of fetch_transactions" in body and "TX-CORRECTED-1" in body


def test_a_search_matching_many_events_says_the_page_shows_the_newest(
    client, auditor, operator, world, monkeypatch
):
    run = world["report"]
    for i in range(5):
        audit.record("run.note", run=run, actor=operator, payload={"note": f"routine check {i}"})
    monkeypatch.setattr(trail_search, "SEARCH_CAP", 3)
    client.force_login(auditor)
    response = client.get(TRAIL + "?q=routine")
    assert [e.payload["note"] for e in response.context["page"].events] == [
        f"routine check {i}" for i in (4, 3, 2)
    ]
    assert "More than 3 events match this search" in response.content.decode()
    # The export holds every match.
    export = client.get(reverse("audit_trail_export", args=["csv"]) + "?q=routine")
    assert b"".join(export.streaming_content).decode().count("routine check") == 5


# --- the page's rows (built in Python, orchestration/views/trail.py) -----------------------

# The row as the template wrote it before the rows were built in Python: the two must agree.
_TEMPLATE_ROW = """{% for ev in events %}
<tr id="event-{{ ev.pk }}" class="trail-event">
  <td><a href="?q=%23{{ ev.seq|default_if_none:"…" }}" title="id {{ ev.pk }}, hash {{ ev.hash }}&#10;previous {{ ev.prev_hash }}"><code>{{ ev.seq|default_if_none:"…" }}</code></a></td>
  <td title="{{ ev.created_at|date:'c' }}" class="nowrap">{{ ev.created_at|date:"Y-m-d H:i:s" }}</td>
  <td>{% if ev.actor_id %}<a href="{% url 'person_activity' ev.actor_label %}" title="What {{ ev.actor_label }} did">{{ ev.actor_label }}</a>{% else %}<span class="muted">{{ ev.actor_label }}</span>{% endif %}</td>
  <td><a href="?kind={{ ev.kind|urlencode }}"><code>{{ ev.kind }}</code></a></td>
  <td class="concerns">
    {% if ev.run_id %}<a class="to-run" href="{% url 'run_detail' ev.run_id %}">run {{ ev.run_id|stringformat:"s"|slice:":8" }}</a> <span class="muted small">{{ ev.workflow_name }}</span>{% endif %}
    {% if ev.links.ticket %}<br><a class="to-ticket" href="{% url 'ticket_detail' ev.links.ticket %}">ticket #{{ ev.links.ticket }}</a>{% endif %}
    {% if ev.links.approval %}<br><a class="to-approval" href="{% url 'audit_trail' %}?approval={{ ev.links.approval }}">approval #{{ ev.links.approval }}</a>{% endif %}
  </td>
  <td class="payload">{% if ev.payload_purged_at %}<span class="muted">purged {{ ev.payload_purged_at|date:"Y-m-d" }} (retention){% if ev.evidence_rows %}; its evidence digests of {{ ev.evidence_rows }} row{{ ev.evidence_rows|pluralize }} kept{% endif %}</span>{% else %}<details><summary><code>{{ ev.preview|truncatechars:90 }}</code>{% if ev.evidence_rows %} <span class="muted small">+ evidence of {{ ev.evidence_rows }} row{{ ev.evidence_rows|pluralize }}</span>{% endif %}</summary><pre>{{ ev.pretty }}</pre></details>{% endif %}</td>
</tr>
{% endfor %}"""


def _squeeze(html: str) -> str:
    import re

    return re.sub(r">\s+<", "><", re.sub(r">\s+", ">", html)).strip()


def test_rows_show_what_the_template_showed_escaped(client, auditor, world, django_user_model):
    from django.template import engines

    hostile = django_user_model.objects.create_user("o'brien<&>", password="x")
    report = world["report"]
    audit.record(
        "note.<b>&\"x\"", run=report, actor=hostile,
        payload={"note": "<script>alert('x')</script> & " + "long " * 40, "ticket": world["ticket"].pk},
    )  # fmt: skip
    audit.record("price.added", actor="system", payload={"request": world["approval"].pk})
    purged = _tool_event(report, {"transactions": [{"txn_id": "TX-PURGED-1"}]})
    audit.anchor()
    AuditEvent.objects.filter(pk=purged.pk).update(payload_purged_at=timezone.now())
    client.force_login(auditor)
    response = client.get(TRAIL)
    body = response.content.decode()
    events = response.context["page"].events
    assert len(events) == AuditEvent.objects.count()  # every event on the one page
    expected = engines["django"].from_string(_TEMPLATE_ROW).render({"events": events})
    got = body[body.index("<tbody>") + len("<tbody>") : body.index("</tbody>")]
    assert _squeeze(got) == _squeeze(expected)
    assert "<script>alert" not in body and "&lt;script&gt;alert(&#x27;x&#x27;)" in body
    assert "o&#x27;brien&lt;&amp;&gt;" in body and "purged " in body


def test_activity_reads_every_kind_in_a_fixed_number_of_queries(
    client, auditor, reviewer, world, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orchestration import person_activity

    monkeypatch.setattr(person_activity, "LIMIT", 2)
    url = reverse("person_activity", args=["reviewer"])
    client.force_login(auditor)

    def visit():
        with CaptureQueriesContext(connection) as captured:
            page = client.get(url)
        return {s.key: s for s in page.context["activity"].sections}, len(captured)

    _, few = visit()
    run = world["report"]
    for i in range(3):
        audit.record(
            "ticket.resolved", run=run, actor=reviewer, payload={"ticket": i, "resolution": "fail"}
        )
        audit.record(
            "approval.decided",
            run=run,
            actor=reviewer,
            payload={"request": i, "decision": "approved"},
        )
    audit.record("budget.added", actor=reviewer, payload={"n": 1})
    audit.record("price.withdrawn", actor=reviewer, payload={"n": 2})
    audit.record("price.added", actor=reviewer, payload={"n": 3})
    sections, many = visit()
    # Not one query per kind (nine kinds: two queries for them all, 12 for the page; it was 26).
    assert many == few <= 12
    assert sections["tickets"].total == 3 and [
        e.payload["ticket"] for e in sections["tickets"].events
    ] == [2, 1]
    assert [e.payload["request"] for e in sections["approvals"].events] == [2, 1]
    # Three kinds in one section: the newest LIMIT of them together, the total of all three.
    assert sections["costs"].total == 3 and [e.payload["n"] for e in sections["costs"].events] == [
        3,
        2,
    ]
