"""The correlation engine: every type just inside and just outside its window, with and
without group-by, chains, aliases, ranges, extended conditions, explanations and bounds."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import yaml

from rules.correlate import (
    CorrelationEngine,
    CorrelationError,
    UnresolvedReferenceError,
    correlate,
    parse_correlation,
    parse_time,
    resolve_references,
)
from rules.correlate.engine import percentile
from rules.events import Event

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def uid(name: str) -> str:
    """A stable UUID for a readable test name (pySigma wants UUID ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def corr(text: str, names: dict[str, str] | None = None) -> Any:
    """A resolved correlation; references resolve to themselves unless ``names`` maps them.
    ``id: c-x`` in the text becomes ``uid("c-x")``."""
    text = re.sub(r"^id: (c-\S+)$", lambda m: f"id: {uid(m.group(1))}", text, flags=re.M)
    rule = parse_correlation(yaml.safe_load(text))
    table = names or {}
    return resolve_references(rule, lambda ref: table.get(ref, ref))


def ev(seconds: float, **fields: Any) -> Event:
    fields.setdefault("@timestamp", seconds)
    return Event(fields)


def run(correlations: list[Any], stream: list[tuple[float, dict[str, Any], list[str]]]) -> Any:
    events = [ev(T0 + t, **f) for t, f, _ in stream]
    return correlate(correlations, events, [ids for _, _, ids in stream]).matches


def document(kind: str, condition: str, *, rules: str = "[a]", group: str = "", span: str = "60s"):
    group_line = f"\n    group-by: {group}" if group else ""
    return f"""
title: {kind} test
id: {uid(f"c-{kind}")}
correlation:
    type: {kind}
    rules: {rules}{group_line}
    timespan: {span}
    condition: {condition}
"""


# -- each type: just inside (== timespan apart) and just outside (timespan + 1 ms) ----------

CASES = {
    "event_count": ("{gte: 2}", [{}, {}], "[a]"),
    "value_count": ("{field: User, gte: 2}", [{"User": "u1"}, {"User": "u2"}], "[a]"),
    "temporal": (None, [{}, {}], "[a, b]"),
    "temporal_ordered": (None, [{}, {}], "[a, b]"),
    "value_sum": ("{field: Bytes, gte: 100}", [{"Bytes": 60}, {"Bytes": 40}], "[a]"),
    # avg and percentiles lie between the values: only ``eq`` needs both events.
    "value_avg": ("{field: Bytes, eq: 50}", [{"Bytes": 60}, {"Bytes": 40}], "[a]"),
    "value_percentile": (
        "{field: Bytes, percentile: 50, eq: 50}",
        [{"Bytes": 60}, {"Bytes": 40}],
        "[a]",
    ),
}


def _stream(kind: str, gap: float, group: bool) -> tuple[Any, list[Any]]:
    condition, fields, refs = CASES[kind]
    text = document(kind, condition or "", rules=refs, group="[Host]" if group else "")
    if condition is None:
        text = text.replace("\n    condition: ", "")
    rule = corr(text)
    ids = [["a"], ["b"]] if refs == "[a, b]" else [["a"], ["a"]]
    stream = [
        (0.0, {**fields[0], "Host": "h1"}, ids[0]),
        (gap, {**fields[1], "Host": "h1"}, ids[1]),
    ]
    return rule, stream


@pytest.mark.parametrize("group", [False, True], ids=["no-group", "group-by"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_match_just_inside_the_window(kind: str, group: bool) -> None:
    rule, stream = _stream(kind, 60.0, group)
    matches = run([rule], stream)
    assert len(matches) == 1, kind
    assert matches[0].events == [0, 1]
    assert matches[0].group == ({"Host": "h1"} if group else {})


@pytest.mark.parametrize("group", [False, True], ids=["no-group", "group-by"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_no_match_just_outside_the_window(kind: str, group: bool) -> None:
    rule, stream = _stream(kind, 60.001, group)
    assert run([rule], stream) == []


@pytest.mark.parametrize("kind", sorted(CASES))
def test_group_by_keeps_groups_apart(kind: str) -> None:
    rule, stream = _stream(kind, 10.0, True)
    stream[1][1]["Host"] = "h2"
    assert run([rule], stream) == []


def test_value_count_counts_distinct_values_only() -> None:
    rule = corr(document("value_count", "{field: User, gte: 2}", group="[Host]"))
    same = [(0.0, {"User": "u1", "Host": "h"}, ["a"]), (5.0, {"User": "u1", "Host": "h"}, ["a"])]
    assert run([rule], same) == []


def test_temporal_ordered_needs_the_listed_order() -> None:
    rule = corr(document("temporal_ordered", "", rules="[a, b]").replace("\n    condition: ", ""))
    assert run([rule], [(0.0, {}, ["b"]), (5.0, {}, ["a"])]) == []
    found = run([rule], [(0.0, {}, ["b"]), (5.0, {}, ["a"]), (9.0, {}, ["b"])])
    assert [m.events for m in found] == [[1, 2]]


def test_temporal_any_order() -> None:
    rule = corr(document("temporal", "", rules="[a, b]").replace("\n    condition: ", ""))
    assert [m.events for m in run([rule], [(0.0, {}, ["b"]), (5.0, {}, ["a"])])] == [[0, 1]]


def test_events_arrive_unsorted_and_are_put_in_time_order() -> None:
    rule = corr(document("temporal_ordered", "", rules="[a, b]").replace("\n    condition: ", ""))
    # Input order b, a; timestamps a (t=0) before b (t=5): ordered by time, so it matches.
    found = run([rule], [(5.0, {}, ["b"]), (0.0, {}, ["a"])])
    assert [m.events for m in found] == [[1, 0]]


# -- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "count", "expected"),
    [
        ("{gt: 2}", 2, False),
        ("{gt: 2}", 3, True),
        ("{lt: 3}", 2, True),
        ("{lt: 3}", 3, False),
        ("{lte: 3}", 3, True),
        ("{eq: 3}", 3, True),
        ("{eq: 3}", 4, False),
        ("{neq: 3}", 4, True),
        ("{gt: 1, lte: 3}", 3, True),
        ("{gt: 1, lte: 3}", 4, False),
        ("{gt: 1, lte: 3}", 1, False),
    ],
)
def test_condition_operators_and_ranges(condition: str, count: int, expected: bool) -> None:
    rule = corr(document("event_count", condition))
    stream = [(float(i), {}, ["a"]) for i in range(count)]
    matches = run([rule], stream)
    assert bool(matches) is expected
    if expected:
        assert matches[0].value == count


def test_closing_window_counts_everything_it_holds() -> None:
    # lt 3: checked when the window closes; 4 events within 60 s do not match, and the
    # window is used up (no tail of the burst matches later).
    rule = corr(document("event_count", "{lt: 3}"))
    stream = [(float(i), {}, ["a"]) for i in range(4)] + [(200.0, {}, ["a"])]
    matches = run([rule], stream)
    assert [m.events for m in matches] == [[4]]


def test_growing_condition_matches_as_soon_as_it_holds_then_restarts() -> None:
    rule = corr(document("event_count", "{gte: 2}"))
    matches = run([rule], [(float(i), {}, ["a"]) for i in range(5)])
    assert [m.events for m in matches] == [[0, 1], [2, 3]]


def test_sliding_window_finds_a_late_burst() -> None:
    rule = corr(document("event_count", "{gte: 3}", span="10s"))
    stream = [(0.0, {}, ["a"]), (8.0, {}, ["a"]), (15.0, {}, ["a"]), (16.0, {}, ["a"])]
    assert [m.events for m in run([rule], stream)] == [[1, 2, 3]]


def test_value_percentile_and_median() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 95) == 10
    rule = corr(document("value_median", "{field: ms, gt: 20}"))
    values = [5, 30, 40]
    stream = [(float(i), {"ms": v}, ["a"]) for i, v in enumerate(values)]
    [match] = run([rule], stream)
    assert match.value == 30


def test_value_avg_ignores_non_numbers() -> None:
    rule = corr(document("value_avg", "{field: ms, gte: 10}"))
    stream = [(0.0, {"ms": "10"}, ["a"]), (1.0, {"ms": "n/a"}, ["a"]), (2.0, {}, ["a"])]
    [match] = run([rule], stream)
    assert match.value == 10.0
    assert match.values == ["10", "n/a", None]


def test_event_matching_two_referenced_rules_counts_once() -> None:
    rule = corr(document("event_count", "{gte: 2}", rules="[a, b]"))
    assert run([rule], [(0.0, {}, ["a", "b"])]) == []


def test_missing_group_field_takes_no_part() -> None:
    rule = corr(document("event_count", "{gte: 2}", group="[User]"))
    stream = [(0.0, {"User": "x"}, ["a"]), (1.0, {}, ["a"])]
    result = correlate([rule], [ev(T0 + t, **f) for t, f, _ in stream], [ids for *_, ids in stream])
    assert result.matches == []
    assert result.stats.missing_group_field == 1


def test_aliases_map_group_fields_per_rule() -> None:
    text = """
title: alias
id: c-alias
correlation:
    type: temporal
    rules: [internal_error, new_connection]
    group-by: [ip]
    timespan: 10s
    aliases:
        ip:
            internal_error: destination.ip
            new_connection: source.ip
"""
    rule = corr(text, {"internal_error": "r-err", "new_connection": "r-conn"})
    same = [
        (0.0, {"destination.ip": "10.0.0.1"}, ["r-err"]),
        (3.0, {"source.ip": "10.0.0.1"}, ["r-conn"]),
    ]
    [match] = run([rule], same)
    assert match.group == {"ip": "10.0.0.1"}
    other = [same[0], (3.0, {"source.ip": "10.0.0.2"}, ["r-conn"])]
    assert run([rule], other) == []


def test_extended_temporal_condition() -> None:
    text = """
title: ext
id: c-ext
correlation:
    type: temporal
    rules: [a, b, c]
    group-by: [Host]
    timespan: 60s
    condition: a and (b or c)
"""
    rule = corr(text)
    assert run([rule], [(0.0, {"Host": "h"}, ["a"]), (1.0, {"Host": "h"}, ["c"])])
    assert not run([rule], [(0.0, {"Host": "h"}, ["b"]), (1.0, {"Host": "h"}, ["c"])])


def test_extended_condition_with_not_is_checked_when_the_window_closes() -> None:
    text = """
title: ext-not
id: c-ext-not
correlation:
    type: temporal
    rules: [a, b]
    timespan: 60s
    condition: a and not b
"""
    rule = corr(text)
    assert run([rule], [(0.0, {}, ["a"])])
    assert not run([rule], [(0.0, {}, ["a"]), (60.0, {}, ["b"])])
    assert run([rule], [(0.0, {}, ["a"]), (60.5, {}, ["b"])])


# -- chains ----------------------------------------------------------------------------------


def test_chained_correlation() -> None:
    failed = corr(
        """
title: many failed logins
id: c-failed
name: many_failed
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [User]
    timespan: 60s
    condition: {gte: 3}
""",
        {"failed_login": "r-fail"},
    )
    followed = corr(
        """
title: failed then success
id: c-chain
correlation:
    type: temporal_ordered
    rules: [many_failed, success]
    group-by: [User]
    timespan: 5m
""",
        {"many_failed": uid("c-failed"), "success": "r-ok"},
    )
    stream = [(float(i), {"User": "bob"}, ["r-fail"]) for i in range(3)]
    stream.append((100.0, {"User": "bob"}, ["r-ok"]))
    stream.append((101.0, {"User": "eve"}, ["r-ok"]))
    matches = run([failed, followed], stream)
    assert [m.id for m in matches] == [uid("c-failed"), uid("c-chain")]
    chain = matches[1]
    assert chain.events == [0, 1, 2, 3]
    assert chain.group == {"User": "bob"}
    assert chain.inner == [uid("c-failed") + "#1"]
    assert "#0+#1+#2" in chain.explanation and "#3" in chain.explanation


def test_chain_outside_the_outer_window_does_not_match() -> None:
    inner = corr(document("event_count", "{gte: 2}", span="10s"))
    outer = corr(
        document("temporal_ordered", "", rules="[inner, b]", span="30s").replace(
            "\n    condition: ", ""
        ),
        {"inner": uid("c-event_count")},
    )
    outer = type(outer)(**{**_fields(outer), "id": "c-outer"})
    base = [(0.0, {}, ["a"]), (1.0, {}, ["a"])]
    assert len(run([inner, outer], [*base, (31.0, {}, ["b"])])) == 2
    assert len(run([inner, outer], [*base, (31.001, {}, ["b"])])) == 1


def _fields(rule: Any) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in rule.__dataclass_fields__}


def test_cycles_are_refused() -> None:
    one = corr(document("event_count", "{gte: 1}", rules="[c-two]"))
    one = type(one)(**{**_fields(one), "id": "c-one"})
    two = type(one)(**{**_fields(one), "id": "c-two", "rules": ("c-one",)})
    with pytest.raises(CorrelationError, match="cycle"):
        CorrelationEngine([one, two])


# -- explanation, output, bounds -------------------------------------------------------------


def test_explanation_names_the_events_and_times() -> None:
    rule = corr(document("event_count", "{gte: 2}", group="[User]"))
    [match] = run([rule], [(0.0, {"User": "bob"}, ["a"]), (30.0, {"User": "bob"}, ["a"])])
    data = match.to_dict()
    assert {"id", "title", "type", "group", "events", "value"} <= set(data)
    assert data["events"] == [0, 1]
    assert data["value"] == 2
    assert data["window"] == {
        "start": "2024-05-01T10:00:00.000Z",
        "end": "2024-05-01T10:00:30.000Z",
    }
    assert "#0 (a at 2024-05-01T10:00:00.000Z)" in data["explanation"]
    assert "User=bob" in data["explanation"] and "count >= 2 held with 2" in data["explanation"]


def test_groups_are_bounded() -> None:
    rule = corr(document("event_count", "{gte: 2}", group="[User]", span="1h"))
    engine = CorrelationEngine([rule], max_groups=100)
    for i in range(1000):
        engine.feed(i, T0 + i, Event({"User": f"u{i}"}), ["a"])
    assert len(engine._states[0].groups) <= 100
    assert engine.stats.dropped_groups == 900


def _fan_in_chain(n: int) -> list[Any]:
    """``n`` correlations, each counting rule ``a`` and every correlation before it: acyclic,
    and a match of the first reaches the last along 2**(n-1) paths."""
    ids = [uid(f"c-fan-{k}") for k in range(n)]
    return [
        corr(
            f"""
title: fan {k}
id: {ids[k]}
correlation:
    type: event_count
    rules: [a{"".join(f", {i}" for i in ids[:k])}]
    timespan: 1h
    condition: {{gte: 1}}
"""
        )
        for k in range(n)
    ]


def test_chained_matches_are_budgeted_so_a_fan_in_chain_stays_linear() -> None:
    engine = CorrelationEngine(_fan_in_chain(16), max_matches=100, max_chained=500)
    for i in range(20):
        engine.feed(i, T0 + i, Event({}), ["a"])
    engine.finish()
    # Without the budget: ~2**15 chained occurrences per event (minutes for these 20).
    assert engine.stats.dropped_chained > 0
    assert engine.stats.occurrences < 20 * 16 + 500 * 16


def test_a_chain_within_its_budget_is_unchanged() -> None:
    small = _fan_in_chain(3)
    free = CorrelationEngine(small)
    tight = CorrelationEngine(small, max_chained=10_000)
    for engine in (free, tight):
        for i in range(5):
            engine.feed(i, T0 + i, Event({}), ["a"])
    assert [m.to_dict() for m in free.finish()] == [m.to_dict() for m in tight.finish()]
    assert free.stats.dropped_chained == 0 and free.finish()


def test_idle_groups_expire() -> None:
    rule = corr(document("event_count", "{gte: 2}", group="[User]", span="10s"))
    engine = CorrelationEngine([rule])
    for i in range(1000):
        engine.feed(i, T0 + i * 20, Event({"User": f"u{i}"}), ["a"])
    assert len(engine._states[0].groups) <= 257  # idle groups are swept every 256 events
    assert engine.stats.dropped_groups == 0


def test_feed_refuses_time_going_backwards() -> None:
    engine = CorrelationEngine([corr(document("event_count", "{gte: 2}"))])
    engine.feed(0, T0 + 5, Event({}), ["a"])
    with pytest.raises(CorrelationError, match="timestamp order"):
        engine.feed(1, T0, Event({}), ["a"])


def test_untimed_events_are_reported() -> None:
    rule = corr(document("event_count", "{gte: 1}"))
    result = correlate([rule], [Event({"x": 1})], [["a"]])
    assert result.matches == [] and result.untimed == [0]


# -- parsing and resolution -----------------------------------------------------------------


def test_unresolved_references_are_all_named() -> None:
    rule = parse_correlation(yaml.safe_load(document("temporal", "{gte: 2}", rules="[x, y]")))
    with pytest.raises(UnresolvedReferenceError, match="x, y") as caught:
        resolve_references(rule, lambda ref: None)
    assert caught.value.references == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (document("event_count", "{gte: 2}", span="soon"), "Timespan"),
        (document("nonsense", "{gte: 2}"), "no valid Sigma correlation type"),
        (document("value_count", "{gte: 2}"), "field"),
        (document("value_percentile", "{field: x, gte: 2}"), "percentile"),
        (document("event_count", "{gte: many}"), "number"),
    ],
)
def test_invalid_documents(text: str, message: str) -> None:
    with pytest.raises(CorrelationError, match=message):
        parse_correlation(yaml.safe_load(text))


def test_parse_keeps_the_documented_fields() -> None:
    rule = parse_correlation(
        yaml.safe_load(document("event_count", "{gt: 1, lte: 5}", group="[A, B]", span="5m"))
    )
    assert (rule.type, rule.seconds, rule.group_by) == ("event_count", 300.0, ("A", "B"))
    assert rule.condition_text == "count > 1 and <= 5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", T0),
        ("2024-05-01T10:00:00.1234567Z", T0 + 0.123456),
        ("2024-05-01 12:00:00+02:00", T0),
        ("2024-05-01 10:00:00.000", T0),
        (T0, T0),
        (T0 * 1000, T0),
        (str(int(T0)), T0),
        ("yesterday", None),
        (True, None),
    ],
)
def test_parse_time(value: Any, expected: float | None) -> None:
    got = parse_time(value)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_timestamp_detection_and_choice() -> None:
    from rules.correlate import event_time

    assert event_time(Event({"UtcTime": "2024-05-01 10:00:00.000"})) == T0
    assert event_time(Event({"TimeCreated_SystemTime": "2024-05-01T10:00:00Z"})) == T0
    nested = Event(
        {
            "Event": {
                "System": {"TimeCreated": {"#attributes": {"SystemTime": "2024-05-01T10:00:00Z"}}}
            },
            "x": 1,
        }
    )
    assert event_time(nested) == T0
    both = Event({"@timestamp": "2024-05-01T10:00:00Z", "seen": "2024-05-01T11:00:00Z"})
    assert event_time(both, "seen") == T0 + 3600


def test_group_cap_sweeps_idle_groups_before_dropping_live_ones() -> None:
    # Opening the third group exceeds the cap: the two idle ones are swept first (the sweep
    # stops at the group being opened, which holds nothing yet), so nothing live is dropped.
    rule = corr(document("event_count", "{gte: 2}", group="[User]", span="10s"))
    engine = CorrelationEngine([rule], max_groups=2)
    for i, (at, user) in enumerate([(0, "u0"), (1, "u1"), (100, "u2"), (105, "u2")]):
        engine.feed(i, T0 + at, Event({"User": user}), ["a"])
    [match] = engine.finish()
    assert match.group == {"User": "u2"} and match.events == [2, 3]
    assert engine.stats.dropped_groups == 0
