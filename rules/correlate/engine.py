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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.correlate.model import (
    COUNT_TYPES,
    TEMPORAL_TYPES,
    Bound,
    CorrelationError,
    CorrelationMatch,
    CorrelationRule,
)
from rules.events import MISSING

__all__ = ["CorrelationEngine", "CorrelationStats", "ordered_count", "percentile"]

MISSING_GROUP = object()
_ABSENT = object()
# Tuples, not ``int | float``: a union in isinstance() is built anew on every call.
_NUMBERS = (int, float)
_SIMPLE = frozenset({str, int, float, bool})


@dataclass(slots=True)
class CorrelationStats:
    occurrences: int = 0
    missing_group_field: int = 0
    dropped_groups: int = 0
    dropped_occurrences: int = 0
    dropped_matches: int = 0
    dropped_chained: int = 0
    """Matches not passed on to the correlations built on them: the chain budget was spent."""

    @property
    def limited(self) -> bool:
        """Whether a bound left something out (groups, occurrences, matches, chained)."""
        return bool(
            self.dropped_groups
            or self.dropped_occurrences
            or self.dropped_matches
            or self.dropped_chained
        )

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
    """One group's open window: its occurrences in time order, and running counts.

    Occurrences are kept in parallel deques of plain values (``times`` floats, ``refs`` the
    event index, or ``(events, label)`` for an inner correlation match, ``rules`` the rule
    id, ``values`` the counted value) rather than one tuple each: nothing the garbage
    collector tracks is allocated per occurrence, which on 100,000 live events was a third
    of the stage's time.
    """

    __slots__ = ("dead", "group", "refs", "rule_counts", "rules", "times", "values")

    def __init__(self, group: dict[str, Any], with_values: bool) -> None:
        self.group = group
        self.times: deque[float] = deque()
        self.refs: deque[int | tuple[tuple[int, ...], str]] = deque()
        self.rules: deque[str] = deque()
        self.values: deque[Any] | None = deque() if with_values else None
        # value_count: value -> occurrences; temporal types: rule id -> occurrences
        self.rule_counts: dict[Any, int] = {}
        self.dead = False


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile with linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ordered_count(rules: Iterable[str], order: Sequence[str]) -> int:
    """How many of ``order``'s rules occur in that order in ``rules`` (greedy: earliest
    first)."""
    position = 0
    for rule in rules:
        if position < len(order) and rule == order[position]:
            position += 1
            if position == len(order):
                break
    return position


def _ordered_positions(rules: Sequence[str], order: Sequence[str]) -> list[int]:
    """The positions of the occurrences that formed the ordered sequence (the greedy
    chain), or all of them when no sequence formed (a closing condition such as ``lt``)."""
    chain: list[int] = []
    for position, rule in enumerate(rules):
        if len(chain) < len(order) and rule == order[len(chain)]:
            chain.append(position)
    return chain or list(range(len(rules)))


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
        "add", "adds", "condition", "counts_kind", "engine", "group_fields", "groups",
        "growing", "key_field", "kind", "matched", "max_entries", "need", "plain", "rule",
        "seconds", "single_value", "value_fields",
    )  # fmt: skip

    def __init__(self, rule: CorrelationRule, engine: CorrelationEngine) -> None:
        self.rule = rule
        self.engine = engine
        self.growing = _is_growing(rule)
        self.groups: OrderedDict[Any, _Window] = OrderedDict()
        self.value_fields = rule.fields
        self.single_value = rule.fields[0] if len(rule.fields) == 1 else None
        self.matched = 0
        self.adds = 0
        # group-by field per referenced rule (aliases resolved once)
        self.group_fields = {
            rid: tuple(rule.group_field(name, rid) for name in rule.group_by) for rid in rule.rules
        }
        # One group-by field: which field of each referenced rule's events (the hot path
        # reads it without building a key tuple).
        self.key_field = {
            rid: names[0] for rid, names in self.group_fields.items() if len(names) == 1
        }
        # What ``rule_counts`` counts: 1 values (value_count), 2 rule ids (temporal types).
        self.counts_kind = (
            2 if rule.type in TEMPORAL_TYPES else 1 if rule.type == "value_count" else 0
        )
        # Growing conditions are gt/gte on whole counts: the count needed to hold.
        self.need = max((_needed(b) for b in rule.bounds), default=1)
        self.plain = rule.expression_test is None
        self.seconds = rule.seconds
        self.max_entries = engine.max_window_events
        # 0: count the occurrences; 1: the distinct values or rules (rule_counts); 2: always
        # check the condition (extended temporal expressions).
        self.kind = 2 if not self.plain else 0 if rule.type == "event_count" else 1
        self.condition = rule.condition_text  # computed once: every match reports it
        # The adding method is chosen once: the hot path never asks which kind it is.
        self.add = self._add_growing if self.growing else self._add_closing

    # -- adding ---------------------------------------------------------------------------

    def _add_growing(self, time: float, event: Any, rule_id: str, ref: Any) -> None:
        # The hot path of the stage (>= 50,000 events/s): inlined on purpose.
        # One group-by field (the usual case): its value itself is the key, read straight
        # from the mapping (no lookup cache grows on the event); aliases without spaces and
        # dotted paths through Event.lookup.
        name = self.key_field.get(rule_id)
        if name is not None:
            key = event.fields.get(name, _ABSENT)
            if key is _ABSENT:
                key = event.lookup(name)
            if key is None or key is MISSING or key is MISSING_GROUP:
                self.engine.stats.missing_group_field += 1
                return
            if type(key) not in _SIMPLE:
                key = _key_part(key)
        else:
            key = self._key(event, rule_id)
            if key is None:
                return
        groups = self.groups
        window = groups.get(key)
        if window is None:
            window = self._open(key, time)
        else:  # growing groups are kept in last-update order (expiry, LRU)
            groups.move_to_end(key)
        times = window.times
        times.append(time)
        window.refs.append(ref)
        window.rules.append(rule_id)
        counts_kind = self.counts_kind
        if counts_kind:
            counted = rule_id
            if counts_kind == 1:
                counted = self._value(event)
                window.values.append(counted)  # type: ignore[union-attr]
            if counted is not None:
                counts = window.rule_counts
                counts[counted] = counts.get(counted, 0) + 1
        if len(times) > self.max_entries:
            self._pop_oldest(window)
            self.engine.stats.dropped_occurrences += 1
        horizon = time - self.seconds
        if times[0] < horizon:  # the window slides: drop what is older (_pop_oldest inlined)
            refs, rules = window.refs, window.rules
            if not counts_kind:
                while times[0] < horizon:
                    times.popleft()
                    refs.popleft()
                    rules.popleft()
            else:
                counts, values = window.rule_counts, window.values
                while times[0] < horizon:
                    times.popleft()
                    refs.popleft()
                    counted = rules.popleft()
                    if values is not None:
                        counted = values.popleft()
                    if counted is not None:
                        left = counts[counted] - 1
                        if left:
                            counts[counted] = left
                        else:
                            del counts[counted]
        kind = self.kind
        if kind == 2 or (len(window.rule_counts) if kind else len(times)) >= self.need:
            held, aggregate = self._holds(window)
            if held:
                del groups[key]
                self._emit(window, time, aggregate)
        self.adds += 1
        if not self.adds & 255:
            self._expire(time)

    def _add_closing(self, time: float, event: Any, rule_id: str, ref: Any) -> None:
        key = self._key(event, rule_id)
        if key is None:
            return
        window = self.groups.get(key)
        if window is None:
            window = self._open(key, time)
        window.times.append(time)
        window.refs.append(ref)
        window.rules.append(rule_id)
        counted: Any = rule_id if self.counts_kind == 2 else None
        if window.values is not None:
            value = self._value(event)
            window.values.append(value)
            if self.counts_kind == 1:
                counted = value
        if counted is not None:
            counts = window.rule_counts
            counts[counted] = counts.get(counted, 0) + 1
        if len(window.times) > self.max_entries:
            self._pop_oldest(window)
            self.engine.stats.dropped_occurrences += 1

    def _key(self, event: Any, rule_id: str) -> Any:
        """The group key of an occurrence (the value itself for one group-by field, else a
        tuple of values), or None when it lacks a group-by field."""
        fields = event.fields
        names = self.group_fields[rule_id]
        if not names:
            return ()
        parts = []
        for name in names:
            value = fields.get(name, _ABSENT)
            if value is _ABSENT:
                value = event.lookup(name)
            if value is None or value is MISSING or value is MISSING_GROUP:
                self.engine.stats.missing_group_field += 1
                return None
            parts.append(value if type(value) in _SIMPLE else _key_part(value))
        return parts[0] if len(parts) == 1 else tuple(parts)

    def _open(self, key: Any, time: float) -> _Window:
        groups = self.groups
        group_by = self.rule.group_by
        one = len(group_by) == 1  # one group-by field: the key is its value, not a tuple
        group = {group_by[0]: key} if one else dict(zip(group_by, key, strict=True))
        window = _Window(group, bool(self.value_fields))
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

    def _value(self, event: Any) -> Any:
        name = self.single_value
        if name is not None:
            value = event.fields.get(name, _ABSENT)
            if value is _ABSENT:
                value = event.lookup(name)
            return None if value is MISSING_GROUP or _is_missing(value) else _key_part(value)
        values = [event.lookup(f) for f in self.value_fields]
        if any(v is MISSING_GROUP or _is_missing(v) for v in values):
            return None
        return tuple(_key_part(v) for v in values)

    def _pop_oldest(self, window: _Window) -> None:
        window.times.popleft()
        window.refs.popleft()
        rule = window.rules.popleft()
        counted = rule if self.counts_kind == 2 else None
        if window.values is not None:
            value = window.values.popleft()
            if self.counts_kind == 1:
                counted = value
        if counted is not None:
            counts = window.rule_counts
            counts[counted] -= 1
            if not counts[counted]:
                del counts[counted]

    def _expire(self, now: float) -> None:
        """Drop growing groups whose every occurrence is older than the timespan (the
        OrderedDict is in last-update order, so only the front needs looking at)."""
        if not self.growing:
            return
        horizon = now - self.rule.seconds
        groups = self.groups
        while groups:
            key, window = next(iter(groups.items()))
            times = window.times  # empty: the window being opened
            if not times or times[-1] >= horizon:  # its last occurrence is recent
                break
            del groups[key]

    # -- conditions -----------------------------------------------------------------------

    def _aggregate(self, window: _Window) -> float | None:
        """The figure the condition is checked on; None when there is none (no numbers)."""
        kind = self.rule.type
        if kind == "event_count":
            return float(len(window.times))
        if kind == "value_count":
            if self.growing:
                return float(len(window.rule_counts))
            return float(len({v for v in window.values or () if v is not None}))
        if kind == "temporal":
            return float(len(window.rule_counts))
        if kind == "temporal_ordered":
            return float(ordered_count(window.rules, self.rule.rules))
        numbers = [n for n in (_number(v) for v in window.values or ()) if n is not None]
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
                order = self.rule.rules
                present = frozenset(order[: ordered_count(window.rules, order)])
            else:
                present = frozenset(window.rule_counts)
            return test(present), float(len(present))
        aggregate = self._aggregate(window)
        if aggregate is None:
            return False, 0.0
        return all(b.holds(aggregate) for b in self.rule.bounds), aggregate

    def close(self, key: Any, window: _Window, at: float) -> None:
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
        times = list(window.times)
        refs = list(window.refs)
        rules = list(window.rules)
        values = list(window.values) if window.values is not None else [None] * len(times)
        if rule.type == "temporal_ordered":
            keep = _ordered_positions(rules, rule.rules)
            if len(keep) < len(times):
                times = [times[i] for i in keep]
                refs = [refs[i] for i in keep]
                rules = [rules[i] for i in keep]
                values = [values[i] for i in keep]
        entry_events = [list(r[0]) if isinstance(r, tuple) else [r] for r in refs]
        seen = dict.fromkeys(i for events in entry_events for i in events)
        self.matched += 1
        match = CorrelationMatch(
            id=rule.id,
            title=rule.title,
            type=rule.type,
            level=rule.level,
            group=dict(window.group),
            events=list(seen),
            times=times,
            rules=rules,
            values=values,
            value=int(value) if rule.type in COUNT_TYPES else value,
            start=times[0],
            end=times[-1],
            condition=self.condition,
            timespan=rule.timespan,
            inner=[r[1] for r in refs if isinstance(r, tuple) and r[1]],
            entry_events=entry_events,
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
        max_chained: int | None = None,
        on_match: Callable[[CorrelationMatch], None] | None = None,
    ) -> None:
        self.max_groups = max_groups
        # Chains are acyclic, but a chain's matches multiply along every path of it: 19
        # correlations each counting all the ones before double the work per correlation (one
        # event took 10 s). Matches passed on to chained correlations are budgeted, so the
        # work stays linear in the events; the default allows ten per reported match.
        self.max_chained = max_chained if max_chained is not None else 10 * max_matches
        self._chained = 0
        # A sink for long streams (background jobs): each match goes there as it is found
        # instead of into ``matches``, so memory stays bounded by the open windows.
        self.on_match = on_match
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
        self._routes: dict[tuple[str, ...], list[tuple[Callable[..., None], str]]] = {}
        self._heap: list[tuple[float, int, _State, Any, _Window]] = []
        self._seq = itertools.count()
        self._now = float("-inf")

    @property
    def rule_ids(self) -> frozenset[str]:
        """Every rule id some correlation consumes."""
        return frozenset(self._consumers)

    def schedule(self, at: float, state: _State, key: Any, window: _Window) -> None:
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
        # _dispatch inlined: this runs once per matched event.
        ids = rule_ids if type(rule_ids) is tuple else tuple(rule_ids)
        targets = self._routes.get(ids)
        if targets is None:
            targets = self._route(ids)
        if targets:
            self.stats.occurrences += len(targets)
            for add, rid in targets:
                add(time, event, rid, index)

    def _dispatch(self, time: float, event: Any, rule_ids: Iterable[str], ref: Any) -> None:
        ids = tuple(rule_ids)
        targets = self._routes.get(ids)
        if targets is None:
            targets = self._route(ids)
        if targets:
            self.stats.occurrences += len(targets)
            for add, rid in targets:
                add(time, event, rid, ref)

    def _route(self, ids: tuple[str, ...]) -> list[tuple[Callable[..., None], str]]:
        """Which states an event with these matched rules feeds (their adding methods), and
        as which rule: an event matching two referenced rules counts once per correlation
        (the first rule wins)."""
        targets: dict[int, tuple[Callable[..., None], str]] = {}
        for rid in ids:
            for state in self._consumers.get(rid, ()):
                targets.setdefault(id(state), (state.add, rid))
        found = list(targets.values())
        if len(self._routes) < 4096:  # distinct match sets are few; cap the cache anyway
            self._routes[ids] = found
        return found

    def emit(self, match: CorrelationMatch, at: float, label: str) -> None:
        if self.on_match is not None:
            self.on_match(match)
        elif len(self.matches) < self.max_matches:
            self.matches.append(match)
        else:
            self.stats.dropped_matches += 1
        if match.id in self._consumers:
            # Chains are acyclic (checked at construction), so this recursion is bounded in
            # depth; the budget bounds it in breadth.
            if self._chained >= self.max_chained:
                self.stats.dropped_chained += 1
                return
            self._chained += 1
            self._dispatch(at, _Pseudo(match.group), (match.id,), (tuple(match.events), label))

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
