"""The JSON API under /api/. Every route here is documented in api/openapi.py (a test checks)."""

from django.urls import path, re_path

from api import openapi
from api.views import ceiling, errors, runs, tickets

app_name = "api"

urlpatterns = [
    path("openapi.json", openapi.document, name="openapi"),
    path("workflows", runs.workflows, name="workflows"),
    path("runs", runs.runs, name="runs"),
    path("runs/<uuid:run_id>", runs.run_detail, name="run_detail"),
    path("runs/<uuid:run_id>/calls", runs.run_calls, name="run_calls"),
    path("runs/<uuid:run_id>/ceiling", ceiling.raise_ceiling, name="run_ceiling"),
    path("tickets/<int:ticket_id>/resolve", tickets.resolve, name="ticket_resolve"),
    # Anything else under /api/ is a JSON 404, never the HTML error page ([\s\S], not ".",
    # so a path with an encoded newline is caught too: found by the API fuzzing).
    re_path(r"^[\s\S]*$", errors.not_found, name="not_found"),
]
