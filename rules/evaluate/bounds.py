"""Response caps for the synchronous sandbox: bound what one request can make us compute
and send back, and count what was cut so the response can say so.

An event of 430 KB that holds many catalog literals matches hundreds of rules, and every
predicate of every match used to carry the whole matched value: hundreds of MB of JSON. Here
long values become an excerpt around their span, lists are cut to a few items, and the whole
response has a byte budget (checked per event by :class:`ResponseBudget`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rules.evaluate.results import (
    EventResult,
    IdentifierResult,
    MissingPredicate,
    PredicateResult,
)

__all__ = ["ResponseBudget", "ResponseLimits", "bound_result"]


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """How much of one sandbox response is explained and listed."""

    explained_matches: int = 100  # matches per event with an explanation; the rest bare
    predicates: int = 40  # predicates listed per match or suppression
    context_chars: int = 120  # event value kept each side of a span
    value_chars: int = 400  # values up to this long are kept whole
    rule_values: int = 20  # items of a list-valued rule value (negated predicates)
    missing_values: int = 20  # values per near-miss item
    suppressed: int = 50
    near_misses: int = 25
    listed: int = 50  # unsupported rules, out-of-scope and unknown rule ids per event
    budget_bytes: int = 3 * 1024 * 1024  # explained results; then matches only
    hard_bytes: int = 3_800_000  # after this no further event is listed


def _excerpt(pred: PredicateResult, limits: ResponseLimits, cut: Counter[str]) -> None:
    value = pred.event_value
    if not isinstance(value, str) or len(value) <= limits.value_chars:
        return
    start, end = pred.span if pred.span is not None else (0, 0)
    end = min(end, start + limits.value_chars)  # a very long span is cut too
    lo = max(0, start - limits.context_chars)
    hi = min(len(value), end + limits.context_chars)
    pred.event_value = value[lo:hi]
    pred.event_value_offset = lo
    pred.event_value_length = len(value)
    if pred.span is not None:
        pred.span = (start - lo, end - lo)
    cut["event_values"] += 1


def _bound_predicates(
    idents: list[IdentifierResult], limits: ResponseLimits, cut: Counter[str]
) -> None:
    room = limits.predicates
    for ident in idents:
        if len(ident.predicates) > room:
            cut["predicates"] += len(ident.predicates) - room
            del ident.predicates[room:]
        room -= len(ident.predicates)
        for pred in ident.predicates:
            _excerpt(pred, limits, cut)
            if isinstance(pred.rule_value, list) and len(pred.rule_value) > limits.rule_values:
                cut["rule_values"] += len(pred.rule_value) - limits.rule_values
                pred.rule_value = pred.rule_value[: limits.rule_values]


def _bound_missing(
    items: list[MissingPredicate], limits: ResponseLimits, cut: Counter[str]
) -> None:
    for item in items:
        extra = len(item.missing_values) - limits.missing_values
        if extra > 0:
            cut["missing_values"] += extra
            del item.missing_values[limits.missing_values :]


def _cut_list(items: list[Any], limit: int, name: str, cut: Counter[str]) -> None:
    if len(items) > limit:
        cut[name] += len(items) - limit
        del items[limit:]


def bound_result(
    result: EventResult, limits: ResponseLimits, cut: Counter[str], *, explained: bool = True
) -> EventResult:
    """Cut ``result`` in place to ``limits``; add what was cut to ``cut`` (name -> count).

    ``explained``: the result was asked with explanations, so matches past
    ``limits.explained_matches`` count as cut (the evaluator left them bare already when
    given ``explain_limit``)."""
    for n, match in enumerate(result.matches):
        if n >= limits.explained_matches:
            match.identifiers, match.conditions = [], []
            if explained:
                cut["explanations"] += 1
        _bound_predicates(match.identifiers, limits, cut)
    _cut_list(result.suppressed, limits.suppressed, "suppressed", cut)
    for sup in result.suppressed:
        _bound_predicates(sup.identifiers, limits, cut)
    _cut_list(result.near_misses, limits.near_misses, "near_misses", cut)
    for near in result.near_misses:
        _bound_missing(near.missing, limits, cut)
    _cut_list(result.unsupported, limits.listed, "unsupported", cut)
    _cut_list(result.out_of_scope, limits.listed, "out_of_scope", cut)
    _cut_list(result.unknown_rule_ids, limits.listed, "unknown_rule_ids", cut)
    return result


class ResponseBudget:
    """Bytes of JSON the listed results take so far, against the two budgets."""

    __slots__ = ("limits", "used")

    def __init__(self, limits: ResponseLimits) -> None:
        self.limits = limits
        self.used = 0

    def add(self, payload: Any) -> None:
        self.used += len(json.dumps(payload, default=str, ensure_ascii=False).encode())

    @property
    def explaining(self) -> bool:
        """Whether the next event may still be explained."""
        return self.used < self.limits.budget_bytes

    @property
    def full(self) -> bool:
        """Whether no further event may be listed at all."""
        return self.used >= self.limits.hard_bytes
