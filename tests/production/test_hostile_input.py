"""Hostile input: the event flattener, the YAML importer and the upload endpoints.

Property tests (bounded, no deadline) check that arbitrary input only ever fails with the
documented error type; endpoint tests check that non-UTF-8 and binary uploads are refused with
a message, never a 500.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.errors import RuleError
from rules.events import (
    EVTX_MAGIC,
    Event,
    EventInputError,
    event_from_mapping,
    flatten_evtx,
    parse_events,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "#text",
            "#attributes",
            "Name",
            "Data",
            "EventID",
            "System",
            "Event",
            "EventData",
            "UserData",
            "Provider",
            "a.b",
            "a b",
            " ",
            "",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=25,
)
mappings = st.dictionaries(keys, json_values, max_size=6)


@st.composite
def evtx_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """``{"Event": {"System": ..., "EventData"/"UserData": ...}}`` with hostile contents."""
    event: dict[str, Any] = {"System": draw(st.dictionaries(keys, json_values, max_size=5))}
    for name in ("EventData", "UserData"):
        if draw(st.booleans()):
            event[name] = draw(
                st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "Data": st.one_of(
                                json_values,
                                st.lists(
                                    st.dictionaries(
                                        st.sampled_from(["#text", "#attributes", "Name", "x"]),
                                        st.one_of(
                                            json_values,
                                            st.fixed_dictionaries({"Name": json_values}),
                                        ),
                                        max_size=3,
                                    ),
                                    max_size=4,
                                ),
                            )
                        }
                    ),
                )
            )
    extra = draw(st.dictionaries(keys, json_values, max_size=2))
    event.update({k: v for k, v in extra.items() if k not in event})
    return {"Event": event}


LOOKUPS = st.lists(
    st.one_of(keys, st.sampled_from(["a.b.c", "Event.System", "Data.Name", "x y", "..", "."])),
    max_size=5,
)


def exercise(event: Event, names: list[str]) -> None:
    """Everything the evaluator reads from an event must work on any event."""
    assert isinstance(event.fields, dict)
    event.leaves  # noqa: B018
    assert isinstance(event.haystack, str)
    event.names  # noqa: B018
    for name in names:
        event.lookup(name)
    repr(event)
    event.to_dict()


def through_parse_events(data: str | bytes) -> None:
    try:
        events = parse_events(data, max_events=10_000)
    except EventInputError as exc:
        assert str(exc).strip()
        exc.to_dict()
        return
    assert events
    for event in events:
        exercise(event, ["ScriptBlockText", "EventID", "a.b"])


def finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@SETTINGS
@given(mappings, LOOKUPS)
def test_event_from_mapping_never_crashes(obj, names):
    exercise(event_from_mapping(obj), names)


@SETTINGS
@given(evtx_shaped(), LOOKUPS)
def test_evtx_shaped_records_flatten_without_crashing(obj, names):
    flat = flatten_evtx(obj)
    assert isinstance(flat, dict)
    exercise(event_from_mapping(obj), names)


@SETTINGS
@given(st.one_of(mappings, evtx_shaped(), st.lists(json_values, max_size=4), json_values))
def test_parse_events_of_any_json_raises_only_event_input_errors(value):
    text = json.dumps(value, allow_nan=True)
    through_parse_events(text)
    through_parse_events(text.encode("utf-8"))
    through_parse_events(text.encode("utf-16"))


@SETTINGS
@given(st.lists(st.one_of(mappings, evtx_shaped()), min_size=1, max_size=4))
def test_json_lines_of_any_objects(objects):
    through_parse_events("\n".join(json.dumps(o) for o in objects))


@SETTINGS
@given(st.binary(max_size=600))
def test_parse_events_of_arbitrary_bytes(data):
    through_parse_events(data)
    through_parse_events(EVTX_MAGIC + data)
    through_parse_events(b"\xff\xfe" + data)
    through_parse_events(b'{"' + data)


@SETTINGS
@given(st.text(max_size=400))
def test_parse_events_of_arbitrary_text(text):
    through_parse_events(text)
    through_parse_events("[" + text)
    through_parse_events('{"' + text)


def test_deeply_nested_json_is_an_event_input_error():
    with pytest.raises(EventInputError):
        parse_events("[" * 100_000)
    with pytest.raises(EventInputError):
        parse_events('{"a":' * 100_000)


def test_truncated_evtx_is_an_event_input_error():
    with pytest.raises(EventInputError):
        parse_events(EVTX_MAGIC + b"\x00" * 5000)


# -- the importer ------------------------------------------------------------------------------


YAML_SOUP = st.lists(
    st.sampled_from(
        [
            "title: t\n",
            "id: 5f0c1e2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f\n",
            "logsource: {product: windows}\n",
            "detection:\n",
            "    sel:\n",
            "        F: x\n",
            "    condition: sel\n",
            "- a\n",
            "---\n",
            "&a [*a]\n",
            "  bad\n",
            "'\n",
            "!!python/object/apply:os.system ['true']\n",
            "x: *undefined\n",
            "\x00\n",
            "\ufeff",
        ]
    ),
    max_size=10,
).map("".join)


@pytest.mark.django_db
@SETTINGS
@given(st.one_of(st.binary(max_size=300), YAML_SOUP.map(str.encode)))
def test_import_of_arbitrary_files_reports_errors_and_never_raises(tmp_path_factory, data):
    from catalog.models import Rule
    from catalog.services import import_rules

    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile.yml").write_bytes(data)
    before = Rule.objects.count()
    report = import_rules([str(folder)])
    assert report.created + report.updated + report.unchanged + report.failed == 1
    for error in report.errors:
        assert error.error.strip() and error.code
    assert Rule.objects.count() == before + report.created


def test_parse_rule_rejects_non_utf8():
    from rules.parse import parse_rule

    with pytest.raises(RuleError):
        parse_rule(b"title: \xff\xfe\xfa\n", "bad.yml")


# -- uploads -------------------------------------------------------------------------------------

BINARY = bytes(range(256)) * 8
LATIN1 = "title: caf\u00e9 r\u00e8gle\ndetection: {sel: {F: \u00e9}}\n".encode("latin-1")


def upload(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "name"),
    [
        (BINARY, "events.json"),
        (LATIN1, "events.json"),
        (b"\xff\xfe\x00\xd8", "events.json"),  # BOM then a lone surrogate
        (BINARY, "events.evtx"),
        (EVTX_MAGIC + BINARY, "events.evtx"),
        (b"\x89PNG\r\n\x1a\n" + BINARY, "picture.png"),
        (b"", "empty.json"),
    ],
)
def test_sandbox_page_refuses_binary_uploads_with_a_message(data, name):
    response = Client().post("/sandbox/", {"file": upload(data, name)})
    assert response.status_code in {400, 413}
    assert b'class="' in response.content
    text = response.content.decode()
    assert any(
        word in text.lower()
        for word in ("invalid", "evtx", "empty", "no event", "utf", "json", "choose a file")
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (BINARY, "application/json"),
        (LATIN1, "application/json"),
        (b'{"scriptblock": "caf\xe9"}', "application/json"),
        (b'\xef\xbb\xbf{"scriptblock": 1}', "application/json"),
        (BINARY, "application/octet-stream"),
        pytest.param(
            b'{"events": [' + b"[" * 50_000 + b"]}", "application/json", id="deeply-nested-json"
        ),
        (b'{"events": [1, "x", null]}', "application/json"),
        (b'{"event": {}}', "application/json"),
    ],
)
def test_sandbox_api_refuses_bad_bodies_with_json_error(body, content_type):
    response = Client().post("/api/sandbox/", body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content[:300]
    payload = response.json()
    assert payload["detail"] and "parameter" in payload


@pytest.mark.django_db
def test_sandbox_api_rejects_too_many_events():
    body = json.dumps({"events": [{"a": 1}] * 10_001})
    response = Client().post("/api/sandbox/", body, content_type="application/json")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.fixture
def staff_client(db: None) -> Client:
    user = get_user_model().objects.create_user(
        "prod-staff", password="x-prod-staff-9", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (BINARY, "rules.zip"),
        (BINARY, "rules.tar.gz"),
        (BINARY, "rule.yml"),
        (LATIN1, "rule.yml"),
        (b"\x00" * 100, "rule.yml"),
    ],
)
def test_admin_upload_refuses_binary_and_non_utf8_with_a_message(staff_client, data, name):
    from catalog.models import Rule

    before = Rule.objects.count()
    response = staff_client.post(
        "/admin/catalog/importrun/upload/", {"archive": upload(data, name)}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]] if response.context else []
    text = response.content.decode()
    assert messages or "failed" in text.lower() or "error" in text.lower(), text[:2000]
    assert Rule.objects.count() == before


def test_admin_upload_refuses_wrong_suffix(staff_client):
    response = staff_client.post(
        "/admin/catalog/importrun/upload/", {"archive": upload(BINARY, "x.exe")}
    )
    assert response.status_code == 200
    assert "Upload a .zip, .tar.gz or .yml file." in response.content.decode()


def test_fixture_files_exist():
    assert Path(__file__).with_name("conftest.py").exists()
