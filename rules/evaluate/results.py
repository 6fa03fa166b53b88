"""The sandbox's result types: what :meth:`Evaluator.evaluate` returns, as dataclasses.

``to_dict()`` gives the JSON the API and pages serve; field names are that JSON's keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rules.compile import Span

__all__ = [
    "ConditionResult",
    "EventResult",
    "IdentifierResult",
    "MissingPredicate",
    "NearMiss",
    "PredicateResult",
    "RuleMatch",
    "StageResult",
    "Suppression",
    "UnsupportedRule",
]


class _ToDict:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass(slots=True)
class PredicateResult(_ToDict):
    """One rule value that decided a search identifier, and where it matched."""

    identifier: str
    field: str | None  # the rule's field; None for keywords
    kind: str  # ItemNode.label: modifiers as written ("contains|windash") or equals/keyword/null
    rule_value: Any
    event_value: Any  # the event value (array element) that matched; None when absent
    span: Span | None  # [start, end) in the event value's text
    matched_field: str | None  # the event field that matched (keywords: the value's path)
    present: bool = True  # False: the field was absent (null / exists: false)
    negated: bool = False  # the item was negated (|neq): it held because nothing matched
    # Set by rules.evaluate.bounds when a long event value is cut to an excerpt around the
    # span: ``event_value`` is then text[offset : offset + len(event_value)] of a value of
    # ``event_value_length`` characters, and ``span`` indexes the excerpt.
    event_value_offset: int = 0
    event_value_length: int | None = None


@dataclass(slots=True)
class IdentifierResult(_ToDict):
    name: str
    value: bool
    predicates: list[PredicateResult] = field(default_factory=list)


@dataclass(slots=True)
class StageResult(_ToDict):
    """One top-level AND conjunct of a condition (index 1..n)."""

    index: int
    text: str
    value: bool
    negated: bool
    identifiers: list[str]


@dataclass(slots=True)
class ConditionResult(_ToDict):
    group: int  # index in the rule's list of conditions
    text: str
    value: bool
    stages: list[StageResult]


@dataclass(slots=True)
class _RuleResult(_ToDict):
    """The rule a result is about (the first keys of its JSON)."""

    rule_id: str
    title: str
    level: str
    logsource: str


@dataclass(slots=True)
class RuleMatch(_RuleResult):
    conditions: list[ConditionResult] = field(default_factory=list)
    identifiers: list[IdentifierResult] = field(default_factory=list)


@dataclass(slots=True)
class Suppression(_RuleResult):
    """The selection matched but a top-level ``not`` filter suppressed the rule."""

    filters: list[str]  # filter identifiers that matched
    stages: list[str]  # the failing ``not`` stages
    conditions: list[ConditionResult] = field(default_factory=list)
    identifiers: list[IdentifierResult] = field(default_factory=list)


@dataclass(slots=True)
class MissingPredicate(_ToDict):
    """A detection item of the missing identifier that did not hold."""

    identifier: str
    field: str | None
    kind: str
    missing_values: list[Any]  # for |all: the values absent; otherwise all alternatives
    matched: int  # values of this item that matched (|all)
    total: int


@dataclass(slots=True)
class NearMiss(_RuleResult):
    """Forcing one identifier true would make the rule match (see rules.evaluate.near_miss)."""

    missing_identifier: str
    reason: str  # "identifier", "item" or "all-values"
    matched_identifiers: list[str]
    missing: list[MissingPredicate]
    score: float  # share of the rule's relevant predicates that matched (0..1)
    explanation: str


@dataclass(slots=True)
class UnsupportedRule(_ToDict):
    rule_id: str
    title: str
    reasons: list[str]


@dataclass(slots=True)
class EventResult(_ToDict):
    matches: list[RuleMatch]
    suppressed: list[Suppression]
    near_misses: list[NearMiss]
    rules_in_scope: int  # evaluable rules considered (after scoping and rule_ids)
    rules_evaluated: int  # rules evaluated in full (after the prefilter)
    elapsed_ms: float
    logsources: list[str]  # the event's logsources (product/category/service)
    scoped: bool
    unsupported: list[UnsupportedRule] = field(default_factory=list)
    out_of_scope: list[str] = field(default_factory=list)  # requested rule_ids not in scope
    unknown_rule_ids: list[str] = field(default_factory=list)
    event_index: int = 0

    @property
    def matched_ids(self) -> list[str]:
        return [m.rule_id for m in self.matches]
