"""Rule imports from the web run as jobs: 202 at once, never an import or a fork in the
request; the worker imports with progress; cancel; all-failed is failed (finding 1, 12)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from catalog.jobs.models import Job
from catalog.models import ImportRun, Rule
from tests.api.conftest import synthetic_rule
from tests.factories import upload, zip_of
from tests.jobs.conftest import rules_zip, run_worker

pytestmark = pytest.mark.django_db


def _no_fork(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("forked in a request")


def test_api_import_answers_202_with_the_job_and_never_imports_or_forks(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fork", _no_fork)
    monkeypatch.setattr(multiprocessing, "get_context", _no_fork)
    response = staff_client.post("/api/imports/", {"file": upload("big.zip", rules_zip(450))})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and response["Location"] == body["url"]
    job = Job.objects.get(pk=body["id"])
    assert job.kind == "import" and Path(job.upload_path).is_file()
    assert not Rule.objects.exists() and not ImportRun.objects.exists()
    assert multiprocessing.active_children() == []
    assert staff_client.get(body["url"]).json()["status"] == "queued"


def test_admin_form_enqueues_and_redirects_to_the_job_page(staff_client: Client) -> None:
    response = staff_client.post(
        "/admin/catalog/importrun/upload/", {"archive": upload("p.zip", rules_zip(2))}
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and not Rule.objects.exists()
    run_worker()
    page = staff_client.get(response["Location"])
    assert page.status_code == 200 and b"2 new" in page.content


def test_worker_imports_with_progress_and_removes_the_upload(staff_client: Client) -> None:
    payload = zip_of({"good/a.yml": synthetic_rule(1), "bad.yml": "title: [unclosed"})
    body = staff_client.post("/api/imports/", {"file": upload("mixed.zip", payload)}).json()
    upload_path = Path(Job.objects.get(pk=body["id"]).upload_path)
    run_worker()
    job = staff_client.get(body["url"]).json()
    assert job["status"] == "succeeded" and job["percent"] == 100
    assert job["progress"]["done"] == job["progress"]["total"] == 2
    result = job["result"]
    assert (result["created"], result["failed"]) == (1, 1)
    assert result["errors"][0]["path"] == "mixed.zip!bad.yml"
    run = staff_client.get(result["run"]).json()
    assert run["sources"] == ["mixed.zip"] and run["errors"][0]["path"] == "mixed.zip!bad.yml"
    assert str(upload_path.parent) not in str(run) and not upload_path.exists()
    assert Rule.objects.filter(title="Synthetic rule 001").exists()


def test_an_import_where_every_file_failed_is_a_failed_job(staff_client: Client) -> None:
    payload = zip_of({"a.yml": "title: [x", "b.yml": "not: a rule"})
    body = staff_client.post("/api/imports/", {"file": upload("bad.zip", payload)}).json()
    run_worker()
    job = staff_client.get(body["url"]).json()
    assert job["status"] == "failed" and "every file failed" in job["message"]
    assert ImportRun.objects.get(pk=job["result"]["run_id"]).status == "failed"
    assert not Path(Job.objects.get(pk=body["id"]).upload_path).exists()


def test_cancel_a_queued_import(staff_client: Client) -> None:
    body = staff_client.post("/api/imports/", {"file": upload("p.zip", rules_zip(3))}).json()
    cancelled = staff_client.post(body["cancel"]).json()
    assert cancelled["status"] == "cancelled"
    assert not Path(Job.objects.get(pk=body["id"]).upload_path).exists()
    run_worker()
    assert not Rule.objects.exists() and Job.objects.get().status == "cancelled"


def test_cancel_a_running_import_at_its_next_progress_step(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog.jobs import imports

    original = imports.import_saved

    def cancel_then_import(*args: Any, **kwargs: Any) -> Any:
        Job.objects.update(cancel_requested=True)  # someone presses Cancel now
        return original(*args, **kwargs)

    monkeypatch.setattr(imports, "import_saved", cancel_then_import)
    body = staff_client.post("/api/imports/", {"file": upload("p.zip", rules_zip(3))}).json()
    run_worker()
    job = staff_client.get(body["url"]).json()
    assert job["status"] == "cancelled" and not Rule.objects.exists()
    assert not Path(Job.objects.get(pk=body["id"]).upload_path).exists()


def test_import_jobs_are_for_their_owner_and_staff(
    staff_client: Client, user_client: Client, client: Client
) -> None:
    body = staff_client.post("/api/imports/", {"file": upload("p.zip", rules_zip(1))}).json()
    for other in (user_client, client):
        assert other.get(body["url"]).status_code == 404
        assert other.get(f"/jobs/{body['id']}/").status_code == 404
        assert other.post(body["cancel"]).status_code in (403, 404)
    assert Job.objects.get().status == "queued"


def test_the_fork_pool_is_only_used_from_the_main_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from catalog import importer
    from catalog.sources import SourceFile

    monkeypatch.setattr(importer.mp, "get_context", _no_fork)
    items = [
        SourceFile(path=f"r{n}.yml", data=synthetic_rule(n).encode())
        for n in range(importer._PARALLEL_MIN_FILES + 10)
    ]
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.extend(importer._parse_all(items)))
    thread.start()
    thread.join()
    assert len(outcome) == len(items) and all(not isinstance(o, Exception) for o in outcome)


def test_list_of_import_runs_is_brief_and_the_detail_pages_errors(staff_client: Client) -> None:
    errors = [{"path": f"x/{n}.yml", "error": "bad " * 20, "code": "bad-yaml"} for n in range(5000)]
    for _ in range(5):
        ImportRun.objects.create(status="failed", failed=5000, errors=errors, sources=["a"] * 500)
    response = staff_client.get("/api/imports/?limit=3")
    assert response.status_code == 200 and len(response.content) < 4000
    first = response.json()["results"][0]
    assert "errors" not in first and "sources" not in first and first["failed"] == 5000
    detail = staff_client.get(first["url"] + "?errors_offset=10&errors_limit=5").json()
    assert detail["errors_total"] == 5000 and len(detail["errors"]) == 5
    assert detail["errors"][0]["path"] == "x/10.yml"
    assert len(staff_client.get(first["url"]).json()["errors"]) == 100
    bad = staff_client.get(first["url"] + "?errors_limit=100000")
    assert bad.status_code == 400 and bad.json()["parameter"] == "errors_limit"
