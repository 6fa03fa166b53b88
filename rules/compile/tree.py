"""The compiled detection: items, search identifiers and conditions.

* :class:`ItemNode` is one ``field|modifiers: values`` entry (or a keyword list) with its
  value matchers; :class:`DetectionNode` is a search identifier's definition.
* :class:`Condition` is one condition of the rule: its tree (a :class:`rules.conditions.Node`
  with selectors resolved, the same tree the stored stages come from) with the closures that
  evaluate it over identifier values, and its :class:`ConditionStage` list.

Each node carries ``fast``, the closure of the yes/no path (:mod:`rules.compile.fastpath`);
explanations read these trees and never write to them (:mod:`rules.evaluate.explain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from rules.compile.literals import Literals, best, fewest, union
from rules.compile.matchers import Matcher, NullMatcher
from rules.conditions import Node
from rules.events import Event

__all__ = [
    "Condition",
    "ConditionStage",
    "DetectionNode",
    "IdentifierValues",
    "ItemNode",
    "ItemValues",
]

IdentifierValues = Mapping[str, bool]  # search identifier -> whether it holds


def _never(ev: Event) -> bool:
    return False


class ItemValues(NamedTuple):
    """An item's values: matchers and the values as written, index for index."""

    matchers: Sequence[Matcher]
    rule_values: Sequence[Any]


_NULL_VALUES = ItemValues((NullMatcher(),), (None,))  # `field: []` reads as null


@dataclass(slots=True, eq=False)
class ItemNode:
    """One ``field|modifiers: values`` entry (or a keyword list) of a search identifier."""

    field: str | None  # None: a keyword list
    #: How explanations name the comparison: the modifiers as written ("contains|windash",
    #: "re|i"), else "equals", "keyword" or "null" (not the catalog's indicator kind).
    label: str
    matchers: list[Matcher]
    rule_values: list[Any]  # the values as written, one per matcher
    all: bool
    negated: bool
    fast: Callable[[Event], bool] = dataclasses.field(repr=False, default=_never)

    def values(self) -> ItemValues:
        """The item's matchers and values as written; ``field: []`` reads as null."""
        if not self.matchers:
            return _NULL_VALUES
        return ItemValues(self.matchers, self.rule_values)

    def literals(self) -> Literals:
        if self.negated or not self.matchers:
            return None
        sets = [m.literals() for m in self.matchers]
        if self.all:
            return best([s for s in sets if s is not None])
        return union(sets)

    def required_fields(self) -> Literals:
        """{field} when the item can only hold if its field is present (an exact key)."""
        name = self.field
        if (
            name is None
            or self.negated
            or not self.matchers
            or any(m.absent for m in self.matchers)
            or "." in name
            or " " in name
        ):
            return None
        return frozenset([name])


@dataclass(slots=True, eq=False)
class DetectionNode:
    """A search identifier's definition: items AND-ed (a map) or alternatives OR-ed (a list)."""

    all: bool
    children: list[DetectionNode | ItemNode]
    fast: Callable[[Event], bool] = dataclasses.field(repr=False, default=_never)

    def literals(self) -> Literals:
        sets = [c.literals() for c in self.children]
        if self.all:
            return best([s for s in sets if s is not None])
        return union(sets)

    def required_fields(self) -> Literals:
        sets = [c.required_fields() for c in self.children]
        if self.all:
            return fewest([s for s in sets if s is not None])
        return union(sets, literals=False)


@dataclass(frozen=True, slots=True, eq=False)
class ConditionStage:
    """A stage as the sandbox shows it: a top-level AND conjunct, nested ANDs flattened
    (:func:`rules.conditions.flat_conjuncts`), spelled as pySigma does."""

    node: Node
    text: str  # rules.conditions.canonical_text
    negated: bool
    identifiers: tuple[str, ...]  # in order of first appearance
    holds: Callable[[IdentifierValues], bool] = dataclasses.field(repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """One condition of a rule: the text as written and its resolved tree."""

    text: str
    tree: Node  # rules.conditions.resolve_selectors applied
    identifiers: tuple[str, ...]  # in order of first appearance
    stages: tuple[ConditionStage, ...]
    holds: Callable[[IdentifierValues], bool] = dataclasses.field(repr=False)
