"""Pruning job files under DATA_DIR/jobs/: past the retention, of ended and of deleted jobs
(catalog.jobs.services.prune_job_files, ``manage.py prune_jobs``, the worker at start)."""

from __future__ import annotations

import datetime
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from catalog.jobs.models import Job
from catalog.jobs.services import FILES_REMOVED, job_dir, jobs_dir, prune_job_files
from catalog.services import import_rules
from tests.factories import upload
from tests.jobs.conftest import jsonl, matching_event, run_worker

pytestmark = pytest.mark.django_db
DAY = datetime.timedelta(days=1)


def job_with_files(status: str, *, finished_days_ago: float | None = None) -> Job:
    """A job row and a result folder holding one file."""
    now = timezone.now()
    finished = now - finished_days_ago * DAY if finished_days_ago is not None else None
    job = Job.objects.create(kind=Job.Kind.SANDBOX, status=status, finished_at=finished,
                             result={"events": 1})  # fmt: skip
    folder = job_dir(job)
    folder.mkdir(parents=True)
    (folder / "matches.jsonl").write_bytes(b"x" * 100)
    return job


def orphan_folder(*, hours_old: float) -> Path:
    """A folder named like a job's, without a job (deleted), last written ``hours_old`` ago."""
    folder = jobs_dir() / str(uuid.uuid4())
    (folder / "upload").mkdir(parents=True)
    (folder / "upload" / "events.jsonl").write_bytes(b"{}\n")
    stamp = (timezone.now() - datetime.timedelta(hours=hours_old)).timestamp()
    for path in (folder / "upload" / "events.jsonl", folder / "upload", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_prune_removes_expired_ended_and_deleted_jobs_files_only() -> None:
    expired = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=8)
    recent = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=1)
    lost = job_with_files(Job.Status.FAILED, finished_days_ago=0)  # a killed worker's leftovers
    running = job_with_files(Job.Status.RUNNING)
    queued = job_with_files(Job.Status.QUEUED)
    deleted = orphan_folder(hours_old=2)
    being_created = orphan_folder(hours_old=0)  # its upload is saved before the row commits
    other = jobs_dir() / "not-a-job"
    other.mkdir()

    report = prune_job_files()

    assert (report.expired, report.unfinished, report.orphans) == (1, 1, 1)
    assert report.bytes == 100 + 100 + 3
    assert not job_dir(expired).exists() and not job_dir(lost).exists() and not deleted.exists()
    for kept in (recent, running, queued):
        assert (job_dir(kept) / "matches.jsonl").exists()
    assert being_created.exists() and other.exists()
    expired.refresh_from_db()
    assert expired.result["events"] == 1 and FILES_REMOVED in expired.result
    assert FILES_REMOVED not in Job.objects.get(pk=recent.pk).result
    assert prune_job_files().expired == 0  # nothing left to do


def test_retention_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    job = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=8)
    monkeypatch.setenv("JOBS_RETENTION_DAYS", "30")
    assert prune_job_files().expired == 0 and job_dir(job).exists()
    monkeypatch.setenv("JOBS_RETENTION_DAYS", "0.5")
    young = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=1)
    assert prune_job_files().expired == 2 and not job_dir(young).exists()


def test_the_command_and_the_worker_prune() -> None:
    job = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=8)
    out = io.StringIO()
    call_command("prune_jobs", stdout=out)
    assert "1 expired" in out.getvalue() and "kept 7 days" in out.getvalue()
    assert not job_dir(job).exists()
    deleted = orphan_folder(hours_old=3)
    run_worker()  # a worker prunes when it starts
    assert not deleted.exists()


def test_deleting_a_job_removes_its_folder(django_capture_on_commit_callbacks: Any) -> None:
    job = job_with_files(Job.Status.SUCCEEDED, finished_days_ago=0)
    with django_capture_on_commit_callbacks(execute=True):
        job.delete()
    assert not job_dir(job).exists()


def test_a_pruned_job_page_keeps_its_summary(client: Client, tmp_path: Path) -> None:
    from tests.api.conftest import write_synthetic_rules

    import_rules([str(write_synthetic_rules(tmp_path / "rules", 2))])
    events = [matching_event(1), {"EventID": 1}]
    body = client.post("/api/sandbox/jobs/", {"file": upload("e.jsonl", jsonl(events))}).json()
    run_worker()
    assert "<mark>" in client.get(body["page"]).content.decode()
    export_url = f"/jobs/{body['id']}/matches.csv"
    assert client.get(export_url).status_code == 200
    Job.objects.filter(pk=body["id"]).update(finished_at=timezone.now() - 8 * DAY)
    assert prune_job_files().expired == 1
    page = client.get(body["page"])
    text = page.content.decode()
    assert page.status_code == 200 and "2 events, 1 matched" in text
    assert "The matched events were removed" in text and "<mark>" not in text
    assert client.get(export_url).status_code == 404
    assert client.get(body["url"]).json()["result"][FILES_REMOVED]
