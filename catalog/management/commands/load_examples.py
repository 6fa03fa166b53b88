"""``manage.py load_examples``: import the bundled example rules when the catalog is empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Rule
from catalog.services import ImportAborted, import_rules


class Command(BaseCommand):
    help = (
        "Import the example rule pack (examples/rules, and the correlation and filter examples "
        "in examples/correlations beside it) if the catalog has no rules yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="import even when the catalog has rules"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if Rule.objects.exists() and not options["force"]:
            self.stdout.write("Catalog already has rules; examples not imported (use --force).")
            return
        rules = Path(settings.EXAMPLE_RULES_DIR)
        # The correlation and meta-filter examples reference rules of their own files, so the
        # embedded default shows correlations, filters and their pages from the first start.
        folders = [rules] + [f for f in [rules.parent / "correlations"] if f.is_dir()]
        try:
            report = import_rules(
                [str(f) for f in folders], trigger="examples", rule_set="examples"
            )
        except ImportAborted as exc:
            raise CommandError(str(exc)) from exc
        for error in report.errors:
            self.stderr.write(f"FAILED {error.path}: {error.error}")
        self.stdout.write(self.style.SUCCESS(f"Example rules: {report.summary()}"))
