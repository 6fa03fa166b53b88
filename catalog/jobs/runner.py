"""What the worker does with a job: claim it, run it with progress, record the outcome, and
always remove the upload (success, failure, cancel)."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from django.utils import timezone

from catalog.jobs.models import Job
from catalog.jobs.services import JobCancelled, JobProgress, job_dir, remove_upload

logger = logging.getLogger(__name__)


class JobFailed(Exception):
    """The job's input is bad or its work failed in an expected way; the message says why."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


def run(job_id: str) -> dict[str, Any]:
    """Run one job to its end. An unexpected error is recorded on the job and re-raised (so
    the task result keeps the traceback); expected failures are only recorded."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, message="starting"
    )
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return {"status": "missing"}
    if not claimed:  # cancelled while queued, or already run
        remove_upload(job)
        return {"status": job.status}
    try:
        with JobProgress(job) as progress:
            status, message, result = _dispatch(job, progress)
    except JobCancelled:
        status, message, result = Job.Status.CANCELLED, "cancelled; nothing was changed", {}
    except JobFailed as exc:
        status, message, result = Job.Status.FAILED, f"failed: {exc}", exc.result
    except BaseException as exc:
        _finish(job, Job.Status.FAILED, f"failed: {type(exc).__name__}: {exc}", {})
        raise
    _finish(job, status, message, result)
    return {"status": status}


def _dispatch(job: Job, progress: JobProgress) -> tuple[str, str, dict[str, Any]]:
    if job.kind == Job.Kind.IMPORT:
        from catalog.jobs.imports import run_import

        return run_import(job, progress)
    from catalog.jobs.sandbox import run_sandbox_file

    return run_sandbox_file(job, progress)


def _finish(job: Job, status: str, message: str, result: dict[str, Any]) -> None:
    remove_upload(job)
    if status != Job.Status.SUCCEEDED:  # no half-written result files either
        shutil.rmtree(job_dir(job), ignore_errors=True)
    job.update(
        status=status,
        message=message[:2000],
        result=result,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
