"""The explaining interpreter: which predicates decided each search identifier, and where.

A read-only path over the compiled rule (:mod:`rules.compile`): every verdict comes from the
same ``fast`` closures as ``CompiledRule.match`` (so the explanation agrees with the match by
construction, pinned by the "fast path == explanation" tests), and matchers' ``find`` only
locates the value and span once an item is known to hold. What the explainer builds for
itself (Aho-Corasick locators for long ``contains`` lists) lives in :class:`Explainer`, not
in the compiled trees.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ahocorasick  # type: ignore[import-not-found]

from rules.compile import (
    CompiledRule,
    DetectionNode,
    Elements,
    Found,
    IdentifierValues,
    ItemNode,
    field_elements,
    keyword_elements,
    keyword_values,
    map_span,
)
from rules.evaluate.results import ConditionResult, IdentifierResult, PredicateResult, StageResult
from rules.events import Event

__all__ = ["Explainer", "Trace", "condition_results"]

_LOCATOR_MIN = 64  # contains-lists this long are located with one Aho-Corasick pass


#: What tracing a node gives: the predicates that made it hold, or None when it does not
#: hold (a list, not a (holds, predicates) pair: tracing is on the sandbox's request path).
Trace = list[PredicateResult] | None


class _Locator(NamedTuple):
    """One automaton over an item's plain ``contains`` values; ``owners[slot]`` is the index
    of the value a word belongs to (the first of equal values)."""

    automaton: Any
    owners: list[int]
    literals: list[str]  # per owner slot: the casefolded value


class _Located(NamedTuple):
    value_index: int
    found: Found


def _predicate(
    item: ItemNode, ident: str, rule_value: Any, found: Found, ev: Event
) -> PredicateResult:
    idx, span = found
    if item.field is None:
        path, element = keyword_elements(ev)[idx]
        return PredicateResult(ident, None, item.label, rule_value, element.raw, span, path)
    elems = field_elements(ev, item.field)
    if idx < 0:  # about the field itself (null, exists)
        value = elems[0].raw if elems else None
        return PredicateResult(
            ident,
            item.field,
            item.label,
            rule_value,
            value,
            span,
            item.field,
            present=elems is not None,
        )
    assert elems is not None
    return PredicateResult(
        ident, item.field, item.label, rule_value, elems[idx].raw, span, item.field
    )


def _negated_predicate(item: ItemNode, ident: str, elems: Elements) -> PredicateResult:
    """A negated item holds because none of its values matched: name them all."""
    values = item.values().rule_values
    return PredicateResult(
        ident,
        item.field,
        item.label,
        values if len(values) != 1 else values[0],
        elems[0].raw if elems else None,
        None,
        item.field,
        present=elems is not None,
        negated=True,
    )


class Explainer:
    """Traces rules over events. One per :class:`~rules.evaluate.Evaluator`: it caches the
    locators it builds per item (keyed by the item, which lives as long as the evaluator)."""

    __slots__ = ("_locators",)

    def __init__(self) -> None:
        self._locators: dict[ItemNode, _Locator | None] = {}

    def identifiers(
        self, rule: CompiledRule, ev: Event
    ) -> tuple[dict[str, bool], list[IdentifierResult]]:
        """Every search identifier's value and the predicates that decided it."""
        values: dict[str, bool] = {}
        results: list[IdentifierResult] = []
        for name, node in rule.identifiers.items():
            preds = self.trace(node, ev, name)
            values[name] = preds is not None
            results.append(IdentifierResult(name, preds is not None, preds or []))
        return values, results

    def trace(self, node: DetectionNode | ItemNode, ev: Event, ident: str) -> Trace:
        """The predicates of the first alternative of ``node`` that holds (None: none does)."""
        if isinstance(node, ItemNode):
            return self._trace_item(node, ev, ident)
        if node.all:
            preds: list[PredicateResult] = []
            for child in node.children:
                p = self.trace(child, ev, ident)
                if p is None:
                    return None
                preds.extend(p)
            return preds
        for child in node.children:
            found = self.trace(child, ev, ident)
            if found is not None:
                return found
        return None

    def _trace_item(self, item: ItemNode, ev: Event, ident: str) -> Trace:
        if not item.fast(ev):  # the grouped check first: locating values only when it holds
            return None
        elems = keyword_values(ev) if item.field is None else field_elements(ev, item.field)
        if item.negated:
            return [_negated_predicate(item, ident, elems)]
        matchers, values = item.values()
        if item.all and len(matchers) > 1:
            preds: list[PredicateResult] = []
            for m, rv in zip(matchers, values, strict=True):
                found = m.find(ev, elems)
                if found is None:  # pragma: no cover - the fast path said every value holds
                    return None
                preds.append(_predicate(item, ident, rv, found, ev))
            return preds
        located = self._locate_contains(item, elems)
        if located is not None:
            rule_value = values[located.value_index]
            return [_predicate(item, ident, rule_value, located.found, ev)]
        for m, rv in zip(matchers, values, strict=True):
            found = m.find(ev, elems)
            if found is not None:
                return [_predicate(item, ident, rv, found, ev)]
        return None  # pragma: no cover - the fast path said a value holds

    def _locator(self, item: ItemNode) -> _Locator | None:
        try:
            return self._locators[item]
        except KeyError:
            pass
        plain = [(n, m.contains_literal()) for n, m in enumerate(item.matchers)]
        words = [(n, lit) for n, lit in plain if lit is not None]
        locator: _Locator | None = None
        if len(words) >= _LOCATOR_MIN:
            automaton = ahocorasick.Automaton()
            owners: list[int] = []
            literals: list[str] = []
            for n, lit in words:
                if lit not in automaton:
                    automaton.add_word(lit, len(owners))
                    owners.append(n)
                    literals.append(lit)
            automaton.make_automaton()
            locator = _Locator(automaton, owners, literals)
        self._locators[item] = locator
        return locator

    def _locate_contains(self, item: ItemNode, elems: Elements) -> _Located | None:
        """For a long OR-list of plain ``contains`` values, one Aho-Corasick pass finds the
        first value present (instead of one ``find`` per value)."""
        if not elems:
            return None
        locator = self._locator(item)
        if locator is None:
            return None
        for i, e in enumerate(elems):
            text, folded = e.text, e.folded
            if folded is None:
                continue
            for end, slot in locator.automaton.iter(folded):
                lit = locator.literals[slot]
                span = map_span(text or "", folded, (end - len(lit) + 1, end + 1))
                return _Located(locator.owners[slot], Found(i, span))
        return None


def condition_results(rule: CompiledRule, values: IdentifierValues) -> list[ConditionResult]:
    """Each condition and its stages evaluated over the identifiers' values."""
    results: list[ConditionResult] = []
    for group, cond in enumerate(rule.conditions):
        stages = [
            StageResult(
                index=i,
                text=stage.text,
                value=stage.holds(values),
                negated=stage.negated,
                identifiers=list(stage.identifiers),
            )
            for i, stage in enumerate(cond.stages, start=1)
        ]
        results.append(ConditionResult(group, cond.text, cond.holds(values), stages))
    return results
