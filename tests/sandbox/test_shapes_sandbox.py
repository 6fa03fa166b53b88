"""Input shapes through the sandbox's interfaces: POST /api/sandbox/ (``events`` in any JSON
shape, ``text`` in any shape), the /sandbox/ page (paste and upload) and ``evaluate``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from catalog.services import import_rules
from tests.engine.test_shapes import FIXTURES, shape_rule_texts
from tests.factories import upload, write_rule_files
from tests.sandbox.test_sandbox_interfaces import _fresh_state  # noqa: F401 (autouse)


@pytest.fixture
def shape_rules(db: None, tmp_path: Path) -> None:
    texts = {f"shape_{i}.yml": text for i, text in enumerate(shape_rule_texts())}
    report = import_rules([str(write_rule_files(tmp_path / "rules", texts))], rule_set="shapes")
    assert report.created == len(texts) and not report.errors


def post(client: Any, body: Any) -> Any:
    return client.post("/api/sandbox/", json.dumps(body), content_type="application/json")


def matched(body: dict[str, Any]) -> list[list[str]]:
    return [sorted(m["rule_id"] for m in e["matches"]) for e in body["events"]]


def json_records(name: str) -> list[Any]:
    text = (FIXTURES / name).read_text()
    if name.endswith("json") and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_api_gives_the_same_matches_for_every_shape(client: Any, shape_rules: None) -> None:
    reference = post(client, {"events": json_records("evtx_dump.jsonl")}).json()
    assert [len(m) for m in matched(reference)] == [4, 3]
    for name in ("winlogbeat.ndjson", "winlogbeat_flattened.json", "hayabusa.jsonl"):
        body = post(client, {"events": json_records(name)}).json()
        assert matched(body) == matched(reference), name
    for name in ("wevtutil.xml", "event_viewer.xml", "splunk_xmlwineventlog.txt", "hayabusa.json"):
        response = post(client, {"text": (FIXTURES / name).read_text()})
        assert response.status_code == 200, response.json()
        assert matched(response.json()) == matched(reference), name
    body = post(client, {"text": (FIXTURES / "wevtutil.xml").read_text()}).json()
    assert [e["kind"] for e in body["events"]] == ["event-xml", "event-xml"]


def test_api_refuses_mixed_shapes_naming_the_parameter(client: Any, shape_rules: None) -> None:
    events = json_records("evtx_dump.jsonl")[:1] + json_records("winlogbeat.ndjson")[:1]
    response = post(client, {"events": events})
    assert response.status_code == 400
    assert response.json()["parameter"] == "events"
    assert "mixed input shapes" in response.json()["detail"]


def test_api_refuses_xml_with_a_dtd(client: Any, shape_rules: None) -> None:
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]><Event>&a;</Event>'
    response = post(client, {"text": bomb})
    assert response.status_code == 400 and response.json()["parameter"] == "text"


def test_page_says_which_shape_it_read(client: Any, shape_rules: None) -> None:
    text = (FIXTURES / "wevtutil.xml").read_text()
    response = client.post("/sandbox/", {"text": text, "kind": "auto"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Read as: Windows event XML, 2 events." in html
    file = upload("events.xml", (FIXTURES / "event_viewer.xml").read_bytes())
    html = client.post("/sandbox/", {"file": file}).content.decode()
    assert "Read as: Windows event XML, 2 events (UTF-8)." in html
    bad = client.post("/sandbox/", {"text": "<html><body/></html>", "kind": "xml"})
    assert bad.status_code == 400 and "unknown XML shape" in bad.content.decode()


def test_evaluate_command_reads_every_shape(shape_rules: None) -> None:
    counts = {}
    for name in ("evtx_dump.json", "hayabusa.jsonl", "wevtutil.xml", "chainsaw_hunt.json"):
        out, err = io.StringIO(), io.StringIO()
        call_command("evaluate", str(FIXTURES / name), "--no-progress", stdout=out, stderr=err)
        counts[name] = len(out.getvalue().splitlines())
        assert "read as" in err.getvalue()
    assert len(set(counts.values())) == 1 and counts["wevtutil.xml"] == 7
    err = io.StringIO()
    call_command("evaluate", str(FIXTURES / "hayabusa.jsonl"), stdout=io.StringIO(), stderr=err)
    assert "read as Hayabusa JSON" in err.getvalue()
