from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluations"
    default_auto_field = "django.db.models.BigAutoField"
