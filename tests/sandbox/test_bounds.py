"""Finding 2: the synchronous sandbox bounds its work and its answer, and says what it cut.

Many rules each looking for one literal, and one long event value holding all of them: every
match used to carry the whole value in each predicate (hundreds of MB for 430 KB in).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from catalog.services import import_rules
from rules.evaluate import clear_evaluator_cache
from tests.factories import rule_yaml

RULES = 150
LIMIT_BYTES = 4 * 1024 * 1024


def literal(i: int) -> str:
    return f"hostile-literal-{i:04d}-x"


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    cache.clear()
    clear_evaluator_cache()
    yield
    clear_evaluator_cache()


@pytest.fixture
def literal_rules(db: None, tmp_path: Path) -> None:
    for i in range(RULES):
        text = rule_yaml(
            title=f"Literal {i}",
            id=str(uuid.UUID(int=i + 1)),
            status="test",
            logsource={"product": "windows", "category": "ps_script"},
            detection=f"sel:\n    ScriptBlockText|contains: '{literal(i)}'\ncondition: sel",
            level="low",
        )
        (tmp_path / f"r{i}.yml").write_text(text)
    report = import_rules([str(tmp_path)])
    assert report.created == RULES, report.errors


def hostile_text(size: int = 200_000) -> str:
    words = " ".join(literal(i) for i in range(RULES))
    return (words + " ") * (size // (len(words) + 1) + 1)


def test_api_answer_to_a_literal_bomb_is_bounded_and_says_what_was_cut(
    client: Any, literal_rules: None
) -> None:
    text = hostile_text()
    body = {"event": {"ScriptBlockText": text, "Other": text[:50_000]}, "all_rules": True}
    response = client.post("/api/sandbox/", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert len(response.content) < LIMIT_BYTES
    payload = response.json()
    result = payload["events"][0]
    assert len(result["matches"]) == RULES, "every match is still listed"
    assert payload["truncated"]["event_values"] > 0
    assert payload["summary"]["truncated"] is True
    for match in result["matches"]:
        for ident in match["identifiers"]:
            for p in ident["predicates"]:
                if p["span"]:
                    start, end = p["span"]
                    assert p["event_value"][start:end].lower() in {literal(i) for i in range(RULES)}
                    assert p["event_value_length"] == len(text)


def test_api_explains_at_most_the_cap_and_lists_the_rest_bare(
    client: Any, literal_rules: None
) -> None:
    from catalog.sandbox import API_LIMITS

    cap = API_LIMITS.explained_matches
    assert cap < RULES
    body = {"scriptblock": hostile_text(5_000), "all_rules": True}
    payload = client.post("/api/sandbox/", body, content_type="application/json").json()
    matches = payload["events"][0]["matches"]
    assert len(matches) == RULES
    assert sum(1 for m in matches if m["identifiers"]) == cap
    assert payload["truncated"]["explanations"] == RULES - cap


def test_many_events_past_the_budget_are_listed_without_explanations(
    client: Any, literal_rules: None
) -> None:
    event = {"ScriptBlockText": hostile_text(20_000)}
    body = {"events": [event] * 80, "all_rules": True}
    response = client.post("/api/sandbox/", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert len(response.content) < LIMIT_BYTES
    payload = response.json()
    assert payload["truncated"]["unexplained_events"] > 0
    assert not payload["events"][-1]["matches"][0]["identifiers"]


def test_evaluation_stops_when_the_answer_is_full(literal_rules: None) -> None:
    from catalog.sandbox import run_sandbox
    from rules.evaluate.bounds import ResponseLimits
    from rules.events import scriptblock_event

    events = [scriptblock_event(hostile_text(2_000)) for _ in range(50)]
    run = run_sandbox(
        events, all_rules=True, limits=ResponseLimits(budget_bytes=20_000, hard_bytes=60_000)
    )
    assert run.stopped == "size"
    assert 0 < len(run.results) < 50
    assert run.cut["events"] == 50 - len(run.results)
    assert len(json.dumps(run.to_dict())) < 60_000 + 40_000  # one event past the mark at most


def test_page_answer_to_a_literal_bomb_is_bounded_with_a_visible_note(
    client: Any, literal_rules: None
) -> None:
    text = hostile_text(190_000)
    response = client.post("/sandbox/", {"text": text, "kind": "scriptblock", "all_rules": "on"})
    assert response.status_code == 200
    assert len(response.content) < LIMIT_BYTES
    page = response.content.decode()
    assert "sandbox-truncated" in page and "Shortened to keep this page small" in page
    assert "excerpt from character" in page
    assert "Read as: scriptblock" in page
