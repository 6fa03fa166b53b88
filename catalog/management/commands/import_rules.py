"""``manage.py import_rules PATH...``: a thin wrapper over :func:`catalog.services.import_rules`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._cli import add_paths_argument, progress_bar
from catalog.releases import DEFAULT_SOURCE, ReleaseRefused, ReleaseSpec, parse_released_at
from catalog.services import ImportAborted, ImportReport, import_rules


class Command(BaseCommand):
    help = (
        "Import Sigma rules from directories (recursive *.yml/*.yaml), files, .zip and "
        ".tar.gz archives. Upserts by rule id; unchanged files are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_paths_argument(parser)
        parser.add_argument(
            "--prune", action="store_true", help="delete catalog rules not found in PATHs"
        )
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.add_argument(
            "--release",
            default="",
            help="record the import as this release (default: a git checkout's tag, or the date)",
        )
        parser.add_argument("--released-at", default="", help="the release date (YYYY-MM-DD)")
        parser.add_argument(
            "--source", default=DEFAULT_SOURCE, help="the rule set the release belongs to"
        )
        parser.add_argument(
            "--force", action="store_true", help="import a release older than the latest"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bar = progress_bar(total=0, unit="file", desc="Importing", hidden=options["no_progress"])

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)

        try:
            released_at = options["released_at"]
            spec = ReleaseSpec(
                name=options["release"],
                released_at=parse_released_at(released_at) if released_at else None,
                source=options["source"],
                force=options["force"],
            )
        except ReleaseRefused as exc:
            raise CommandError(str(exc)) from exc
        try:
            report = import_rules(
                options["paths"], prune=options["prune"], progress=progress, release=spec
            )
        except ImportAborted as exc:
            bar.close()
            self._print_errors(exc.report)
            raise CommandError(str(exc)) from exc
        bar.close()
        self._print_errors(report)
        self.stdout.write(self.style.SUCCESS(f"Imported: {report.summary()}"))
        if report.release is not None:
            self.stdout.write(f"Recorded {report.release.summary()}")

    def _print_errors(self, report: ImportReport) -> None:
        for error in report.errors:
            self.stderr.write(f"FAILED {error.path}: {error.error}")
