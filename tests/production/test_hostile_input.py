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


# -- findings 7, 10, 11: the same hostile inputs through the API, the page and the CLI -----------


def example_scriptblock() -> str:
    from tests.conftest import EXAMPLES

    path = EXAMPLES / "events" / "win_ps_webclient_downloadstring_iex.json"
    return str(json.loads(path.read_text())["match"][0]["ScriptBlockText"])


BIG_INT = "1" * 5000
SURROGATE_EVENT = '{"ScriptBlockText": "\\ud800 Test-NetConnection", "EventID": 4104}'
BIG_INT_EVENT = '{"ScriptBlockText": "x", "EventID": ' + BIG_INT + "}"


@pytest.fixture
def examples_catalog(db: None) -> None:
    from catalog.services import import_rules
    from rules.evaluate import clear_evaluator_cache
    from tests.conftest import EXAMPLES

    clear_evaluator_cache()
    assert import_rules([str(EXAMPLES / "rules")]).created == 17


@pytest.mark.parametrize(
    "body",
    [
        '{"scriptblock": "\\ud800"}',
        '{"scriptblock": "ok \\udfff ok"}',
        '{"event": ' + SURROGATE_EVENT + "}",
        '{"events": [{"a": 1}, ' + SURROGATE_EVENT + "]}",
        '{"event": {"\\ud800key": "v"}}',
        '{"event": ' + BIG_INT_EVENT + "}",
        '{"scriptblock": "x", "all_rules": ' + BIG_INT + "}",
    ],
)
def test_api_refuses_lone_surrogates_and_huge_integers(examples_catalog, body):
    response = Client().post("/api/sandbox/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    payload = response.json()
    assert payload["detail"] and "parameter" in payload


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        (SURROGATE_EVENT, "auto", "surrogate"),
        (SURROGATE_EVENT, "json", "surrogate"),
        ("[" + SURROGATE_EVENT + "]", "auto", "surrogate"),
        (BIG_INT_EVENT, "auto", "digits"),
        (BIG_INT_EVENT, "json", "digits"),
        ("[1, 2, 3]", "json", "expected an event object"),
        ("[1, 2, 3]", "auto", "expected an event object"),
        ("42", "json", "expected an event object"),
        ('"x"', "json", "expected an event object"),
        ("[{}, 5]", "auto", "expected an event object"),
    ],
)
def test_page_refuses_hostile_json_with_a_message(examples_catalog, text, kind, words):
    response = Client().post("/sandbox/", {"text": text, "kind": kind})
    assert response.status_code == 400, response.content[:300]
    assert words in response.content.decode()


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"ScriptBlockText": "\\ud800"}', "events.json"),
        (BIG_INT_EVENT.encode(), "events.json"),
        ("Get-Date \ud800 x".encode("utf-16-le", "surrogatepass"), "script.ps1"),
        ("Get-Date \ud800 x".encode("utf-32-le", "surrogatepass"), "script.ps1"),
    ],
)
def test_page_refuses_hostile_uploads_with_a_message(examples_catalog, data, name):
    response = Client().post("/sandbox/", {"file": upload(data, name)})
    assert response.status_code == 400, response.content[:300]
    assert "sandbox-error" in response.content.decode()


ENCODINGS = [
    ("utf-8", b""),
    ("utf-16-le", b"\xff\xfe"),
    ("utf-16-be", b"\xfe\xff"),
    ("utf-32-le", b"\xff\xfe\x00\x00"),
    ("utf-32-be", b"\x00\x00\xfe\xff"),
]


@pytest.mark.parametrize(("codec", "bom"), ENCODINGS)
@pytest.mark.parametrize("with_bom", [True, False])
def test_a_ps1_upload_matches_the_same_in_every_encoding(examples_catalog, codec, bom, with_bom):
    data = (bom if with_bom else b"") + example_scriptblock().encode(codec)
    response = Client().post("/sandbox/", {"file": upload(data, "script.ps1")})
    assert response.status_code == 200, response.content[:500]
    page = response.content.decode()
    assert "No rule matched" not in page and "0 matches" not in page
    label = codec.upper().replace("-LE", "LE").replace("-BE", "BE").replace("UTF-8", "UTF-8")
    assert f"Read as: scriptblock ({label})" in page


@pytest.mark.parametrize(("codec", "bom"), ENCODINGS)
def test_decoding_without_a_bom_equals_decoding_with_one(codec, bom):
    from rules.text_input import decode_text

    text = "Invoke-Expression (New-Object Net.WebClient).DownloadString('http://x/é')\r\n"
    assert decode_text(text.encode(codec))[0] == text
    assert decode_text(bom + text.encode(codec))[0] == text


def test_detect_mode_says_how_it_read_the_text(examples_catalog):
    page = Client().post("/sandbox/", {"text": "Get-Date"}).content.decode()
    assert "Read as: scriptblock" in page
    page = Client().post("/sandbox/", {"text": '{"ScriptBlockText": "x"}'}).content.decode()
    assert "Read as: JSON events" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "indicator=9223372036854775808",
        "indicator=-1",
        "indicator=1e400",
        "indicator=1.5",
        "exclusion=99999999999999999999999999",
        "indicator=9223372036854775807",
        "page=99999999999999999999999999",
        "per_page=99999999999999999999",
    ],
)
def test_rule_list_ignores_out_of_range_ids(query):
    response = Client().get(f"/rules/?{query}")
    assert response.status_code < 500


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/rules/?indicator=9223372036854775808",
        "/api/rules/?limit=99999999999999999999999&offset=99999999999999999999999",
        "/api/indicators/?min_corpus=99999999999999999999999",
        "/api/indicators/99999999999999999999999/",
        "/api/indicators/99999999999999999999999/rules/",
        "/indicators/99999999999999999999999/",
        "/exclusions/99999999999999999999999/",
        "/indicators/?min_corpus=99999999999999999999999",
        "/events/?event_id=99999999999999999999999",
        "/api/events/?event_id=99999999999999999999999",
    ],
)
def test_out_of_range_ids_are_never_a_server_error(url):
    response = Client().get(url)
    assert response.status_code < 500, (url, response.content[:300])


def run_evaluate(*args: str) -> Any:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError) as info:
        call_command("evaluate", "--no-progress", *args)
    return info.value


@pytest.mark.parametrize(
    ("content", "name", "words"),
    [
        (BIG_INT_EVENT, "big.json", "digits"),
        (SURROGATE_EVENT, "surrogate.json", "surrogate"),
        ("[1, 2, 3]", "numbers.json", "expected an event object"),
        ("42", "number.json", "expected an event object"),
        ("[" * 100_000, "deep.json", "nested too deeply"),
    ],
)
def test_cli_refuses_hostile_files_with_one_line_and_exit_2(
    examples_catalog, tmp_path, content, name, words
):
    path = tmp_path / name
    path.write_text(content)
    error = run_evaluate(str(path))
    assert error.returncode == 2
    assert words in str(error) and "\n" not in str(error)


def test_cli_refuses_a_directory_a_missing_file_and_dev_zero(examples_catalog, tmp_path):
    assert run_evaluate(str(tmp_path)).returncode == 2
    assert "No such file" in str(run_evaluate(str(tmp_path / "missing.json")))
    error = run_evaluate("/dev/zero")
    assert error.returncode == 2 and "limit" in str(error)


def test_cli_refuses_a_file_over_the_cap_without_reading_it(tmp_path, monkeypatch):
    from rules import text_input

    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        fh.truncate(text_input.MAX_FILE_BYTES + 1)  # sparse: nothing to read
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.handle.close()

        def fileno(self) -> int:
            return self.handle.fileno()

        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            return self.handle.read(size)

    monkeypatch.setattr(text_input, "open", lambda p, m: Spy(real_open(p, m)), raising=False)
    with pytest.raises(EventInputError, match="limit"):
        text_input.read_file_bytes(str(path))
    assert reads == []


def test_cli_subprocess_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    from tests.production.conftest import REPO

    path = tmp_path / "big.json"
    path.write_text(BIG_INT_EVENT)
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", "--no-progress", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "digits" in done.stderr


NUL_PATHS = [
    "/rules/%00/",
    "/rules/%00/convert/",
    "/correlations/%00/",
    "/filters/a%00b/",
    "/releases/%00/",
    "/api/rules/%00/",
    "/api/rules/%00/convert/?target=splunk",
    "/api/releases/%00/changes/",
    "/static/%00.css",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", NUL_PATHS)
def test_a_nul_in_the_path_is_a_404_not_a_server_error(client: Client, path: str) -> None:
    # PostgreSQL refuses NUL in a text value: each of these was a 500 there (CI runs this on
    # PostgreSQL); no id, slug or file holds one, so nothing is looked up.
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    if path.startswith("/api/"):
        assert "detail" in response.json()
