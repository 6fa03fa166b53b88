"""Imports through the API (staff tokens only, run as jobs) and the read-only rules for
everyone else."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from catalog.models import ImportRun, Rule
from tests.api.conftest import synthetic_rule
from tests.factories import upload, zip_of
from tests.jobs.conftest import run_worker

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture(autouse=True)
def _jobs_in_process(settings: Any, tmp_path: Any) -> None:
    settings.DATA_DIR = tmp_path / "data"
    settings.JOBS_HEARTBEAT_SECONDS = 0  # the in-process worker needs no heartbeat thread


def imported(client: Any, name: str, data: bytes) -> dict[str, Any]:
    """POST an upload (202: a job), run the worker, return the finished job."""
    response = client.post("/api/imports/", {"file": upload(name, data)})
    assert response.status_code == 202, response.content
    run_worker()
    job: dict[str, Any] = client.get(response.json()["url"]).json()
    return job


def tar_gz_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_anonymous_cannot_import_or_list(client: Any) -> None:
    response = client.post("/api/imports/", {"file": upload("a.yml", b"x")})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert client.get("/api/imports/").status_code == 401


def test_non_staff_cannot_import_or_list(user_client: Any) -> None:
    data = {"file": upload("a.yml", synthetic_rule(1).encode())}
    response = user_client.post("/api/imports/", data)
    assert response.status_code == 403
    assert user_client.get("/api/imports/").status_code == 403
    assert not Rule.objects.filter(title="Synthetic rule 001").exists()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_anonymous_writes_to_read_only_endpoints_are_refused(client: Any, method: str) -> None:
    for url in ("/api/rules/", "/api/indicators/", "/api/attack/"):
        assert getattr(client, method)(url, {}).status_code in (401, 403), (method, url)


def test_staff_writes_to_read_only_endpoints_are_405(staff_client: Any) -> None:
    assert staff_client.post("/api/rules/", {}).status_code == 405
    assert staff_client.delete("/api/indicators/1/").status_code == 405


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("rule.yml", synthetic_rule(7).encode()),
        ("pack.zip", zip_of({"rules/r7.yml": synthetic_rule(7)})),
        ("pack.tar.gz", tar_gz_of({"rules/r7.yml": synthetic_rule(7)})),
    ],
)
def test_staff_imports_a_file_or_archive(staff_client: Any, name: str, payload: bytes) -> None:
    job = imported(staff_client, name, payload)
    assert job["status"] == "succeeded", job["message"]
    report = job["result"]
    assert report["created"] == 1 and report["failed"] == 0
    assert "1 new" in report["summary"]
    run = ImportRun.objects.get(pk=report["run_id"])
    assert run.trigger == "api" and run.status == "succeeded"
    assert staff_client.get(report["run"]).json()["created"] == 1
    rule = Rule.objects.get(title="Synthetic rule 007")
    assert "sigma-upload" not in rule.source_path


def test_import_reports_file_errors_without_server_paths(staff_client: Any) -> None:
    payload = zip_of({"good.yml": synthetic_rule(8), "bad.yml": "title: [unclosed"})
    report = imported(staff_client, "mixed.zip", payload)["result"]
    assert report["created"] == 1 and report["failed"] == 1
    assert report["errors"][0]["path"] == "mixed.zip!bad.yml"


def test_reimport_is_unchanged(staff_client: Any) -> None:
    data = synthetic_rule(9).encode()
    imported(staff_client, "r.yml", data)
    report = imported(staff_client, "r.yml", data)["result"]
    assert (report["created"], report["unchanged"]) == (0, 1)


@pytest.mark.parametrize(
    ("data", "bad"),
    [
        ({}, "file"),
        ({"file": upload("notes.txt", b"hello")}, "file"),
        ({"file": upload("r.yml", b"")}, "file"),
        ({"file": upload("r.yml", b"title: x"), "prune": "maybe"}, "prune"),
    ],
)
def test_bad_uploads_are_400(staff_client: Any, data: dict[str, Any], bad: str) -> None:
    response = staff_client.post("/api/imports/", data)
    assert response.status_code == 400
    assert response.json()["parameter"] == bad


def test_staff_lists_import_runs_newest_first(staff_client: Any) -> None:
    imported(staff_client, "r.yml", synthetic_rule(10).encode())
    body = staff_client.get("/api/imports/").json()
    assert body["count"] == ImportRun.objects.count() >= 2
    first = body["results"][0]
    assert first["trigger"] == "api"
    assert set(first) >= {"id", "url", "started_at", "status", "created", "failed"}
    assert {"errors", "sources"} <= set(staff_client.get(first["url"]).json())
    assert staff_client.get("/api/imports/999999/").status_code == 404


def test_staff_session_login_works_too(client: Any, staff_client: Any) -> None:
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="staff"))
    assert client.get("/api/imports/").status_code == 200


def test_an_aborted_import_is_a_failed_job_naming_the_cause(
    staff_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import uploads
    from catalog.services import ImportAborted, ImportReport

    def abort(paths: Any, **kwargs: Any) -> ImportReport:
        raise ImportAborted("import failed, catalog unchanged: boom", ImportReport(run_id=42))

    monkeypatch.setattr(uploads, "import_rules", abort)
    job = imported(staff_client, "r.yml", b"title: x")
    assert job["status"] == "failed" and "boom" in job["message"]
