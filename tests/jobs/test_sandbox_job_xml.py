"""Windows event XML as a background sandbox job: Event Viewer's "Save as XML" (``<Events>``)
and ``wevtutil qe /f:xml`` (``<Event>``s with no root), in UTF-8 or UTF-16, give the matches
the same events give as JSON lines; the content decides how a file is read; a DTD, an
entity declaration, malformed XML or an oversized event fails the job, naming the event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from django.test import Client

from catalog.jobs.models import Job
from catalog.jobs.services import job_dir
from catalog.services import import_rules
from tests.engine.test_shapes import FIXTURES, shape_rule_texts
from tests.factories import upload
from tests.jobs.conftest import run_worker

pytestmark = pytest.mark.django_db

NAMESPACE = "http://schemas.microsoft.com/win/2004/08/events/event"


@pytest.fixture
def shape_catalog(tmp_path: Path) -> None:
    """The rules the shape fixtures are checked against (field, encoded, filtered, keyword,
    CIDR and numeric rules; one that matches nothing)."""
    folder = tmp_path / "shape-rules"
    folder.mkdir()
    for n, text in enumerate(shape_rule_texts()):
        (folder / f"shape_{n}.yml").write_text(text)
    assert not import_rules([str(folder)]).errors


def _run(client: Client, name: str, data: bytes, **fields: str) -> dict[str, Any]:
    response = client.post("/api/sandbox/jobs/", {"file": upload(name, data), **fields})
    assert response.status_code == 202, response.content
    body = response.json()
    run_worker()
    return {**client.get(body["url"]).json(), "page": body["page"]}


def _matches(client: Client, job: dict[str, Any]) -> dict[int, list[str]]:
    """Each matched event's rule ids, from the JSON export."""
    assert job["status"] == "succeeded", job["message"]
    response = client.get(job["exports"]["json"])
    rows = json.loads(b"".join(response.streaming_content))
    found: dict[int, list[str]] = {}
    for row in rows:
        if row["kind"] == "match":
            found.setdefault(int(row["event"]), []).append(row["rule_id"])
    return {event: sorted(ids) for event, ids in found.items()}


def _summary(job: dict[str, Any]) -> tuple[Any, ...]:
    result = job["result"]
    return (result["events"], result["matched_events"], result["matches"], result["by_level"],
            result["top_rules"])  # fmt: skip


def _event_viewer(copies: int) -> bytes:
    """The Event Viewer fixture with its events repeated ``copies`` times in one <Events>."""
    text = (FIXTURES / "event_viewer.xml").read_text()
    head, rest = text.split("<Events>\n", 1)
    inner = rest.rsplit("</Events>", 1)[0]
    return (head + "<Events>\n" + inner * copies + "</Events>\n").encode()


FORMS = {
    "event_viewer.xml": lambda: _event_viewer(3),
    "wevtutil.xml": lambda: (FIXTURES / "wevtutil.xml").read_bytes() * 3,
    # Windows PowerShell 5.1's `wevtutil qe ... > file.xml` writes UTF-16LE with a BOM.
    "wevtutil-utf16.xml": lambda: ("\ufeff" + (FIXTURES / "wevtutil.xml").read_text() * 3).encode(
        "utf-16-le"
    ),
}


@pytest.mark.usefixtures("shape_catalog")
@pytest.mark.parametrize("form", sorted(FORMS))
def test_event_xml_jobs_match_as_the_json_lines_job(client: Client, form: str) -> None:
    reference = _run(client, "events.jsonl", (FIXTURES / "evtx_dump.jsonl").read_bytes() * 3)
    expected = _matches(client, reference)
    assert sorted(expected) == [0, 1, 2, 3, 4, 5]  # both fixture events, three times
    assert [len(expected[n]) for n in range(2)] == [4, 3]
    job = _run(client, form.replace("-utf16", ""), FORMS[form]())
    assert _matches(client, job) == expected
    assert _summary(job) == _summary(reference)
    page = client.get(job["page"]).content.decode()
    assert "Shape rule 0" in page and "<mark>" in page


def _constructed(record: int, command_line: str, parent: str, user: str) -> dict[str, Any]:
    """A Sysmon process creation made for this test (values with XML's special characters)."""
    return {
        "system": {"Provider": "Microsoft-Windows-Sysmon", "EventID": 1, "EventRecordID": record,
                   "SystemTime": f"2026-03-01T10:00:{record % 60:02d}.250000Z",
                   "Channel": "Microsoft-Windows-Sysmon/Operational",
                   "Computer": "WKS-42.corp.example"},
        "data": {"UtcTime": f"2026-03-01 10:00:{record % 60:02d}.250",
                 "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                 "CommandLine": command_line, "CurrentDirectory": "C:\\Users\\jürgen\\",
                 "User": user, "IntegrityLevel": "Medium", "ParentImage": parent,
                 "ParentCommandLine": f'"{parent}" /n'},
    }  # fmt: skip


CONSTRUCTED = [
    _constructed(
        7001,
        'powershell.exe -NoP -W Hidden -enc SQBFAFgA & echo "<done>" > C:\\Users\\Public\\o.txt',
        "C:\\Windows\\explorer.exe",
        "CORP\\jürgen",
    ),
    _constructed(7002, "powershell.exe -File 'a&b.ps1'", "C:\\Windows\\explorer.exe", "CORP\\ann"),
    _constructed(7003, "powershell.exe Get-Date", "C:\\Program Files\\Tool\\t.exe", "CORP\\bo"),
]


def _as_xml(event: dict[str, Any]) -> str:
    system, data = event["system"], event["data"]
    fields = "".join(f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in data.items())
    return (
        f"<Event xmlns='{NAMESPACE}'><System><Provider Name={quoteattr(system['Provider'])}/>"
        f"<EventID>{system['EventID']}</EventID>"
        f"<TimeCreated SystemTime='{system['SystemTime'][:-1]}0Z'/>"  # Windows: 7 digits
        f"<EventRecordID>{system['EventRecordID']}</EventRecordID>"
        f"<Channel>{system['Channel']}</Channel><Computer>{system['Computer']}</Computer>"
        f"</System><EventData>{fields}</EventData></Event>"
    )


def _as_evtx_dump(event: dict[str, Any]) -> dict[str, Any]:
    system = event["system"]
    return {
        "Event": {
            "#attributes": {"xmlns": NAMESPACE},
            "System": {
                "Provider": {"#attributes": {"Name": system["Provider"]}},
                "EventID": system["EventID"],
                "TimeCreated": {"#attributes": {"SystemTime": system["SystemTime"]}},
                "EventRecordID": system["EventRecordID"],
                "Channel": system["Channel"],
                "Computer": system["Computer"],
            },
            "EventData": dict(event["data"]),
        }
    }


@pytest.mark.usefixtures("shape_catalog")
def test_a_constructed_event_matches_the_same_in_xml_and_in_json(client: Client) -> None:
    lines = "".join(json.dumps(_as_evtx_dump(e)) + "\n" for e in CONSTRUCTED).encode()
    expected = _matches(client, _run(client, "made.jsonl", lines, all_rules="true"))
    assert sorted(expected) == [0, 1]  # the third event matches nothing
    assert len(expected[0]) >= 3  # powershell -enc, keyword -W Hidden, parent explorer
    xml = "\n".join(_as_xml(e) for e in CONSTRUCTED).encode()
    job = _run(client, "made.xml", xml, all_rules="true")
    assert _matches(client, job) == expected
    page = client.get(job["page"]).content.decode()
    assert "&amp; echo &quot;&lt;done&gt;&quot;" in page  # the value as written, unescaped once


@pytest.mark.usefixtures("shape_catalog")
def test_the_content_decides_how_the_file_is_read(client: Client) -> None:
    xml = (FIXTURES / "wevtutil.xml").read_bytes()
    as_lines = _matches(client, _run(client, "events.jsonl", xml))
    assert as_lines == _matches(client, _run(client, "events.xml", xml))
    lines = (FIXTURES / "evtx_dump.jsonl").read_bytes()
    assert _matches(client, _run(client, "events.xml", lines)) == as_lines


def _failed(client: Client, data: bytes, name: str = "events.xml") -> str:
    job = _run(client, name, data)
    assert job["status"] == "failed", job
    assert not job_dir(Job.objects.get(pk=job["id"])).exists()  # no half-written results
    return str(job["message"])


EVENT = (FIXTURES / "wevtutil.xml").read_text().split("\n")[0]  # its first line: 2 events


def test_malformed_xml_fails_the_job_naming_the_event(client: Client) -> None:
    data = (EVENT + "\n" + EVENT + "\n<Event><System></Event>\n" + EVENT).encode()
    message = _failed(client, data)
    assert "invalid XML: mismatched tag (event 4, line 3, column" in message, message
    # As a bad JSON line does: the job fails, nothing evaluated before is kept.
    assert "line 2 is not valid JSON" in _failed(client, b'{"a": 1}\n{"a": \n', "x.jsonl")
    cut = _failed(client, (EVENT + "<Event><System>").encode())
    assert "invalid XML" in cut and "(event 2," in cut, cut


@pytest.mark.parametrize(
    "data",
    [
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        "<Events><Event><System/><EventData>&lol2;</EventData></Event></Events>",
        '<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><Event>&x;</Event>',
        EVENT + '<!DOCTYPE late [<!ENTITY x SYSTEM "http://127.0.0.1/">]>' + EVENT,
    ],
)
def test_a_dtd_or_entity_declaration_is_refused(client: Client, data: str) -> None:
    message = _failed(client, data.encode())
    assert "XML with a DTD or entity declarations (<!DOCTYPE>) is refused" in message, message


def test_an_oversized_event_and_an_empty_file_fail_the_job(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog.jobs import sandbox

    monkeypatch.setattr(sandbox, "MAX_LINE_BYTES", 40_000)
    big = "<Event><EventData><Data Name='x'>" + "a" * 100_000 + "</Data></EventData></Event>"
    message = _failed(client, (EVENT + big).encode())
    assert "longer than 40,000 characters (event 2)" in message, message
    assert "holds no events" in _failed(client, b"<?xml version='1.0'?>\n<Events>\n</Events>\n")
    assert "invalid UTF-8 text" in _failed(client, EVENT.encode() + b"<Event>\xff</Event>")


def test_xml_is_a_job_suffix(client: Client) -> None:
    response = client.post("/api/sandbox/jobs/", {"file": upload("events.txt", b"<Event/>")})
    assert response.status_code == 400 and ".xml" in response.json()["detail"]


@pytest.mark.usefixtures("shape_catalog")
def test_the_sandbox_form_sends_a_large_xml_file_to_a_job(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import sandbox_views

    monkeypatch.setattr(sandbox_views, "MAX_BODY_BYTES", 100)  # any file is "large"
    response = client.post("/sandbox/", {"file": upload("saved.xml", _event_viewer(2))})
    assert response.status_code == 303
    run_worker()
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED, job.message
    assert job.result["events"] == 4 and job.result["matched_events"] == 4
    form = client.get("/sandbox/").content.decode()
    assert ".xml" in form.split('accept="', 1)[1].split('"', 1)[0]
