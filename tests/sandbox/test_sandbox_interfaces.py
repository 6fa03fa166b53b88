"""The sandbox's Django interfaces: POST /api/sandbox/, the /sandbox/ page, `evaluate`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command

from catalog.services import import_rules
from rules.evaluate import clear_evaluator_cache
from tests.conftest import CORPUS, EXAMPLES

SEED = "adf876b3-f1f8-4aa9-a4e4-a64106feec06"
SEED_TEXT = "Test-NetConnection -ComputerName example.org -port 8088 "
WEBCLIENT = "f189fc44-f48d-40c2-afcc-925b4d6d5439"


def example_events(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "events" / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _fresh_state(settings: Any) -> Any:
    # Throttle counters and compiled rules live in per-process caches: isolate each test.
    cache.clear()
    clear_evaluator_cache()
    settings.STATIC_MANIFEST = False
    yield
    clear_evaluator_cache()


@pytest.fixture
def examples(db: None) -> None:
    report = import_rules([str(EXAMPLES / "rules")], rule_set="examples")
    assert report.created == 17 and not report.errors


def post(client: Any, body: Any, **extra: Any) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/sandbox/", data, content_type="application/json", **extra)


# -- API ---------------------------------------------------------------------------------------


def test_api_matches_an_example_event_with_spans(client: Any, examples: None) -> None:
    event = example_events("win_ps_webclient_downloadstring_iex")["match"][0]
    response = post(client, {"event": event})
    assert response.status_code == 200
    body = response.json()
    assert body["summary"]["events"] == 1 and body["summary"]["matches"] >= 1
    match = next(m for m in body["events"][0]["matches"] if m["rule_id"] == WEBCLIENT)
    spans = [
        (p["matched_field"], p["span"])
        for ident in match["identifiers"]
        for p in ident["predicates"]
        if p["span"]
    ]
    assert spans, "a match names the substrings that made it fire"
    text = event["ScriptBlockText"]
    for field, (start, end) in spans:
        assert field == "ScriptBlockText"
        assert 0 <= start < end <= len(text)


def test_api_reports_suppressed_rules_with_their_filter(client: Any, examples: None) -> None:
    event = example_events("win_ps_webclient_downloadstring_iex")["suppressed"][0]
    body = post(client, {"event": event}).json()
    result = body["events"][0]
    assert WEBCLIENT not in [m["rule_id"] for m in result["matches"]]
    suppressed = {s["rule_id"]: s for s in result["suppressed"]}
    assert WEBCLIENT in suppressed and suppressed[WEBCLIENT]["filters"]


def test_api_every_example_event_behaves_as_labelled(client: Any, examples: None) -> None:
    for path in sorted((EXAMPLES / "events").glob("*.json")):
        spec = json.loads(path.read_text())
        for label in ("match", "suppressed", "no_match"):
            for event in spec.get(label, []):
                ids = [
                    m["rule_id"]
                    for m in post(client, {"event": event}).json()["events"][0]["matches"]
                ]
                assert (spec["rule_id"] in ids) == (label == "match"), (path.name, label, event)


def test_api_events_list_and_rule_ids_restrict_the_rules(client: Any, examples: None) -> None:
    spec = example_events("win_ps_webclient_downloadstring_iex")
    body = post(client, {"events": spec["match"], "rule_ids": [WEBCLIENT]}).json()
    assert body["summary"]["events"] == len(spec["match"])
    for result in body["events"]:
        assert [m["rule_id"] for m in result["matches"]] == [WEBCLIENT]


@pytest.mark.parametrize(
    ("body", "status", "parameter"),
    [
        ("{", 400, "body"),
        ("[]", 400, "body"),
        ({}, 400, "body"),
        ({"scriptblock": "a", "event": {}}, 400, "body"),
        ({"scriptblock": 5}, 400, "scriptblock"),
        ({"scriptblock": "   "}, 400, "scriptblock"),
        ({"event": "x"}, 400, "event"),
        ({"event": {}}, 400, "event"),
        ({"events": {}}, 400, "events"),
        ({"events": []}, 400, "events"),
        ({"events": [1]}, 400, "events"),
        ({"events": [{"a": 1}] * 10_001}, 413, "events"),
        ({"scriptblock": "x", "all_rules": "yes"}, 400, "all_rules"),
        ({"scriptblock": "x", "rule_ids": "abc"}, 400, "rule_ids"),
        ({"scriptblock": "x", "rule_ids": [1]}, 400, "rule_ids"),
    ],
)
def test_api_bad_input_is_a_json_error_naming_the_parameter(
    client: Any, examples: None, body: Any, status: int, parameter: str
) -> None:
    response = post(client, body)
    assert response.status_code == status
    payload = response.json()
    assert payload["detail"]
    assert payload["parameter"] == parameter


def test_api_refuses_bodies_over_two_mebibytes(client: Any, examples: None) -> None:
    big = json.dumps({"scriptblock": "a" * (2 * 1024 * 1024 + 10)})
    response = post(client, big)
    assert response.status_code == 413
    assert response.json()["parameter"] == "body"


def test_api_throttles_a_client_with_retry_after(
    client: Any, examples: None, settings: Any
) -> None:
    rates = dict(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], sandbox="3/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    from rest_framework.throttling import ScopedRateThrottle

    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [post(client, {"scriptblock": "Get-Date"}).status_code for _ in range(5)]
        last = post(client, {"scriptblock": "Get-Date"})
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
    assert codes[:3] == [200, 200, 200]
    assert last.status_code == 429
    assert int(last["Retry-After"]) > 0


def test_api_sees_a_new_import_without_restart(client: Any, examples: None, tmp_path: Path) -> None:
    text = "Invoke-CatalogCanary -Now"
    assert post(client, {"scriptblock": text}).json()["summary"]["matches"] == 0
    rule = tmp_path / "canary.yml"
    rule.write_text(
        "title: Canary\nid: 6b1f0e6e-2f55-4a43-9a0e-1d6f3f7c2b11\nstatus: test\n"
        "logsource: {product: windows, category: ps_script}\n"
        "detection:\n  sel:\n    ScriptBlockText|contains: Invoke-CatalogCanary\n"
        "  condition: sel\nlevel: low\n"
    )
    import_rules([str(rule)])
    ids = [m["rule_id"] for m in post(client, {"scriptblock": text}).json()["events"][0]["matches"]]
    assert ids == ["6b1f0e6e-2f55-4a43-9a0e-1d6f3f7c2b11"]


# -- page --------------------------------------------------------------------------------------


def test_page_renders_the_form(client: Any, examples: None) -> None:
    response = client.get("/sandbox/")
    assert response.status_code == 200
    assert b'name="text"' in response.content and b'type="file"' in response.content


def test_page_highlights_the_matched_substring(client: Any, examples: None) -> None:
    event = example_events("win_ps_webclient_downloadstring_iex")["match"][0]
    response = client.post("/sandbox/", {"text": json.dumps(event)})
    html = response.content.decode()
    assert response.status_code == 200
    assert f"/rules/{WEBCLIENT}/" in html
    assert "<mark>" in html


def test_page_upload_of_a_json_lines_file(client: Any, examples: None) -> None:
    spec = example_events("win_ps_webclient_downloadstring_iex")
    data = "\n".join(json.dumps(e) for e in spec["match"]).encode()
    upload = io.BytesIO(data)
    upload.name = "events.jsonl"
    response = client.post("/sandbox/", {"file": upload})
    assert response.status_code == 200
    assert response.content.decode().count(f"/rules/{WEBCLIENT}/") >= len(spec["match"])


@pytest.mark.parametrize("text", ["", '{"a": ', "[1, 2]", "\x00\x01binary"])
def test_page_reports_bad_input_without_a_server_error(
    client: Any, examples: None, text: str
) -> None:
    response = client.post("/sandbox/", {"text": text})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert b"Could not evaluate the input." in response.content


def test_page_escapes_pasted_markup(client: Any, examples: None) -> None:
    response = client.post("/sandbox/", {"text": "<script>alert(1)</script>"})
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_page_tests_one_rule_from_its_rule_page(client: Any, examples: None) -> None:
    event = example_events("win_ps_webclient_downloadstring_iex")["match"][0]
    response = client.post("/sandbox/", {"text": json.dumps(event), "rule_id": WEBCLIENT})
    html = response.content.decode()
    assert "Testing one rule" in html
    assert html.count("/rules/") >= 1 and f"/rules/{WEBCLIENT}/" in html


# -- command -----------------------------------------------------------------------------------


def test_evaluate_command_prints_one_json_line_per_match(examples: None, tmp_path: Path) -> None:
    spec = example_events("win_ps_webclient_downloadstring_iex")
    first = tmp_path / "a.json"
    first.write_text(json.dumps(spec["no_match"][0]))
    second = tmp_path / "b.jsonl"
    second.write_text("\n".join(json.dumps(e) for e in spec["match"]))
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", str(first), str(second), stdout=out, stderr=err)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(line["event"], line["rule_id"]) for line in lines} >= {(1, WEBCLIENT), (2, WEBCLIENT)}
    assert all(line["event"] != 0 for line in lines if line["rule_id"] == WEBCLIENT)
    assert set(lines[0]) == {"event", "rule_id", "title", "level"}
    assert "events" in err.getvalue() and "matches" in err.getvalue()


def test_evaluate_command_exits_2_naming_the_bad_file(examples: None, tmp_path: Path) -> None:
    from django.core.management import CommandError

    bad = tmp_path / "broken.json"
    bad.write_text('{"EventID": 1,\n "Image": ')
    with pytest.raises(CommandError) as info:
        call_command("evaluate", str(bad), stderr=io.StringIO())
    assert info.value.returncode == 2
    assert "broken.json" in str(info.value) and "line" in str(info.value)


def test_evaluate_command_missing_file_exits_2(examples: None) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError) as info:
        call_command("evaluate", "/nonexistent/events.json", stderr=io.StringIO())
    assert info.value.returncode == 2


# -- the seed rule, from the SigmaHQ corpus ------------------------------------------------------


@pytest.mark.corpus
def test_seed_rule_matches_the_scriptblock_and_is_suppressed_by_443(
    client: Any, db: None, corpus: Path
) -> None:
    seed = next(
        p
        for p in (corpus / "rules" / "windows" / "powershell").rglob("*.yml")
        if SEED in p.read_text()
    )
    import_rules([str(seed)])
    body = post(client, {"scriptblock": SEED_TEXT}).json()
    assert [m["rule_id"] for m in body["events"][0]["matches"]] == [SEED]
    body = post(client, {"scriptblock": SEED_TEXT.replace("8088", "443")}).json()
    result = body["events"][0]
    assert result["matches"] == []
    assert [(s["rule_id"], s["filters"]) for s in result["suppressed"]] == [(SEED, ["filter"])]
    assert CORPUS.is_dir()
