"""Creating, watching, cancelling and sweeping jobs; progress with a heartbeat and a cancel
check. Views and the API call these; the worker runs :mod:`catalog.jobs.runner`."""

from __future__ import annotations

import datetime
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.jobs.models import Job
from catalog.uploads import save_upload

WORKER_LOST = "failed: worker lost (no heartbeat"


def _setting(name: str, default: float) -> float:
    """A number from settings, else the environment, else ``default`` (read at call time)."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, default)
    return float(value)


def heartbeat_seconds() -> float:
    """How often a running job's worker writes its heartbeat (0: only at progress steps)."""
    return _setting("JOBS_HEARTBEAT_SECONDS", 5)


def stale_after() -> datetime.timedelta:
    """A running job whose heartbeat is older than this lost its worker. Generous, because
    on SQLite the heartbeat waits while an import holds the write lock."""
    return datetime.timedelta(seconds=_setting("JOBS_STALE_SECONDS", 120))


def sandbox_job_max_bytes() -> int:
    """Largest sandbox upload accepted as a job (``SANDBOX_JOB_MAX_BYTES``, default 200 MB)."""
    return int(_setting("SANDBOX_JOB_MAX_BYTES", 200 * 1024 * 1024))


def jobs_dir() -> Path:
    return Path(settings.DATA_DIR) / "jobs"


def job_dir(job: Job) -> Path:
    """Where a job keeps its upload (``upload/``, removed at the end) and its result files."""
    return jobs_dir() / str(job.pk)


# -- creating and reading ----------------------------------------------------------------------


def create_job(kind: str, upload: Any, *, user: Any, options: dict[str, Any]) -> Job:
    """Save ``upload`` under the job's folder and enqueue the job (both or neither)."""
    from catalog.jobs.tasks import run_job

    job = Job(kind=kind, options=options, created_by=user if _is_user(user) else None)
    folder = job_dir(job)
    try:
        target = save_upload(upload, folder / "upload")
        job.upload_name = str(upload.name)[-200:]
        job.upload_path = str(target)
        job.message = "waiting for a worker"
        with transaction.atomic():
            job.save()
            # The worker sees the task row only when this commits, and the Job with it.
            job.task_id = str(run_job.enqueue(str(job.pk)).id)
            job.save(update_fields=["task_id"])
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def _is_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False))


def can_view(job: Job, user: Any) -> bool:
    """Staff see every job; a signed-in owner sees theirs; an anonymous job is open to anyone
    holding its (random, unguessable) id."""
    if _is_user(user) and user.is_staff:
        return True
    if job.created_by_id is None:
        return job.kind == Job.Kind.SANDBOX
    return _is_user(user) and job.created_by_id == user.pk


def effective_status(job: Job) -> tuple[str, str]:
    """(status, message) as people should see them: a running job whose heartbeat is stale
    lost its worker (killed, machine gone) and is reported failed, before any sweep."""
    if job.status == Job.Status.RUNNING:
        last = job.heartbeat_at or job.started_at or job.created_at
        if last is not None and timezone.now() - last > stale_after():
            return Job.Status.FAILED, f"{WORKER_LOST} since {last:%Y-%m-%d %H:%M:%S} UTC)"
    return job.status, job.message


def request_cancel(job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next progress step."""
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, message="cancelled"
    ):
        remove_upload(job)
    else:
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def remove_upload(job: Job) -> None:
    """Delete the uploaded file (results, if any, stay beside it)."""
    if job.upload_path:
        shutil.rmtree(Path(job.upload_path).parent, ignore_errors=True)


def sweep_lost_jobs() -> int:
    """Mark running jobs with a stale heartbeat failed (their worker died: the import's
    transaction rolled back with it), free their uploads and their task rows. Run when a
    worker starts; readers compute the same answer on the fly (:func:`effective_status`)."""
    from django_tasks_db.models import DBTaskResult

    cutoff = timezone.now() - stale_after()
    lost = list(Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff))
    lost += Job.objects.filter(
        status=Job.Status.RUNNING, heartbeat_at__isnull=True, started_at__lt=cutoff
    )
    for job in lost:
        status, message = effective_status(job)
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
            status=status, message=message, finished_at=timezone.now()
        )
        remove_upload(job)
        if job.task_id:
            DBTaskResult.objects.filter(pk=job.task_id, status="RUNNING").update(
                status="FAILED", finished_at=timezone.now(), traceback=message
            )
    return len(lost)


# -- progress, heartbeat, cancel -------------------------------------------------------------


class JobCancelled(Exception):
    """Raised at a progress step once someone asked the job to stop."""


class JobProgress:
    """Progress reporting for the running job, used as a context manager by the runner.

    :meth:`step` writes progress (at most every ``interval`` seconds) and the heartbeat in
    one UPDATE that only matches while no cancel was requested, so the same query is the
    cancel check; a background thread keeps the heartbeat fresh between steps.
    """

    def __init__(self, job: Job, *, interval: float = 0.5) -> None:
        self.job = job
        self.interval = interval
        self._last = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JobProgress:
        every = heartbeat_seconds()
        if every > 0:
            self._thread = threading.Thread(
                target=self._beat, args=(every,), name=f"heartbeat-{self.job.pk}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def step(self, done: int, total: int, message: str | None = None) -> None:
        """Report progress; raises :class:`JobCancelled` when a cancel was requested."""
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        fields: dict[str, Any] = {
            "progress_done": done,
            "progress_total": total,
            "heartbeat_at": timezone.now(),
        }
        if message is not None:
            fields["message"] = message
        if not Job.objects.filter(pk=self.job.pk, cancel_requested=False).update(**fields):
            raise JobCancelled("cancelled")
        for name, value in fields.items():
            setattr(self.job, name, value)

    def _beat(self, every: float) -> None:
        try:
            while not self._stop.wait(every):
                try:
                    Job.objects.filter(pk=self.job.pk).update(heartbeat_at=timezone.now())
                except Exception:  # noqa: BLE001 - e.g. SQLite locked by the import: retry
                    continue
        finally:
            connection.close()  # this thread's own connection
