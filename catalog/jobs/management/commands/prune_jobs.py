"""``manage.py prune_jobs``: remove job result files past the retention, and those of failed,
cancelled or deleted jobs (what a worker also does at start and every hour)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog.jobs.services import prune_job_files, retention


class Command(BaseCommand):
    help = "Remove job result files older than JOBS_RETENTION_DAYS and those of ended jobs"

    def handle(self, *args: Any, **options: Any) -> None:
        report = prune_job_files()
        days = retention().total_seconds() / 86400
        self.stdout.write(f"{report.summary()} (results kept {days:g} days)")
