from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """The catalog app; connects its signal handlers once the models are loaded."""

    name = "catalog"
    verbose_name = "Sigma catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from catalog.models import ImportRun, Rule
        from catalog.services import forget_fingerprint

        # Every import saves its ImportRun when it starts and when it ends (after its
        # transaction); deleting a rule changes the catalog outside an import.
        post_save.connect(forget_fingerprint, sender=ImportRun, dispatch_uid="forget-fingerprint")
        post_delete.connect(forget_fingerprint, sender=Rule, dispatch_uid="forget-fingerprint")
