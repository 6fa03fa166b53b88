"""/coverage/, its exports, the "as my telemetry" banner, ``?fires=`` and POST /api/coverage/
(issue 14), on a small factory-built catalog."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from django.core.cache import cache

from catalog.queries.telemetry import clear_telemetry_cache, decode_profile, encode_profile
from catalog.services import import_rules
from rules.coverage import Profile
from tests import factories
from tests.factories import rule_yaml, upload

PS = "5a1c2d3e-0000-4000-8000-0000000000f1"
PROC = "5a1c2d3e-0000-4000-8000-0000000000f2"
PS_4104 = "s:Microsoft-Windows-PowerShell:4104"
SYSMON_1 = {
    "Event": {
        "System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                   "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"},
        "EventData": {"Image": "C:\\Windows\\System32\\whoami.exe"},
    }
}  # fmt: skip


@pytest.fixture(autouse=True)
def _site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    factories.isolate_site(settings, monkeypatch)
    cache.clear()
    clear_telemetry_cache()


@pytest.fixture
def catalog(db: None, tmp_path: Path) -> None:
    folder = factories.write_rule_files(
        tmp_path / "rules",
        {
            "posh_ps_mimikatz.yml": rule_yaml(
                title="Mimikatz In Scriptblock", id=PS, status="test",
                logsource={"product": "windows", "category": "ps_script"},
                tags=["attack.execution", "attack.t1059.001"],
                detection="selection:\n    ScriptBlockText|contains: Invoke-Mimikatz\n"
                          "condition: selection",
                level="high",
            ),
            "proc_creation_win_whoami.yml": rule_yaml(
                title="Whoami Execution", id=PROC, status="test",
                logsource=factories.WINDOWS_PROCESS_CREATION,
                tags=["attack.discovery", "attack.t1033"],
                detection="selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection",
                level="low",
            ),
        },
    )  # fmt: skip
    assert import_rules([str(folder)]).created == 2


def test_profiles_round_trip_through_their_url_form() -> None:
    profile = Profile.from_dict(
        {"event_sources": [{"provider": "Sysmon;odd:name", "event_id": 1},
                           {"provider": "Security", "event_id": None}],
         "logsources": [{"product": "linux", "category": "process_creation"}],
         "fields": ["Image", "a/b"]}
    )  # fmt: skip
    assert decode_profile(encode_profile(profile)) == profile


def test_picking_a_source_redirects_to_a_shareable_url(client: Any, catalog: None) -> None:
    response = client.get("/coverage/", {"source": "PowerShell:4104"})
    assert response.status_code == 302 and "p=s%3APowerShell%3A4104" in response["Location"]


def test_coverage_page_lists_firable_blocked_and_lost(client: Any, catalog: None) -> None:
    page = client.get("/coverage/", {"p": PS_4104}).content.decode()
    assert '<strong id="firable-count">1</strong>' in page
    assert "Mimikatz In Scriptblock" in page
    assert "missing event source: Sysmon 1" in page
    assert "T1033" in page  # lost: only the blocked rule detects it
    assert 'data-technique="T1059"' in page


def test_pasted_events_become_a_profile(client: Any, catalog: None) -> None:
    response = client.post("/coverage/", {"events": json.dumps(SYSMON_1)})
    assert response.status_code == 302
    token = parse_qs(urlsplit(response["Location"]).query)["p"][0]
    profile = decode_profile(token)
    assert [(p.provider, p.event_id) for p in profile.event_sources] == [
        ("Microsoft-Windows-Sysmon", 1)
    ]
    page = client.get(response["Location"]).content.decode()
    assert '<strong id="firable-count">1</strong>' in page and "Whoami Execution" in page


def test_a_saved_profile_file_is_read_back(client: Any, catalog: None) -> None:
    saved = client.get("/coverage/profile.yml", {"p": PS_4104})
    assert saved.status_code == 200
    assert yaml.safe_load(saved.content)["event_sources"][0]["event_id"] == 4104
    response = client.post("/coverage/", {"profile_file": upload("mine.yml", saved.content)})
    assert response.status_code == 302
    assert "Mimikatz" in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    "form",
    [{"events": ""}, {"events": "Get-Process"}, {"events": "{not json"}],
)
def test_unreadable_input_is_a_400_with_a_message(client: Any, catalog: None, form: Any) -> None:
    response = client.post("/coverage/", form)
    assert response.status_code == 400
    assert 'class="notice warn"' in response.content.decode()


def test_bad_profile_files_and_tokens_are_refused(client: Any, catalog: None) -> None:
    bomb = b"a: &a [1, 2]\nb: &b [*a, *a]\nevent_sources: [*b, *b]\n"
    assert client.post("/coverage/", {"profile_file": upload("p.yml", bomb)}).status_code == 400
    assert client.get("/coverage/", {"p": "zz:1"}).status_code == 400
    assert client.get("/coverage/", {"p": "s:x:1;" * 3000}).status_code == 400
    assert client.get("/coverage/layer.json", {"p": "zz"}).json()["parameter"] == "p"


def test_exports(client: Any, catalog: None) -> None:
    layer = client.get("/coverage/layer.json", {"p": PS_4104}).json()
    scores = {t["techniqueID"]: t["score"] for t in layer["techniques"]}
    assert scores == {"T1059.001": 100, "T1033": 0}
    text = client.get("/coverage/coverage.csv", {"p": PS_4104}).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["id"], r["can_fire"]) for r in rows} == {(PS, "yes"), (PROC, "no")}


def test_rule_list_fires_filter(client: Any, catalog: None) -> None:
    page = client.get("/rules/", {"fires": PS_4104}).content.decode()
    assert "Mimikatz In Scriptblock" in page and "Whoami Execution" not in page
    api = client.get("/api/rules/", {"fires": PS_4104}).json()
    assert [r["id"] for r in api["results"]] == [PS]
    assert client.get("/api/rules/", {"fires": "zz"}).json()["parameter"] == "fires"


def test_browse_as_my_telemetry_shows_a_banner_and_stops(client: Any, catalog: None) -> None:
    assert "Browsing as your telemetry" not in client.get("/rules/").content.decode()
    client.post("/coverage/use/", {"p": PS_4104, "use": "on", "next": "/rules/"})
    page = client.get("/rules/").content.decode()
    assert "Browsing as your telemetry" in page and "1 of 2 rules can fire" in page
    assert "This rule can fire." in client.get(f"/rules/{PS}/").content.decode()
    blocked = client.get(f"/rules/{PROC}/").content.decode()
    assert "This rule cannot fire: missing event source: Sysmon 1" in blocked
    client.post("/coverage/use/", {"use": "off", "next": "//evil.example/"})
    assert "Browsing as your telemetry" not in client.get("/rules/").content.decode()


def test_api_coverage_with_a_profile_and_with_events(client: Any, catalog: None) -> None:
    body = {"profile": {"event_sources": [{"provider": "Microsoft-Windows-PowerShell",
                                           "event_id": 4104}]}}  # fmt: skip
    data = client.post("/api/coverage/", body, content_type="application/json").json()
    assert data["firable"] == [PS]
    assert data["blocked"] == [{"id": PROC, "reasons": ["missing event source: Sysmon 1 or "
                                                        "Security 4688"]}]  # fmt: skip
    assert data["counts"]["firable"] == 1 and data["layer"]["techniques"]
    data = client.post("/api/coverage/", {"events": [SYSMON_1]},
                       content_type="application/json").json()  # fmt: skip
    assert data["firable"] == [PROC]


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "body"),
        ({"profile": {}, "events": []}, "body"),
        ({"profile": {"logsources": [{}]}}, "profile"),
        ({"events": ["text"]}, "events"),
        ([1], "body"),
    ],
)
def test_api_coverage_errors(client: Any, catalog: None, body: Any, parameter: str) -> None:
    response = client.post("/api/coverage/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


def test_api_coverage_refuses_a_huge_body(client: Any, catalog: None) -> None:
    events = [SYSMON_1] * 20_000
    response = client.post("/api/coverage/", {"events": events}, content_type="application/json")
    assert response.status_code in (400, 413)
