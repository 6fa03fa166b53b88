"""Every conversion is independent of the ones before it: converting rule B after rule A with
one Converter gives what converting B alone gives, for every target (Loki's label counter,
Sumo Logic's rule list, Cortex XDR's self-mutating pipeline message)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rules import convert as conv
from tests.conversion.rules_fixtures import (
    FIELDREF_YAML,
    MULTI_YAML,
    PLACEHOLDER_YAML,
    PROCESS_YAML,
    SEED_YAML,
)

FIXTURES = [FIELDREF_YAML, SEED_YAML, PROCESS_YAML, MULTI_YAML, PLACEHOLDER_YAML, FIELDREF_YAML]


def comparable(result: conv.ConversionResult) -> tuple[object, ...]:
    return (result.query, result.error, result.problem, result.fixes, list(result.outputs))


def assert_independent(target: str, texts: list[str]) -> None:
    shared = conv.Converter(target)
    for text in texts:
        after_others = shared.convert(text)
        alone = conv.Converter(target).convert(text)
        assert comparable(after_others) == comparable(alone)


@pytest.mark.parametrize("target", list(conv.TARGETS))
def test_rule_b_after_rule_a_equals_rule_b_alone(target: str) -> None:
    assert_independent(target, FIXTURES)


def test_loki_labels_restart_at_zero_for_every_rule() -> None:
    converter = conv.Converter("loki")
    first, second = converter.convert(FIELDREF_YAML), converter.convert(FIELDREF_YAML)
    assert first.ok and "match_0=" in first.query and "match_1" not in second.query
    assert second.query == first.query


def test_cortex_error_message_does_not_grow() -> None:
    text = PROCESS_YAML.replace("CommandLine|contains", "OriginalFileName|contains")
    converter = conv.Converter("cortex_xdr")
    first, second = converter.convert(text), converter.convert(text)
    if not first.ok:
        assert first.error == second.error
        assert (first.error or "").count("Invalid SigmaDetectionItem field name") <= 1


@pytest.mark.corpus
@pytest.mark.parametrize("target", list(conv.TARGETS))
def test_corpus_sample_is_order_independent(target: str, corpus_rule_files: list[Path]) -> None:
    sample = random.Random(f"order-{target}").sample(corpus_rule_files, 4)
    assert_independent(target, [p.read_text(encoding="utf-8") for p in sample])
