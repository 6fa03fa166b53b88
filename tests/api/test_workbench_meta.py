"""POST /api/workbench/ with drafts of several documents (issue 16): correlations of every
type written with their rules, chains, catalog rules and correlations named by a draft, meta
filters, the filter backtest, the collection's conversion, and the 400s of what cannot be used.

The catalog holds examples/correlations (ids as in tests/sandbox/test_correlations.py) and a
regression sample for its bad-password rule."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.models import Rule
from rules.correlate.convert import convert_documents
from rules.drafts import MAX_DRAFT_DOCUMENTS
from tests.conftest import EXAMPLES
from tests.factories import (
    fresh_workbench,
    imported_for_module,
    rule_yaml,
    write_regression_sample,
    write_rule_files,
)

URL = "/api/workbench/"
CORRELATIONS = EXAMPLES / "correlations"
REPEATED = "bff2408b-ef2d-42f7-914e-dd9750613431"
CHAINED = "7d1e0dc5-82c8-4a31-8cd9-1164353fa70a"
BAD_PASSWORD = "112206ca-85cd-4a08-8657-d6febd1e1f04"
LOGON = "6eafe1dc-6700-4322-aa00-3d7d661f32ef"
CATALOG_FILTER = "fd027459-eb41-43ce-87b9-24127c4ffe45"

# The draft's own rules (never in the catalog).
FAIL_ID = "c0ffee00-0000-4000-8000-000000000001"
OK_ID = "c0ffee00-0000-4000-8000-000000000002"
PROC_ID = "c0ffee00-0000-4000-8000-000000000003"
BYTES_ID = "c0ffee00-0000-4000-8000-000000000004"
CORR_ID = "c0ffee00-0000-4000-8000-0000000000c1"
CORR_2_ID = "c0ffee00-0000-4000-8000-0000000000c2"
FILTER_ID = "c0ffee00-0000-4000-8000-0000000000f1"

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
ALICE_FAILURE = {
    "Channel": "Security",
    "Provider_Name": "Microsoft-Windows-Security-Auditing",
    "EventID": 4625,
    "SubStatus": "0xc000006a",
    "TargetUserName": "alice",
    "WorkstationName": "WS07",
    "TimeCreated_SystemTime": "2026-11-01T09:00:00.000Z",
}


def at(seconds: float) -> str:
    """ISO 8601 with milliseconds, ``seconds`` after T0."""
    moment = T0 + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def example_events() -> list[dict[str, Any]]:
    lines = (CORRELATIONS / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def draft_rule(rule_id: str, name: str, title: str, detection: str) -> str:
    return rule_yaml(
        title=title,
        id=rule_id,
        name=name,
        status="test",
        description=f"{title} (a draft rule)",
        author="tests",
        date="2026-12-01",
        logsource={"product": "windows", "service": "security"},
        detection=detection,
        level="low",
    )


FAIL_RULE = draft_rule(
    FAIL_ID, "wb_fail", "Draft Logon Failure", "sel:\n    EventID: 4625\ncondition: sel"
)
OK_RULE = draft_rule(
    OK_ID, "wb_success", "Draft Logon Success", "sel:\n    EventID: 4624\ncondition: sel"
)
PROC_RULE = draft_rule(PROC_ID, "wb_proc", "Draft Process", "sel:\n    EventID: 1\ncondition: sel")
BYTES_RULE = draft_rule(
    BYTES_ID, "wb_bytes", "Draft Bytes Sent", "sel:\n    EventID: 3\ncondition: sel"
)


def correlation(
    kind: str,
    rules: list[str],
    *,
    timespan: str = "1m",
    group_by: list[str] | None = None,
    condition: dict[str, Any] | None = None,
    ident: str = CORR_ID,
    name: str | None = None,
    title: str | None = None,
) -> str:
    body: dict[str, Any] = {"type": kind, "rules": rules}
    if group_by:
        body["group-by"] = group_by
    body["timespan"] = timespan
    if condition is not None:
        body["condition"] = condition
    document: dict[str, Any] = {"title": title or f"Draft {kind}", "id": ident}
    if name:
        document["name"] = name
    document |= {"status": "test", "correlation": body, "level": "medium"}
    return yaml.safe_dump(document, sort_keys=False)


def meta_filter(
    rules: list[str], selection: dict[str, Any], ident: str = FILTER_ID, title: str = ""
) -> str:
    document = {
        "title": title or "Draft filter",
        "id": ident,
        "status": "test",
        "logsource": {"product": "windows", "service": "security"},
        "filter": {"rules": rules, "selection": selection, "condition": "not selection"},
    }
    return yaml.safe_dump(document, sort_keys=False)


def draft(*documents: str) -> str:
    return "---\n".join(doc if doc.endswith("\n") else doc + "\n" for doc in documents)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


@pytest.fixture(scope="module")
def meta_catalog(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """examples/correlations plus a regression sample of its bad-password rule (alice's
    wrong password: what the rule is tested to detect)."""
    from catalog.workbench import clear_workbench_cache

    root = tmp_path_factory.mktemp("corpus")
    write_regression_sample(root, "bad_password", BAD_PASSWORD, "Bad password", [ALICE_FAILURE])
    folder = write_rule_files(
        root / "rules",
        {
            "other.yml": draft_rule(
                str(uuid.UUID(int=7)), "other", "Other", "s:\n  EventID: 7\ncondition: s"
            )
        },
    )
    with imported_for_module(django_db_blocker, [folder, CORRELATIONS]) as report:
        assert not report.errors, report.errors
        clear_workbench_cache()
        yield root
        clear_workbench_cache()


@pytest.fixture(autouse=True)
def _catalog(meta_catalog: Path, db: None) -> Iterator[None]:
    yield from fresh_workbench()


def post(client: Any, **body: Any) -> Any:
    return client.post(URL, body, format="json")


def analyse(client: Any, **body: Any) -> dict[str, Any]:
    response = post(client, **body)
    assert response.status_code == 200, response.content
    data: dict[str, Any] = response.json()
    return data


def matches(data: dict[str, Any]) -> list[tuple[str, list[int], dict[str, Any]]]:
    """(id, events, group) of every correlation match, in the answer's order."""
    return [(c["id"], c["events"], c["group"]) for c in data["correlations"]]


def fail(user: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"EventID": 4625, "User": user, "@timestamp": at(seconds), **extra}


def success(user: str, seconds: float) -> dict[str, Any]:
    return {"EventID": 4624, "User": user, "@timestamp": at(seconds)}


# ------------------------------------------------------------------ each correlation type


def test_event_count_with_group_by_is_inclusive_at_the_window_end(client: Any) -> None:
    text = draft(
        FAIL_RULE, correlation("event_count", ["wb_fail"], group_by=["User"], condition={"gte": 3})
    )
    events = [
        fail("u1", 0),
        fail("u1", 30),
        fail("u1", 60),  # exactly 1 m: inside
        fail("u2", 0),
        fail("u2", 30),
        fail("u2", 60.001),  # 1 m + 1 ms: outside
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1, 2], {"User": "u1"})]
    [found] = data["correlations"]
    assert found["type"] == "event_count" and found["value"] == 3 and found["in_draft"] is True
    assert found["condition"] == "count >= 3"
    assert found["window"] == {"start": at(0), "end": at(60)}
    assert data["tests"]["correlations"] == data["correlations"]
    assert data["correlation_rules"] == [
        {
            "id": CORR_ID,
            "title": "Draft event_count",
            "type": "event_count",
            "timespan": "1m",
            "group_by": ["User"],
            "condition": "count >= 3",
            "rules": [{"id": FAIL_ID, "in_draft": True}],
            "line": line_of(text, "title: Draft event_count"),
        }
    ]
    assert data["documents"] == [
        {"kind": "rule", "line": 1, "title": "Draft Logon Failure"},
        {
            "kind": "correlation",
            "line": line_of(text, "title: Draft event_count"),
            "title": "Draft event_count",
        },
    ]
    assert data["references"] == []


@pytest.mark.parametrize(("last", "found"), [(60, True), (60.001, False)])
def test_event_count_without_group_by(client: Any, last: float, found: bool) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail"], condition={"gte": 3}))
    events = [fail("u1", 0), fail("u2", 30), fail("u3", last)]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == ([(CORR_ID, [0, 1, 2], {})] if found else [])


def test_value_count_with_group_by(client: Any) -> None:
    text = draft(
        PROC_RULE,
        correlation(
            "value_count", ["wb_proc"], group_by=["Host"], condition={"field": "Image", "gte": 2}
        ),
    )

    def proc(host: str, image: str, seconds: float) -> dict[str, Any]:
        return {"EventID": 1, "Host": host, "Image": image, "@timestamp": at(seconds)}

    events = [
        proc("h1", "a.exe", 0),
        proc("h1", "b.exe", 60),  # two distinct in 1 m
        proc("h2", "a.exe", 0),
        proc("h2", "b.exe", 60.001),  # 1 ms too late
        proc("h3", "a.exe", 0),
        proc("h3", "a.exe", 30),  # one distinct value twice
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1], {"Host": "h1"})]
    assert data["correlations"][0]["value"] == 2


@pytest.mark.parametrize(("last", "found"), [(60, True), (60.001, False)])
def test_value_count_without_group_by(client: Any, last: float, found: bool) -> None:
    text = draft(
        PROC_RULE, correlation("value_count", ["wb_proc"], condition={"field": "Image", "gte": 2})
    )
    events = [
        {"EventID": 1, "Image": "a.exe", "@timestamp": at(0)},
        {"EventID": 1, "Image": "b.exe", "@timestamp": at(last)},
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == ([(CORR_ID, [0, 1], {})] if found else [])


def test_temporal_with_group_by_in_any_order(client: Any) -> None:
    text = draft(
        FAIL_RULE, OK_RULE, correlation("temporal", ["wb_fail", "wb_success"], group_by=["User"])
    )
    events = [
        success("u1", 0),
        fail("u1", 60),  # success first: temporal does not mind the order
        fail("u2", 0),
        success("u2", 60.001),  # outside
        fail("u3", 0),
        fail("u3", 10),  # only one of the two rules
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1], {"User": "u1"})]
    assert data["correlation_rules"][0]["rules"] == [
        {"id": FAIL_ID, "in_draft": True},
        {"id": OK_ID, "in_draft": True},
    ]


@pytest.mark.parametrize(("last", "found"), [(60, True), (60.001, False)])
def test_temporal_without_group_by(client: Any, last: float, found: bool) -> None:
    text = draft(FAIL_RULE, OK_RULE, correlation("temporal", ["wb_fail", "wb_success"]))
    data = analyse(client, rule=text, events=[fail("u1", 0), success("u2", last)])
    assert matches(data) == ([(CORR_ID, [0, 1], {})] if found else [])


def test_temporal_ordered_with_group_by_needs_the_order(client: Any) -> None:
    text = draft(
        FAIL_RULE,
        OK_RULE,
        correlation("temporal_ordered", ["wb_fail", "wb_success"], group_by=["User"]),
    )
    events = [
        fail("u1", 0),
        success("u1", 60),  # in order, inside
        fail("u2", 0),
        success("u2", 60.001),  # in order, outside
        success("u3", 0),
        fail("u3", 30),  # inside, wrong order
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1], {"User": "u1"})]


@pytest.mark.parametrize(
    ("first", "second", "found"),
    [("fail", 60, True), ("fail", 60.001, False), ("success", 30, False)],
)
def test_temporal_ordered_without_group_by(
    client: Any, first: str, second: float, found: bool
) -> None:
    text = draft(FAIL_RULE, OK_RULE, correlation("temporal_ordered", ["wb_fail", "wb_success"]))
    if first == "fail":
        events = [fail("u1", 0), success("u2", second)]
    else:
        events = [success("u2", 0), fail("u1", second)]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == ([(CORR_ID, [0, 1], {})] if found else [])


def test_value_sum_with_group_by(client: Any) -> None:
    text = draft(
        BYTES_RULE,
        correlation(
            "value_sum", ["wb_bytes"], group_by=["Host"], condition={"field": "bytes", "gt": 100}
        ),
    )

    def sent(host: str, count: int, seconds: float) -> dict[str, Any]:
        return {"EventID": 3, "Host": host, "bytes": count, "@timestamp": at(seconds)}

    events = [
        sent("h1", 60, 0),
        sent("h1", 50, 60),  # 110 in 1 m
        sent("h2", 60, 0),
        sent("h2", 50, 60.001),  # 60, then 50
        sent("h3", 60, 0),
        sent("h3", 40, 10),  # 100: not more than 100
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1], {"Host": "h1"})]
    assert data["correlations"][0]["value"] == 110


@pytest.mark.parametrize(("last", "found"), [(60, True), (60.001, False)])
def test_value_sum_without_group_by(client: Any, last: float, found: bool) -> None:
    text = draft(
        BYTES_RULE, correlation("value_sum", ["wb_bytes"], condition={"field": "bytes", "gt": 100})
    )
    events = [
        {"EventID": 3, "bytes": 60, "@timestamp": at(0)},
        {"EventID": 3, "bytes": 50, "@timestamp": at(last)},
    ]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == ([(CORR_ID, [0, 1], {})] if found else [])


def test_events_are_correlated_in_timestamp_order(client: Any) -> None:
    # Pasted newest first: in time order the failure (event 1) comes before the logon.
    text = draft(FAIL_RULE, OK_RULE, correlation("temporal_ordered", ["wb_fail", "wb_success"]))
    data = analyse(client, rule=text, events=[success("u1", 30), fail("u1", 0)])
    assert [c["id"] for c in data["correlations"]] == [CORR_ID]
    assert sorted(data["correlations"][0]["events"]) == [0, 1]
    # The same input order with the times swapped: the logon came first, no match.
    data = analyse(client, rule=text, events=[success("u1", 0), fail("u1", 30)])
    assert data["correlations"] == []


# ------------------------------------------------------------------------------- chains


def test_a_chain_written_in_the_draft(client: Any) -> None:
    burst = correlation(
        "event_count",
        ["wb_fail"],
        group_by=["User"],
        condition={"gte": 3},
        name="wb_burst",
        title="Draft burst",
    )
    chain = correlation(
        "temporal_ordered",
        ["wb_burst", "wb_success"],
        group_by=["User"],
        timespan="5m",
        ident=CORR_2_ID,
        title="Draft burst then logon",
    )
    text = draft(FAIL_RULE, OK_RULE, burst, chain)
    events = [
        fail("u1", 0),
        fail("u1", 10),
        fail("u1", 20),
        success("u1", 100),
        success("u2", 0),
        fail("u2", 10),
        fail("u2", 20),
        fail("u2", 30),  # logon before
    ]
    data = analyse(client, rule=text, events=events)
    found = matches(data)
    assert (CORR_ID, [0, 1, 2], {"User": "u1"}) in found
    assert (CORR_ID, [5, 6, 7], {"User": "u2"}) in found
    assert (CORR_2_ID, [0, 1, 2, 3], {"User": "u1"}) in found
    assert len(found) == 3
    [chained] = [c for c in data["correlations"] if c["id"] == CORR_2_ID]
    assert chained["chained"] and chained["chained"][0].startswith(CORR_ID)
    assert all(c["in_draft"] for c in data["correlations"])
    [_, second] = data["correlation_rules"]
    assert second["rules"] == [{"id": CORR_ID, "in_draft": True}, {"id": OK_ID, "in_draft": True}]


def test_a_draft_correlation_of_a_catalog_rule_named_by_name(client: Any) -> None:
    text = correlation(
        "event_count",
        ["bad_password_logon"],
        group_by=["TargetUserName"],
        timespan="5m",
        condition={"gte": 5},
    )
    events = example_events()[:9]  # alice's 5 failures, bob's 4
    data = analyse(client, rule=text, events=events)
    assert matches(data) == [(CORR_ID, [0, 1, 2, 3, 4], {"TargetUserName": "alice"})]
    assert data["correlations"][0]["in_draft"] is True
    # The catalog rule was evaluated: its matches are in the tests.
    assert [m["rule_id"] for m in data["tests"]["events"][0]["matches"]] == [BAD_PASSWORD]
    assert data["references"] == [
        {
            "kind": "rule",
            "id": BAD_PASSWORD,
            "title": "Interactive or Network Logon Failed Because of a Bad Password",
        }
    ]
    assert data["correlation_rules"][0]["rules"] == [{"id": BAD_PASSWORD, "in_draft": False}]
    assert data["documents"] == [{"kind": "correlation", "line": 1, "title": "Draft event_count"}]


def test_a_draft_correlation_chained_on_a_catalog_correlation(client: Any) -> None:
    text = correlation(
        "temporal",
        ["repeated_bad_passwords", "account_logon_success"],
        group_by=["TargetUserName"],
        timespan="10m",
    )
    examples = example_events()
    events = [*examples[:9], examples[15], examples[16]]  # alice logs on (9), bob too (10)
    data = analyse(client, rule=text, events=events)
    assert sorted(matches(data)) == sorted(
        [
            (REPEATED, [0, 1, 2, 3, 4], {"TargetUserName": "alice"}),
            (CORR_ID, [0, 1, 2, 3, 4, 9], {"TargetUserName": "alice"}),
        ]
    )
    in_draft = {c["id"]: c["in_draft"] for c in data["correlations"]}
    assert in_draft == {REPEATED: False, CORR_ID: True}
    refs = {(r["kind"], r["id"]) for r in data["references"]}
    assert refs == {("correlation", REPEATED), ("rule", BAD_PASSWORD), ("rule", LOGON)}
    assert CHAINED not in in_draft  # a catalog correlation the draft does not name
    assert data["correlation_rules"][0]["rules"] == [
        {"id": REPEATED, "in_draft": False},
        {"id": LOGON, "in_draft": False},
    ]


@pytest.mark.parametrize("reference", [REPEATED, "repeated_bad_passwords"], ids=["id", "name"])
def test_a_catalog_correlation_named_by_id_or_name(client: Any, reference: str) -> None:
    text = correlation("event_count", [reference], timespan="1h", condition={"gte": 1})
    data = analyse(client, rule=text, events=example_events()[:9])
    assert sorted(matches(data)) == sorted(
        [
            (REPEATED, [0, 1, 2, 3, 4], {"TargetUserName": "alice"}),
            (CORR_ID, [0, 1, 2, 3, 4], {}),
        ]
    )


def test_a_draft_copy_of_a_catalog_correlation_feeds_the_catalog_chain_on_it(
    client: Any,
) -> None:
    # The draft edits REPEATED (same id, window 10 m) and names the catalog's CHAINED, which
    # counts REPEATED: the draft's copy is the one CHAINED sees.
    documents = (CORRELATIONS / "mr_password_guessing_then_logon.yml").read_text().split("\n---\n")
    edited = documents[2].replace("timespan: 5m", "timespan: 10m")
    mine = correlation("event_count", [CHAINED], timespan="1h", condition={"gte": 1})
    events = [*example_events()[:9], example_events()[15]]
    response = post(client, rule=draft(edited, mine), events=events)
    assert response.status_code == 200, response.content
    data = response.json()
    in_draft = {c["id"]: c["in_draft"] for c in data["correlations"]}
    assert in_draft == {REPEATED: True, CHAINED: False, CORR_ID: True}
    [chained] = [c for c in data["correlations"] if c["id"] == CHAINED]
    assert chained["events"] == [0, 1, 2, 3, 4, 9]


def test_the_drafts_own_rule_comes_before_a_catalog_rule_of_the_same_name(client: Any) -> None:
    # A draft rule named like the catalog's bad-password rule, matching logons instead.
    mine = OK_RULE.replace("name: wb_success", "name: bad_password_logon")
    corr = correlation(
        "event_count", ["bad_password_logon"], group_by=["TargetUserName"], condition={"gte": 2}
    )
    events = [*example_events()[:5], success("x", 0), success("x", 1)]
    data = analyse(client, rule=draft(mine, corr), events=events)
    assert data["references"] == []
    assert data["correlation_rules"][0]["rules"] == [{"id": OK_ID, "in_draft": True}]
    # The catalog rule is not evaluated: alice's failures match nothing, so nothing correlates
    # on them (the logons have no TargetUserName: no group either).
    assert [e["matches"] for e in data["tests"]["events"][:5]] == [[]] * 5
    assert data["correlations"] == []


def test_a_draft_rule_with_a_catalog_rules_id_replaces_it(client: Any) -> None:
    # An edit of the catalog's bad-password rule (same id): any 4625, whatever the status.
    stored = (CORRELATIONS / "mr_password_guessing_then_logon.yml").read_text().split("\n---\n")
    edited = stored[0].replace("        SubStatus: '0xc000006a'\n", "")
    corr = correlation(
        "event_count", [BAD_PASSWORD], group_by=["TargetUserName"], condition={"gte": 2}
    )
    other_status = {**example_events()[0], "SubStatus": "0xc0000064"}
    data = analyse(client, rule=draft(edited, corr), events=[other_status, other_status])
    assert data["references"] == []
    assert data["correlation_rules"][0]["rules"] == [{"id": BAD_PASSWORD, "in_draft": True}]
    assert matches(data) == [(CORR_ID, [0, 1], {"TargetUserName": "alice"})]


def test_a_crlf_draft_splits_with_the_same_lines(client: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail"], condition={"gte": 2}))
    data = analyse(client, rule=text.replace("\n", "\r\n"), events=[fail("u", 0), fail("u", 1)])
    assert [(d["kind"], d["line"]) for d in data["documents"]] == [
        ("rule", 1),
        ("correlation", line_of(text, "title: Draft event_count")),
    ]
    assert matches(data) == [(CORR_ID, [0, 1], {})]


# ------------------------------------------------------------------------------ filters


def test_a_draft_filter_on_a_catalog_rule_suppresses_only_that_rules_matches(
    client: Any,
) -> None:
    text = draft(FAIL_RULE, meta_filter(["bad_password_logon"], {"TargetUserName": "bob"}))
    events = example_events()[:9]  # alice 0-4, bob 5-8
    data = analyse(client, rule=text, events=events)
    for event in data["tests"]["events"]:
        matched = sorted(m["rule_id"] for m in event["matches"])
        if event["index"] >= 5:  # bob: the catalog rule's match is suppressed, not the draft's
            assert matched == [FAIL_ID]
            [entry] = event["filtered"]
            assert entry["rule_id"] == BAD_PASSWORD and entry["in_draft"] is False
            assert [(f["id"], f["in_draft"]) for f in entry["filters"]] == [(FILTER_ID, True)]
            assert entry["reason"] == "suppressed by filter Draft filter"
        else:
            assert matched == sorted([FAIL_ID, BAD_PASSWORD])
            assert event["filtered"] == []
    assert data["filters"] == [
        {
            "id": FILTER_ID,
            "title": "Draft filter",
            "logsource": "windows/security",
            "condition": "not selection",
            "any_rule": False,
            "rules": [{"id": BAD_PASSWORD, "in_draft": False}],
            "line": line_of(text, "title: Draft filter"),
        }
    ]
    assert [r["id"] for r in data["references"]] == [BAD_PASSWORD]
    assert data["correlations"] == []


def test_a_draft_filter_keeps_suppressed_matches_out_of_correlations(client: Any) -> None:
    text = draft(
        FAIL_RULE,
        correlation("event_count", ["wb_fail"], group_by=["User"], condition={"gte": 3}),
        meta_filter(["wb_fail"], {"User": "noisy"}),
    )
    events = [fail("noisy", 0), fail("noisy", 1), fail("noisy", 2), fail("u1", 3)]
    data = analyse(client, rule=text, events=events)
    assert matches(data) == []
    assert [len(e["filtered"]) for e in data["tests"]["events"]] == [1, 1, 1, 0]
    assert data["tests"]["events"][0]["filtered"][0]["in_draft"] is True


def test_the_catalogs_filters_apply_unless_the_draft_rewrites_them(client: Any) -> None:
    corr = correlation(
        "event_count",
        ["bad_password_logon"],
        group_by=["TargetUserName"],
        timespan="5m",
        condition={"gte": 5},
    )
    events = example_events()[:15]  # alice 0-4, bob 5-8, svc_health from JUMP01 9-14
    data = analyse(client, rule=corr, events=events)
    # As imported: the catalog's filter suppresses svc_health's failures, no correlation.
    assert matches(data) == [(CORR_ID, [0, 1, 2, 3, 4], {"TargetUserName": "alice"})]
    for event in data["tests"]["events"][9:]:
        [entry] = event["filtered"]
        assert [(f["id"], f["in_draft"]) for f in entry["filters"]] == [(CATALOG_FILTER, False)]
    # The draft rewrites the catalog's filter (same id) for another account: svc_health counts.
    rewritten = meta_filter(
        ["bad_password_logon"], {"TargetUserName": "nobody"}, ident=CATALOG_FILTER
    )
    data = analyse(client, rule=draft(corr, rewritten), events=events)
    assert [e["filtered"] for e in data["tests"]["events"]] == [[]] * 15
    assert sorted(m[2]["TargetUserName"] for m in matches(data)) == ["alice", "svc_health"]


def test_a_filter_whose_logsource_does_not_cover_the_rule_suppresses_nothing(
    client: Any,
) -> None:
    linux = meta_filter(["wb_fail"], {"User": "u"}).replace(
        "product: windows\n  service: security", "product: linux"
    )
    assert "product: linux" in linux
    data = analyse(client, rule=draft(FAIL_RULE, linux), events=[fail("u", 0)])
    assert [m["rule_id"] for m in data["tests"]["events"][0]["matches"]] == [FAIL_ID]
    assert data["tests"]["events"][0]["filtered"] == []
    windows = analyse(
        client,
        rule=draft(FAIL_RULE, meta_filter(["wb_fail"], {"User": "u"})),
        events=[fail("u", 0)],
    )
    assert windows["tests"]["events"][0]["matches"] == []


@pytest.mark.parametrize(
    ("selection", "suppressed"),
    [({"EventID": 4625}, 1), ({"TargetUserName": "svc_health"}, 0)],
    ids=["too-broad", "narrow"],
)
def test_filter_backtest_over_the_rules_own_samples(
    client: Any, selection: dict[str, Any], suppressed: int
) -> None:
    text = meta_filter(["bad_password_logon"], selection)
    data = analyse(client, rule=text, backtest=True)
    backtest = data["filter_backtest"]
    assert backtest["suppressed"] == suppressed
    [sample] = backtest["samples"]
    assert sample["filter"] == FILTER_ID and sample["rule_id"] == BAD_PASSWORD
    assert sample["path"] == "regression_data/rules/bad_password/info.yml"
    assert (sample["matched"], sample["kept"], sample["suppressed"]) == (
        1,
        1 - suppressed,
        suppressed,
    )
    assert backtest["rules_without_samples"] == []


def test_filter_backtest_names_rules_without_samples(client: Any) -> None:
    text = meta_filter(["account_logon_success"], {"EventID": 4624})
    data = analyse(client, rule=text, backtest=True)
    assert data["filter_backtest"] == {
        "samples": [],
        "suppressed": 0,
        "rules_without_samples": [LOGON],
    }
    assert analyse(client, rule=text)["filter_backtest"] is None  # only with backtest


# ----------------------------------------------------------------------------------- 400s


def assert_400_at(response: Any, code: str | None, line: int) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    body: dict[str, Any] = response.json()
    assert body["parameter"] == "rule"
    errors = body["parse"]["errors"]
    assert errors, body
    if code is not None:
        assert errors[0]["code"] == code, errors
    assert errors[0]["line"] == line, errors
    assert errors[0]["hint"]
    assert body["detail"].startswith(f"line {line}, column 1: ")
    return body


def test_an_unresolved_reference_is_a_400_at_the_documents_first_line(client: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["no_such_rule"], condition={"gte": 2}))
    body = assert_400_at(
        post(client, rule=text), "unresolved-reference", line_of(text, "title: Draft event_count")
    )
    assert "no_such_rule" in body["parse"]["errors"][0]["message"]


def test_an_unresolved_filter_reference_is_a_400(client: Any) -> None:
    text = draft(FAIL_RULE, OK_RULE, meta_filter(["nobody"], {"User": "x"}))
    assert_400_at(post(client, rule=text), "unresolved-reference", line_of(text, "Draft filter"))


def test_a_bad_timespan_is_a_400(client: Any) -> None:
    text = draft(
        FAIL_RULE,
        correlation("event_count", ["wb_fail"], timespan="5 minutes", condition={"gte": 2}),
    )
    body = assert_400_at(post(client, rule=text), None, line_of(text, "title: Draft event_count"))
    [error] = body["parse"]["errors"]
    assert error["code"] == "bad-correlation" and "5 minutes" in error["message"]


def test_a_broken_filter_is_a_400(client: Any) -> None:
    text = draft(
        FAIL_RULE,
        meta_filter(["wb_fail"], {"User": "x"}).replace(
            "condition: not selection", "condition: not nothing_here"
        ),
    )
    body = assert_400_at(post(client, rule=text), "bad-correlation", line_of(text, "Draft filter"))
    assert "nothing_here" in body["parse"]["errors"][0]["message"]
    assert "a filter needs" in body["parse"]["errors"][0]["hint"]


def test_a_correlation_chained_on_itself_is_a_400(client: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail", CORR_ID], condition={"gte": 2}))
    body = assert_400_at(post(client, rule=text), None, line_of(text, "title: Draft event_count"))
    assert "chained on itself" in body["parse"]["errors"][0]["message"]


def test_two_correlations_chained_on_each_other_are_a_400(client: Any) -> None:
    first = correlation("event_count", ["wb_fail", "wb_b"], condition={"gte": 2}, name="wb_a")
    second = correlation(
        "event_count", ["wb_a"], condition={"gte": 2}, name="wb_b", ident=CORR_2_ID, title="Second"
    )
    text = draft(FAIL_RULE, first, second)
    body = assert_400_at(post(client, rule=text), None, line_of(text, "title: Draft event_count"))
    lines = sorted(e["line"] for e in body["parse"]["errors"])
    assert lines == [line_of(text, "title: Draft event_count"), line_of(text, "title: Second")]


def test_more_than_twenty_documents_is_a_400(client: Any) -> None:
    rules = [
        draft_rule(str(uuid.uuid4()), f"r{n}", f"Rule {n}", "s:\n  EventID: 1\ncondition: s")
        for n in range(MAX_DRAFT_DOCUMENTS + 1)
    ]
    response = post(client, rule=draft(*rules))
    assert response.status_code == 400
    assert "more than 20" in response.json()["detail"]
    # Twenty is allowed.
    assert post(client, rule=draft(*rules[:MAX_DRAFT_DOCUMENTS])).status_code == 200


@pytest.mark.parametrize("text", ["---", "---\n---\n", "---\n# only a comment\n---\n"])
def test_a_draft_of_only_separators_is_a_400(client: Any, text: str) -> None:
    response = post(client, rule=text)
    assert response.status_code == 400
    assert response.json()["parse"]["errors"][0]["line"] == 1


@pytest.mark.parametrize("value", [5, ["@timestamp"], "x" * 300])
def test_a_bad_timestamp_field_is_a_400(client: Any, value: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail"], condition={"gte": 1}))
    response = post(client, rule=text, events=[fail("u1", 0)], timestamp_field=value)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["parameter"] == "timestamp_field" and body["detail"]


# ------------------------------------------------------------------------ timestamp field


def test_a_timestamp_field_the_events_lack_gives_a_note_and_no_correlation(client: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail"], condition={"gte": 2}))
    events = [fail("u1", 0), fail("u1", 10)]
    assert matches(analyse(client, rule=text, events=events)) == [(CORR_ID, [0, 1], {})]
    data = analyse(client, rule=text, events=events, timestamp_field="seen")
    assert data["correlations"] == []
    notes = data["tests"]["summary"]["correlation_notes"]
    assert any("'seen'" in note for note in notes), notes


def test_the_chosen_timestamp_field_orders_and_windows_the_events(client: Any) -> None:
    text = draft(FAIL_RULE, correlation("event_count", ["wb_fail"], condition={"gte": 2}))
    # @timestamp puts them 10 s apart; "seen" 2 minutes (outside the 1 m window).
    events = [fail("u1", 0, seen=at(0)), fail("u1", 10, seen=at(120))]
    assert matches(analyse(client, rule=text, events=events)) == [(CORR_ID, [0, 1], {})]
    assert analyse(client, rule=text, events=events, timestamp_field="seen")["correlations"] == []


# ------------------------------------------------------------------------ a plain draft


def test_a_plain_one_rule_draft_answers_as_before(client: Any) -> None:
    data = analyse(client, rule=FAIL_RULE, events=[fail("u1", 0)], targets=["splunk"])
    assert data["parse"]["ok"] and data["parse"]["id"] == FAIL_ID
    assert data["documents"] == [] and data["correlations"] == []
    assert data["correlation_rules"] == [] and data["filters"] == []
    assert data["references"] == [] and data["filter_backtest"] is None
    assert data["collection_conversions"] == []
    assert [m["rule_id"] for m in data["tests"]["events"][0]["matches"]] == [FAIL_ID]
    assert data["tests"]["correlations"] == []
    assert [c["target"] for c in data["conversions"]] == ["splunk"]


def test_a_draft_of_two_rules_tests_both(client: Any) -> None:
    data = analyse(client, rule=draft(FAIL_RULE, OK_RULE), events=[fail("u", 0), success("u", 1)])
    assert data["parse"]["id"] == FAIL_ID  # the first rule is described
    assert [[m["rule_id"] for m in e["matches"]] for e in data["tests"]["events"]] == [
        [FAIL_ID],
        [OK_ID],
    ]
    assert [d["kind"] for d in data["documents"]] == ["rule", "rule"]
    assert data["documents"][1]["line"] == line_of(draft(FAIL_RULE, OK_RULE), "Draft Logon Success")


def test_lines_of_a_later_rule_are_draft_lines(client: Any) -> None:
    # The rule is the second document: findings and indicators name its lines in the whole
    # draft (the editor highlights them).
    long_title = "Draft " + "a" * 125  # SigmaHQ allows 120 characters
    rule = draft_rule(
        FAIL_ID,
        "wb_fail",
        long_title,
        "sel:\n    EventID: 4625\n    TargetUsrName: bob\ncondition: sel",
    )
    text = draft(correlation("event_count", ["wb_fail"], condition={"gte": 2}), rule)
    data = analyse(client, rule=text)
    assert data["parse"]["id"] == FAIL_ID
    findings = {f["validator"]: f for f in data["findings"]}
    assert findings["sigmahq_title_length"]["line"] == line_of(text, "title: Draft aaa")
    lines = {i["field"]: i["line"] for i in data["indicators"]}
    assert lines["TargetUsrName"] == line_of(text, "TargetUsrName: bob")


def test_a_parse_error_in_a_later_rule_names_its_draft_line(client: Any) -> None:
    broken = OK_RULE.replace("EventID: 4624", "EventID|endswitch: 4624")
    text = draft(FAIL_RULE, broken)
    response = post(client, rule=text)
    assert response.status_code == 400
    [error] = response.json()["parse"]["errors"]
    assert error["code"] == "bad-modifier"
    assert error["line"] == line_of(text, "EventID|endswitch")


def test_two_rules_with_one_id_are_a_400(client: Any) -> None:
    text = draft(FAIL_RULE, OK_RULE.replace(OK_ID, FAIL_ID))
    response = post(client, rule=text)
    assert response.status_code == 400
    [error] = response.json()["parse"]["errors"]
    assert error["code"] == "duplicate-id"
    assert error["line"] == line_of(text, "title: Draft Logon Success")


# ----------------------------------------------------------------------------- conversion

SIGMA = Path(sys.executable).with_name("sigma")
needs_cli = pytest.mark.skipif(
    not SIGMA.exists() and not shutil.which("sigma"), reason="sigma-cli is not installed"
)


def as_dicts(converted: list[Any]) -> list[dict[str, Any]]:
    return [
        {"target": c.target, "label": c.label, "queries": c.queries, "error": c.error}
        for c in converted
    ]


def test_collection_conversions_equal_convert_documents(client: Any) -> None:
    corr = correlation("event_count", ["wb_fail"], group_by=["User"], condition={"gte": 3})
    flt = meta_filter(["wb_fail"], {"User": "noisy"})
    data = analyse(client, rule=draft(FAIL_RULE, corr, flt), targets=["splunk"])
    assert data["collection_conversions"] == as_dicts(convert_documents([FAIL_RULE, corr, flt]))
    assert {c["target"] for c in data["collection_conversions"]} == {
        "splunk",
        "esql",
        "loki",
        "sqlite",
    }
    splunk = data["collection_conversions"][0]
    assert splunk["target"] == "splunk" and not splunk["error"]
    assert any("noisy" in q for q in splunk["queries"])  # the filter is applied
    assert analyse(client, rule=draft(FAIL_RULE, corr))["collection_conversions"] == []


def test_collection_conversions_hold_the_catalog_rules_named(client: Any) -> None:
    corr = correlation(
        "event_count",
        ["bad_password_logon"],
        group_by=["TargetUserName"],
        timespan="5m",
        condition={"gte": 5},
    )
    data = analyse(client, rule=corr, targets=["splunk"])
    stored = Rule.objects.get(rule_id=BAD_PASSWORD).raw_yaml
    assert data["collection_conversions"] == as_dicts(convert_documents([corr, stored]))
    assert not data["collection_conversions"][0]["error"]


@needs_cli
def test_collection_conversion_equals_sigma_convert_for_splunk(client: Any, tmp_path: Path) -> None:
    text = draft(
        FAIL_RULE, correlation("event_count", ["wb_fail"], group_by=["User"], condition={"gte": 3})
    )
    path = tmp_path / "draft.yml"
    path.write_text(text)
    data = analyse(client, rule=text, targets=["splunk"])
    [splunk] = [c for c in data["collection_conversions"] if c["target"] == "splunk"]
    printed = subprocess.run(
        [str(SIGMA), "convert", "-t", "splunk", "--without-pipeline", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert "\n".join(splunk["queries"]) == printed.stdout.strip()
    assert "count" in printed.stdout


# ------------------------------------------------------------------------- hostile input


def test_twenty_correlations_naming_each_other_answer_quickly(client: Any) -> None:
    ids = [str(uuid.UUID(int=1000 + n)) for n in range(MAX_DRAFT_DOCUMENTS)]
    documents = [
        correlation(
            "event_count",
            [i for i in ids if i != own],
            ident=own,
            title=f"C{n}",
            condition={"gte": 1},
        )
        for n, own in enumerate(ids)
    ]
    started = time.perf_counter()
    response = post(client, rule=draft(*documents), events=[fail("u", n) for n in range(50)])
    elapsed = time.perf_counter() - started
    assert response.status_code == 400
    errors = response.json()["parse"]["errors"]
    assert len(errors) == MAX_DRAFT_DOCUMENTS
    assert all("chained on itself" in e["message"] for e in errors)
    assert elapsed < 5, elapsed


class _TooSlow(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code under test
    swallows it."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (the test fails instead of hanging the suite)."""

    def ring(signum: int, frame: Any) -> None:
        raise _TooSlow(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_deep_chain_of_correlations_answers_quickly(client: Any) -> None:
    # One rule and 19 correlations, each counting the rule and every correlation before it: no
    # cycle, and each event starts every chain at once.
    ids = [str(uuid.UUID(int=2000 + n)) for n in range(MAX_DRAFT_DOCUMENTS - 1)]
    documents = [FAIL_RULE] + [
        correlation(
            "event_count",
            [FAIL_ID, *ids[:n]],
            ident=own,
            title=f"C{n}",
            condition={"gte": 1},
            timespan="1h",
        )
        for n, own in enumerate(ids)
    ]
    events = [fail("u", n) for n in range(200)]
    with deadline(10):
        response = post(client, rule=draft(*documents), events=events)
    assert response.status_code in (200, 400), response.content


def test_a_filter_naming_many_catalog_rules_converts_within_the_budget(
    client: Any, tmp_path: Path
) -> None:
    from catalog.services import import_rules
    from catalog.workbench import clear_workbench_cache, run_workbench
    from rules.drafts import MAX_EXTERNAL

    ids = [str(uuid.UUID(int=50_000 + n)) for n in range(MAX_EXTERNAL + 1)]
    texts = {
        f"bulk{n}.yml": draft_rule(
            rule_id, f"bulk{n}", f"Bulk {n}", f"s:\n    CommandLine|contains: 'v{n}'\ncondition: s"
        )
        for n, rule_id in enumerate(ids)
    }
    assert not import_rules([str(write_rule_files(tmp_path / "bulk", texts))]).errors
    clear_workbench_cache()
    # One more than a draft may name: refused at once, naming the limit.
    with deadline(6):
        refused = run_workbench(meta_filter(ids, {"User": "x"}), targets=["splunk"])
    assert not refused.ok
    assert [e.code for e in refused.analysis.errors] == ["too-many-references"]
    # At the limit: parsed, compiled and converted, the collection held to convert_budget
    # (the first target always converts; the others wait for the budget).
    with deadline(8):
        report = run_workbench(
            meta_filter(ids[:MAX_EXTERNAL], {"User": "x"}),
            targets=["splunk"],
            convert_budget=2.0,
        )
    assert report.ok and len(report.catalog_refs) == MAX_EXTERNAL
    assert len(report.collection_conversions) + len(report.collection_skipped) == 4
