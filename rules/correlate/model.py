"""Correlation rules as the engine evaluates them, and what an evaluation returns.

A :class:`CorrelationRule` is built by :func:`rules.correlate.parse.parse_correlation` (pySigma
validates the document) and has its references resolved to rule ids by
:func:`rules.correlate.parse.resolve_references`; :class:`rules.correlate.engine.CorrelationEngine`
only ever sees resolved rules.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.errors import RuleError

__all__ = [
    "COUNT_TYPES",
    "TEMPORAL_TYPES",
    "VALUE_TYPES",
    "Bound",
    "CorrelationError",
    "CorrelationMatch",
    "CorrelationRule",
    "UnresolvedReferenceError",
    "iso_time",
]

TEMPORAL_TYPES = frozenset({"temporal", "temporal_ordered"})
COUNT_TYPES = frozenset({"event_count", "value_count"}) | TEMPORAL_TYPES
VALUE_TYPES = frozenset(
    {"value_count", "value_sum", "value_avg", "value_percentile", "value_median"}
)
OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}
MAX_LISTED_OCCURRENCES = 200
"""Occurrences listed per match in its JSON (``occurrence_count`` gives them all)."""
SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "neq": "!="}


class CorrelationError(RuleError, code="bad-correlation"):
    """A correlation or filter document is invalid (type, timespan, condition, chain)."""


class UnresolvedReferenceError(CorrelationError, code="unresolved-reference"):
    """A correlation or filter names rules the catalog does not hold."""

    def __init__(self, message: str, references: list[str]) -> None:
        super().__init__(message)
        self.references = references


@dataclass(frozen=True, slots=True)
class Bound:
    """One criterion of a condition: ``gte: 3`` is ``Bound("gte", 3)``."""

    op: str
    value: float

    def holds(self, aggregate: float) -> bool:
        return OPERATORS[self.op](aggregate, self.value)

    @property
    def text(self) -> str:
        number = int(self.value) if float(self.value).is_integer() else self.value
        return f"{SYMBOLS[self.op]} {number}"


@dataclass(frozen=True, slots=True)
class CorrelationRule:
    """One correlation document. ``rules`` are resolved ids (rule or correlation ids) in the
    order written; ``references`` the same references as written (id or name)."""

    id: str
    title: str
    type: str
    rules: tuple[str, ...]
    timespan: str
    seconds: float
    bounds: tuple[Bound, ...]
    group_by: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    name: str = ""
    level: str = ""
    description: str = ""
    fields: tuple[str, ...] = ()  # condition ``field`` (value_* types)
    percentile: int | None = None
    # alias -> {resolved rule id -> event field}
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Extended temporal condition ("a and not b"): the expression as written, and as a
    # predicate over the set of resolved rule ids present in a window.
    expression: str = ""
    expression_test: Callable[[frozenset[str]], bool] | None = field(default=None, compare=False)
    generate: bool = False

    @property
    def condition_text(self) -> str:
        """``count >= 3``, ``sum(bytes) > 100 and <= 200``, or the extended expression."""
        if self.expression:
            return self.expression
        subject = {
            "event_count": "count",
            "value_count": f"distinct({', '.join(self.fields)})",
            "temporal": "distinct rules",
            "temporal_ordered": "rules in order",
            "value_sum": f"sum({', '.join(self.fields)})",
            "value_avg": f"avg({', '.join(self.fields)})",
            "value_percentile": f"p{self.percentile}({', '.join(self.fields)})",
            "value_median": f"median({', '.join(self.fields)})",
        }[self.type]
        return f"{subject} " + " and ".join(b.text for b in self.bounds)

    def group_field(self, name: str, rule_id: str) -> str:
        """The event field that holds group-by field ``name`` for events of ``rule_id``."""
        mapping = self.aliases.get(name)
        if mapping is None:
            return name
        return mapping.get(rule_id, name)


@dataclass(slots=True)
class CorrelationMatch:
    """A correlation that held, and the events that formed it.

    ``events`` are the input indices (chained correlations: the events of the inner matches),
    ``times``/``rules``/``values`` run parallel to ``entries`` (one per counted occurrence:
    an event, or an inner correlation match); ``value`` is the aggregate the condition held on.
    """

    id: str
    title: str
    type: str
    level: str
    group: dict[str, Any]
    events: list[int]
    times: list[float]
    rules: list[str]
    values: list[Any]
    value: float | int
    start: float
    end: float
    condition: str
    timespan: str
    inner: list[str] = field(default_factory=list)  # ids of chained correlation matches used
    entry_events: list[list[int]] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        """One sentence naming the events, their times and the aggregate."""
        group = ", ".join(f"{k}={v}" for k, v in self.group.items()) or "all events"
        parts = []
        for events, when, rule in zip(self.entry_events, self.times, self.rules, strict=True):
            names = "+".join(f"#{i}" for i in events)
            parts.append(f"{names} ({rule} at {iso_time(when)})")
        shown = "; ".join(parts[:20]) + (f"; and {len(parts) - 20} more" if len(parts) > 20 else "")
        return (
            f"{self.title}: {group}, {len(parts)} occurrence(s) within {self.timespan} "
            f"[{iso_time(self.start)} .. {iso_time(self.end)}]: {shown}; "
            f"{self.condition} held with {_number(self.value)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "type": self.type,
            "level": self.level,
            "group": self.group,
            "events": self.events,
            "value": self.value,
            "condition": self.condition,
            "timespan": self.timespan,
            "window": {"start": iso_time(self.start), "end": iso_time(self.end)},
            "occurrences": [
                {"events": ev, "time": iso_time(t), "rule_id": r, "value": v}
                for ev, t, r, v in itertools.islice(
                    zip(self.entry_events, self.times, self.rules, self.values, strict=True),
                    MAX_LISTED_OCCURRENCES,
                )
            ],
            "occurrence_count": len(self.times),
            "chained": self.inner,
            "explanation": self.explanation,
        }


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def iso_time(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2024-05-01T10:00:00.000Z``)."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
