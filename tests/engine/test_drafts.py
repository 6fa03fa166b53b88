"""Drafts of several documents (rules.drafts): splitting with draft line numbers, correlations
and filters resolved against the draft and a catalog resolver, the filter backtest and a new
meta filter written from an event."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rules.backtest import load_regression_set
from rules.drafts import (
    MAX_DRAFT_DOCUMENTS,
    filter_backtest,
    filter_from_event,
    is_multi_document,
    read_meta,
    split_draft,
)
from rules.errors import RuleError
from rules.evaluate import Evaluator
from rules.events import Event
from rules.filters import parse_filter
from rules.parse import parse_rule
from rules.similarity import SimilarityIndex
from rules.workbench import analyse_draft
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml, write_regression_sample

RULE_ID = "d1b2c3d4-0000-4000-8000-000000000001"
CATALOG_ID = "d1b2c3d4-0000-4000-8000-0000000000ca"
CORR_1 = "e1b2c3d4-0000-4000-8000-000000000001"
CORR_2 = "e1b2c3d4-0000-4000-8000-000000000002"
WHOAMI = {
    "Channel": "Microsoft-Windows-Sysmon/Operational",
    "EventID": 1,
    "Image": "C:\\Windows\\System32\\whoami.exe",
    "CommandLine": "whoami /all",
}


def rule(rule_id: str = RULE_ID, name: str = "whoami_all", title: str = "Whoami all") -> str:
    return rule_yaml(
        title=title,
        id=rule_id,
        name=name,
        logsource=WINDOWS_PROCESS_CREATION,
        detection="""
        selection:
            Image|endswith: '\\whoami.exe'
        condition: selection
        """,
    )


def correlation(rules: str = "whoami_all", ident: str = CORR_1, timespan: str = "5m") -> str:
    return f"""title: Many whoami
id: {ident}
correlation:
    type: event_count
    rules:
        - {rules}
    group-by:
        - User
    timespan: {timespan}
    condition:
        gte: 3
"""


def a_filter(rules: str = "whoami_all", value: str = "CORP\\\\svc") -> str:
    return f"""title: Not the service account
id: f1b2c3d4-0000-4000-8000-000000000001
logsource:
    product: windows
    category: process_creation
filter:
    rules:
        - {rules}
    selection:
        User: '{value}'
    condition: not selection
"""


def test_split_keeps_each_document_on_its_draft_lines() -> None:
    text = rule() + "---\n" + correlation() + "---\n# a comment\n\n" + a_filter()
    docs = split_draft(text)
    assert [d.kind for d in docs] == ["rule", "correlation", "filter"]
    lines = text.splitlines()
    for doc in docs:
        # The document's first written line is at its line number in the whole draft.
        assert lines[doc.line - 1].strip() == doc.text.splitlines()[doc.line - 1].strip()
        assert lines[doc.line - 1].strip() != ""
    assert docs[1].title == "Many whoami"
    assert lines[docs[1].line - 1] == "title: Many whoami"
    assert lines[docs[2].line - 1] == "# a comment"


def test_a_plain_rule_is_not_split() -> None:
    assert not is_multi_document(rule())
    assert is_multi_document(rule() + "---\n" + rule(RULE_ID[:-1] + "2", "other"))
    assert is_multi_document(correlation())


def test_too_many_documents_are_refused() -> None:
    text = "\n---\n".join(rule(f"{RULE_ID[:-2]}{i:02d}", f"r{i}") for i in range(22))
    with pytest.raises(RuleError, match=str(MAX_DRAFT_DOCUMENTS)):
        split_draft(text)


def test_references_resolve_to_the_draft_first_then_the_catalog() -> None:
    text = rule() + "---\n" + correlation("catalog_rule", CORR_1) + "---\n"
    text += correlation("whoami_all", CORR_2)
    docs = split_draft(text)
    rules = [parse_rule(docs[0].text)]
    asked: list[str] = []

    def catalog(reference: str) -> str | None:
        asked.append(reference)
        return CATALOG_ID if reference == "catalog_rule" else None

    meta = read_meta(docs, rules, catalog)
    assert not meta.problems
    assert [c.rules for c in meta.correlations] == [(CATALOG_ID,), (RULE_ID,)]
    assert meta.external == [CATALOG_ID]
    assert asked == ["catalog_rule"]  # the draft's own name never reaches the catalog


def test_an_unresolved_reference_is_a_problem_at_its_document_line() -> None:
    text = rule() + "---\n" + correlation("nowhere")
    docs = split_draft(text)
    meta = read_meta(docs, [parse_rule(docs[0].text)], lambda ref: None)
    assert meta.correlations == []
    [problem] = meta.problems
    assert problem.code == "unresolved-reference"
    assert problem.line == docs[1].line
    assert "nowhere" in problem.message


def test_a_correlation_chained_on_itself_is_refused() -> None:
    text = rule() + "---\n" + correlation(CORR_2, CORR_1) + "---\n"
    text += correlation(CORR_1, CORR_2)
    docs = split_draft(text)
    meta = read_meta(docs, [parse_rule(docs[0].text)])
    assert meta.correlations == []
    assert {p.line for p in meta.problems} == {docs[1].line, docs[2].line}
    assert all("chained on itself" in p.message for p in meta.problems)


def test_analysis_of_a_filter_only_draft_is_ok_and_names_the_catalog_rule() -> None:
    analysis = analyse_draft(a_filter(CATALOG_ID), SimilarityIndex(), resolve=lambda ref: ref)
    assert analysis.ok and analysis.rule is None
    assert analysis.meta is not None and analysis.meta.external == [CATALOG_ID]
    assert analysis.evaluator is not None


def test_analysis_reports_rule_problems_at_draft_lines() -> None:
    text = correlation() + "---\n" + rule().replace("Image|endswith", "Image|endswit")
    analysis = analyse_draft(text, SimilarityIndex())
    assert not analysis.ok
    lines = text.splitlines()
    problem = analysis.errors[0]
    assert "endswit" in lines[problem.line - 1]


def test_two_rules_with_one_id_are_a_problem() -> None:
    analysis = analyse_draft(rule() + "---\n" + rule(name="again"), SimilarityIndex())
    assert [e.code for e in analysis.errors] == ["duplicate-id"]


def test_an_empty_multi_document_draft_is_a_problem_not_a_crash() -> None:
    analysis = analyse_draft("---\n---\n", SimilarityIndex())
    assert not analysis.ok and analysis.errors


def test_the_backtest_of_a_rule_applies_the_drafts_filters(tmp_path: Path) -> None:
    svc = {**WHOAMI, "User": "CORP\\svc"}
    path = write_regression_sample(tmp_path, "whoami", RULE_ID, "Whoami all", [svc, WHOAMI])
    text = rule().replace("name: whoami_all", f"name: whoami_all\nregression_tests_path: {path}")
    samples = load_regression_set(tmp_path)
    alone = analyse_draft(text, SimilarityIndex(), regression=samples)
    assert alone.backtest is not None and alone.backtest.own[0].matched == 2
    both = analyse_draft(text + "---\n" + a_filter(), SimilarityIndex(), regression=samples)
    assert both.backtest is not None and both.backtest.own[0].matched == 1


def test_filter_backtest_counts_suppressed_sample_events(tmp_path: Path) -> None:
    svc = {**WHOAMI, "User": "CORP\\svc"}
    write_regression_sample(tmp_path, "whoami", RULE_ID, "Whoami all", [svc, WHOAMI, svc])
    samples = load_regression_set(tmp_path)
    parsed = parse_rule(rule())
    compiled = Evaluator([parsed], prefilter=False).rule(RULE_ID)
    assert compiled is not None
    narrow = parse_filter(yaml.safe_load(a_filter(RULE_ID)))
    narrow = narrow.__class__(**{**_fields(narrow), "rules": (RULE_ID,)})
    result = filter_backtest([narrow], {RULE_ID: (parsed, compiled)}, samples)
    [check] = result.checks
    assert (check.matched, check.kept, result.suppressed) == (3, 1, 2)
    none = filter_backtest([narrow], {}, samples)
    assert none.checks == ()


def _fields(flt: object) -> dict[str, object]:
    return {name: getattr(flt, name) for name in flt.__slots__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    ["CORP\\svc", "C:\\Program Files\\Tool*\\run?.exe", "has: colon # and hash", "x" * 300],
)
def test_a_filter_from_an_event_suppresses_exactly_that_value(value: str) -> None:
    parsed = parse_rule(rule())
    text = filter_from_event(parsed, "User", value)
    flt = parse_filter(yaml.safe_load(text))
    assert flt.references == (RULE_ID,)
    assert flt.logsource == ("windows", "process_creation", "")
    assert flt.suppresses(Event({**WHOAMI, "User": value}))
    assert not flt.suppresses(Event({**WHOAMI, "User": value + "x"}))
    assert not flt.suppresses(Event({**WHOAMI, "User": "someone else"}))
    # The draft the workbench opens is the filter alone, and it analyses cleanly.
    analysis = analyse_draft(text, SimilarityIndex(), resolve=lambda ref: ref)
    assert analysis.ok, analysis.errors


def test_a_draft_with_windows_line_endings_splits_the_same() -> None:
    text = rule() + "---\n" + correlation() + "--- # end\n" + a_filter()
    crlf = split_draft(text.replace("\n", "\r\n"))
    assert [(d.kind, d.line, d.title) for d in crlf] == [
        (d.kind, d.line, d.title) for d in split_draft(text)
    ]
    assert [d.kind for d in crlf] == ["rule", "correlation", "filter"]
