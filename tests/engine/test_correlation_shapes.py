"""The same events in every input shape (rules.shapes, tests/fixtures/shapes/) give the same
correlations: the same matches, events, times, values, groups and explanations, just inside
the window, and none just outside it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from rules.correlate import correlate, parse_correlation, resolve_references
from rules.evaluate import Evaluator
from rules.events import Event
from rules.parse import parse_rule
from tests.engine.test_shapes import SHAPE_OF, read, shape_rule_texts

# The shape rules (tests/engine/test_shapes.py): 0 and 1 match the Sysmon process creation
# (03:00:01.123), 4, 5 and 7 the network logon (03:00:05.456) on the same computer.
PROC, PROC_ENCODED = "5d1f3c3e-0000-4000-8000-000000000500", "5d1f3c3e-0000-4000-8000-000000000501"
LOGON, LOGON_KALI = "5d1f3c3e-0000-4000-8000-000000000504", "5d1f3c3e-0000-4000-8000-000000000507"


def _correlation(name: str, body: dict[str, Any]) -> Any:
    document = {
        "title": f"Shape correlation {name}",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"shape-correlation-{name}")),
        "correlation": body,
    }
    parsed = parse_correlation(yaml.safe_load(yaml.safe_dump(document)))
    return resolve_references(parsed, lambda ref: ref)


def correlations(span: str) -> list[Any]:
    """One of each kind the two events can form, ``span`` wide (they are 4.333 s apart)."""
    by_computer = {"group-by": ["Computer"], "timespan": span}
    return [
        _correlation(
            f"ordered-{span}", {"type": "temporal_ordered", "rules": [PROC, LOGON], **by_computer}
        ),
        _correlation(
            f"count-{span}",
            {
                "type": "event_count",
                "rules": [PROC_ENCODED, LOGON_KALI],
                **by_computer,
                "condition": {"gte": 2},
            },
        ),  # fmt: skip
        _correlation(
            f"distinct-{span}",
            {
                "type": "value_count",
                "rules": [PROC, LOGON],
                "timespan": span,
                "condition": {"field": "EventID", "gte": 2},
            },
        ),  # fmt: skip
        _correlation(
            f"sum-{span}",
            {
                "type": "value_sum",
                "rules": [PROC, LOGON],
                **by_computer,
                "condition": {"field": "EventID", "gte": 4625},
            },
        ),  # fmt: skip
    ]


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator([parse_rule(text) for text in shape_rule_texts()])


def _correlated(evaluator: Evaluator, events: list[Event], span: str) -> list[dict[str, Any]]:
    matched = [evaluator.match_ids(event, all_rules=True) for event in events]
    run = correlate(correlations(span), events, matched)
    assert not run.untimed  # every shape's timestamp is read
    return json.loads(json.dumps(run.to_list(), default=str))


def test_the_reference_shape_correlates_just_inside_and_not_just_outside(
    evaluator: Evaluator,
) -> None:
    inside = _correlated(evaluator, read("evtx_dump.json"), "5s")
    assert sorted(m["type"] for m in inside) == [
        "event_count", "temporal_ordered", "value_count", "value_sum",
    ]  # fmt: skip
    for match in inside:
        assert match["events"] == [0, 1]
        assert match["window"] == {
            "start": "2025-03-04T03:00:01.123Z",
            "end": "2025-03-04T03:00:05.456Z",
        }
    by_type = {m["type"]: m for m in inside}
    assert by_type["value_sum"]["value"] == 4625  # event IDs 1 + 4624: both events
    assert by_type["event_count"]["group"] == {"Computer": "WKS-17.corp.example"}
    # 4 s is narrower than the 4.333 s between the events: no window holds both.
    assert _correlated(evaluator, read("evtx_dump.json"), "4s") == []


@pytest.mark.parametrize("name", sorted(set(SHAPE_OF) - {"evtx_dump.json"}))
@pytest.mark.parametrize("span", ["5s", "4s"])
def test_same_correlations_in_every_shape(evaluator: Evaluator, name: str, span: str) -> None:
    reference = _correlated(evaluator, read("evtx_dump.json"), span)
    assert _correlated(evaluator, read(name), span) == reference
