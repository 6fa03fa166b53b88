"""POST /api/workbench/: parse problems, similar rules, corpus counts, lint, field check,
tests, backtest and conversions for one draft, against a small catalog built here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Indicator, identity_hash
from catalog.workbench import MAX_RULE_CHARS
from tests.factories import (
    WINDOWS_PROCESS_CREATION,
    fresh_workbench,
    imported_rules_for_module,
    rule_yaml,
    write_regression_sample,
)

URL = "/api/workbench/"
WHOAMI_ID = "a1b2c3d4-0000-4000-8000-000000000001"
NET_ID = "a1b2c3d4-0000-4000-8000-000000000002"
WHOAMI_2_ID = "a1b2c3d4-0000-4000-8000-000000000003"
SYSMON_1 = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}
WHOAMI_EVENT = {
    **SYSMON_1,
    "Image": "C:\\Windows\\System32\\whoami.exe",
    "CommandLine": "whoami /all",
    "User": "CORP\\alice",
}
NET_EVENT = {**SYSMON_1, "Image": "C:\\Windows\\System32\\net.exe", "CommandLine": "net user x"}

WHOAMI_DETECTION = """
selection:
    Image|endswith: '\\whoami.exe'
    CommandLine|contains:
        - '/all'
        - '/priv'
condition: selection
"""


def whoami_rule(rule_id: str = WHOAMI_ID, **fields: Any) -> str:
    values: dict[str, Any] = {
        "title": "Whoami all",
        "id": rule_id,
        "status": "test",
        "description": "Whoami with /all or /priv",
        "author": "tests",
        "date": "2026-01-01",
        "tags": ["attack.discovery", "attack.t1033"],
        "logsource": WINDOWS_PROCESS_CREATION,
        "detection": WHOAMI_DETECTION,
        "level": "medium",
    }
    values.update(fields)
    extra = values.pop("extra", "")
    return rule_yaml(**values, extra=extra)


@pytest.fixture(scope="module")
def workbench_catalog(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("corpus")
    sample = write_regression_sample(root, "whoami", WHOAMI_ID, "Whoami all", [WHOAMI_EVENT])
    net_sample = write_regression_sample(root, "net", NET_ID, "Net user", [NET_EVENT])
    rules = {
        "whoami.yml": whoami_rule(extra=f"regression_tests_path: {sample}\n"),
        "whoami2.yml": rule_yaml(
            title="Whoami",
            id=WHOAMI_2_ID,
            logsource=WINDOWS_PROCESS_CREATION,
            detection="sel:\n    Image|endswith: '\\whoami.exe'\ncondition: sel",
        ),
        "net.yml": rule_yaml(
            title="Net user",
            id=NET_ID,
            logsource=WINDOWS_PROCESS_CREATION,
            detection="sel:\n    Image|endswith: '\\net.exe'\ncondition: sel",
            extra=f"regression_tests_path: {net_sample}\n",
        ),
    }
    with imported_rules_for_module(django_db_blocker, root, rules):
        yield root


@pytest.fixture(autouse=True)
def _catalog(workbench_catalog: Path, db: None) -> Iterator[None]:
    yield from fresh_workbench()


def post(client: Any, **body: Any) -> Any:
    return client.post(URL, body, format="json")


def test_a_copy_with_a_new_id_lists_the_original_first_as_duplicate(client: Any) -> None:
    response = post(client, rule=whoami_rule(str(uuid.uuid4())))
    assert response.status_code == 200, response.content
    body = response.json()
    first = body["similar"][0]
    assert first["id"] == WHOAMI_ID and first["score"] >= 0.9 and first["duplicate"]
    assert body["duplicate"]["id"] == WHOAMI_ID
    assert {s["id"] for s in body["similar"]} == {WHOAMI_ID, WHOAMI_2_ID}
    assert len(first["shared"]) == 3
    second = body["similar"][1]
    assert second["contains_all"] and not second["contained_in"] and not second["duplicate"]


def test_each_indicator_corpus_equals_the_catalog_count(client: Any) -> None:
    body = post(client, rule=whoami_rule(str(uuid.uuid4()))).json()
    assert len(body["indicators"]) == 3
    for item in body["indicators"]:
        value_key = item["value"].casefold()
        row = Indicator.objects.get(identity=identity_hash(item["field"], item["kind"], value_key))
        assert item["corpus"] == row.rule_count
    by_value = {i["value"]: (i["corpus"], i["rarity"]) for i in body["indicators"]}
    assert by_value["\\whoami.exe"] == (2, "rare") and by_value["/all"] == (1, "rare")
    assert by_value["/priv"] == (1, "rare")


def test_same_id_is_an_edit_of_the_catalog_rule_not_a_duplicate(client: Any) -> None:
    body = post(client, rule=whoami_rule()).json()
    assert body["parse"]["catalog_rule"] == {"id": WHOAMI_ID, "title": "Whoami all"}
    assert WHOAMI_ID not in [s["id"] for s in body["similar"]]
    assert body["duplicate"] is None


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, column) of the first ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


@pytest.mark.parametrize(
    ("old", "new", "code", "at"),
    [
        ("    selection:\n", "    selection:\n  bad: [\n", "bad-yaml", "bad"),
        ("Image|endswith:", "Image|endswitch:", "bad-modifier", "endswitch"),
        ("condition: selection", "condition: selection and not filter", "bad-condition", "filter"),
    ],
    ids=["yaml", "modifier", "identifier"],
)
def test_parse_errors_are_400_with_line_and_column(
    client: Any, old: str, new: str, code: str, at: str
) -> None:
    text = whoami_rule().replace(old, new)
    response = post(client, rule=text)
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == "rule"
    error = body["parse"]["errors"][0]
    assert error["code"] == code and error["hint"]
    assert body["detail"].startswith(f"line {error['line']}, column {error['column']}: ")
    if code != "bad-yaml":  # libyaml reports where it noticed the problem, a line later
        assert (error["line"], error["column"]) == _position(text, at)
    if code == "bad-modifier":
        assert "endswith" in error["hint"]


def test_sigmahq_conventions_are_findings_with_lines(client: Any) -> None:
    long_title = "Whoami " + "a" * 125  # SigmaHQ allows 120 characters
    text = whoami_rule(str(uuid.uuid4()), title=long_title, description=None).replace(
        "CommandLine|contains:", "CommandLin|contains:"
    )
    body = post(client, rule=text).json()
    validators = {f["validator"]: f for f in body["findings"]}
    assert "sigmahq_description_existence" in validators
    assert "sigmahq_title_length" in validators
    assert validators["sigmahq_title_length"]["line"] == 1
    assert "sigmahq_invalid_fieldname" in validators
    unknown = body["field_check"]["unknown"]
    assert [u["field"] for u in unknown] == ["CommandLin"]
    assert unknown[0]["suggestions"][0] == "CommandLine"
    assert unknown[0]["line"] == text.splitlines().index("        CommandLin|contains:") + 1


def test_tests_on_pasted_events_explain_the_match(client: Any) -> None:
    body = post(client, rule=whoami_rule(), events=[WHOAMI_EVENT, NET_EVENT]).json()
    events = body["tests"]["events"]
    assert [len(e["matches"]) for e in events] == [1, 0]
    assert events[0]["matches"][0]["rule_id"] == WHOAMI_ID
    assert events[0]["matches"][0]["identifiers"]


def test_backtest_fires_on_own_sample_of_a_copy(client: Any) -> None:
    sample = "regression_data/rules/whoami/info.yml"
    text = whoami_rule(str(uuid.uuid4()), extra=f"regression_tests_path: {sample}\n")
    backtest = post(client, rule=text, backtest=True).json()["backtest"]
    assert backtest["fires_on_own"] is True
    assert [o["path"] for o in backtest["own"]] == [sample]
    assert backtest["hits"] == []
    assert backtest["samples"] == 2


def test_a_broad_draft_reports_the_other_rules_samples(client: Any) -> None:
    text = rule_yaml(
        title="Broad",
        id=str(uuid.uuid4()),
        logsource=WINDOWS_PROCESS_CREATION,
        detection="sel:\n    CommandLine|contains: ' '\ncondition: sel",
    )
    backtest = post(client, rule=text, backtest=True).json()["backtest"]
    assert {h["rule_id"] for h in backtest["hits"]} == {WHOAMI_ID, NET_ID}
    assert backtest["fires_on_own"] is None


def test_conversions_on_demand(client: Any) -> None:
    body = post(client, rule=whoami_rule(), targets=["splunk", {"target": "lucene"}]).json()
    assert [c["target"] for c in body["conversions"]] == ["splunk", "lucene"]
    assert all(c["ok"] and c["query"] for c in body["conversions"])
    assert post(client, rule=whoami_rule()).json()["conversions"] == []


def test_seed_sections(client: Any) -> None:
    body = post(client, rule=whoami_rule()).json()
    assert [s["text"] for s in body["stages"]] == ["selection", "selection"]
    assert body["attack"][0]["tactic"] == "discovery"
    assert body["attack"][0]["techniques"][0]["id"] == "T1033"
    assert any(e["event_id"] == 1 for e in body["events"])


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "rule"),
        ({"rule": 5}, "rule"),
        ({"rule": "  "}, "rule"),
        ({"rule": "x" * (MAX_RULE_CHARS + 1)}, "rule"),
        ({"rule": "title: x", "backtest": "yes"}, "backtest"),
        ({"rule": "title: x", "targets": ["nope"]}, "targets"),
        ({"rule": "title: x", "targets": 5}, "targets"),
        ({"rule": "title: x", "events": [], "scriptblock": "x"}, "body"),
        ({"rule": "title: x", "events": [1]}, "events"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    client: Any, body: dict[str, Any], parameter: str
) -> None:
    response = client.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["parameter"] == parameter


def test_unknown_target_lists_choices(client: Any) -> None:
    body = post(client, rule=whoami_rule(), targets=["nope"]).json()
    assert "splunk" in body["choices"]


def test_not_json_and_too_large_bodies(client: Any) -> None:
    response = client.post(URL, "{", content_type="application/json")
    assert response.status_code == 400 and response.json()["parameter"] == "body"
    big = "x" * (3 * 1024 * 1024)
    response = client.post(URL, {"rule": big}, format="json")
    assert response.status_code == 413


def test_documented_in_the_schema(client: Any) -> None:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/workbench/"]["post"]
    assert "400" in operation["responses"] and "200" in operation["responses"]


def test_backtest_without_regression_data_says_so(client: Any, settings: Any) -> None:
    settings.REGRESSION_DATA_ROOT = "/nonexistent-corpus"
    body = post(client, rule=whoami_rule(), backtest=True).json()
    assert body["backtest"] is None and body["backtest_unavailable"] is True
    assert post(client, rule=whoami_rule()).json()["backtest_unavailable"] is False


def test_test_inputs_are_the_sandboxs(client: Any) -> None:
    one = post(client, rule=whoami_rule(), event=WHOAMI_EVENT).json()["tests"]
    assert one["summary"]["matches"] == 1
    lines = "\n".join(json.dumps(e) for e in (WHOAMI_EVENT, NET_EVENT))
    text = post(client, rule=whoami_rule(), text=lines).json()["tests"]
    assert [len(e["matches"]) for e in text["events"]] == [1, 0]
    block = post(client, rule=whoami_rule(), scriptblock="whoami /all").json()["tests"]
    assert block["summary"]["events"] == 1 and block["summary"]["matches"] == 0
    bad = post(client, rule=whoami_rule(), text='{"Image": ')
    assert bad.status_code == 400 and bad.json()["parameter"] == "text"


def test_a_warm_request_makes_a_constant_number_of_queries(
    client: Any, django_assert_max_num_queries: Any
) -> None:
    post(client, rule=whoami_rule(), backtest=True)  # builds the index and the samples
    with django_assert_max_num_queries(1):  # the catalog fingerprint, nothing per indicator
        body = post(client, rule=whoami_rule(str(uuid.uuid4())), backtest=True).json()
    assert body["similar"] and body["backtest"]["samples"] == 2
