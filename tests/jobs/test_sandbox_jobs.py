"""Large sandbox files as jobs: streamed, bulk-matched, summarised, explained page by page,
exported; the id is the capability for anonymous jobs; stale heartbeats read as lost."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from catalog.jobs.models import Job
from catalog.jobs.services import sweep_lost_jobs
from catalog.services import import_rules
from tests.factories import upload
from tests.jobs.conftest import jsonl, matching_event, run_worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def synthetic_catalog(tmp_path: Path) -> None:
    from tests.api.conftest import write_synthetic_rules

    import_rules([str(write_synthetic_rules(tmp_path / "rules", 3))])


def _events(count: int) -> list[dict[str, Any]]:
    """``count`` events; every tenth matches synthetic rule 1, in the same hour."""
    out = []
    for n in range(count):
        if n % 10 == 0:
            out.append(matching_event(1, when=f"2026-01-02 03:{n % 60:02d}:00.1234567"))
        else:
            out.append({"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"})
    return out


def _submit(client: Client, data: bytes, name: str = "events.jsonl", **fields: Any) -> Any:
    return client.post("/api/sandbox/jobs/", {"file": upload(name, data), **fields})


@pytest.mark.usefixtures("synthetic_catalog")
def test_a_jsonl_file_runs_as_a_job_with_a_result_page_and_exports(client: Client) -> None:
    response = _submit(client, jsonl(_events(500)), all_rules="true")
    assert response.status_code == 202, response.content
    body = response.json()
    upload_path = Path(Job.objects.get(pk=body["id"]).upload_path)
    run_worker()
    job = client.get(body["url"]).json()
    assert job["status"] == "succeeded", job["message"]
    result = job["result"]
    assert (result["events"], result["matched_events"], result["matches"]) == (500, 50, 50)
    assert result["by_level"] == {"medium": 50}
    assert result["top_rules"][0]["title"] == "Synthetic rule 001"
    assert sum(result["timeline"]["counts"]) == 50 and not upload_path.exists()
    page = client.get(body["page"]).content.decode()
    assert "Synthetic rule 001" in page and "<mark>" in page and "page 1 of 3" in page
    assert "Event 490" in client.get(body["page"] + "?page=3").content.decode()
    rows = list(csv.reader(io.StringIO(_content(client, job["exports"]["csv"]))))
    # The columns after "level" describe correlation matches (none in this catalog).
    assert rows[0][:5] == ["event", "time", "rule_id", "title", "level"] and len(rows) == 51
    assert rows[1][:2] == ["0", "2026-01-02T03:00:00+00:00"]
    exported = json.loads(_content(client, job["exports"]["json"]))
    assert len(exported) == 50 and exported[-1]["event"] == 490


def _content(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


@pytest.mark.usefixtures("synthetic_catalog")
def test_the_sandbox_form_turns_a_large_upload_into_a_job(client: Client) -> None:
    events = _events(27000)  # over the synchronous 2 MiB limit
    data = jsonl(events)
    assert len(data) > 2 * 1024 * 1024
    response = client.post("/sandbox/", {"file": upload("big.jsonl", data)})
    assert response.status_code == 303
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    waiting = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in waiting and "<progress" in waiting
    run_worker()
    done = client.get(response["Location"]).content.decode()
    assert "27000 events" in done and 'http-equiv="refresh"' not in done


@pytest.mark.parametrize(
    ("name", "data", "status", "parameter"),
    [
        ("events.txt", b"{}\n", 400, "file"),
        ("events.json", b"{}\n", 400, "file"),
        ("events.jsonl", b"", 400, "file"),
        ("events.jsonl", b"{}\n" * 100, 413, "file"),
    ],
)
def test_bad_sandbox_job_uploads_are_4xx(
    client: Client, settings: Any, name: str, data: bytes, status: int, parameter: str
) -> None:
    settings.SANDBOX_JOB_MAX_BYTES = 200
    response = _submit(client, data, name=name)
    assert response.status_code == status, response.content
    assert response.json()["parameter"] == parameter and not Job.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        (b'{"a": 1}\n[1, 2]\n', "line 2 is a JSON list, not an object"),
        (b'{"a": 1}\n{"n": ' + b"9" * 5000 + b"}\n", "line 2 is not valid JSON"),
        (b'{"a": "\xff"}\n', "line 1 is not UTF-8"),
        (b"\n\n", "no events"),
        (b"ElfFile\x00" + b"\x00" * 100, "truncated EVTX"),
    ],
)
def test_unreadable_files_fail_the_job_with_a_clear_message(
    client: Client, data: bytes, message: str
) -> None:
    name = "x.evtx" if data.startswith(b"ElfFile") else "x.jsonl"
    body = _submit(client, data, name=name).json()
    run_worker()
    job = client.get(body["url"]).json()
    assert job["status"] == "failed" and message in job["message"], job["message"]


@pytest.mark.usefixtures("synthetic_catalog")
def test_cancel_a_running_sandbox_job(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from catalog.jobs import sandbox

    monkeypatch.setattr(sandbox, "BATCH", 10)
    original = sandbox._match_batch

    def cancel_after_the_first_batch(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        Job.objects.update(cancel_requested=True)

    monkeypatch.setattr(sandbox, "_match_batch", cancel_after_the_first_batch)
    body = _submit(client, jsonl(_events(100))).json()
    run_worker()
    job = client.get(body["url"]).json()
    assert job["status"] == "cancelled" and job["result"] == {}
    assert not (Path(Job.objects.get().upload_path).parents[1]).exists()  # no partial results


def test_anonymous_jobs_are_open_to_their_id_and_owned_jobs_are_not(
    client: Client, user_client: Client, staff_client: Client
) -> None:
    anonymous = _submit(client, jsonl(_events(3))).json()
    assert user_client.get(anonymous["url"]).status_code == 200
    owned = _submit(user_client, jsonl(_events(3))).json()
    assert client.get(owned["url"]).status_code == 404
    assert client.get(owned["page"]).status_code == 404
    assert staff_client.get(owned["url"]).status_code == 200
    assert client.get("/api/jobs/00000000-0000-4000-8000-000000000000/").status_code == 404


def test_a_stale_heartbeat_reads_as_worker_lost_and_the_sweep_records_it(
    client: Client, settings: Any
) -> None:
    body = _submit(client, jsonl(_events(3))).json()
    old = timezone.now() - datetime.timedelta(seconds=600)
    Job.objects.update(status="running", started_at=old, heartbeat_at=old)
    job = client.get(body["url"]).json()
    assert job["status"] == "failed" and "worker lost" in job["message"]
    assert Job.objects.get().status == "running"  # computed on read
    assert sweep_lost_jobs() == 1
    stored = Job.objects.get()
    assert stored.status == "failed" and "worker lost" in stored.message
    assert not Path(stored.upload_path).exists()
    fresh = timezone.now()
    Job.objects.update(status="running", heartbeat_at=fresh)
    assert client.get(body["url"]).json()["status"] == "running" and sweep_lost_jobs() == 0
