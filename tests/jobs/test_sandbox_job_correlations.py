"""A background sandbox job applies meta filters and correlates its matches (issue 16):
the same correlations as the synchronous sandbox, in timestamp order whatever the file order,
listed on the job page and in both exports; suppressed matches are reported per filter."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client

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


def _job(client: Client, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/api/sandbox/jobs/", {"file": upload("events.jsonl", jsonl(events)), "all_rules": "true"}
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
