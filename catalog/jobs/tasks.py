"""The one task the worker runs: :func:`run_job` (the Job row says what to do)."""

from __future__ import annotations

from typing import Any

from django_tasks import task


@task()
def run_job(job_id: str) -> dict[str, Any]:
    """Run the job ``job_id`` (an import or a sandbox file) and return its final status."""
    from catalog.jobs.runner import run

    return run(job_id)
