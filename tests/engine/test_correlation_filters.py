"""Meta filters in the engine: a filter suppresses exactly the events its selection covers,
on the rules it names (or every rule of its logsource), and nothing else; the evaluator's
matches then feed correlations without the suppressed ones."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rules.correlate import CorrelationError, correlate, parse_correlation, resolve_references
from rules.evaluate import Evaluator
from rules.events import Event
from rules.filters import FilterIndex, parse_filter, resolve_filter
from rules.parse import parse_rule
from tests.factories import rule_yaml

PROC = "5a2f9a0e-4c1e-4f1a-9a51-6f0f3a1d0c01"
OTHER = "5a2f9a0e-4c1e-4f1a-9a51-6f0f3a1d0c02"
LINUX = "5a2f9a0e-4c1e-4f1a-9a51-6f0f3a1d0c03"
FILTER = "5a2f9a0e-4c1e-4f1a-9a51-6f0f3a1d0c10"
CORR = "5a2f9a0e-4c1e-4f1a-9a51-6f0f3a1d0c20"
WINDOWS_PROC = {"product": "windows", "category": "process_creation"}


def rule(ident: str, name: str, logsource: dict[str, str], image: str) -> Any:
    text = rule_yaml(
        title=f"Rule {name}",
        id=ident,
        name=name,
        logsource=logsource,
        detection=f"sel:\n    Image|endswith: '{image}'\ncondition: sel",
    )
    return parse_rule(text)


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(
        [
            rule(PROC, "proc_rule", WINDOWS_PROC, "\\tool.exe"),
            rule(OTHER, "other_rule", WINDOWS_PROC, "\\tool.exe"),
            rule(
                LINUX, "linux_rule", {"product": "linux", "category": "process_creation"}, "/tool"
            ),
        ]
    )


def a_filter(rules: str = "[proc_rule]", logsource: str = "product: windows") -> Any:
    text = f"""
title: Ignore the build account
id: {FILTER}
logsource:
    {logsource}
filter:
    rules: {rules}
    selection:
        User|endswith: '\\svc_build'
        ParentImage|endswith: '\\msbuild.exe'
    condition: not selection
"""
    names = {"proc_rule": PROC, "other_rule": OTHER, "linux_rule": LINUX}
    return resolve_filter(parse_filter(yaml.safe_load(text)), names.get)


def event(user: str, parent: str, t: int = 0) -> Event:
    return Event(
        {
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "EventID": 1,
            "Provider_Name": "Microsoft-Windows-Sysmon",
            "Image": "C:\\bin\\tool.exe",
            "User": user,
            "ParentImage": parent,
            "UtcTime": f"2026-12-01 10:00:{t:02d}.000",
        }
    )


COVERED = event("CORP\\svc_build", "C:\\VS\\msbuild.exe")
HALF = [
    event("CORP\\svc_build", "C:\\Windows\\explorer.exe"),
    event("CORP\\alice", "C:\\VS\\msbuild.exe"),
]


def suppressed(index: FilterIndex, evaluator: Evaluator, ev: Event) -> dict[str, list[str]]:
    out = {}
    for rule_id in evaluator.match_ids(ev):
        compiled = evaluator.rule(rule_id)
        assert compiled is not None
        out[rule_id] = [f.id for f in index.suppressing(rule_id, compiled.logsource, ev)]
    return out


def test_filter_suppresses_the_covered_event_on_the_named_rule_only(evaluator: Evaluator) -> None:
    index = FilterIndex([a_filter()])
    assert suppressed(index, evaluator, COVERED) == {PROC: [FILTER], OTHER: []}


@pytest.mark.parametrize("ev", HALF, ids=["user-only", "parent-only"])
def test_filter_leaves_events_its_selection_does_not_cover(evaluator: Evaluator, ev: Event) -> None:
    assert suppressed(FilterIndex([a_filter()]), evaluator, ev) == {PROC: [], OTHER: []}


def test_any_rule_filter_applies_to_every_rule_of_its_logsource(evaluator: Evaluator) -> None:
    index = FilterIndex([a_filter(rules="any")])
    assert suppressed(index, evaluator, COVERED) == {PROC: [FILTER], OTHER: [FILTER]}
    assert index.for_rule(LINUX, ("linux", "process_creation", "")) == []


def test_filter_logsource_must_cover_the_rule(evaluator: Evaluator) -> None:
    index = FilterIndex([a_filter(logsource="product: linux")])
    assert suppressed(index, evaluator, COVERED) == {PROC: [], OTHER: []}


def test_filter_references_must_resolve() -> None:
    with pytest.raises(CorrelationError, match="not in the catalog: nothing_like_it"):
        a_filter(rules="[nothing_like_it]")


def test_suppressed_matches_do_not_feed_correlations(evaluator: Evaluator) -> None:
    correlation = resolve_references(
        parse_correlation(
            yaml.safe_load(
                f"""
title: tool three times
id: {CORR}
correlation:
    type: event_count
    rules: [proc_rule]
    timespan: 1m
    condition: {{gte: 3}}
"""
            )
        ),
        {"proc_rule": PROC}.get,
    )
    index = FilterIndex([a_filter()])
    events = [COVERED, *HALF, event("CORP\\bob", "x", 30)]
    matched = []
    for ev in events:
        ids = [
            rid
            for rid in evaluator.match_ids(ev)
            if not index.suppressing(rid, evaluator.rule(rid).logsource, ev)  # type: ignore[union-attr]
        ]
        matched.append(ids)
    assert [PROC in ids for ids in matched] == [False, True, True, True]
    [match] = correlate([correlation], events, matched).matches
    assert match.events == [1, 2, 3]
    without_filter = correlate([correlation], events, [evaluator.match_ids(e) for e in events])
    assert without_filter.matches[0].events == [0, 1, 2]
