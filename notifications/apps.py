from django.apps import AppConfig
from django.core import checks

from notifications.checks import legacy_escalation_webhook


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications (email, signed webhooks, recipients)"

    def ready(self) -> None:
        checks.register(legacy_escalation_webhook)
