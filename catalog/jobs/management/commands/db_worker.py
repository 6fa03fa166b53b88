"""``manage.py db_worker``: django-tasks-db's worker, which first sweeps lost jobs.

A job left "running" by a worker that was killed (SIGKILL, a lost machine) has a stale
heartbeat; sweeping marks it failed ("worker lost") and frees its upload before this worker
starts taking jobs. Its import, one transaction, was rolled back with the dead connection.
"""

from __future__ import annotations

from typing import Any

from django_tasks_db.management.commands.db_worker import Command as DBWorkerCommand

from catalog.jobs.services import sweep_lost_jobs


class Command(DBWorkerCommand):
    help = "Run a background worker for catalog jobs (imports, large sandbox files)"

    def handle(self, *args: Any, **options: Any) -> None:
        lost = sweep_lost_jobs()
        if lost and options.get("verbosity", 1):
            self.stdout.write(f"marked {lost} job(s) failed: worker lost")
        super().handle(*args, **options)
