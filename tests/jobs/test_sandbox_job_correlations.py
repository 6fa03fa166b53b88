"""A background sandbox job applies meta filters and correlates its matches (issue 16):
the same correlations as the synchronous sandbox, in timestamp order whatever the file order
(``timestamp_field`` chooses the field, as in ``POST /api/sandbox/``), listed on the job page
and in both exports; suppressed matches are reported per filter."""

from __future__ import annotations

import csv
import datetime
import io
import json
from typing import Any

import pytest
from django.test import Client

from catalog.jobs.models import Job
from catalog.jobs.services import jobs_dir
from catalog.services import import_rules
from tests.factories import upload
from tests.jobs.conftest import jsonl, run_worker
from tests.sandbox.test_correlations import (
    BAD_PASSWORD,
    CORRELATIONS,
    FILTER,
    REPEATED,
    example_events,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog() -> None:
    report = import_rules([str(CORRELATIONS)])
    assert not report.errors


def _job(client: Client, events: list[dict[str, Any]], **fields: str) -> dict[str, Any]:
    response = client.post(
        "/api/sandbox/jobs/",
        {"file": upload("events.jsonl", jsonl(events)), "all_rules": "true", **fields},
    )
    assert response.status_code == 202, response.content
    body = response.json()
    run_worker()
    job = client.get(body["url"]).json()
    assert job["status"] == "succeeded", job["message"]
    return {**job, "page": body["page"]}


def _sandbox(client: Client, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(
        "/api/sandbox/", json.dumps({"events": events}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()["correlations"]


def _content(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


@pytest.mark.usefixtures("catalog")
def test_a_job_finds_the_sandbox_correlations_and_exports_them(client: Client) -> None:
    events = example_events()
    expected = _sandbox(client, events)
    assert expected  # the examples hold correlations
    job = _job(client, events)
    result = job["result"]
    found = result["correlations"]
    assert found["count"] == len(expected) and found["stored"] == len(expected)
    assert {r["id"] for r in found["rules"]} == {c["id"] for c in expected}
    # The stored matches are the sandbox's, field for field.
    page = client.get(job["page"]).content.decode()
    assert 'id="job-correlations"' in page
    for match in expected:
        assert f"/correlations/{match['id']}/" in page
    rows = list(csv.reader(io.StringIO(_content(client, job["exports"]["csv"]))))
    header = rows[0]
    assert header[:5] == ["event", "time", "rule_id", "title", "level"]
    correlation_rows = [dict(zip(header, r, strict=True)) for r in rows if r[5] == "correlation"]
    assert [(r["rule_id"], r["event"]) for r in correlation_rows] == [
        (c["id"], " ".join(str(i) for i in c["events"])) for c in expected
    ]
    repeated = next(r for r in correlation_rows if r["rule_id"] == REPEATED)
    assert repeated["correlation_type"] == "event_count" and repeated["value"] == "5"
    assert json.loads(repeated["group"]) == {"TargetUserName": "alice"}
    exported = json.loads(_content(client, job["exports"]["json"]))
    as_json = [row for row in exported if row["kind"] == "correlation"]
    assert [(r["rule_id"], r["group"], r["value"]) for r in as_json] == [
        (c["id"], json.dumps(c["group"], sort_keys=True), c["value"]) for c in expected
    ]
    assert all(row["kind"] == "match" for row in exported[: -len(expected)])


@pytest.mark.usefixtures("catalog")
def test_filtered_matches_are_reported_as_suppressed_not_matched(client: Client) -> None:
    events = example_events()
    result = _job(client, events)["result"]
    suppressed = result["suppressed"]
    # svc_health's six failed logons from the jump host (events 9..14).
    assert suppressed["matches"] == 6
    [flt] = suppressed["filters"]
    assert flt["id"] == FILTER and flt["count"] == 6
    assert flt["rules"] == {BAD_PASSWORD: 6} and flt["events"] == [9, 10, 11, 12, 13, 14]
    assert flt["reason"].startswith("suppressed by filter Ignore Bad Password")
    sandbox = json.loads(
        Client()
        .post("/api/sandbox/", json.dumps({"events": events}), content_type="application/json")
        .content
    )
    assert result["matches"] == sum(len(e["matches"]) for e in sandbox["events"])


@pytest.mark.usefixtures("catalog")
def test_file_order_does_not_matter_timestamps_do(client: Client) -> None:
    events = example_events()
    expected = _sandbox(client, events)
    backwards = list(reversed(events))
    job = _job(client, backwards)
    last = len(events) - 1
    stored = json.loads(_content(client, job["exports"]["json"]))
    got = sorted(
        (r["rule_id"], sorted(last - int(i) for i in r["event"].split()), r["value"])
        for r in stored
        if r["kind"] == "correlation"
    )
    assert got == sorted((c["id"], sorted(c["events"]), c["value"]) for c in expected)


def _apart_but_seen_together() -> list[dict[str, Any]]:
    """Five failed logons for alice 2 minutes apart by their event time (8 minutes: outside the
    correlation's 5 m window), 20 seconds apart by the field ``seen``."""
    start = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.UTC)
    events = example_events()[:5]
    for n, event in enumerate(events):
        event["TimeCreated_SystemTime"] = f"{start + datetime.timedelta(minutes=2 * n):%FT%TZ}"
        event["seen"] = f"{start + datetime.timedelta(seconds=20 * n):%FT%TZ}"
    return events


@pytest.mark.usefixtures("catalog")
def test_timestamp_field_is_stored_shown_and_orders_the_correlations(client: Client) -> None:
    events = _apart_but_seen_together()
    assert _sandbox(client, events) == []
    detected = _job(client, events, timestamp_field="")  # an empty form field: not given
    assert detected["options"] == {"all_rules": True, "timestamp_field": None}
    assert detected["result"]["correlations"]["count"] == 0
    assert "detected" in client.get(detected["page"]).content.decode()

    chosen = _job(client, events, timestamp_field="seen")
    assert chosen["options"] == {"all_rules": True, "timestamp_field": "seen"}
    assert Job.objects.get(pk=chosen["id"]).options["timestamp_field"] == "seen"
    found = chosen["result"]["correlations"]
    assert [r["id"] for r in found["rules"]] == [REPEATED] and found["timestamp_field"] == "seen"
    synchronous = client.post(
        "/api/sandbox/",
        json.dumps({"events": events, "timestamp_field": "seen"}),
        content_type="application/json",
    ).json()["correlations"]
    assert [c["id"] for c in synchronous] == [REPEATED]
    stored = json.loads(_content(client, chosen["exports"]["json"]))
    assert [r["event"] for r in stored if r["kind"] == "correlation"] == ["0 1 2 3 4"]
    page = client.get(chosen["page"]).content.decode()
    assert '<code id="job-timestamp-field">seen</code>' in page


@pytest.mark.usefixtures("catalog")
def test_an_unknown_timestamp_field_is_noted(client: Client) -> None:
    found = _job(client, example_events()[:5], timestamp_field="nope")["result"]["correlations"]
    assert found["count"] == 0
    assert "5 matched event(s) without field 'nope' took no part" in found["notes"][0]


@pytest.mark.parametrize(
    ("value", "message"),
    [("  ", "'timestamp_field' is empty"), ("x" * 201, "longer than 200 characters")],
)
def test_a_bad_timestamp_field_is_a_400_and_queues_nothing(
    client: Client, value: str, message: str
) -> None:
    response = client.post(
        "/api/sandbox/jobs/",
        {"file": upload("events.jsonl", jsonl(example_events())), "timestamp_field": value},
    )
    assert response.status_code == 400, response.content
    assert response.json()["parameter"] == "timestamp_field"
    assert message in response.json()["detail"]
    assert not Job.objects.exists()
    assert not jobs_dir().exists() or not any(jobs_dir().iterdir())


@pytest.mark.usefixtures("catalog")
def test_the_sandbox_form_gives_its_timestamp_field_to_the_job(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import sandbox_views

    monkeypatch.setattr(sandbox_views, "MAX_BODY_BYTES", 100)  # any file is "large"
    data = jsonl(_apart_but_seen_together())
    refused = client.post(
        "/sandbox/", {"file": upload("big.jsonl", data), "timestamp_field": "x" * 201}
    )
    assert refused.status_code == 400 and not Job.objects.exists()
    assert "longer than 200 characters" in refused.content.decode()
    response = client.post(
        "/sandbox/", {"file": upload("big.jsonl", data), "timestamp_field": " seen "}
    )
    assert response.status_code == 303
    job = Job.objects.get()
    assert job.options == {"all_rules": False, "timestamp_field": "seen"}
    run_worker()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.message
    assert [r["id"] for r in job.result["correlations"]["rules"]] == [REPEATED]
    assert "seen" in client.get(response["Location"]).content.decode()


@pytest.mark.usefixtures("catalog")
def test_the_timeline_reads_the_timestamp_field_as_the_correlations_do(client: Client) -> None:
    events = _apart_but_seen_together()
    detected = _job(client, events)["result"]["timeline"]
    chosen = _job(client, events, timestamp_field="seen")["result"]["timeline"]
    # Two minutes apart by TimeCreated, twenty seconds apart by "seen": the chosen field
    # places the matches where the correlation stage placed them.
    assert detected["start"] == chosen["start"]
    assert sum(detected["counts"]) == sum(chosen["counts"]) == len(events)
    assert chosen["bucket_seconds"] < detected["bucket_seconds"]
    missing = _job(client, events[:3], timestamp_field="nope")["result"]
    assert missing["timeline"] is None and missing["untimed_matches"] == 3


def test_event_times_past_year_9999_are_no_times() -> None:
    from catalog.jobs.sandbox import event_time
    from rules.events import Event

    assert event_time(Event({"@timestamp": 1e300})) is None
    assert event_time(Event({"@timestamp": -5})) is None
    assert event_time(Event({"seen": "2026-12-01T10:00:00Z"}), "seen") == 1796119200
