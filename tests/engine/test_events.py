"""Event input: JSON shapes, evtx_dump flattening, .evtx files, scriptblocks, typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules.events import (
    MISSING,
    POWERSHELL_CHANNEL,
    EmptyInputError,
    Event,
    EventInputError,
    EventShapeError,
    EvtxInputError,
    InputEncodingError,
    JsonInputError,
    event_from_mapping,
    flatten_evtx,
    load_events_file,
    parse_events,
    parse_evtx,
    scriptblock_event,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REGRESSION = SHARED / "corpus" / "sigmahq" / "regression_data"


def _evtx_files() -> list[Path]:
    return sorted(REGRESSION.rglob("*.evtx")) if REGRESSION.is_dir() else []


@pytest.fixture(scope="module")
def evtx_sample() -> Path:
    files = _evtx_files()
    if not files:
        pytest.skip(f"corpus not found at {REGRESSION} (shared/ beside the repo root)")
    return files[0]


RECORD = {
    "Event": {
        "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "{5770}"}},
            "EventID": 1,
            "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:34:34.640670Z"}},
            "Correlation": None,
            "Execution": {"#attributes": {"ProcessID": 3308, "ThreadID": 4008}},
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "host.example",
            "Security": {"#attributes": {"UserID": "S-1-5-18"}},
        },
        "EventData": {"Image": "C:\\a.exe", "CommandLine": "a.exe -x", "Process Id": 7},
    }
}


# --------------------------------------------------------------------------------------------
# Flattening and lookup


def test_evtx_dump_record_flattens_system_and_eventdata() -> None:
    flat = flatten_evtx(RECORD)
    assert flat["EventID"] == 1
    assert flat["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert flat["Computer"] == "host.example"
    assert flat["Provider_Name"] == "Microsoft-Windows-Sysmon"
    assert flat["Provider_Guid"] == "{5770}"
    assert flat["TimeCreated_SystemTime"] == "2025-10-24T23:34:34.640670Z"
    assert flat["Execution_ProcessID"] == 3308
    assert flat["Security_UserID"] == "S-1-5-18"
    assert flat["Image"] == "C:\\a.exe"
    assert flat["ProcessId"] == 7  # spaces dropped
    assert "Correlation" in flat and flat["Correlation"] is None


def test_event_id_with_text_and_attributes_becomes_the_number() -> None:
    record = json.loads(json.dumps(RECORD))
    record["Event"]["System"]["EventID"] = {"#text": 4104, "#attributes": {"Qualifiers": 16384}}
    flat = flatten_evtx(record)
    assert flat["EventID"] == 4104 and flat["EventID_Qualifiers"] == 16384


def test_eventdata_data_list_with_name_attributes() -> None:
    record = json.loads(json.dumps(RECORD))
    record["Event"]["EventData"] = {
        "Data": [
            {"#attributes": {"Name": "TargetUserName"}, "#text": "bob"},
            {"#attributes": {"Name": "Logon Type"}, "#text": 3},
        ]
    }
    flat = flatten_evtx(record)
    assert flat["TargetUserName"] == "bob" and flat["LogonType"] == 3


def test_unnamed_eventdata_and_userdata() -> None:
    record = json.loads(json.dumps(RECORD))
    record["Event"]["EventData"] = {"Data": ["a", "b"]}
    record["Event"]["UserData"] = {"LogFileCleared": {"SubjectUserName": "bob"}}
    flat = flatten_evtx(record)
    assert flat["Data"] == ["a", "b"] and flat["SubjectUserName"] == "bob"


def test_lookup_exact_then_squeezed_then_dotted_path() -> None:
    ev = event_from_mapping(
        {"a.b": 1, "a": {"b": 2, "c": {"d": 3}}, "New Name": "x", "L": [{"k": 1}, {"k": 2}]}
    )
    assert ev.lookup("a.b") == 1
    assert ev.lookup("a.c.d") == 3
    assert ev.lookup("NewName") == "x"
    assert ev.lookup("L.k") == [1, 2]
    assert ev.lookup("nope") is MISSING
    assert ev.lookup("a.nope") is MISSING


def test_haystack_is_casefolded_values_only() -> None:
    ev = event_from_mapping({"KeyName": "StraßE", "n": 4104, "b": True, "z": None})
    assert ev.haystack.split("\x00") == ["strasse", "4104", "true"]
    assert "keyname" not in ev.haystack


def test_scriptblock_becomes_a_4104_event() -> None:
    ev = scriptblock_event("Write-Host hi")
    assert ev.fields == {
        "ScriptBlockText": "Write-Host hi",
        "EventID": 4104,
        "Channel": POWERSHELL_CHANNEL,
        "Provider_Name": "Microsoft-Windows-PowerShell",
    }


# --------------------------------------------------------------------------------------------
# Input shapes


def test_single_object_array_jsonl_and_concatenated_objects() -> None:
    one = parse_events('{"a": 1}')
    assert [e.fields for e in one] == [{"a": 1}]
    arr = parse_events('[{"a": 1}, {"a": 2}]')
    assert [e.fields["a"] for e in arr] == [1, 2]
    lines = parse_events('{"a": 1}\n{"a": 2}\n\n{"a": 3}\n')
    assert [e.fields["a"] for e in lines] == [1, 2, 3]
    concat = parse_events('{"a": 1}{"a": 2}\n  {"a": 3}')
    assert [(e.index, e.fields["a"]) for e in concat] == [(0, 1), (1, 2), (2, 3)]


def test_evtx_dump_json_is_flattened_on_input() -> None:
    (ev,) = parse_events(json.dumps(RECORD, indent=2).encode())
    assert ev.kind == "evtx-json" and ev.fields["Provider_Name"] == "Microsoft-Windows-Sysmon"


def test_bytes_with_bom_are_decoded() -> None:
    assert parse_events(b'\xef\xbb\xbf{"a": 1}')[0].fields == {"a": 1}
    assert parse_events('{"a": 1}'.encode("utf-16"))[0].fields == {"a": 1}


def test_plain_text_is_a_scriptblock() -> None:
    (ev,) = parse_events("$x = [System.Text.Encoding]::UTF8\n{ iex $x }")
    assert ev.kind == "scriptblock" and ev.fields["EventID"] == 4104
    (ev,) = parse_events('{"a": 1}', kind="scriptblock")
    assert ev.fields["ScriptBlockText"] == '{"a": 1}'


def test_regression_json_files_hold_concatenated_evtx_records(evtx_sample: Path) -> None:
    json_file = evtx_sample.with_suffix(".json")
    events = load_events_file(str(json_file))
    assert events and all(e.kind == "evtx-json" for e in events)
    assert all("EventID" in e.fields and "Channel" in e.fields for e in events)


def test_evtx_file_matches_its_json_dump(evtx_sample: Path) -> None:
    from_evtx = load_events_file(str(evtx_sample))
    from_json = load_events_file(str(evtx_sample.with_suffix(".json")))
    assert [e.kind for e in from_evtx] == ["evtx"] * len(from_evtx)
    assert [e.fields for e in from_evtx] == [e.fields for e in from_json]
    assert parse_events(evtx_sample.read_bytes())[0].fields == from_evtx[0].fields


# --------------------------------------------------------------------------------------------
# Errors name the position


def test_errors_are_value_errors() -> None:
    for cls in (JsonInputError, EventShapeError, EvtxInputError, InputEncodingError):
        assert issubclass(cls, EventInputError) and issubclass(cls, ValueError)


def test_bad_json_names_line_and_column() -> None:
    with pytest.raises(JsonInputError) as info:
        parse_events('{"a": 1}\n{"a": 2,\n  "b": }\n')
    err = info.value
    assert (err.line, err.column) == (3, 8)
    assert "line 3" in str(err) and "column 8" in str(err)
    assert err.to_dict()["code"] == "bad-json"


def test_truncated_json_names_position() -> None:
    with pytest.raises(JsonInputError) as info:
        parse_events('[{"a": 1}, {"a": ')
    assert info.value.line == 1 and info.value.offset == 17


def test_non_object_record_names_record_index() -> None:
    with pytest.raises(EventShapeError) as info:
        parse_events('{"a": 1}\n42\n')
    assert info.value.record == 1 and info.value.line == 2
    with pytest.raises(EventShapeError) as info:
        parse_events('[{"a": 1}, {"b": 2}, "x"]')
    assert info.value.record == 2


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    with pytest.raises(JsonInputError):
        parse_events("[" * 100000 + "]" * 100000, kind="json")


def test_invalid_utf8_names_byte_offset() -> None:
    with pytest.raises(InputEncodingError) as info:
        parse_events(b'{"a": "x\xff"}')
    assert info.value.byte_offset == 8


def test_empty_inputs() -> None:
    with pytest.raises(EmptyInputError):
        parse_events("   \n")
    with pytest.raises(EmptyInputError):
        parse_events("[]")


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        parse_events("{}", kind="yaml")  # "xml" is a kind (rules.shapes)


def test_max_events_limit() -> None:
    with pytest.raises(EventInputError, match="more than 2"):
        parse_events('{"a":1}{"a":2}{"a":3}', max_events=2)


def test_evtx_with_bad_signature_or_header() -> None:
    with pytest.raises(EvtxInputError) as info:
        parse_evtx(b"not an evtx file")
    assert info.value.byte_offset == 0
    with pytest.raises(EvtxInputError) as info:
        parse_evtx(b"ElfFile\x00" + b"\x00" * 100)
    assert info.value.byte_offset == 108


def test_truncated_evtx_names_chunk_offset(evtx_sample: Path) -> None:
    data = evtx_sample.read_bytes()
    with pytest.raises(EvtxInputError) as info:
        parse_evtx(data[: 4096 + 1000])
    assert info.value.byte_offset == 4096 and "truncated" in str(info.value)


def test_corrupt_evtx_names_record_index(evtx_sample: Path) -> None:
    data = bytearray(evtx_sample.read_bytes())
    data[4096 + 600 : 4096 + 700] = b"\xff" * 100
    with pytest.raises(EvtxInputError) as info:
        parse_evtx(bytes(data))
    assert info.value.record == 0 and "corrupt" in str(info.value)


def test_event_repr_and_to_dict() -> None:
    ev = Event({"a": 1}, index=3)
    assert "index=3" in repr(ev) and ev.to_dict() == {"a": 1}
