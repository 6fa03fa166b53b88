"""The SigmaHQ corpus: every rule parses, the seed rule is exact, and indicators agree with an
independent implementation of the definition (tests/independent.py) for every rule."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from rules.model import ParsedRule
from rules.parse import parse_rule
from tests.independent import Expected, expected_from_files, rule_counts

pytestmark = pytest.mark.corpus

CORPUS_RULE_COUNT = 3780
SEED_ID = "adf876b3-f1f8-4aa9-a4e4-a64106feec06"


@pytest.fixture(scope="module")
def parsed_corpus(corpus_rule_files: list[Path]) -> dict[Path, ParsedRule]:
    return {path: parse_rule(path.read_bytes(), str(path)) for path in corpus_rule_files}


@pytest.fixture(scope="module")
def independent(corpus_rule_files: list[Path]) -> dict[Path, Expected]:
    return expected_from_files(corpus_rule_files)


def test_every_corpus_rule_parses(corpus_rule_files):
    assert len(corpus_rule_files) == CORPUS_RULE_COUNT
    failures = []
    for path in corpus_rule_files:
        try:
            parse_rule(path.read_bytes(), str(path))
        except Exception as exc:  # any failure is reported below
            failures.append(f"{path}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures[:20])


def test_corpus_rule_ids_are_unique(parsed_corpus):
    counts = Counter(rule.id for rule in parsed_corpus.values())
    assert [rule_id for rule_id, n in counts.items() if n > 1] == []


def test_seed_rule_stages_exclusions_and_indicators(parsed_corpus):
    (rule,) = [r for r in parsed_corpus.values() if r.id == SEED_ID]
    assert rule.title == "Testing Usage of Uncommonly Used Port"
    assert [(s.group, s.index, s.text, s.identifiers, s.negated) for s in rule.stages] == [
        (0, 0, "selection and not filter", ["selection", "filter"], False),
        (0, 1, "selection", ["selection"], False),
        (0, 2, "not filter", ["filter"], True),
    ]
    assert yaml.safe_load(rule.stages[1].yaml) == {
        "selection": {
            "ScriptBlockText|contains|all": ["Test-NetConnection", "-ComputerName ", "-port "]
        }
    }
    assert yaml.safe_load(rule.stages[2].yaml) == {
        "filter": {"ScriptBlockText|contains": [" 443 ", " 80 "]}
    }
    assert [(e.field, e.kind, e.value) for e in rule.exclusions] == [
        ("ScriptBlockText", "contains", " 443 "),
        ("ScriptBlockText", "contains", " 80 "),
    ]
    assert [(i.field, i.kind, i.value) for i in rule.indicators] == [
        ("ScriptBlockText", "contains", "Test-NetConnection"),
        ("ScriptBlockText", "contains", "-ComputerName "),
        ("ScriptBlockText", "contains", "-port "),
    ]
    assert [i.identity for i in rule.indicators] == [
        ("ScriptBlockText", "contains", "test-netconnection"),
        ("ScriptBlockText", "contains", "-computername "),
        ("ScriptBlockText", "contains", "-port "),
    ]


def test_independent_implementation_agrees_on_the_seed_rule(independent):
    (expected,) = [e for e in independent.values() if e.rule_id == SEED_ID]
    assert expected.indicator_rows == {
        ("ScriptBlockText", "contains", "Test-NetConnection"),
        ("ScriptBlockText", "contains", "-ComputerName "),
        ("ScriptBlockText", "contains", "-port "),
    }
    assert expected.exclusion_rows == {
        ("ScriptBlockText", "contains", " 443 "),
        ("ScriptBlockText", "contains", " 80 "),
    }


def _disagreements(
    parsed_corpus: dict[Path, ParsedRule], independent: dict[Path, Expected], attribute: str
) -> list[str]:
    rows_attribute = f"{attribute[:-1]}_rows"
    found = []
    for path, rule in parsed_corpus.items():
        expected = independent[path]
        engine_rows = {(i.field, i.kind, i.value) for i in getattr(rule, attribute)}
        engine_ids = {i.identity for i in getattr(rule, attribute)}
        wanted_rows = getattr(expected, rows_attribute)
        if engine_ids != getattr(expected, attribute) or engine_rows != wanted_rows:
            found.append(
                f"{path}: engine only {sorted(engine_rows - wanted_rows)[:5]}, "
                f"definition only {sorted(wanted_rows - engine_rows)[:5]}"
            )
    return found


def test_every_rule_has_the_indicators_the_definition_gives(parsed_corpus, independent):
    assert set(parsed_corpus) == set(independent)
    for path, rule in parsed_corpus.items():
        assert rule.id == independent[path].rule_id, path
    found = _disagreements(parsed_corpus, independent, "indicators")
    if found:
        print("\n".join(found[:20]))
    assert not found, f"{len(found)} rules disagree; first: {found[:3]}"


def test_every_rule_has_the_exclusions_the_definition_gives(parsed_corpus, independent):
    found = _disagreements(parsed_corpus, independent, "exclusions")
    if found:
        print("\n".join(found[:20]))
    assert not found, f"{len(found)} rules disagree; first: {found[:3]}"


def test_corpus_wide_indicator_counts_agree_with_the_definition(parsed_corpus, independent):
    engine: Counter[tuple[str, str, str]] = Counter()
    for rule in parsed_corpus.values():
        engine.update({i.identity for i in rule.indicators})
    expected = rule_counts(independent.values())
    differing = sorted(
        (key, engine.get(key, 0), expected.get(key, 0))
        for key in engine.keys() | expected.keys()
        if engine.get(key, 0) != expected.get(key, 0)
    )
    if differing:
        print("\n".join(f"{key}: engine {a}, definition {b}" for key, a, b in differing[:20]))
    assert not differing
    assert len(engine) > 10_000
    # Sanity: the most shared indicators are shared by many rules.
    assert engine.most_common(1)[0][1] > 50


def test_every_stage_shows_its_conjunct_and_the_yaml_of_its_identifiers(parsed_corpus):
    problems = []
    for path, rule in parsed_corpus.items():
        groups = sorted({s.group for s in rule.stages})
        if groups != list(range(len(rule.conditions))):
            problems.append(f"{path}: groups {groups}")
        for stage in rule.stages:
            condition = rule.conditions[stage.group]
            if stage.index == 0:
                if stage.text != condition or stage.yaml:
                    problems.append(f"{path}: stage 0 {stage.text!r}")
                continue
            if stage.text not in condition:
                problems.append(f"{path}: stage text {stage.text!r} not in {condition!r}")
            wanted = {name: rule.detection[name] for name in stage.identifiers}
            if yaml.safe_load(stage.yaml) != wanted:
                problems.append(f"{path}: stage {stage.index} yaml {stage.yaml[:80]!r}")
            if stage.negated != stage.text.startswith("not "):
                problems.append(f"{path}: stage {stage.text!r} negated={stage.negated}")
    assert not problems, "\n".join(problems[:20])
