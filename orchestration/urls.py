from django.urls import path

from orchestration.views import (
    dashboard,
    exports,
    fanout,
    run_actions,
    runs,
    start,
    trail,
    versions,
)

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/export.<str:fmt>", exports.export_runs, name="run_export"),
    path("runs/new/", start.choose_workflow, name="start_choose"),
    path("runs/new/<slug:workflow_name>/", start.start_form, name="start_form"),
    path("runs/new/<slug:workflow_name>/estimate/", start.estimate, name="start_estimate"),
    path("runs/<uuid:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<uuid:run_id>/live/", runs.run_live, name="run_live"),
    path("runs/<uuid:run_id>/download.json", exports.run_download, name="run_download"),
    path("runs/<uuid:run_id>/rerun/", run_actions.rerun, name="run_rerun"),
    path("runs/<uuid:run_id>/fork/", run_actions.fork, name="run_fork"),
    path("runs/<uuid:run_id>/cancel/", run_actions.cancel, name="run_cancel"),
    path("runs/compare/", run_actions.compare, name="run_compare"),
    path("runs/<uuid:run_id>/jobs/", fanout.job_grid, name="fanout_jobs"),
    path("runs/<uuid:run_id>/jobs/<int:job_pk>/", fanout.job_detail, name="fanout_job"),
    path("workflows/", versions.workflow_list, name="workflow_list"),
    path("workflows/<slug:workflow_name>/versions/", versions.version_list, name="version_list"),
    path(
        "workflows/<slug:workflow_name>/versions/<int:version_id>/",
        versions.version_detail,
        name="version_detail",
    ),
    path(
        "workflows/<slug:workflow_name>/versions/<int:version_id>/action/",
        versions.version_action,
        name="version_action",
    ),
    path("audit/", trail.trail, name="audit_trail"),
    path("audit/export.<str:fmt>", trail.trail_export, name="audit_trail_export"),
    path("audit/verify_audit_export.py", trail.verifier_script, name="audit_verifier"),
    path("audit/public-key.txt", trail.public_key, name="audit_public_key"),
    path("audit/people/<str:username>/", trail.activity, name="person_activity"),
]
