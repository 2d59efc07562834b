"""Every URL the resolver knows x every persona x GET and POST: the status each must get.

The routes are enumerated from the resolver (tests/attack/routes.py), not listed by hand: a
new URL fails `test_every_route_has_an_expectation` until someone decides who may use it.
Statuses: an int, "login" (302 to /login/) or "admin-login" (302 to the admin's login).
Each request runs in a savepoint that is rolled back, so a POST that succeeds for one
persona does not change what the next one sees.
"""

from __future__ import annotations

import copy
import os
import pprint
from pathlib import Path
from typing import Any

from django.db import transaction

from tests.attack.conftest import PERSONAS, World, client_for
from tests.attack.routes import Route, all_routes

ROUTES = {r.template: r for r in all_routes()}


def values_for(route: Route, world: World) -> dict[str, str]:
    """Real rows for every URL kwarg (the admin's object_id depends on the model)."""
    from django.contrib.contenttypes.models import ContentType

    from orchestration.models import AuditEvent, ModelCall, ToolCall

    admin_objects = {
        "orchestration/workflowversion": world.run.workflow_version_id,
        "orchestration/run": world.run.pk,
        "orchestration/modelcall": ModelCall.objects.values_list("pk", flat=True).first() or 0,
        "orchestration/toolcall": ToolCall.objects.values_list("pk", flat=True).first() or 0,
        "orchestration/auditevent": AuditEvent.objects.filter(run=world.run)
        .values_list("pk", flat=True)
        .first(),
        "reviews/approvalrequest": world.approval.pk,
        "reviews/escalationticket": world.ticket.pk,
        "api/apitoken": world.token.pk,
        "auth/user": world.users["operator"].pk,
    }
    model = "/".join(route.template.split("/")[1:3])
    object_id = world.run.pk if route.template.startswith("admin/r/") else admin_objects.get(model)
    if object_id is None:
        object_id = _first_pk(model)
    return {
        "run_id": str(world.run.pk),
        "ticket_id": str(world.ticket.pk),
        "request_id": str(world.approval.pk),
        "alert_id": str(_first_pk("alerts/alert")),
        "pause_id": str(_first_pk("alerts/userpause")),
        "schedule_id": str(_first_pk("schedules/schedule")),
        "job_pk": str(world.job.pk),
        "dataset_id": str(_demo_dataset().pk),
        "case_id": str(_demo_dataset().cases.values_list("pk", flat=True).first()),
        "evaluation_id": str(_first_pk("evaluation/evaluation")),
        "token_id": str(world.token.pk),
        "workflow_name": "financial_reporting",
        "version_id": str(world.run.workflow_version_id),
        "fmt": "csv",
        "object_id": str(object_id),
        "app_label": "orchestration",
        "content_type_id": str(ContentType.objects.get_for_model(world.run).pk),
        "url": "no-such-page/",
        "id": str(world.users["operator"].pk),
        "username": "operator",
    }


def _demo_dataset() -> Any:
    from evaluation.models import Dataset

    return Dataset.objects.get(workflow_name="financial_reporting", name="demo")


def _first_pk(model: str) -> Any:
    from django.apps import apps

    try:
        app_label, model_name = model.split("/")
        return (
            apps.get_model(app_label, model_name).objects.values_list("pk", flat=True).first() or 1
        )
    except (LookupError, ValueError):
        return 1


def outcome(response: Any) -> int | str:
    if response.status_code == 302:
        where = response["Location"]
        if where.startswith("/admin/login/"):
            return "admin-login"
        if where.startswith("/login/"):
            return "login"
    return response.status_code


_CLIENTS: dict[int, dict[str, Any]] = {}


def _clients(world: World) -> dict[str, Any]:
    """One signed-in client per persona for this world (signing in per request is slow)."""
    key = id(world)
    if key not in _CLIENTS:
        _CLIENTS.clear()
        _CLIENTS[key] = {p: client_for(p, world) for p in PERSONAS}
    return _CLIENTS[key]


def observe(route: Route, world: World, persona: str, method: str) -> int | str:
    """The outcome of one request. The JSON API is called with the persona's bearer token (its
    only way in); anonymous calls it without one."""
    from api.models import ApiToken

    client = _clients(world)[persona]
    path = route.url(values_for(route, world))
    with transaction.atomic():
        headers = {}
        if path.startswith("/api/") and persona != "anonymous":
            client = _clients(world)["anonymous"]
            headers["Authorization"] = (
                f"Bearer {ApiToken.issue(world.users[persona], 'matrix-' + persona)[1]}"
            )
        cookies = copy.deepcopy(client.cookies)  # a logout must not sign out the next request
        response = getattr(client, method.lower())(path, headers=headers)
        client.cookies = cookies
        transaction.set_rollback(True)
    return outcome(response)


# --- the expectations --------------------------------------------------------------------
# One entry per route template: {"GET": spec, "POST": spec}; a spec is a status for every
# persona, or a dict persona -> status with "*" for the rest.

# Pages, partials, exports and the API. Notes: "" is the dashboard; reviewers see the run
# because its ticket is open in the shared queue; outsiders get 404 for a run that is not
# theirs (ids do not leak); healthz is 503 in tests (no worker heartbeats) and metrics is 404
# (requests run with debug off, and no METRICS_TOKEN is set: production's default); the API is reached with each persona's bearer token, anonymous
# without one (401). POSTs are empty: a 422/200 there means the view got as far as checking
# the form, i.e. the persona is allowed to act.
EXPECT: dict[str, dict[str, Any]] = {
    "": {"GET": {"anonymous": "login", "*": 200}, "POST": {"anonymous": "login", "*": 405}},
    "account/api-tokens/": {
        "GET": {"anonymous": "login", "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "account/api-tokens/<int:token_id>/revoke/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "operator": 302, "*": 404},
    },
    "account/api-tokens/new/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "*": 422},
    },
    "admin/": {
        "GET": {"manager": 200, "auditor": 200, "*": "admin-login"},
        "POST": {"manager": 200, "auditor": 200, "*": "admin-login"},
    },
    "admin/(?P<url>.*)$": {
        "GET": {"manager": 404, "auditor": 404, "*": "admin-login"},
        "POST": {"manager": 404, "auditor": 404, "*": "admin-login"},
    },
    "admin/^(?P<app_label>auth|axes|orchestration|reviews|costs|warehouse|notifications|alerts|schedules|api)/$": {
        "GET": {"manager": 200, "auditor": 200, "*": "admin-login"},
        "POST": {"manager": 200, "auditor": 200, "*": "admin-login"},
    },
    "admin/autocomplete/": {
        "GET": {"manager": 403, "auditor": 403, "*": "admin-login"},
        "POST": {"manager": 405, "auditor": 405, "*": "admin-login"},
    },
    "admin/jsi18n/": {
        "GET": {"manager": 200, "auditor": 200, "*": "admin-login"},
        "POST": {"manager": 405, "auditor": 405, "*": "admin-login"},
    },
    "admin/login/": {"GET": {"manager": 302, "auditor": 302, "*": 200}, "POST": 200},
    "admin/logout/": {
        "GET": {"anonymous": "admin-login", "manager": 405, "auditor": 405, "*": 302},
        "POST": {"anonymous": "admin-login", "manager": "login", "auditor": "login", "*": 302},
    },
    "admin/password_change/": {
        "GET": {"manager": 200, "auditor": 200, "*": "admin-login"},
        "POST": {"manager": 200, "auditor": 200, "*": "admin-login"},
    },
    "admin/password_change/done/": {
        "GET": {"manager": 200, "auditor": 200, "*": "admin-login"},
        "POST": {"manager": 405, "auditor": 405, "*": "admin-login"},
    },
    "admin/r/<path:content_type_id>/<path:object_id>/": {
        "GET": {"manager": 404, "auditor": 404, "*": "admin-login"},
        "POST": {"manager": 404, "auditor": 404, "*": "admin-login"},
    },
    "api/^[\\s\\S]*$": {"GET": 404, "POST": 404},
    "api/approvals": {
        "GET": {"anonymous": 401, "manager": 200, "auditor": 200, "*": 403},
        "POST": 405,
    },
    "api/approvals/<int:request_id>/decide": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 415, "*": 403},
    },
    "api/evaluations": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 415, "*": 403},
    },
    "api/evaluations/<int:evaluation_id>": {
        "GET": {"anonymous": 401, "manager": 200, "auditor": 200, "*": 403},
        "POST": 405,
    },
    "api/openapi.json": {"GET": 200, "POST": 405},
    "api/runs": {
        "GET": {"anonymous": 401, "*": 200},
        "POST": {"anonymous": 401, "operator": 415, "manager": 415, "*": 403},
    },
    "api/runs/<uuid:run_id>": {"GET": {"anonymous": 401, "outsider": 404, "*": 200}, "POST": 405},
    "api/runs/<uuid:run_id>/calls": {
        "GET": {"anonymous": 401, "outsider": 404, "*": 200},
        "POST": 405,
    },
    "api/runs/<uuid:run_id>/ceiling": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 415, "*": 403},
    },
    "api/runs/<uuid:run_id>/cancel": {
        "GET": 405,
        "POST": {"anonymous": 401, "auditor": 403, "outsider": 403, "*": 415},
    },
    "api/runs/<uuid:run_id>/fork": {
        "GET": 405,
        "POST": {"anonymous": 401, "auditor": 403, "outsider": 403, "*": 415},
    },
    "api/runs/<uuid:run_id>/rerun": {
        "GET": 405,
        "POST": {"anonymous": 401, "operator": 415, "manager": 415, "*": 403},
    },
    # Schedules: managers only, as on the schedules page; changes are POSTs like its forms.
    "api/schedules": {
        "GET": {"anonymous": 401, "manager": 200, "*": 403},
        "POST": {"anonymous": 401, "manager": 415, "*": 403},
    },
    "api/schedules/<int:schedule_id>": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 415, "*": 403},
    },
    "api/schedules/<int:schedule_id>/delete": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 204, "*": 403},
    },
    "api/schedules/<int:schedule_id>/pause": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 200, "*": 403},
    },
    "api/schedules/<int:schedule_id>/resume": {
        "GET": 405,
        "POST": {"anonymous": 401, "manager": 200, "*": 403},
    },
    "api/tickets": {
        "GET": {"anonymous": 401, "reviewer": 200, "manager": 200, "*": 403},
        "POST": 405,
    },
    "api/tickets/<int:ticket_id>/claim": {
        "GET": 405,
        "POST": {"anonymous": 401, "reviewer": 200, "manager": 200, "*": 403},
    },
    "api/tickets/<int:ticket_id>/resolve": {
        "GET": 405,
        "POST": {"anonymous": 401, "reviewer": 415, "manager": 415, "*": 403},
    },
    "api/workflows": {"GET": {"anonymous": 401, "*": 200}, "POST": 405},
    # The audit trail, its exports, the verifier, the public key and the per-person activity:
    # managers and auditors only; to everyone else the pages do not exist (404, any method).
    "audit/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 404},
        "POST": {"anonymous": "login", "manager": 405, "auditor": 405, "*": 404},
    },
    "audit/export.<str:fmt>": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 404},
        "POST": {"anonymous": "login", "manager": 405, "auditor": 405, "*": 404},
    },
    "audit/people/<str:username>/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 404},
        "POST": {"anonymous": "login", "manager": 405, "auditor": 405, "*": 404},
    },
    "audit/public-key.txt": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 404},
        "POST": {"anonymous": "login", "manager": 405, "auditor": 405, "*": 404},
    },
    "audit/verify_audit_export.py": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 404},
        "POST": {"anonymous": "login", "manager": 405, "auditor": 405, "*": 404},
    },
    "costs/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "costs/export.csv": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "healthz": {"GET": 503, "POST": 405},
    # Figures over every run and their cost: those who see every run and the costs.
    "operations/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "operations/digest/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    # Alerts: managers and auditors see them; only managers act on them or lift a pause.
    "alerts/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "alerts/<int:alert_id>/acknowledge/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    "alerts/<int:alert_id>/resolve/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    "alerts/pauses/<int:pause_id>/lift/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    # Schedules: managers only (403 for everyone else, as on the alerts and costs pages);
    # auditors read them in the admin. Empty POSTs: the form is refused (422).
    "schedules/": {
        "GET": {"anonymous": "login", "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "schedules/new/": {
        "GET": {"anonymous": "login", "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    "schedules/<int:schedule_id>/": {
        "GET": {"anonymous": "login", "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    "schedules/<int:schedule_id>/pause/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    "schedules/<int:schedule_id>/delete/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    # Evaluations: managers and auditors read them; only managers edit datasets and run
    # evaluations. An empty POST of a form answers 422 (the form, with what is missing); an
    # empty "evaluate" evaluates the workflow as declared now (302 to the report).
    "evaluations/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "evaluations/<int:evaluation_id>/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    # Without ?a=&b= there is nothing to compare: 404 to those who may see evaluations.
    "evaluations/compare/": {
        "GET": {"anonymous": "login", "manager": 404, "auditor": 404, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "evaluations/datasets/new/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    "evaluations/datasets/<int:dataset_id>/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "evaluations/datasets/<int:dataset_id>/export.jsonl": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "evaluations/datasets/<int:dataset_id>/cases/new/": {
        "GET": {"anonymous": "login", "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    "evaluations/datasets/<int:dataset_id>/cases/<int:case_id>/": {
        "GET": {"anonymous": "login", "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    **{
        f"evaluations/datasets/<int:dataset_id>/{action}": {
            "GET": {"anonymous": "login", "*": 405},
            "POST": {"anonymous": "login", "manager": status, "*": 403},
        }
        for action, status in (
            ("delete/", 302),
            ("import/", 422),
            ("evaluate/", 302),
            ("cases/<int:case_id>/delete/", 302),
        )
    },
    "login/": {"GET": 200, "POST": 200},
    "logout/": {"GET": {"anonymous": "login", "*": 405}, "POST": "login"},
    "metrics": {"GET": 404, "POST": 405},
    "reviews/approvals/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    # The approval request's own page (the managers' email links to it).
    "reviews/approvals/<int:request_id>/": {
        "GET": {"anonymous": "login", "manager": 200, "auditor": 200, "*": 403},
        "POST": {"anonymous": "login", "*": 405},
    },
    "reviews/approvals/<int:request_id>/decide/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    "reviews/approvals/bulk/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "manager": 302, "*": 403},
    },
    "reviews/tickets/": {
        "GET": {"anonymous": "login", "reviewer": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
    },
    "reviews/tickets/<int:ticket_id>/": {
        "GET": {"anonymous": "login", "reviewer": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
    },
    "reviews/tickets/<int:ticket_id>/assign/": {
        "GET": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 302, "manager": 302, "*": 403},
    },
    "reviews/tickets/<int:ticket_id>/claim/": {
        "GET": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 302, "manager": 302, "*": 403},
    },
    # Only a manager who did not request the run (the empty form is refused with a message).
    "reviews/tickets/<int:ticket_id>/raise-ceiling/": {
        "GET": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "manager": 422, "*": 403},
    },
    "reviews/tickets/<int:ticket_id>/resolve/": {
        "GET": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 422, "manager": 422, "*": 403},
    },
    "reviews/tickets/<int:ticket_id>/unclaim/": {
        "GET": {"anonymous": "login", "reviewer": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "reviewer": 302, "manager": 302, "*": 403},
    },
    "runs/": {"GET": {"anonymous": "login", "*": 200}, "POST": {"anonymous": "login", "*": 405}},
    # Workflow versions: managers, auditors and operators (who propose changes) see them; to
    # reviewers and outsiders the pages are not there. Operators propose, managers decide
    # (an empty POST is refused inside, with a message: 302); auditors only look.
    "workflows/": {
        "GET": {"anonymous": "login", "reviewer": 404, "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "workflows/<slug:workflow_name>/versions/": {
        "GET": {"anonymous": "login", "reviewer": 404, "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "workflows/<slug:workflow_name>/versions/<int:version_id>/": {
        "GET": {"anonymous": "login", "reviewer": 404, "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "workflows/<slug:workflow_name>/versions/<int:version_id>/action/": {
        "GET": {"anonymous": "login", "*": 405},
        "POST": {"anonymous": "login", "reviewer": 404, "outsider": 404, "auditor": 403, "*": 302},
    },
    "runs/<uuid:run_id>/": {
        "GET": {"anonymous": "login", "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/<uuid:run_id>/download.json": {
        "GET": {"anonymous": "login", "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    # Re-run starts a run (operators, managers); fork also lets reviewers carry a correction
    # forward; cancel is for the requester, managers and a reviewer who may act on the run's
    # ticket. The role is checked before the run is looked up (403), then the run (404). An
    # empty fork POST names no turn (422).
    "runs/<uuid:run_id>/rerun/": {
        "GET": {"anonymous": "login", "operator": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "operator": 302, "manager": 302, "*": 403},
    },
    "runs/<uuid:run_id>/fork/": {
        "GET": {"anonymous": "login", "operator": 200, "reviewer": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "operator": 422, "reviewer": 422, "manager": 422, "*": 403},
    },
    "runs/<uuid:run_id>/cancel/": {
        "GET": {"anonymous": "login", "operator": 200, "reviewer": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "operator": 302, "reviewer": 302, "manager": 302, "*": 403},
    },
    "runs/compare/": {
        "GET": {"anonymous": "login", "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/<uuid:run_id>/jobs/": {
        "GET": {"anonymous": "login", "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/<uuid:run_id>/jobs/<int:job_pk>/": {
        "GET": {"anonymous": "login", "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/<uuid:run_id>/live/": {
        "GET": {"anonymous": "login", "outsider": 404, "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/export.<str:fmt>": {
        "GET": {"anonymous": "login", "*": 200},
        "POST": {"anonymous": "login", "*": 405},
    },
    "runs/new/": {
        "GET": {"anonymous": "login", "operator": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "operator": 405, "manager": 405, "*": 403},
    },
    "runs/new/<slug:workflow_name>/": {
        "GET": {"anonymous": "login", "operator": 200, "manager": 200, "*": 403},
        "POST": {"anonymous": "login", "operator": 200, "manager": 200, "*": 403},
    },
    "runs/new/<slug:workflow_name>/estimate/": {
        "GET": {"anonymous": "login", "operator": 405, "manager": 405, "*": 403},
        "POST": {"anonymous": "login", "operator": 200, "manager": 200, "*": 403},
    },
}

# The admin's model pages: what each staff persona may do per model. "view" (read-only),
# "add" (view and add, not change or delete: model prices keep their history), "edit"
# (view, add, change, delete), None (403). Operators, reviewers and outsiders are not staff.
ADMIN_LEVELS: dict[str, dict[str, str | None]] = {
    **{
        f"orchestration/{m}": {"manager": "view", "auditor": "view"}
        for m in ("workflowversion", "run", "modelcall", "toolcall", "auditevent")
    },
    **{
        f"reviews/{m}": {"manager": "view", "auditor": "view"}
        for m in ("approvalrequest", "escalationticket")
    },
    **{
        f"warehouse/{m}": {"manager": "view", "auditor": "view"}
        for m in (
            "transaction",
            "ledgerentry",
            "payment",
            "publishedreport",
            "auditlogentry",
            "paymentdecision",
            "apraruleset",  # the APRA rules: superusers (the compliance team) change them
        )
    },
    # Alerts: thresholds are set by superusers (audited); alerts and pauses are acted on in
    # the alerts page. Webhooks hold secrets: superusers only.
    **{
        f"alerts/{m}": {"manager": "view", "auditor": "view"}
        for m in ("alertthresholds", "alert", "userpause")
    },
    **{
        f"notifications/{m}": {"manager": None, "auditor": None}
        for m in ("webhookendpoint", "webhookdelivery", "workflowrecipient")
    },
    # Schedules: managers edit them (schedules.admin, audited like the page); ticks are a record.
    "schedules/schedule": {"manager": "edit", "auditor": "view"},
    "schedules/scheduledtick": {"manager": "view", "auditor": "view"},
    # Prices and budgets: superusers only add them (costs.changes), never edit them.
    # SLA targets: superusers edit them (reviews.admin.SlaTargetAdmin), managers and auditors see them.
    "reviews/slatarget": {"manager": "view", "auditor": "view"},
    "costs/modelprice": {"manager": "view", "auditor": "view"},
    "costs/budget": {"manager": "view", "auditor": "view"},
    # Model lifecycle dates decide whether runs may start: superusers edit them (audited).
    "costs/modellifecycle": {"manager": "view", "auditor": "view"},
    "api/apitoken": {
        "manager": None,
        "auditor": None,
    },  # superusers only: tokens are secrets' hashes
    "auth/user": {"manager": None, "auditor": None},
    "auth/group": {"manager": None, "auditor": None},
    # django-axes' login attempts: superusers only (or manage.py axes_reset_username).
    **{
        f"axes/{m}": {"manager": None, "auditor": None}
        for m in ("accessattempt", "accesslog", "accessfailurelog")
    },
}


def _admin_status(page: str, method: str, level: str | None) -> int:
    if page == "object":  # the bare <object_id>/ URL redirects to the change page
        return 302
    if page in ("", "history") or (page == "change" and method == "GET"):
        return 200 if level else 403
    if page == "change":
        return 200 if level == "edit" else 403
    if page == "delete":
        return 200 if level == "edit" else 403
    if page == "add":
        return 200 if level in ("add", "edit") else 403
    return 403  # password: superusers only


def _admin_expectations() -> None:
    """Fill EXPECT for every admin model route from ADMIN_LEVELS (a model missing there fails)."""
    for template in ROUTES:
        parts = template.split("/")
        if len(parts) < 4 or parts[0] != "admin" or f"{parts[1]}/{parts[2]}" not in ADMIN_LEVELS:
            continue
        levels = ADMIN_LEVELS[f"{parts[1]}/{parts[2]}"]
        rest = parts[3:-1]
        page = (
            ""
            if not rest
            else "add"
            if rest == ["add"]
            else "object"
            if len(rest) == 1
            else "password"
            if rest[-1] == "password"
            else rest[-1]
        )
        EXPECT[template] = {
            method: {
                "anonymous": "login",
                "manager": _admin_status(page, method, levels["manager"]),
                "auditor": _admin_status(page, method, levels["auditor"]),
                "*": "admin-login",
            }
            for method in ("GET", "POST")
        }


_admin_expectations()


def expected(template: str, method: str, persona: str) -> int | str:
    spec = EXPECT[template][method]
    if isinstance(spec, dict):
        return spec.get(persona, spec.get("*"))
    return spec


def test_every_route_has_an_expectation() -> None:
    missing = sorted(set(ROUTES) - set(EXPECT))
    stale = sorted(set(EXPECT) - set(ROUTES))
    assert not missing, f"routes without an access expectation (add them to EXPECT): {missing}"
    assert not stale, f"expectations for routes that no longer exist: {stale}"


def test_every_route_answers_each_persona_as_expected(world: World) -> None:
    """One test over the whole matrix (one set of rows; each request in its own savepoint)."""
    wrong, unexpected = [], {}
    for template, route in sorted(ROUTES.items()):
        for method in ("GET", "POST"):
            for persona in PERSONAS:
                got = observe(route, world, persona, method)
                if template not in EXPECT:
                    unexpected.setdefault(template, {}).setdefault(method, {})[persona] = got
                elif got != (want := expected(template, method, persona)):
                    wrong.append(f"{method} {template} as {persona}: got {got}, expected {want}")
    if dump := os.environ.get("ATTACK_MATRIX_DUMP"):
        Path(dump).write_text(pprint.pformat(unexpected, width=140, sort_dicts=False))
    assert not unexpected, f"routes without an expectation: {sorted(unexpected)}"
    assert not wrong, "\n".join(wrong)


def test_other_methods_never_succeed_or_crash(world: World) -> None:
    """PUT, PATCH and DELETE are served nowhere outside the admin: never 2xx, never 5xx."""
    wrong = []
    for template, route in sorted(ROUTES.items()):
        if template.startswith("admin/"):
            continue
        for method in ("PUT", "PATCH", "DELETE"):
            for persona in ("anonymous", "operator", "manager"):
                got = observe(route, world, persona, method)
                if isinstance(got, int) and (200 <= got < 300 or got >= 500):
                    wrong.append(f"{method} {template} as {persona}: {got}")
    assert not wrong, "\n".join(wrong)


# --- a ticket someone else holds ---------------------------------------------------------
# The matrix above uses a ticket open in the shared queue, which every reviewer may see. Once
# another reviewer claims it, the reviewer who does not hold it gets 404 on every route that
# names the ticket or its run (as if neither existed), wherever the view would otherwise have
# gone past the role check; its holder and everyone else keep the answers above.


def _names_the_ticket_or_its_run(template: str) -> bool:
    return not template.startswith("admin/") and (
        "<int:ticket_id>" in template or "run_id>" in template
    )


def test_a_ticket_another_reviewer_holds_is_404_for_the_other_reviewers(world: World) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from api.models import ApiToken
    from reviews import resolutions

    holder = get_user_model().objects.create_user("reviewer2", password="x-reviewer2-1")
    holder.groups.add(Group.objects.get(name="reviewers"))
    resolutions.claim(world.ticket.pk, holder)
    clients = {p: client_for(p, world) for p in PERSONAS}
    clients["holder"] = client_for("anonymous", world)
    clients["holder"].force_login(holder)
    users = {**world.users, "holder": holder}
    wrong = []
    for template, route in sorted(ROUTES.items()):
        if not _names_the_ticket_or_its_run(template):
            continue
        path = route.url(values_for(route, world))
        for method in ("GET", "POST"):
            for persona in (*PERSONAS, "holder"):
                base = expected(template, method, "reviewer" if persona == "holder" else persona)
                want = 404 if persona == "reviewer" and base not in (401, 403, 405) else base
                if (template, method, persona) == (
                    "api/tickets/<int:ticket_id>/claim",
                    "POST",
                    "manager",
                ):
                    want = 409  # a manager sees the held ticket, but claiming it is refused
                with transaction.atomic():
                    client, headers = clients[persona], {}
                    if path.startswith("/api/") and persona != "anonymous":
                        client = clients["anonymous"]
                        token = ApiToken.issue(users[persona], f"held-{persona}")[1]
                        headers["Authorization"] = f"Bearer {token}"
                    cookies = copy.deepcopy(client.cookies)
                    got = outcome(getattr(client, method.lower())(path, headers=headers))
                    client.cookies = cookies
                    transaction.set_rollback(True)
                if got != want:
                    wrong.append(f"{method} {template} as {persona}: got {got}, expected {want}")
    assert not wrong, "\n".join(wrong)
    world.ticket.refresh_from_db()
    assert world.ticket.assignee == holder and world.ticket.status == "claimed"
