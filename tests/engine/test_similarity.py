"""Indicator-identity similarity: Jaccard, containment, duplicates, corpus counts."""

from __future__ import annotations

import pytest

from rules.model import ParsedRule
from rules.parse import parse_rule
from rules.similarity import SimilarityIndex, identities_of, jaccard
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml

ID_A = "11111111-1111-4111-8111-111111111111"
ID_B = "22222222-2222-4222-8222-222222222222"
ID_C = "33333333-3333-4333-8333-333333333333"
ID_DRAFT = "99999999-9999-4999-8999-999999999999"


def _rule(
    rule_id: str, detection: str, title: str = "T", logsource: dict[str, str] | None = None
) -> ParsedRule:
    text = rule_yaml(
        title=title,
        id=rule_id,
        logsource=logsource or WINDOWS_PROCESS_CREATION,
        detection=detection,
    )
    return parse_rule(text, rule_id)


A = """
sel:
    Image|endswith: '\\whoami.exe'
    CommandLine|contains:
        - '/all'
        - '/priv'
filter:
    User: SYSTEM
condition: sel and not filter
"""
B = """
sel:
    Image|endswith: '\\WHOAMI.EXE'
condition: sel
"""
C = """
sel:
    Image|endswith: '\\net.exe'
condition: sel
"""


@pytest.fixture
def index() -> SimilarityIndex:
    return SimilarityIndex.from_parsed(
        [_rule(ID_A, A, "Whoami all"), _rule(ID_B, B, "Whoami"), _rule(ID_C, C, "Net")]
    )


def test_corpus_count_counts_rules_per_identity_casefolded(index: SimilarityIndex) -> None:
    assert index.corpus_count(("Image", "endswith", "\\whoami.exe")) == 2
    assert index.corpus_count(("CommandLine", "contains", "/all")) == 1
    # Exclusions are not indicators.
    assert index.corpus_count(("User", "equals", "system")) == 0
    assert index.rules_with(("Image", "endswith", "\\whoami.exe")) == {ID_A, ID_B}


def test_a_copy_is_first_with_score_one_and_flagged_duplicate(index: SimilarityIndex) -> None:
    draft = _rule(ID_DRAFT, A)
    found = index.similar(identities_of(draft), logsource="windows/process_creation")
    assert [s.id for s in found] == [ID_A, ID_B]
    assert found[0].score == 1.0 and found[0].duplicate
    assert found[0].contains_all and found[0].contained_in
    assert len(found[0].shared) == 3


def test_containment_and_jaccard(index: SimilarityIndex) -> None:
    draft = _rule(ID_DRAFT, A)
    whoami = index.similar(identities_of(draft))[1]
    assert whoami.id == ID_B
    assert whoami.score == pytest.approx(1 / 3)
    assert whoami.contains_all and not whoami.contained_in
    assert not whoami.duplicate  # no logsource given, and the score is low


def test_a_different_logsource_is_not_a_duplicate(index: SimilarityIndex) -> None:
    draft = _rule(ID_DRAFT, A)
    found = index.similar(identities_of(draft), logsource="linux/process_creation")
    assert found[0].score == 1.0 and not found[0].duplicate


def test_similar_to_rule_excludes_itself_and_unknown_is_empty(index: SimilarityIndex) -> None:
    assert [s.id for s in index.similar_to_rule(ID_B)] == [ID_A]
    assert index.similar_to_rule("nope") == []


def test_remove_and_replace_keep_postings_consistent(index: SimilarityIndex) -> None:
    index.remove(ID_B)
    assert index.corpus_count(("Image", "endswith", "\\whoami.exe")) == 1
    index.add(SimilarityIndex.from_parsed([_rule(ID_A, C)]).rules[ID_A])
    assert index.corpus_count(("Image", "endswith", "\\whoami.exe")) == 0
    assert index.corpus_count(("Image", "endswith", "\\net.exe")) == 2


def test_from_rows_matches_from_parsed() -> None:
    rules = [_rule(ID_A, A, "Whoami all"), _rule(ID_B, B, "Whoami")]
    parsed = SimilarityIndex.from_parsed(rules)
    rows = SimilarityIndex.from_rows(
        {r.id: (r.title, r.logsource.label) for r in rules},
        [(r.id, *i.identity) for r in rules for i in r.indicators],
    )
    assert rows.rules == parsed.rules and rows.postings == parsed.postings


def test_jaccard_of_empty_sets_is_zero() -> None:
    assert jaccard(frozenset(), frozenset()) == 0.0
    assert SimilarityIndex().similar([]) == []
