from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        # Workflows are declared in Python and registered on import, like Celery tasks.
        from orchestration.workflows import registry

        registry.autodiscover()

        # A bad redaction pattern or encryption key fails at start, not on the first write.
        from orchestration import privacy

        privacy.active_patterns()
        privacy.fernet()
