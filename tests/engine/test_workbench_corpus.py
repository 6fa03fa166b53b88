"""The workbench over the SigmaHQ corpus: every rule copied with a new id finds its original
first with score 1.0 (flagged a duplicate), with corpus counts equal to an independent count;
every regression sample is read, and a copy of each tested rule fires on its own sample."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from rules.backtest import RegressionSet, load_regression_set, regression_path
from rules.model import ParsedRule
from rules.parse import parse_rule
from rules.similarity import SimilarityIndex
from rules.workbench import analyse_draft

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def parsed(corpus_rule_files: list[Path]) -> list[ParsedRule]:
    return [parse_rule(path.read_bytes(), str(path)) for path in corpus_rule_files]


@pytest.fixture(scope="module")
def index(parsed: list[ParsedRule]) -> SimilarityIndex:
    return SimilarityIndex.from_parsed(parsed)


@pytest.fixture(scope="module")
def regression(corpus: Path) -> RegressionSet:
    return load_regression_set(corpus)


def copy_of(rule: ParsedRule) -> str:
    return rule.raw_yaml.replace(rule.id, str(uuid.uuid4()), 1)


def test_corpus_counts_equal_an_independent_count(
    parsed: list[ParsedRule], index: SimilarityIndex
) -> None:
    counted: Counter[tuple[str, str, str]] = Counter()
    for rule in parsed:
        counted.update({i.identity for i in rule.indicators})
    assert {identity: index.corpus_count(identity) for identity in counted} == dict(counted)


def test_every_copy_finds_its_original_first(
    parsed: list[ParsedRule], index: SimilarityIndex
) -> None:
    misses = []
    for rule in parsed:
        if not rule.indicators:
            continue
        first = analyse_draft(copy_of(rule), index).similar[0]
        if first.id != rule.id or first.score != 1.0:
            misses.append(f"{rule.source_path}: first is {first.title} ({first.score:.2f})")
        elif not first.duplicate:
            misses.append(f"{rule.source_path}: not flagged")
    assert not misses, misses[:10]


def test_every_regression_sample_is_read(regression: RegressionSet) -> None:
    assert len(regression.samples) >= 90 and not regression.errors
    assert all(sample.events for sample in regression.samples)


def test_copies_of_tested_rules_fire_on_their_own_samples(
    parsed: list[ParsedRule], index: SimilarityIndex, regression: RegressionSet
) -> None:
    tested = [r for r in parsed if regression_path(r) and regression.by_path(regression_path(r))]
    assert len(tested) >= 90
    silent = []
    for rule in tested:
        backtest = analyse_draft(copy_of(rule), index, regression=regression).backtest
        assert backtest is not None
        if not backtest.fires_on_own:
            silent.append(rule.source_path)
    assert not silent, silent
