"""Issue 14's acceptance checks on the full SigmaHQ corpus, imported once for the module:
stored findings equal pySigma's own run of the same validators over the same files, every rule
with shipped regression data is tested with the engine's own outcome, and a PowerShell 4104
profile fires exactly the ps_script rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.cache import cache
from sigma.collection import SigmaCollection
from sigma.validation import SigmaValidator
from sigma.validators.core import validators as core_validators
from sigma.validators.sigmahq import validators as sigmahq_validators

from catalog.models import Rule, RuleFinding, RuleRegression
from catalog.queries.telemetry import clear_telemetry_cache
from rules.evaluate import Evaluator
from rules.events import load_events_file
from rules.parse import parse_rule
from rules.validate import validator_names
from tests import factories
from tests.conftest import corpus_dirs

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def corpus_catalog(django_db_setup: Any, django_db_blocker: Any, corpus: Path) -> Iterator[Any]:
    with factories.imported_for_module(django_db_blocker, corpus_dirs()) as report:
        yield report


@pytest.fixture(autouse=True)
def _site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    factories.isolate_site(settings, monkeypatch)
    cache.clear()
    clear_telemetry_cache()


def test_stored_findings_equal_pysigmas_own_run(
    corpus_catalog: Any, db: None, corpus_rule_files: list[Path], client: Any
) -> None:
    assert Rule.objects.count() == len(corpus_rule_files)
    stored = Counter(RuleFinding.objects.values_list("validator", flat=True))
    classes = {**core_validators, **sigmahq_validators}
    collection = list(SigmaCollection.load_ruleset([str(p) for p in corpus_rule_files]))
    theirs: Counter[str] = Counter()
    for name in validator_names():
        # One validator per run: every issue of the run is that validator's.
        found = SigmaValidator({classes[name]}).validate_rules(iter(collection))
        if found:
            theirs[name] = len(found)
    assert stored == theirs
    page = client.get("/quality/").content.decode()
    assert f"({sum(stored.values()):,} findings in all)" in page


def test_every_rule_with_regression_data_is_tested_as_the_engine_says(
    corpus_catalog: Any, db: None, corpus: Path, client: Any
) -> None:
    shipped = {
        yaml.safe_load(p.read_text())["rule_metadata"][0]["id"]
        for p in (corpus / "regression_data").rglob("info.yml")
    }
    runs = {run.rule.rule_id: run for run in RuleRegression.objects.select_related("rule")}
    assert {rule_id for rule_id, run in runs.items() if run.tested} == shipped
    for rule_id in sorted(shipped):
        run = runs[rule_id]
        rule = Rule.objects.get(rule_id=rule_id)
        parsed = parse_rule(rule.raw_yaml.encode(), rule.source_path)
        evaluator = Evaluator([parsed])
        events = [e for t in run.tests for e in load_events_file(str(corpus / t["path"]))]
        assert run.samples == len(events)
        assert run.matches == sum(rule_id in evaluator.match_ids(e) for e in events)
        page = client.get(f"/rules/{rule_id}/").content.decode()
        assert (">Tested<" if run.passed else "Test fails") in page, rule_id


def test_a_powershell_4104_profile_fires_exactly_the_ps_script_rules(
    corpus_catalog: Any, db: None, client: Any
) -> None:
    body = {"profile": {"event_sources": [{"provider": "Microsoft-Windows-PowerShell",
                                           "event_id": 4104}]}}  # fmt: skip
    data = client.post("/api/coverage/", body, content_type="application/json").json()
    expected = set(Rule.objects.filter(category="ps_script").values_list("rule_id", flat=True))
    assert set(data["firable"]) == expected
    assert data["counts"]["firable"] + data["counts"]["blocked"] == Rule.objects.count()
