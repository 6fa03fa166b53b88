"""Correlations and meta filters in the sandbox: the API, the page and ``evaluate``."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from catalog.services import import_rules
from tests.conftest import EXAMPLES
from tests.sandbox.test_sandbox_interfaces import _fresh_state  # noqa: F401 (autouse fixture)

CORRELATIONS = EXAMPLES / "correlations"
REPEATED = "bff2408b-ef2d-42f7-914e-dd9750613431"
CHAINED = "7d1e0dc5-82c8-4a31-8cd9-1164353fa70a"
DISCOVERY = "f8cabc34-12bc-4b59-80ff-565bd08bfb92"
TRANSFER = "f9b1049c-0f63-4e86-b6d8-f2c22bca06ba"
BAD_PASSWORD = "112206ca-85cd-4a08-8657-d6febd1e1f04"
FILTER = "fd027459-eb41-43ce-87b9-24127c4ffe45"


def example_events() -> list[dict[str, Any]]:
    lines = (CORRELATIONS / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def catalog(db: None) -> None:
    report = import_rules([str(CORRELATIONS)])
    assert not report.errors


def post(client: Any, body: dict[str, Any]) -> Any:
    return client.post("/api/sandbox/", json.dumps(body), content_type="application/json")


def test_api_reports_correlations_with_their_events(client: Any, catalog: None) -> None:
    response = post(client, {"events": example_events()})
    assert response.status_code == 200, response.content
    data = response.json()
    found = {c["id"]: c for c in data["correlations"]}
    assert set(found) == {REPEATED, CHAINED, DISCOVERY, TRANSFER}
    repeated = found[REPEATED]
    assert repeated["type"] == "event_count"
    assert repeated["group"] == {"TargetUserName": "alice"}
    assert repeated["events"] == [0, 1, 2, 3, 4]
    assert repeated["value"] == 5
    assert found[CHAINED]["events"] == [0, 1, 2, 3, 4, 15]
    assert found[CHAINED]["chained"] == [REPEATED + "#1"]
    assert found[DISCOVERY]["events"] == [17, 18, 19]
    assert found[DISCOVERY]["group"] == {"Computer": "WS01.corp.example", "User": "CORP\\carol"}
    assert found[TRANSFER]["events"] == [23, 24] and found[TRANSFER]["value"] == 55_000_000
    assert "#0 (" in repeated["explanation"]
    # Single-event matches are unchanged by correlations.
    assert [m["rule_id"] for m in data["events"][0]["matches"]] == [BAD_PASSWORD]


def test_filter_suppresses_exactly_the_events_its_selection_covers(
    client: Any, catalog: None
) -> None:
    data = post(client, {"events": example_events()}).json()
    for event in data["events"]:
        index = event["index"]
        svc_health = 9 <= index <= 14
        matched = [m["rule_id"] for m in event["matches"]]
        if svc_health:
            assert matched == []
            [entry] = event["filtered"]
            assert entry["rule_id"] == BAD_PASSWORD
            assert entry["filters"] == [
                {
                    "id": FILTER,
                    "title": "Ignore Bad Password Logons From the Jump Host Health Check",
                }
            ]
            assert entry["reason"].startswith("suppressed by filter Ignore Bad Password")
        else:
            assert event["filtered"] == []
    # bob (4 failures) never reaches 5; svc_health's 6 were suppressed: no other groups.
    groups = [c["group"] for c in data["correlations"] if c["id"] == REPEATED]
    assert groups == [{"TargetUserName": "alice"}]


def test_filter_applies_only_to_the_rules_it_names(client: Any, catalog: None) -> None:
    # The same workstation and account on a successful logon: the filter does not name it.
    event = {
        "Channel": "Security",
        "Provider_Name": "Microsoft-Windows-Security-Auditing",
        "EventID": 4624,
        "LogonType": 3,
        "TargetUserName": "svc_health",
        "WorkstationName": "JUMP01",
    }
    data = post(client, {"event": event}).json()
    assert [m["title"] for m in data["events"][0]["matches"]] == ["Logon Succeeded for an Account"]
    assert data["events"][0]["filtered"] == []


def test_chosen_timestamp_field(client: Any, catalog: None) -> None:
    events = example_events()[:5]
    for n, event in enumerate(events):
        event["seen"] = f"2026-12-01T10:{n * 2:02d}:00Z"  # 8 minutes: outside the 5 m window
    data = post(client, {"events": events, "timestamp_field": "seen"}).json()
    assert data["correlations"] == []
    data = post(client, {"events": events}).json()
    assert [c["id"] for c in data["correlations"]] == [REPEATED]


def test_unknown_timestamp_field_is_noted(client: Any, catalog: None) -> None:
    data = post(client, {"events": example_events()[:5], "timestamp_field": "nope"}).json()
    assert data["correlations"] == []
    assert "without field 'nope'" in data["summary"]["correlation_notes"][0]


@pytest.mark.parametrize("value", [5, "", "x" * 201])
def test_bad_timestamp_field_is_a_400(client: Any, catalog: None, value: Any) -> None:
    response = post(client, {"events": example_events()[:1], "timestamp_field": value})
    assert response.status_code == 400
    assert response.json()["parameter"] == "timestamp_field"


def test_page_shows_correlations_and_suppressed_matches(client: Any, catalog: None) -> None:
    text = (CORRELATIONS / "events.jsonl").read_text()
    response = client.post("/sandbox/", {"text": text})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Repeated Bad Password Logons for One Account" in page
    assert "suppressed by filter Ignore Bad Password Logons" in page
    assert f"/correlations/{REPEATED}/" in page


def test_evaluate_command_prints_correlations(catalog: None) -> None:
    out = io.StringIO()
    call_command(
        "evaluate",
        str(CORRELATIONS / "events.jsonl"),
        "--no-progress",
        stdout=out,
        stderr=io.StringIO(),
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    correlations = [line for line in lines if "correlation" in line]
    assert {c["correlation"]["id"] for c in correlations} == {
        REPEATED,
        CHAINED,
        DISCOVERY,
        TRANSFER,
    }
    suppressed = [line for line in lines if line.get("suppressed_by")]
    assert {line["event"] for line in suppressed} == set(range(9, 15))
    matches = [line for line in lines if "rule_id" in line and not line.get("suppressed_by")]
    assert all(not 9 <= line["event"] <= 14 for line in matches)
