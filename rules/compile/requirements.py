"""What an event must contain for a rule to match, as a conjunction of clauses (the prefilter).

A rule's requirements are *clauses* that must all hold; a clause holds when one of its
:class:`Atom` facts holds. Each atom is a fact the prefilter can check cheaply on an event:

* ``CONTAINS`` (field, literal): the casefolded literal occurs in the casefolded text of one
  of the field's values (field ``None``: anywhere in the event's haystack);
* ``EQUALS`` (field, text): one of the field's values casefolds to exactly ``text``;
* ``NUMBER`` (field, number): one of the field's values is a JSON number equal to ``number``;
* ``HAS`` (field): the field is present (exact or space-less key; see ``Event.names``).

Soundness is the one rule here: whenever the rule matches an event, every clause has an atom
that holds. So an AND keeps its operands' clauses, an OR keeps one clause (the union of one
clause of each operand, and none when an operand has none), a ``not`` keeps nothing. Field
attribution is only used for the matchers whose semantics are known here (plain strings,
regexes, numbers, expansions of those); any other matcher contributes its
``Matcher.literals()`` as event-wide ``CONTAINS`` atoms, the contract those promise.

Compared with :mod:`rules.compile.literals` (one literal set per rule), this keeps every
required item, so a rule needing ``EventID: 1`` *and* a command line literal is only a
candidate when both are there, and ``Image|endswith: \\cmd.exe`` does not let through events
where only ``ParentImage`` ends so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from rules.compile.literals import weak
from rules.compile.matchers import (
    EXACT,
    ExpansionMatcher,
    Matcher,
    NumberMatcher,
    RegexMatcher,
    StringMatcher,
)
from rules.compile.tree import DetectionNode, ItemNode
from rules.conditions import Node, boolean_op, operands

__all__ = [
    "CONTAINS",
    "EQUALS",
    "HAS",
    "NUMBER",
    "Atom",
    "Clause",
    "Requirements",
    "clause_cost",
    "rule_requirements",
]

CONTAINS, EQUALS, NUMBER, HAS = range(4)
MAX_CLAUSES = 6  # the most selective ones are kept: each costs one set test per candidate


class Atom(NamedTuple):
    """One checkable fact about an event (see the module docstring)."""

    kind: int
    field: str | None
    value: str | float | None


Clause = frozenset[Atom]
Requirements = tuple[Clause, ...]  # all must hold; () : the rule is always a candidate


def simple_field(name: str | None) -> bool:
    """A field name whose presence ``Event.names`` answers (no dotted path, no spaces)."""
    return name is not None and "." not in name and " " not in name


def _atom_cost(atom: Atom) -> float:
    """A guess of how often the atom holds (lower: rarer), for choosing clauses."""
    if atom.kind in (EQUALS, NUMBER):
        return 0.01
    if atom.kind == HAS:
        return 0.3
    weight = 1.0 / (1 + len(str(atom.value))) ** 2
    return weight * (0.5 if atom.field is not None else 1.0)


def clause_cost(clause: Clause) -> float:
    return min(1.0, sum(_atom_cost(a) for a in clause))


def _sorted_clauses(clauses: Iterable[Clause]) -> list[Clause]:
    return sorted(set(clauses), key=lambda c: (clause_cost(c), sorted(map(repr, c))))


def _contains_atoms(field: str | None, literals: frozenset[str] | None) -> Clause | None:
    if not literals or any(weak(lit) for lit in literals):
        return None  # in nearly every event: not worth a clause
    return frozenset(Atom(CONTAINS, field, lit) for lit in literals)


def _matcher_atoms(field: str | None, m: Matcher) -> Clause | None:
    """Atoms one of which holds whenever ``m`` holds on ``field``'s values (None: unknown)."""
    if m.absent:
        return None  # holds without the field: no fact about the event's values
    if isinstance(m, ExpansionMatcher):
        parts = [_matcher_atoms(field, v) for v in m.variants]
        if not parts or any(p is None for p in parts):
            return None
        return frozenset().union(*parts)  # type: ignore[arg-type]
    if field is not None and isinstance(m, NumberMatcher) and m.text.casefold() == m.text:
        # A string equal to the number's text, or a JSON number equal to it.
        return frozenset([Atom(EQUALS, field, m.text), Atom(NUMBER, field, m.number)])
    if field is not None and isinstance(m, StringMatcher) and not m.cased and m.mode == EXACT:
        return frozenset([Atom(EQUALS, field, m.literal)])
    # Strings match the field's (casefolded) text, regexes its text, numbers their text:
    # a required literal is in the folded text of one of that field's values.
    known = isinstance(m, StringMatcher | RegexMatcher | NumberMatcher)
    return _contains_atoms(field if known else None, m.literals())


def _item_clauses(item: ItemNode) -> list[Clause]:
    if item.negated or not item.matchers:
        return []
    clauses: list[Clause] = []
    atoms = [_matcher_atoms(item.field, m) for m in item.matchers]
    if item.all:  # every value must hold (expansions are one value each)
        clauses.extend(a for a in atoms if a is not None)
    elif atoms and all(a is not None for a in atoms):
        clauses.append(frozenset().union(*atoms))  # type: ignore[arg-type]
    if not clauses and item.required_fields() and simple_field(item.field):
        clauses.append(frozenset([Atom(HAS, item.field, None)]))
    return clauses


def _any_of(alternatives: list[list[Clause]]) -> list[Clause]:
    """An OR: one clause, the union of each alternative's most selective clause."""
    if len(alternatives) == 1:
        return alternatives[0]
    if not alternatives or any(not a for a in alternatives):
        return []
    return [frozenset().union(*(_sorted_clauses(a)[0] for a in alternatives))]


def _detection_clauses(node: DetectionNode | ItemNode) -> list[Clause]:
    if isinstance(node, ItemNode):
        return _item_clauses(node)
    parts = [_detection_clauses(c) for c in node.children]
    if node.all:
        return [c for p in parts for c in p]
    return _any_of(parts)


def _condition_clauses(node: Node, identifiers: Mapping[str, DetectionNode]) -> list[Clause]:
    if node.op == "ref":
        return _detection_clauses(identifiers[node.name])
    if node.op == "not":
        return []
    parts = [_condition_clauses(c, identifiers) for c in operands(node)]
    if boolean_op(node) == "and":
        return [c for p in parts for c in p]
    return _any_of(parts)


def _presence(clause: Clause) -> Clause | None:
    """The fields one of which the clause needs present: every atom is about the values of
    a named field, so when one holds, that field is there (None: an atom about the whole
    event, or a field ``Event.names`` cannot answer for)."""
    names = {a.field for a in clause}
    if not all(simple_field(n) for n in names):
        return None
    return frozenset(Atom(HAS, n, None) for n in names)


def rule_requirements(
    trees: Iterable[Node], identifiers: Mapping[str, DetectionNode]
) -> Requirements:
    """The clauses every event matching one of these conditions (OR-ed) satisfies, most
    selective first, subsumed ones dropped (a superset of another clause says nothing more)."""
    clauses = _any_of([_condition_clauses(t, identifiers) for t in trees])
    clauses += [p for p in map(_presence, clauses) if p is not None]
    kept: list[Clause] = []
    for c in sorted(set(clauses), key=len):
        if not any(k <= c for k in kept):
            kept.append(c)
    return tuple(_sorted_clauses(kept)[:MAX_CLAUSES])
