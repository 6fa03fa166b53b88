from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Background jobs (a separate app so its tables and commands stay together)."""

    name = "catalog.jobs"
    label = "jobs"
    default_auto_field = "django.db.models.BigAutoField"
