"""An uploaded rule file or archive imported as a job (the admin form, ``POST /api/imports/``).

The import is one transaction (:func:`catalog.services.import_rules`): a cancel (checked at
each progress step, before anything is written) or a killed worker leaves the catalog as it
was. An import where every file failed is a failed job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.urls import reverse

from catalog.jobs.models import Job
from catalog.jobs.runner import JobFailed
from catalog.jobs.services import JobCancelled, JobProgress
from catalog.services import ImportAborted, ImportReport
from catalog.uploads import import_saved

REPORT_ERRORS = 100
"""Refused files listed in the job's result; the ImportRun (``/api/imports/<id>/``) pages all."""


def run_import(job: Job, progress: JobProgress) -> tuple[str, str, dict[str, Any]]:
    def step(done: int, total: int) -> None:
        progress.step(done, total, f"read {done:,} of {total:,} files")

    try:
        report = import_saved(
            Path(job.upload_path),
            prune=bool(job.options.get("prune")),
            trigger=str(job.options.get("trigger", "job")),
            progress=step,
        )
    except ImportAborted as exc:
        if isinstance(exc.__cause__, JobCancelled):
            raise exc.__cause__ from None
        raise JobFailed(str(exc), import_result(exc.report)) from exc
    result = import_result(report)
    if report.all_failed:
        raise JobFailed(f"every file failed ({report.failed:,}); nothing was imported", result)
    return Job.Status.SUCCEEDED, f"import finished: {report.summary()}", result


def import_result(report: ImportReport) -> dict[str, Any]:
    """The job's summary of an import (the first refused files; the run has them all)."""
    return {
        "run_id": report.run_id,
        "run": reverse("api:import-detail", args=[report.run_id]) if report.run_id else None,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "pruned": report.pruned,
        "seconds": round(report.seconds, 3),
        "summary": report.summary(),
        "errors": [e.to_dict() for e in report.errors[:REPORT_ERRORS]],
        "errors_total": report.failed,
    }
