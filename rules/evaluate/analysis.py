"""Static facts about a rule that miss analysis needs, built once per rule on first use.

:class:`RuleAnalysis` holds, per condition, its positive and ``not`` stages and positively
used identifiers, each identifier in disjunctive normal form over its items, and bit masks
for an exact pre-check (:meth:`RuleAnalysis.feasible`). :class:`NearIndex` is one
Aho-Corasick automaton per scope over every literal of every positive item, so an event only
examines the rules for which a near miss is possible at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import ahocorasick  # type: ignore[import-not-found]

from rules.compile import CompiledRule, Condition, ConditionStage, DetectionNode, ItemNode
from rules.compile.literals import union
from rules.conditions import Node

__all__ = ["ConditionFacts", "NearIndex", "Polarity", "RuleAnalysis", "polarity_identifiers"]

_DNF_LIMIT = 64  # alternatives kept per identifier; beyond, the pre-check gives up (truncated)
_EVIDENCE_LIMIT = 10  # identifiers per condition for the exhaustive evidence search


class Polarity(NamedTuple):
    name: str
    positive: bool  # False: under an odd number of ``not``


def polarity_identifiers(condition: Condition) -> list[Polarity]:
    """Every identifier reference of a condition with whether it is used positively."""
    return _polarity(condition.tree, True)


def _polarity(node: Node, positive: bool) -> list[Polarity]:
    if node.op == "ref":
        return [Polarity(node.name, positive)]
    if node.op == "not":
        return _polarity(node.args[0], not positive)
    out: list[Polarity] = []
    for c in node.args:
        out.extend(_polarity(c, positive))
    return out


def _evidence_identifiers(cond: Condition, positives: list[str]) -> set[str]:
    """Positive identifiers J for which some assignment has J true, another positive
    identifier I false, the condition false, and the condition true once I is forced true."""
    names = cond.identifiers
    if len(names) > _EVIDENCE_LIMIT:
        return set(positives)
    found: set[str] = set()
    for bits in range(1 << len(names)):
        values = {n: bool(bits >> k & 1) for k, n in enumerate(names)}
        if cond.holds(values):
            continue
        for i in positives:
            if values[i]:
                continue
            values[i] = True
            flips = cond.holds(values)
            values[i] = False
            if flips:
                found.update(j for j in positives if j != i and values[j])
    return found


def _dnf_size(node: DetectionNode | ItemNode) -> int:
    if isinstance(node, ItemNode):
        return 1
    sizes = [_dnf_size(c) for c in node.children]
    if not node.all:
        return sum(sizes)
    total = 1
    for n in sizes:
        total = min(total * n, _DNF_LIMIT + 1)
    return total


def _any_literals(item: ItemNode) -> frozenset[str] | None:
    """Literals one of which is present whenever any value of the item matches."""
    return union([m.literals() for m in item.matchers], literals=False) or None


def alternatives(node: DetectionNode | ItemNode, limit: int = _DNF_LIMIT) -> list[list[ItemNode]]:
    """The identifier in disjunctive normal form over its items (capped)."""
    if isinstance(node, ItemNode):
        return [[node]]
    if not node.all:
        alts: list[list[ItemNode]] = []
        for child in node.children:
            alts.extend(alternatives(child, limit))
        return alts[:limit]
    alts = [[]]
    for child in node.children:
        child_alts = alternatives(child, limit)
        alts = [a + b for a in alts for b in child_alts][:limit]
    return alts


def _has_all_values(item: ItemNode) -> bool:
    """An ``|all`` item with several values (it can be partly matched)."""
    return item.all and len(item.matchers) > 1


class ConditionFacts(NamedTuple):
    condition: Condition
    positive_stages: list[ConditionStage]
    negated_stages: list[ConditionStage]
    positives: list[str]  # identifiers used positively, in order


class _AltMask(NamedTuple):
    items: int  # bits of the alternative's items
    size: int  # number of items
    all_values: int  # bits of its |all items with several values


class _IdentifierMasks(NamedTuple):
    is_evidence: bool  # its holding can make the rule "one identifier short"
    alternatives: list[_AltMask]


class RuleAnalysis:
    """Static facts about a rule's conditions that miss analysis needs (built once)."""

    __slots__ = (
        "alt_masks",
        "alternatives",
        "base",
        "conditions",
        "item_literals",
        "partial_possible",
        "single",
        "suppressible",
        "truncated",
    )

    def __init__(self, rule: CompiledRule) -> None:
        self.conditions: list[ConditionFacts] = []
        for cond in rule.conditions:
            positives = list(dict.fromkeys(n for n, p in polarity_identifiers(cond) if p))
            self.conditions.append(
                ConditionFacts(
                    cond,
                    [st for st in cond.stages if not st.negated],
                    [st for st in cond.stages if st.negated],
                    positives,
                )
            )
        # Suppression needs a condition with both positive and `not` top-level stages.
        self.suppressible = any(c.positive_stages and c.negated_stages for c in self.conditions)
        self.alternatives = {name: alternatives(node) for name, node in rule.identifiers.items()}
        # Whether an identifier alone can be "one item short" (a map of >= 2 items or an
        # |all item with several values): otherwise it needs another identifier that held.
        self.partial_possible = {
            name: any(len(alt) >= 2 or any(_has_all_values(it) for it in alt) for alt in alts)
            for name, alts in self.alternatives.items()
        }
        only = rule.conditions[0].tree if len(rule.conditions) == 1 else None
        self.single = only.name if only is not None and only.op == "ref" else None
        self.item_literals: list[frozenset[str] | None] = []
        self.base = 0  # bits of items without literals: they may always hold
        self.alt_masks: list[_IdentifierMasks] = []
        self.truncated = False
        self._build_masks(rule)

    def _build_masks(self, rule: CompiledRule) -> None:
        """Bit masks over the items of positively used identifiers for the pre-check."""
        positives = list(dict.fromkeys(n for c in self.conditions for n in c.positives))
        evidence: set[str] = set()
        for facts in self.conditions:
            evidence |= _evidence_identifiers(facts.condition, facts.positives)
        bits: dict[int, int] = {}  # id(item) -> bit
        for name in positives:
            if _dnf_size(rule.identifiers[name]) > _DNF_LIMIT:
                self.truncated = True
            masks: list[_AltMask] = []
            for alt in self.alternatives[name]:
                alt_mask = 0
                all_mask = 0
                for it in alt:
                    bit = bits.get(id(it))
                    if bit is None:
                        bit = bits[id(it)] = len(self.item_literals)
                        lits = None if it.negated else _any_literals(it)
                        self.item_literals.append(lits)
                        if lits is None:
                            self.base |= 1 << bit
                    alt_mask |= 1 << bit
                    if _has_all_values(it):
                        all_mask |= 1 << bit
                masks.append(_AltMask(alt_mask, len(alt), all_mask))
            self.alt_masks.append(_IdentifierMasks(name in evidence, masks))

    def feasible(self, possible: int) -> bool:
        """Whether a near miss is possible when only the items in ``possible`` can hold."""
        if self.truncated:
            return True
        # Attributes, not unpacking: unpacking a NamedTuple is slower, and this runs for
        # every rule the near-miss index hits.
        for masks in self.alt_masks:
            for alt in masks.alternatives:
                missing = (alt.items & ~possible).bit_count()
                if missing == 0 and masks.is_evidence:
                    return True
                if alt.size >= 2 and missing <= 1:
                    return True
                if alt.size == 1 and alt.all_values & possible:
                    return True
        return False


class NearIndex:
    """Which rules could be near misses: an automaton over every literal of every positive
    detection item, mapped to (rule, item bit); :meth:`RuleAnalysis.feasible` then decides
    from the items that may hold whether a near miss is possible at all (exact pre-check:
    an item that holds has one of its literals in the event, or has none)."""

    __slots__ = ("always", "analyses", "automaton", "entries")

    def __init__(self, analyses: Mapping[int, RuleAnalysis], indices: Iterable[int]) -> None:
        by_literal: dict[str, dict[int, int]] = {}
        always: list[int] = []
        self.analyses = analyses
        for i in indices:
            an = analyses[i]
            if an.feasible(an.base):
                always.append(i)
                continue
            for bit, lits in enumerate(an.item_literals):
                if lits:
                    for lit in lits:
                        owners = by_literal.setdefault(lit, {})
                        owners[i] = owners.get(i, 0) | (1 << bit)
        self.always = always
        self.entries: list[tuple[tuple[int, int], ...]] = []  # per word: (rule, item bits)
        self.automaton: Any = None
        if by_literal:
            automaton = ahocorasick.Automaton()
            for lit, owners in by_literal.items():
                automaton.add_word(lit, len(self.entries))
                self.entries.append(tuple(owners.items()))
            automaton.make_automaton()
            self.automaton = automaton

    def candidates(self, haystack: str) -> set[int]:
        """Rules for which a near miss is possible given the event's haystack."""
        out = set(self.always)
        if self.automaton is None or not haystack:
            return out
        seen = {lid for _, lid in self.automaton.iter(haystack)}
        masks: dict[int, int] = {}
        entries = self.entries
        for lid in seen:
            for rule, mask in entries[lid]:
                masks[rule] = masks.get(rule, 0) | mask
        analyses = self.analyses
        for rule, mask in masks.items():
            an = analyses[rule]
            if an.feasible(mask | an.base):
                out.add(rule)
        return out
