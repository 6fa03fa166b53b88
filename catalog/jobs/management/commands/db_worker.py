"""``manage.py db_worker``: django-tasks-db's worker, which first sweeps lost jobs and prunes
job files, then keeps pruning them while it runs.

A job left "running" by a worker that was killed (SIGKILL, a lost machine) has a stale
heartbeat; sweeping marks it failed ("worker lost") and frees its upload before this worker
starts taking jobs. Its import, one transaction, was rolled back with the dead connection.
Pruning (:func:`catalog.jobs.services.prune_job_files`) removes result files past
``JOBS_RETENTION_DAYS`` and those of failed, cancelled or deleted jobs, at start and every
``JOBS_PRUNE_SECONDS`` in a background thread (the worker's loop has no hook of its own).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connection
from django_tasks_db.management.commands.db_worker import Command as DBWorkerCommand

from catalog.jobs.services import prune_every, prune_job_files, sweep_lost_jobs

logger = logging.getLogger(__name__)


class Command(DBWorkerCommand):
    help = "Run a background worker for catalog jobs (imports, large sandbox files)"

    def handle(self, *args: Any, **options: Any) -> None:
        lost = sweep_lost_jobs()
        pruned = prune_job_files()
        if options.get("verbosity", 1):
            if lost:
                self.stdout.write(f"marked {lost} job(s) failed: worker lost")
            if pruned.expired or pruned.unfinished or pruned.orphans:
                self.stdout.write(pruned.summary())
        every = prune_every()
        if every > 0 and not options.get("batch"):
            threading.Thread(
                target=_prune_forever, args=(every,), name="prune-job-files", daemon=True
            ).start()
        super().handle(*args, **options)


def _prune_forever(every: float) -> None:
    """Prune every ``every`` seconds until the process ends (a daemon thread)."""
    stop = threading.Event()
    while not stop.wait(every):
        try:
            report = prune_job_files()
            if report.expired or report.unfinished or report.orphans:
                logger.info("%s", report.summary())
        except Exception:  # noqa: BLE001 - e.g. the database is away: try again next time
            logger.exception("pruning job files failed")
        finally:
            connection.close()  # this thread's own connection
