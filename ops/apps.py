from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations (health, metrics, logs, tracing)"

    def ready(self) -> None:
        from ops import logs, tracing

        logs.connect_celery_signals()
        tracing.connect_celery_signals()
        tracing.configure_from_settings()
