from django.apps import AppConfig


class InsightConfig(AppConfig):
    name = "insight"
    verbose_name = "Operations insight (roll-ups, the operations page, the daily digest)"
