"""Creating, watching, cancelling and sweeping jobs; progress with a heartbeat and a cancel
check. Views and the API call these; the worker runs :mod:`catalog.jobs.runner`."""

from __future__ import annotations

import datetime
import os
import shutil
import threading
import time
from dataclasses import dataclass
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


def retention() -> datetime.timedelta:
    """How long a finished job's result files are kept (``JOBS_RETENTION_DAYS``, default 7)."""
    return datetime.timedelta(days=_setting("JOBS_RETENTION_DAYS", 7))


def prune_every() -> float:
    """Seconds between two prunes by a running worker (``JOBS_PRUNE_SECONDS``, default an
    hour; 0: only when the worker starts)."""
    return _setting("JOBS_PRUNE_SECONDS", 3600)


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


# -- pruning result files ---------------------------------------------------------------------

# A folder without a Job row may belong to a job being created (the upload is saved before the
# row commits): only one left alone this long is a deleted job's.
ORPHAN_GRACE = datetime.timedelta(hours=1)
FILES_REMOVED = "files_removed_at"


@dataclass(slots=True)
class PruneReport:
    """What :func:`prune_job_files` removed."""

    expired: int = 0  # finished longer than the retention ago
    unfinished: int = 0  # failed or cancelled: what a lost worker left half-written
    orphans: int = 0  # no job any more (deleted)
    bytes: int = 0

    def summary(self) -> str:
        return (
            f"removed the files of {self.expired} expired, {self.unfinished} failed or "
            f"cancelled and {self.orphans} deleted job(s), {self.bytes:,} bytes"
        )


def prune_job_files(now: datetime.datetime | None = None) -> PruneReport:
    """Remove job folders under ``DATA_DIR/jobs/``: of jobs finished more than
    :func:`retention` ago (their summary stays; the page says the matches were removed), of
    failed or cancelled jobs (a killed worker's leftovers), and of deleted jobs. Queued and
    running jobs are never touched. Safe to run from several workers at once."""
    now = now or timezone.now()
    report = PruneReport()
    folders = _job_folders()
    jobs = {
        str(pk): (status, finished_at)
        for chunk in _chunks(list(folders), 500)
        for pk, status, finished_at in Job.objects.filter(pk__in=chunk).values_list(
            "pk", "status", "finished_at"
        )
    }
    for name, folder in folders.items():
        if name not in jobs:
            if now - _last_change(folder) > ORPHAN_GRACE:
                report.bytes += _remove(folder)
                report.orphans += 1
            continue
        status, finished_at = jobs[name]
        if status in (Job.Status.FAILED, Job.Status.CANCELLED):
            report.bytes += _remove(folder)
            report.unfinished += 1
        elif status == Job.Status.SUCCEEDED and (finished_at or now) < now - retention():
            report.bytes += _remove(folder)
            report.expired += 1
            _mark_removed(name, now)
    return report


def _job_folders() -> dict[str, Path]:
    """The folders named by a job id (anything else under ``jobs/`` is not ours)."""
    import uuid

    found: dict[str, Path] = {}
    if not jobs_dir().is_dir():
        return found
    for path in jobs_dir().iterdir():
        try:
            name = str(uuid.UUID(path.name))
        except ValueError:
            continue
        if path.is_dir() and not path.is_symlink() and name == path.name:
            found[name] = path
    return found


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _last_change(folder: Path) -> datetime.datetime:
    """The newest modification time in the folder (an upload still being written counts)."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.lstat().st_mtime)
        except OSError:
            continue
    return datetime.datetime.fromtimestamp(newest, datetime.UTC)


def _remove(folder: Path) -> int:
    size = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return size


def _mark_removed(job_id: str, now: datetime.datetime) -> None:
    job = Job.objects.filter(pk=job_id).only("result").first()
    if job is not None and isinstance(job.result, dict):
        job.update(result={**job.result, FILES_REMOVED: now.isoformat()})
