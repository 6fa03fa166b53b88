"""Bulk matching in forked worker processes gives exactly the in-process results, in order."""

from __future__ import annotations

import json
from pathlib import Path

from rules.evaluate import Evaluator
from rules.events import Event, event_from_mapping
from rules.parse import parse_rule
from tests.conftest import EXAMPLES


def example_evaluator() -> tuple[Evaluator, list[Event]]:
    rules = [parse_rule(p.read_bytes(), str(p)) for p in sorted(EXAMPLES.rglob("rules/**/*.yml"))]
    events: list[Event] = []
    for path in sorted((EXAMPLES / "events").glob("*.json")):
        spec = json.loads(Path(path).read_text())
        for label in ("match", "suppressed", "no_match"):
            events.extend(event_from_mapping(e) for e in spec.get(label, []))
    return Evaluator(rules), events


def test_match_stream_with_workers_equals_one_process_in_order() -> None:
    evaluator, events = example_evaluator()
    stream = (events * 200)[:6000]  # above the in-process threshold
    expected = [evaluator.match_ids(e, all_rules=True) for e in stream]
    assert any(expected) and not all(expected)
    assert evaluator.match_stream(stream, all_rules=True, workers=2) == expected


def test_match_stream_small_batches_stay_in_process() -> None:
    evaluator, events = example_evaluator()
    expected = [evaluator.match_ids(e) for e in events]
    assert evaluator.match_stream(events, workers=2) == expected
