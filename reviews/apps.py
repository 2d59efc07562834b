from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = "Reviews (approvals and escalations)"

    def ready(self) -> None:
        # Imported here, as Django wants: reviews.roles needs the models, which are not
        # loaded yet when this module is.
        from orchestration.signals import run_status_changed
        from reviews.roles import ensure_roles_after_migrate
        from reviews.tasks import on_run_status_changed

        # The roles are created by migration 0005; this puts back any a flush removed.
        post_migrate.connect(ensure_roles_after_migrate, sender=self)
        # Approval requests, decisions and run ends are told to people after the commit.
        run_status_changed.connect(on_run_status_changed, dispatch_uid="reviews.notify_run_status")
