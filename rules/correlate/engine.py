"""The correlation stage: single-event matches in timestamp order -> correlation matches.

Feed :meth:`CorrelationEngine.feed` one matched event at a time, in timestamp order (equal
times keep their input order), then call :meth:`CorrelationEngine.finish`. See
``docs/semantics.md`` ("Correlations") for the window rules; in short:

* **Windows are inclusive**: events exactly ``timespan`` apart are in one window.
* **Growing conditions** (``gt``/``gte`` on ``event_count``, ``value_count``, ``temporal``,
  ``temporal_ordered`` and extended temporal conditions without ``not``) are checked on a
  sliding window ending at each event, and match as soon as they hold.
* **Other conditions** (``lt``, ``lte``, ``eq``, ``neq``, every ``value_sum``/``value_avg``/
  ``value_percentile``/``value_median``) are checked once per window when it closes: a window
  opens at a group's first event, spans ``timespan``, and closes when an event later than its
  end arrives or the input ends.
* After a match, the group's events are used up: the next window starts after them.
* An event lacking a group-by field takes no part in that correlation (as in a SIEM's
  ``stats ... by``).

A match of a correlation is an occurrence for the correlations that reference it (chains),
at the time of its last event (growing) or of its window's end (closing); its fields are its
group-by values.

Memory is bounded: groups idle for longer than the timespan are dropped as time passes;
past ``max_groups`` groups per correlation the least recently used group is dropped, past
``max_window_events`` occurrences in one window the oldest are dropped (``stats`` counts both).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from rules.correlate.model import (
    COUNT_TYPES,
    TEMPORAL_TYPES,
    Bound,
    CorrelationError,
    CorrelationMatch,
    CorrelationRule,
)
from rules.events import MISSING

__all__ = ["CorrelationEngine", "CorrelationStats", "Occurrence", "ordered_count", "percentile"]

MISSING_GROUP = object()
_ABSENT = object()
# Tuples, not ``int | float``: a union in isinstance() is built anew on every call.
_NUMBERS = (int, float)
_SIMPLE = frozenset({str, int, float, bool})


class Occurrence(NamedTuple):
    """One counted thing in a window: an event (or an inner correlation match)."""

    time: float
    events: tuple[int, ...]
    rule: str
    value: Any  # the counted value (value_* types), else None
    inner: str  # the inner match's label ("" for events)


# NamedTuple's generated __new__ is a Python call; the hot path builds the tuple directly.
_occurrence = tuple.__new__


@dataclass(slots=True)
class CorrelationStats:
    occurrences: int = 0
    missing_group_field: int = 0
    dropped_groups: int = 0
    dropped_occurrences: int = 0
    dropped_matches: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Pseudo:
    """A correlation match as an occurrence for chained correlations: its group values."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields

    def lookup(self, name: str) -> Any:
        return self.fields.get(name, MISSING_GROUP)


class _Window:
    """One group's open window: its occurrences in time order, and running counts."""

    __slots__ = ("dead", "entries", "group", "last", "rules", "values")

    def __init__(self, group: dict[str, Any], time: float) -> None:
        self.group = group
        self.entries: deque[Occurrence] = deque()
        self.values: dict[Any, int] = {}  # value_count: value -> occurrences in the window
        self.rules: dict[str, int] = {}  # temporal types: rule id -> occurrences
        self.last = time
        self.dead = False


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile with linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ordered_count(entries: Iterable[Occurrence], order: Sequence[str]) -> int:
    """How many of ``order``'s rules occur in that order (greedy: earliest first)."""
    position = 0
    for entry in entries:
        if position < len(order) and entry.rule == order[position]:
            position += 1
            if position == len(order):
                break
    return position


def _ordered_entries(entries: list[Occurrence], order: Sequence[str]) -> list[Occurrence]:
    """The occurrences that formed the ordered sequence (the greedy chain), or all of them
    when no sequence formed (a closing condition such as ``lt``)."""
    chain: list[Occurrence] = []
    for entry in entries:
        if len(chain) < len(order) and entry.rule == order[len(chain)]:
            chain.append(entry)
    return chain or entries


def _ordered_present(entries: Iterable[Occurrence], order: Sequence[str]) -> frozenset[str]:
    return frozenset(order[: ordered_count(entries, order)])


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, _NUMBERS):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _key_part(value: Any) -> Any:
    if value is None or type(value) in _SIMPLE:
        return value
    return json.dumps(value, sort_keys=True, default=str)


class _State:
    """One correlation's groups and windows."""

    # Slots: the hot path reads a dozen attributes per occurrence.
    __slots__ = (
        "adds", "engine", "fast_count", "group_fields", "groups", "growing", "kind",
        "matched", "max_entries", "need", "plain", "rule", "seconds", "track_rules",
        "track_values", "value_fields",
    )  # fmt: skip

    def __init__(self, rule: CorrelationRule, engine: CorrelationEngine) -> None:
        self.rule = rule
        self.engine = engine
        self.growing = _is_growing(rule)
        self.groups: OrderedDict[tuple[Any, ...], _Window] = OrderedDict()
        self.value_fields = rule.fields
        self.matched = 0
        self.adds = 0
        # group-by field per referenced rule (aliases resolved once)
        self.group_fields = {
            rid: tuple(rule.group_field(name, rid) for name in rule.group_by) for rid in rule.rules
        }
        self.track_rules = rule.type in TEMPORAL_TYPES
        self.track_values = rule.type == "value_count"
        # Growing conditions are gt/gte on whole counts: the count needed to hold.
        self.need = max((_needed(b) for b in rule.bounds), default=1)
        self.plain = rule.expression_test is None
        self.seconds = rule.seconds
        self.max_entries = engine.max_window_events
        self.kind = {"event_count": 0, "value_count": 1}.get(rule.type, 2)
        self.fast_count = self.kind == 0 and self.plain

    # -- adding ---------------------------------------------------------------------------

    def add(
        self, time: float, event: Any, rule_id: str, events: tuple[int, ...], inner: str
    ) -> None:
        # The hot path of the stage (>= 50,000 events/s): inlined on purpose.
        # Exact keys straight from the mapping (no lookup cache grows on the event); aliases
        # without spaces and dotted paths through Event.lookup.
        fields = event.fields
        parts = []
        for name in self.group_fields[rule_id]:
            value = fields.get(name, _ABSENT)
            if value is _ABSENT:
                value = event.lookup(name)
            if value is None or value is MISSING or value is MISSING_GROUP:
                self.engine.stats.missing_group_field += 1
                return
            parts.append(value if type(value) in _SIMPLE else _key_part(value))
        key = tuple(parts)
        value = self._value(event) if self.value_fields else None
        groups = self.groups
        window = groups.get(key)
        if window is None:
            window = self._open(key, parts, time)
        else:
            groups.move_to_end(key)
        window.last = time
        entries = window.entries
        entries.append(_occurrence(Occurrence, (time, events, rule_id, value, inner)))
        if self.track_rules:
            counts = window.rules
            counts[rule_id] = counts.get(rule_id, 0) + 1
        elif self.track_values and value is not None:
            counts = window.values
            counts[value] = counts.get(value, 0) + 1
        if len(entries) > self.max_entries:
            self._pop_oldest(window)
            self.engine.stats.dropped_occurrences += 1
        if not self.growing:
            return
        horizon = time - self.seconds
        while entries[0][0] < horizon:
            self._pop_oldest(window)
        if len(entries) >= self.need if self.fast_count else self._reached(window):
            held, aggregate = self._holds(window)
            if held:
                del groups[key]
                self._emit(window, time, aggregate)
        self.adds += 1
        if not self.adds & 255:
            self._expire(time)

    def _open(self, key: tuple[Any, ...], parts: list[Any], time: float) -> _Window:
        groups = self.groups
        window = _Window(dict(zip(self.rule.group_by, parts, strict=True)), time)
        groups[key] = window
        if len(groups) > self.engine.max_groups:
            self._expire(time)
            if len(groups) > self.engine.max_groups:
                _, old = groups.popitem(last=False)
                old.dead = True
                self.engine.stats.dropped_groups += 1
        if not self.growing:
            self.engine.schedule(time + self.seconds, self, key, window)
        return window

    def _reached(self, window: _Window) -> bool:
        """Whether a growing condition can hold: the count it needs is there."""
        if not self.plain:
            return True
        kind = self.kind
        if kind == 0:
            return len(window.entries) >= self.need
        if kind == 1:
            return len(window.values) >= self.need
        return len(window.rules) >= self.need

    def _value(self, event: Any) -> Any:
        if len(self.value_fields) == 1:
            value = event.fields.get(self.value_fields[0], _ABSENT)
            if value is _ABSENT:
                value = event.lookup(self.value_fields[0])
            return None if value is MISSING_GROUP or _is_missing(value) else _key_part(value)
        values = [event.lookup(f) for f in self.value_fields]
        if any(v is MISSING_GROUP or _is_missing(v) for v in values):
            return None
        return tuple(_key_part(v) for v in values)

    def _pop_oldest(self, window: _Window) -> None:
        old = window.entries.popleft()
        if self.track_rules:
            counts = window.rules
            counts[old.rule] -= 1
            if not counts[old.rule]:
                del counts[old.rule]
        elif self.track_values and old.value is not None:
            values = window.values
            values[old.value] -= 1
            if not values[old.value]:
                del values[old.value]

    def _expire(self, now: float) -> None:
        """Drop growing groups whose every occurrence is older than the timespan (the
        OrderedDict is in last-update order, so only the front needs looking at)."""
        if not self.growing:
            return
        horizon = now - self.rule.seconds
        groups = self.groups
        while groups:
            key, window = next(iter(groups.items()))
            if window.last >= horizon:
                break
            del groups[key]

    # -- conditions -----------------------------------------------------------------------

    def _aggregate(self, window: _Window) -> float | None:
        """The figure the condition is checked on; None when there is none (no numbers)."""
        kind = self.rule.type
        entries = window.entries
        if kind == "event_count":
            return float(len(entries))
        if kind == "value_count":
            if self.growing:
                return float(len(window.values))
            return float(len({e.value for e in entries if e.value is not None}))
        if kind == "temporal":
            return float(len(window.rules))
        if kind == "temporal_ordered":
            return float(ordered_count(entries, self.rule.rules))
        numbers = [n for n in (_number(e.value) for e in entries) if n is not None]
        if not numbers:
            return None
        if kind == "value_sum":
            return sum(numbers)
        if kind == "value_avg":
            return sum(numbers) / len(numbers)
        return percentile(numbers, float(self.rule.percentile or 50))

    def _holds(self, window: _Window) -> tuple[bool, float]:
        test = self.rule.expression_test
        if test is not None:
            if self.rule.type == "temporal_ordered":
                present = _ordered_present(window.entries, self.rule.rules)
            else:
                present = frozenset(window.rules)
            return test(present), float(len(present))
        aggregate = self._aggregate(window)
        if aggregate is None:
            return False, 0.0
        return all(b.holds(aggregate) for b in self.rule.bounds), aggregate

    def close(self, key: tuple[Any, ...], window: _Window, at: float) -> None:
        """A closing window's end: check the condition once on everything it holds."""
        if window.dead:
            return
        if self.groups.get(key) is window:
            del self.groups[key]
        held, value = self._holds(window)
        if held:
            self._emit(window, at, value)

    def _emit(self, window: _Window, at: float, value: float) -> None:
        rule = self.rule
        entries = list(window.entries)
        if rule.type == "temporal_ordered":
            entries = _ordered_entries(entries, rule.rules)
        seen = dict.fromkeys(i for entry in entries for i in entry.events)
        self.matched += 1
        match = CorrelationMatch(
            id=rule.id,
            title=rule.title,
            type=rule.type,
            level=rule.level,
            group=dict(window.group),
            events=list(seen),
            times=[e.time for e in entries],
            rules=[e.rule for e in entries],
            values=[e.value for e in entries],
            value=int(value) if rule.type in COUNT_TYPES else value,
            start=entries[0].time,
            end=entries[-1].time,
            condition=rule.condition_text,
            timespan=rule.timespan,
            inner=[e.inner for e in entries if e.inner],
            entry_events=[list(e.events) for e in entries],
        )
        self.engine.emit(match, at, f"{rule.id}#{self.matched}")


def _needed(bound: Bound) -> int:
    """The smallest whole count a ``gt``/``gte`` bound holds for (other ops: 1)."""
    if bound.op == "gte":
        return max(1, math.ceil(bound.value))
    if bound.op == "gt":
        return max(1, math.floor(bound.value) + 1)
    return 1


def _is_missing(value: Any) -> bool:
    return value is None or value is MISSING


def _is_growing(rule: CorrelationRule) -> bool:
    if rule.expression:
        return " not " not in f" {rule.expression.lower()} " and "(not" not in rule.expression
    return rule.type in COUNT_TYPES and all(b.op in ("gt", "gte") for b in rule.bounds)


class CorrelationEngine:
    """Compiled correlations over one stream of matched events (see the module docstring)."""

    def __init__(
        self,
        correlations: Sequence[CorrelationRule],
        *,
        max_groups: int = 10_000,
        max_window_events: int = 10_000,
        max_matches: int = 10_000,
    ) -> None:
        self.max_groups = max_groups
        self.max_window_events = max_window_events
        self.max_matches = max_matches
        self.stats = CorrelationStats()
        self.matches: list[CorrelationMatch] = []
        self.correlations = _check_chains(correlations)
        self._states = [_State(c, self) for c in self.correlations]
        self._consumers: dict[str, list[_State]] = {}
        for state in self._states:
            for rid in dict.fromkeys(state.rule.rules):
                self._consumers.setdefault(rid, []).append(state)
        self._routes: dict[tuple[str, ...], list[tuple[_State, str]]] = {}
        self._heap: list[tuple[float, int, _State, tuple[Any, ...], _Window]] = []
        self._seq = itertools.count()
        self._now = float("-inf")

    @property
    def rule_ids(self) -> frozenset[str]:
        """Every rule id some correlation consumes."""
        return frozenset(self._consumers)

    def schedule(self, at: float, state: _State, key: tuple[Any, ...], window: _Window) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), state, key, window))

    def _advance(self, now: float) -> None:
        """Close every window that ended before ``now``, oldest first."""
        heap = self._heap
        while heap and heap[0][0] < now:
            at, _, state, key, window = heapq.heappop(heap)
            state.close(key, window, at)

    def feed(self, index: int, time: float, event: Any, rule_ids: Iterable[str]) -> None:
        """One event (anything with ``lookup(field)``) and the rules it matched."""
        if time < self._now:
            raise CorrelationError("events must be fed in timestamp order")
        self._now = time
        heap = self._heap
        if heap and heap[0][0] < time:
            self._advance(time)
        self._dispatch(time, event, rule_ids, (index,), "")

    def _dispatch(
        self, time: float, event: Any, rule_ids: Iterable[str], events: tuple[int, ...], inner: str
    ) -> None:
        ids = tuple(rule_ids)
        targets = self._routes.get(ids)
        if targets is None:
            targets = self._route(ids)
        if targets:
            self.stats.occurrences += len(targets)
            for state, rid in targets:
                state.add(time, event, rid, events, inner)

    def _route(self, ids: tuple[str, ...]) -> list[tuple[_State, str]]:
        """Which states an event with these matched rules feeds, and as which rule: an event
        matching two referenced rules counts once per correlation (the first rule wins)."""
        targets: dict[int, tuple[_State, str]] = {}
        for rid in ids:
            for state in self._consumers.get(rid, ()):
                targets.setdefault(id(state), (state, rid))
        found = list(targets.values())
        if len(self._routes) < 4096:  # distinct match sets are few; cap the cache anyway
            self._routes[ids] = found
        return found

    def emit(self, match: CorrelationMatch, at: float, label: str) -> None:
        if len(self.matches) < self.max_matches:
            self.matches.append(match)
        else:
            self.stats.dropped_matches += 1
        if match.id in self._consumers:
            # Chains are acyclic (checked at construction), so this recursion is bounded.
            self._dispatch(at, _Pseudo(match.group), (match.id,), tuple(match.events), label)

    def finish(self) -> list[CorrelationMatch]:
        """Close every open window; all matches, in the order they were found."""
        self._advance(float("inf"))
        return self.matches

    def run(
        self, stream: Iterable[tuple[int, float, Any, Iterable[str]]]
    ) -> list[CorrelationMatch]:
        """Feed a whole ``(index, time, event, rule_ids)`` stream and finish."""
        for index, time, event, rule_ids in stream:
            self.feed(index, time, event, rule_ids)
        return self.finish()


def _check_chains(correlations: Sequence[CorrelationRule]) -> list[CorrelationRule]:
    """Refuse duplicate ids and reference cycles (a correlation chained on itself)."""
    by_id: dict[str, CorrelationRule] = {}
    for rule in correlations:
        if rule.id in by_id:
            raise CorrelationError(f"two correlations have the id {rule.id}")
        by_id[rule.id] = rule
    state: dict[str, int] = {}

    def visit(rid: str, path: list[str]) -> None:
        if state.get(rid) == 2 or rid not in by_id:
            return
        if state.get(rid) == 1:
            raise CorrelationError("correlation chain has a cycle: " + " -> ".join([*path, rid]))
        state[rid] = 1
        for ref in by_id[rid].rules:
            visit(ref, [*path, rid])
        state[rid] = 2

    for rid in by_id:
        visit(rid, [])
    return list(correlations)
