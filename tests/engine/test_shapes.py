"""Input shapes (rules.shapes): one event written by each tool gives the same fields, matches
and explanations; XML is read safely; mixed or unknown shapes are refused with a message.

The fixtures in tests/fixtures/shapes/ are two original events (a Sysmon process creation and
a Security network logon) written in every tool's format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rules.errors import EmptyInputError, EventInputError, EventShapeError
from rules.evaluate import Evaluator
from rules.events import Event, event_from_mapping, read_events
from rules.parse import parse_rule
from rules.shapes import (
    MAX_XML_DEPTH,
    SHAPE_LABELS,
    canonical_time,
    detect_time_field,
    event_time,
    events_from_mappings,
    normalise_records,
    parse_xml_events,
)
from tests.factories import rule_document_yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shapes"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REGRESSION = SHARED / "corpus" / "sigmahq" / "regression_data"

SHAPE_OF = {
    "evtx_dump.json": "evtx-json",
    "evtx_dump.jsonl": "evtx-json",
    "chainsaw_search.json": "evtx-json-attributes",
    "event_viewer.xml": "event-xml",
    "wevtutil.xml": "event-xml",
    "splunk_xmlwineventlog.txt": "event-xml",
    "winlogbeat.ndjson": "winlogbeat",
    "winlogbeat_flattened.json": "winlogbeat",
    "hayabusa.json": "hayabusa",
    "hayabusa.jsonl": "hayabusa",
    "chainsaw_hunt.json": "chainsaw",
}
# What every shape carries: the EventData and the System fields Sigma rules and logsources use.
COMMON = (
    "EventID",
    "Channel",
    "Provider_Name",
    "Computer",
    "EventRecordID",
    "TimeCreated_SystemTime",
)
# System fields some tools do not write (Hayabusa: none of these; Winlogbeat: no numeric
# Level/Task/Opcode/Keywords).
NOT_EVERYWHERE = (
    "Version", "Level", "Task", "Opcode", "Keywords", "Correlation", "Security",
    "Security_UserID", "Execution_ProcessID", "Execution_ThreadID",
)  # fmt: skip
# evtx_dump writes GUIDs without braces, Windows (XML, Winlogbeat) in braces: kept as written.
GUID_FIELDS = ("ProcessGuid", "ParentProcessGuid", "LogonGuid", "Provider_Guid")


def read(name: str) -> list[Event]:
    return read_events((FIXTURES / name).read_bytes()).events


def test_every_fixture_is_read_as_its_shape() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.suffix != ".md") == sorted(SHAPE_OF)
    for name, shape in SHAPE_OF.items():
        reading = read_events((FIXTURES / name).read_bytes())
        assert reading.shape == shape, name
        assert [e.kind for e in reading.events] == [shape, shape], name
        assert SHAPE_LABELS[shape] in reading.label


def test_detections_of_one_event_are_one_event() -> None:
    reading = read_events((FIXTURES / "hayabusa.json").read_bytes())
    assert reading.records == 3 and len(reading.events) == 2
    assert "from 3 detections" in reading.label
    assert len(read_events((FIXTURES / "chainsaw_hunt.json").read_bytes()).events) == 2


@pytest.mark.parametrize("name", sorted(SHAPE_OF))
def test_same_fields_in_every_shape(name: str) -> None:
    reference = read("evtx_dump.json")
    for ours, theirs in zip(read(name), reference, strict=True):
        for field, value in theirs.fields.items():
            if field in COMMON or field not in NOT_EVERYWHERE + GUID_FIELDS:
                assert ours.fields.get(field) == value, (name, field)


def shape_rule_texts() -> list[str]:
    """The rules the shape fixtures are evaluated against (also imported by the sandbox
    tests): field, encoded, filtered, keyword, CIDR, numeric and non-matching rules."""
    proc = {"product": "windows", "category": "process_creation"}
    logon = {"product": "windows", "service": "security"}
    documents = [
        ({"sel": {"Image|endswith": "\\powershell.exe", "CommandLine|contains": " -enc "},
          "condition": "sel"}, proc),
        ({"sel": {"CommandLine|wide|base64offset|contains": "DownloadString"},
          "condition": "sel"}, proc),
        ({"sel": {"ParentImage|endswith": "\\explorer.exe"},
          "filter": {"IntegrityLevel": "System"}, "condition": "sel and not filter"}, proc),
        ({"keywords": ["Net.WebClient", "-W Hidden"], "condition": "keywords"}, proc),
        ({"sel": {"EventID": 4624, "LogonType": 3, "AuthenticationPackageName": "NTLM"},
          "filter": {"TargetUserName|endswith": "$"}, "condition": "sel and not filter"}, logon),
        ({"sel": {"IpAddress|cidr": "10.0.0.0/8", "LogonProcessName|endswith": "Ssp "},
          "condition": "sel"}, logon),
        ({"sel": {"EventID": 4624, "LogonType": 10}, "condition": "sel"}, logon),
        ({"sel": {"WorkstationName": "KALI", "KeyLength|gte": 128}, "condition": "sel"}, logon),
    ]  # fmt: skip
    return [
        rule_document_yaml(
            detection,
            title=f"Shape rule {i}",
            id=f"5d1f3c3e-0000-4000-8000-0000000005{i:02d}",
            status="test",
            level="high",
            logsource=logsource,
        )
        for i, (detection, logsource) in enumerate(documents)
    ]


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator([parse_rule(text) for text in shape_rule_texts()])


def _answers(evaluator: Evaluator, events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        result = evaluator.evaluate(event, explain=True, near_misses=True)
        answer = result.to_dict()
        answer.pop("elapsed_ms", None)
        out.append(json.loads(json.dumps(answer, default=str)))
    return out


@pytest.mark.parametrize("name", sorted(set(SHAPE_OF) - {"evtx_dump.json"}))
def test_same_matches_and_explanations_in_every_shape(evaluator: Evaluator, name: str) -> None:
    reference = _answers(evaluator, read("evtx_dump.json"))
    assert [len(a["matches"]) for a in reference] == [4, 3]  # the rules do match
    assert _answers(evaluator, read(name)) == reference


# --------------------------------------------------------------------------------------------
# Timestamps (the correlation stage orders events by them)


def test_timestamps_are_canonical_utc() -> None:
    assert canonical_time("2024-10-29T15:12:37.0387882Z") == "2024-10-29T15:12:37.038788Z"
    assert canonical_time("2016-08-19 08:06:57.658 +09:00") == "2016-08-18T23:06:57.658000Z"
    assert canonical_time("2025-01-01T00:00:00-0130") == "2025-01-01T01:30:00.000000Z"
    assert canonical_time("not a time") is None and canonical_time(5) is None


def test_event_time_and_detected_time_field() -> None:
    events = read("hayabusa.jsonl")
    assert event_time(events[0]) == datetime(2025, 3, 4, 3, 0, 1, 123000, tzinfo=UTC)
    assert detect_time_field(events) == "TimeCreated_SystemTime"
    flat = [Event({"@timestamp": "2025-01-01T00:00:00Z"}), Event({"@timestamp": "2025-01-02"})]
    assert detect_time_field(flat) is None  # a date alone is not a time
    flat[1].fields["@timestamp"] = "2025-01-02T00:00:00Z"
    assert detect_time_field([Event(dict(e.fields)) for e in flat]) == "@timestamp"
    assert event_time(Event({"t": "2025-01-01 10:00:00"}), "t") is not None


# --------------------------------------------------------------------------------------------
# JSON shapes: details


def test_hayabusa_without_all_field_info_has_system_fields_only() -> None:
    record = json.loads((FIXTURES / "hayabusa.jsonl").read_text().splitlines()[2])
    del record["AllFieldInfo"]
    shape, (fields,) = normalise_records(record)
    assert shape == "hayabusa"
    assert fields["Channel"] == "Security" and fields["EventID"] == 4624
    assert "TargetUserName" not in fields and "TgtUser" not in fields  # Details are not data


def test_hayabusa_standard_profile_is_read_with_a_note() -> None:
    lines = (FIXTURES / "hayabusa.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        del record["AllFieldInfo"]
    reading = read_events("\n".join(json.dumps(r) for r in records))
    assert reading.shape == "hayabusa" and len(reading.events) == 2
    assert "3 Hayabusa records without AllFieldInfo" in reading.label
    assert "--profile all-field-info" in reading.label
    assert "AllFieldInfo" not in read_events("\n".join(lines)).label


def test_chainsaw_aggregate_holds_several_events() -> None:
    hunt = json.loads((FIXTURES / "chainsaw_hunt.json").read_text())
    aggregate = {
        **hunt[0],
        "kind": "aggregate",
        "documents": [hunt[0]["document"], hunt[2]["document"]],
    }
    del aggregate["document"]
    shape, events = normalise_records(aggregate)
    assert shape == "chainsaw" and [e["EventID"] for e in events] == [1, 4624]


def test_winlogbeat_event_code_is_the_event_id() -> None:
    _, (fields,) = normalise_records({"winlog": {"channel": "Security"}, "event": {"code": "4688"}})
    assert fields == {"EventID": 4688, "Channel": "Security"}


def test_flat_json_is_kept_as_it_is() -> None:
    assert normalise_records({"a": {"b": 1}}) == ("json", [{"a": {"b": 1}}])
    assert event_from_mapping({"CommandLine": "x"}).kind == "json"


def test_api_mappings_are_normalised_too() -> None:
    beat = json.loads((FIXTURES / "winlogbeat.ndjson").read_text().splitlines()[0])
    event = event_from_mapping(beat)
    assert event.kind == "winlogbeat" and event.fields["Image"].endswith("powershell.exe")


def test_mixed_shapes_are_refused_with_both_named() -> None:
    beat = json.loads((FIXTURES / "winlogbeat.ndjson").read_text().splitlines()[0])
    (dump,) = [json.loads(t) for t in (FIXTURES / "evtx_dump.jsonl").read_text().splitlines()[:1]]
    with pytest.raises(EventShapeError, match="mixed input shapes") as info:
        events_from_mappings([dump, beat])
    assert "Winlogbeat" in str(info.value) and "evtx_dump" in str(info.value)
    assert info.value.record == 1
    with pytest.raises(EventShapeError, match="mixed"):
        read_events(json.dumps(dump) + "\n" + json.dumps({"flat": 1}))


# --------------------------------------------------------------------------------------------
# XML: shapes and safety

EVENT = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
    "<Provider Name='P'/><EventID Qualifiers='16384'>7036</EventID><Channel>System</Channel>"
    "</System><EventData><Data Name='param1'>Example &amp; Co</Data><Data Name='empty'/>"
    "<Data>unnamed</Data><Binary>00FF</Binary></EventData></Event>"
)


def test_xml_event_flattens_like_evtx_dump() -> None:
    (event,) = parse_xml_events(EVENT)
    assert event.fields == {
        "Provider_Name": "P",
        "EventID": 7036,
        "EventID_Qualifiers": 16384,
        "Channel": "System",
        "param1": "Example & Co",
        "empty": None,
        "Data": "unnamed",
        "Binary": "00FF",
    }


def test_xml_with_declaration_wrapper_and_concatenation() -> None:
    assert len(parse_xml_events('<?xml version="1.0"?>\n<Events>' + EVENT * 2 + "</Events>")) == 2
    assert len(parse_xml_events(EVENT + "\r\n" + EVENT + "\n")) == 2
    assert read_events(("\ufeff" + EVENT).encode("utf-16-le")).shape == "event-xml"


def test_xml_with_a_dtd_or_entities_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;">]><Event><System/><EventData>&lol2;</EventData></Event>'
    )
    with pytest.raises(EventShapeError, match="DTD"):
        read_events(bomb)
    external = '<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><Event>&x;</Event>'
    with pytest.raises(EventShapeError, match="DTD"):
        parse_xml_events(external)


def test_xml_nesting_and_size_are_capped() -> None:
    deep = "<Event>" + "<a>" * (MAX_XML_DEPTH + 5) + "</a>" * (MAX_XML_DEPTH + 5) + "</Event>"
    with pytest.raises(EventShapeError, match="nested deeper"):
        parse_xml_events(deep)
    with pytest.raises(EventInputError, match="more than 1 events"):
        parse_xml_events(EVENT * 3, max_events=1)


def test_xml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(EventShapeError) as info:
        read_events(EVENT + "\n<Event><System></Event>")
    assert info.value.line == 2 and info.value.column is not None


def test_unknown_xml_shape_and_empty_xml() -> None:
    with pytest.raises(EventShapeError, match="unknown XML shape"):
        read_events("<?xml version='1.0'?><html><body/></html>")
    with pytest.raises(EmptyInputError):
        read_events("<Events></Events>")


def test_powershell_block_comment_is_still_a_scriptblock() -> None:
    reading = read_events("<# .SYNOPSIS\n  Does things #>\nGet-Process")
    assert reading.kind == "scriptblock"


def test_xml_file_is_read_by_extension(tmp_path: Path) -> None:
    from rules.events import load_events_file

    path = tmp_path / "events.xml"
    path.write_text(EVENT)
    assert [e.kind for e in load_events_file(str(path))] == ["event-xml"]


# --------------------------------------------------------------------------------------------
# Real evtx files: their XML rendering reads as their JSON rendering


@pytest.mark.corpus
def test_corpus_xml_renderings_equal_the_json_ones() -> None:
    import evtx

    files = sorted(REGRESSION.rglob("*.evtx")) if REGRESSION.is_dir() else []
    if not files:
        pytest.skip(f"corpus not found at {REGRESSION}")
    compared = differing = 0
    for path in files:
        xml = [r["data"] for r in evtx.PyEvtxParser(str(path)).records()]
        dumps = [json.loads(r["data"]) for r in evtx.PyEvtxParser(str(path)).records_json()]
        for text, dump in zip(xml, dumps, strict=True):
            compared += 1
            ours, theirs = parse_xml_events(text)[0].fields, event_from_mapping(dump).fields
            # XML parsers turn CRLF inside values into LF (XML 1.0, 2.11): the only change.
            theirs = {
                k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in theirs.items()
            }
            differing += ours != theirs
    assert compared > 100 and differing == 0
