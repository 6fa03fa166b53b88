"""Real worker processes against their own database (a scratch SQLite file, or a scratch
PostgreSQL database when the suite runs on PostgreSQL): a job survives the web process that
queued it, and a SIGKILLed worker mid-import leaves the catalog unchanged and the job failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import REPO

PYTHON = sys.executable
SETUP = "import django; django.setup()\n"
ENQUEUE = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from django.core.files.uploadedfile import SimpleUploadedFile
from tests.jobs.conftest import rules_zip
user = get_user_model().objects.create_user("w-" + str(__import__("uuid").uuid4()), is_staff=True)
client = Client()
client.force_login(user)
data = SimpleUploadedFile("p.zip", rules_zip({count}, start={start}))
response = client.post("/api/imports/", {{"file": data}})
print(json.dumps({{"code": response.status_code, **response.json()}}))
"""
STATE = """
import json
from catalog.jobs.models import Job
from catalog.jobs.services import effective_status
from catalog.models import Rule
from django_tasks_db.models import DBTaskResult
job = Job.objects.get(pk="{job_id}")
print(json.dumps({{"rules": Rule.objects.count(), "stored": job.status,
    "seen": effective_status(job)[0], "message": effective_status(job)[1],
    "upload": __import__("os").path.exists(job.upload_path),
    "task": DBTaskResult.objects.get(pk=job.task_id).status}}))
"""
KILLABLE_WORKER = """
import time
from pathlib import Path
from catalog import importer
original = importer.write_plan
def write_then_hang(*args, **kwargs):
    original(*args, **kwargs)  # every row written, inside the import's one transaction
    Path("{marker}").write_text("written")
    time.sleep(600)
importer.write_plan = write_then_hang
from django.core.management import call_command
call_command("db_worker", reload=False, startup_delay=False, interval=0.2, verbosity=0)
"""


class Site:
    """A data folder and database of its own, driven through subprocesses."""

    def __init__(self, folder: Path, database_url: str | None) -> None:
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "catalog.settings",
            "DATA_DIR": str(folder),
            "CACHE_DIR": str(folder / "cache"),
            "PYTHONPATH": str(REPO),
            "DEBUG": "0",
            "JOBS_HEARTBEAT_SECONDS": "0.2",
            "JOBS_STALE_SECONDS": "2",
        }
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url

    def python(self, code: str, timeout: float = 120) -> Any:
        done = subprocess.run(
            [PYTHON, "-c", SETUP + code], env=self.env, cwd=REPO, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def manage(self, *args: str, timeout: float = 300) -> None:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], env=self.env, cwd=REPO, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    def run_worker(self) -> None:
        self.manage("db_worker", "--batch", "--no-startup-delay", "--no-reload", "-v0")

    def enqueue(self, count: int, start: int) -> dict[str, Any]:
        body: dict[str, Any] = self.python(ENQUEUE.format(count=count, start=start))
        assert body["code"] == 202 and body["status"] == "queued", body
        return body

    def state(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.python(STATE.format(job_id=job_id))
        return result


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    url = None
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.settings_dict
        name = f"jobs_{uuid.uuid4().hex[:10]}"
        server = (
            f"postgres://{params['USER']}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
        )
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"{server}/{name}"
    site = Site(tmp_path / "data", url)
    try:
        site.manage("migrate", "-v0")
        yield site
    finally:
        if url:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_queued_job_survives_the_web_process_and_a_fresh_worker_runs_it(site: Site) -> None:
    job = site.enqueue(3, start=0)  # the "web" process exits here
    assert site.state(job["id"])["stored"] == "queued"
    site.run_worker()
    state = site.state(job["id"])
    assert (state["stored"], state["rules"], state["upload"]) == ("succeeded", 3, False)
    assert state["task"] == "SUCCESSFUL"


def test_a_sigkilled_worker_mid_import_changes_nothing_and_the_job_fails(
    site: Site, tmp_path: Path
) -> None:
    site.enqueue(2, start=0)
    site.run_worker()
    job = site.enqueue(5, start=10)
    marker = tmp_path / "written"
    worker = subprocess.Popen(
        [PYTHON, "-c", SETUP + KILLABLE_WORKER.format(marker=marker)],
        env=site.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the worker never reached the write"
        assert site.state(job["id"])["stored"] == "running"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    state = site.state(job["id"])
    assert state["rules"] == 2  # the transaction died with the worker
    deadline = time.monotonic() + 60
    while state["seen"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.5)
        state = site.state(job["id"])
    assert state["seen"] == "failed" and "worker lost" in state["message"]
    site.run_worker()  # a worker starting sweeps the lost job
    state = site.state(job["id"])
    assert (state["stored"], state["rules"], state["upload"]) == ("failed", 2, False)
    assert state["task"] == "FAILED"
