"""Conversion over the SigmaHQ corpus (../shared): the seed rule, one full-corpus target and a
sample for every target. Full-corpus runs of every target are for bench/bench_convert.py and
``manage.py convert_rules --all-targets``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rules import convert as conv
from tests.conversion.rules_fixtures import SEED_ID

pytestmark = pytest.mark.corpus

# Targets with no log source restrictions of their own (the first ten of the catalog).
BROAD = {
    "splunk", "splunk_spl2", "lucene", "esql", "eql", "elastalert", "opensearch_lucene",
    "open_search_ppl", "kusto", "loki",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus_texts(corpus_rule_files: list[Path]) -> list[tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for path in corpus_rule_files]


def test_seed_rule_from_the_corpus(corpus: Path) -> None:
    folder = corpus / "rules" / "windows" / "powershell" / "powershell_script"
    found = [p for p in folder.glob("*.yml") if f"id: {SEED_ID}" in p.read_text(encoding="utf-8")]
    assert len(found) == 1
    result = conv.convert(found[0].read_text(encoding="utf-8"), "splunk", "splunk_windows")
    assert result.ok, result.error
    assert "Microsoft-Windows-PowerShell/Operational" in result.query
    assert "EventCode=4104" in result.query
    for value in ("Test-NetConnection", "-ComputerName ", "-port "):
        assert f'ScriptBlockText="*{value}*"' in result.query
    assert 'NOT (ScriptBlockText IN ("* 443 *", "* 80 *"))' in result.query


def test_full_corpus_splunk(corpus_texts: list[tuple[Path, str]]) -> None:
    assert len(corpus_texts) >= 3780
    converter = conv.Converter("splunk", "splunk_windows")
    results = list(converter.convert_many(text for _, text in corpus_texts))
    assert len(results) == len(corpus_texts)
    failures = [r for r in results if not r.ok]
    assert all(r.error and r.error_kind for r in failures)
    assert all(r.query for r in results if r.ok)
    # pySigma 1.5.1 + backend 2.1.0: 3,752 of 3,780; the rest are |expand placeholders and
    # OR-ed field references.
    assert len(results) - len(failures) >= 3700
    assert set(Counter(r.error_kind for r in failures)) <= {"placeholder", "unsupported"}


@pytest.mark.parametrize("target", list(conv.TARGETS))
def test_corpus_sample_every_target(target: str, corpus_texts: list[tuple[Path, str]]) -> None:
    sample = corpus_texts[:: 25 if target in BROAD else 100]  # CI time: the newer targets
    results = list(conv.Converter(target).convert_many(text for _, text in sample))
    assert len(results) == len(sample)
    assert all(r.ok or (r.error and r.error_kind) for r in results)
    # Backends that map log sources themselves (Cortex XDR, SentinelOne, Signals, SecOps)
    # refuse the log sources they do not know; every target converts a good share.
    assert sum(r.ok for r in results) >= len(sample) // (2 if target in BROAD else 8)
    assert all(r.status != "invalid" or r.problem for r in results)
