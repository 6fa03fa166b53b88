"""Acceptance checks on the full SigmaHQ corpus (skipped when ../shared is absent).

The corpus is imported once for this module (rolled back afterwards). Expected numbers come
from parsing the corpus files again with the engine, independently of the catalog tables.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog.models import Rule
from catalog.services import import_rules
from rules import attack
from rules.parse import parse_rule
from tests.api.layer_schema import check_layer
from tests.conftest import corpus_dirs

pytestmark = pytest.mark.corpus

SEED = int(os.environ.get("API_CORPUS_SEED", "20260419"))
SAMPLE = 80
_TECHNIQUE_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$")


@dataclass
class ParsedCorpus:
    """What the engine finds in the corpus files, keyed the way the API answers."""

    rule_ids: list[str] = field(default_factory=list)
    # (field, kind, value_key) -> {rule id: value as that rule wrote it}
    indicators: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    techniques: dict[str, Counter[str]] = field(default_factory=dict)  # level -> counts


@pytest.fixture(scope="module")
def parsed_corpus(corpus: Path) -> ParsedCorpus:
    parsed = ParsedCorpus()
    seen: set[str] = set()
    for folder in corpus_dirs():
        for path in sorted(folder.rglob("*.yml")):
            rule = parse_rule(path.read_bytes(), str(path))
            if rule.id in seen:
                continue  # the importer keeps the first file of a duplicated id
            seen.add(rule.id)
            parsed.rule_ids.append(rule.id)
            for item in rule.indicators:
                parsed.indicators.setdefault(item.identity, {}).setdefault(rule.id, item.value)
            techniques = {
                m.group(1).upper() for t in rule.tags if (m := _TECHNIQUE_TAG.match(t.name.lower()))
            }
            for level in ("", rule.level):
                parsed.techniques.setdefault(level, Counter()).update(techniques)
    return parsed


@pytest.fixture(scope="module")
def corpus_catalog(corpus: Path, django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        report = import_rules([str(p) for p in corpus_dirs()], trigger="test")
        assert report.failed == 0, report.errors[:3]
    yield
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


@pytest.fixture
def full(corpus_catalog: None, db: None) -> None:
    """The full corpus, per test."""


def sample_identities(parsed: ParsedCorpus) -> list[tuple[str, str, str]]:
    """Random identities, plus some of every awkward sort: keyword, regex, cased, shared."""
    rng = random.Random(SEED)
    keys = sorted(parsed.indicators)
    picked = rng.sample(keys, SAMPLE)
    for wanted in (
        lambda k: k[0] == "",
        lambda k: k[1].startswith("re"),
        lambda k: "cased" in k[1],
        lambda k: len(parsed.indicators[k]) > 20,
        lambda k: k[2] != k[2].strip(),
    ):
        matching = [k for k in keys if wanted(k)]
        if matching:
            picked.append(rng.choice(matching))
    return picked


@pytest.mark.usefixtures("full")
def test_indicator_lookup_counts_agree_with_the_corpus(client: Any, parsed_corpus: Any) -> None:
    assert Rule.objects.count() == len(parsed_corpus.rule_ids)
    for key in sample_identities(parsed_corpus):
        field_name, kind, _ = key
        users = parsed_corpus.indicators[key]
        value = next(iter(users.values()))  # as one rule wrote it
        response = client.get(
            "/api/indicators/", {"field": field_name, "kind": kind, "value": value}
        )
        assert response.status_code == 200, (key, response.content)
        items = response.json()["results"]
        assert len(items) == 1, (SEED, key)
        assert items[0]["corpus"] == len(users), (SEED, key)
        listed = client.get(items[0]["rules"], {"limit": 1000}).json()
        assert {r["id"] for r in listed["results"]} == set(users), (SEED, key)


@pytest.mark.usefixtures("full")
def test_lookup_casefolds_only_where_the_importer_did(client: Any, parsed_corpus: Any) -> None:
    for key in sample_identities(parsed_corpus)[:30]:
        field_name, kind, value_key = key
        value = next(iter(parsed_corpus.indicators[key].values()))
        if value.swapcase() == value:
            continue
        items = client.get(
            "/api/indicators/", {"field": field_name, "kind": kind, "value": value.swapcase()}
        ).json()["results"]
        keeps_case = kind.split("|")[0] == "re" or "cased" in kind.split("|")
        if keeps_case:
            assert all(i["value"] != value for i in items), key
        else:
            assert len(items) == 1 and items[0]["corpus"] == len(parsed_corpus.indicators[key])


def expected_layer(parsed: ParsedCorpus, level: str) -> dict[str, int]:
    counts = parsed.techniques.get(level, Counter())
    return {
        tid: n
        for tid, n in counts.items()
        if (found := attack.technique(tid)) is not None and found.status == "current"
    }


@pytest.mark.usefixtures("full")
@pytest.mark.parametrize("level", ["", "critical"])
def test_layer_is_valid_and_scores_are_rule_counts(
    client: Any, parsed_corpus: Any, level: str
) -> None:
    response = client.get("/api/attack/layer.json", {"level": level} if level else {})
    assert response.status_code == 200
    layer = json.loads(response.content)
    check_layer(layer)
    scores = {t["techniqueID"]: t["score"] for t in layer["techniques"]}
    assert len(scores) == len(layer["techniques"])
    assert scores == expected_layer(parsed_corpus, level)
    assert layer["gradient"]["maxValue"] == max(scores.values())


@pytest.mark.usefixtures("full")
def test_attack_summary_matches_the_layer(client: Any) -> None:
    summary = client.get("/api/attack/").json()
    layer = json.loads(client.get("/api/attack/layer.json").content)
    known = {t["id"]: t["rules"] for t in summary["techniques"] if t["known"]}
    assert known == {t["techniqueID"]: t["score"] for t in layer["techniques"]}


@pytest.mark.usefixtures("full")
def test_full_export_streams_every_rule_in_few_queries(client: Any) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/rules/export.ndjson")
        lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    assert lines == Rule.objects.count()
    # A few per 500-rule chunk, not a few per rule.
    assert len(captured) < 4 * (lines // 500 + 2)


@pytest.mark.usefixtures("full")
def test_rule_pages_of_a_sample(client: Any, parsed_corpus: Any) -> None:
    rng = random.Random(SEED)
    for rule_id in rng.sample(parsed_corpus.rule_ids, 25):
        body = client.get(f"/api/rules/{rule_id}/").json()
        assert body["id"] == rule_id
        for item in body["indicators"]:
            assert item["corpus"] >= 1
