"""Literal selection for the prefilter: which casefolded strings a rule needs in an event.

Each matcher, item and identifier has a set of literals one of which every matching event
contains (``None``: no such set). An AND picks its most selective operand (:func:`best`), an
OR needs the union of its operands (:func:`union`). Field sets (required field names) follow
the same shape with :func:`fewest`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from rules.conditions import Node, boolean_op, operands

if TYPE_CHECKING:
    from rules.compile.tree import DetectionNode

__all__ = [
    "Literals",
    "best",
    "condition_fields",
    "condition_literals",
    "fewest",
    "regex_literals",
    "union",
    "weak",
]

Literals = frozenset[str] | None  # None: no literal is required (always a candidate)

_COMMON_CHARS = frozenset(" \t\r\n.,:;-_=/\\'\"()[]{}<>@#$%&*+!?")


def weak(literal: str) -> bool:
    """Literals in nearly every event: a common character, or a number of up to 3 digits
    (timestamps, GUIDs and ids are full of them)."""
    if len(literal) == 1:
        return literal.isascii() and literal.isalnum() or literal in _COMMON_CHARS
    return len(literal) <= 3 and literal.isascii() and literal.isdigit()


def _cost(literals: frozenset[str]) -> float:
    return sum(1.0 / (1 + len(lit)) ** 2 for lit in literals)


def best(sets: list[frozenset[str]]) -> Literals:
    """The most selective literal set (fewest, longest literals); sets containing a weak
    literal (see :func:`weak`) never qualify."""
    strong = [s for s in sets if s and not any(weak(lit) for lit in s)]
    if not strong:
        return None
    return min(strong, key=lambda s: (_cost(s), sorted(s)))


def fewest(sets: list[frozenset[str]]) -> Literals:
    """The smallest set (an AND of field requirements needs only one of them)."""
    if not sets:
        return None
    return min(sets, key=lambda s: (len(s), sorted(s)))


def union(sets: list[Literals], *, literals: bool = True) -> Literals:
    """Any of these sets (an OR): None when one of them is None or (for literal sets) holds a
    weak literal."""
    if not sets:
        return None
    out: set[str] = set()
    for s in sets:
        if s is None or (literals and any(weak(lit) for lit in s)):
            return None
        out |= s
    return frozenset(out)


def condition_literals(node: Node, identifiers: Mapping[str, DetectionNode]) -> Literals:
    """Literals one of which an event needs for the (resolved) condition ``node`` to hold."""
    return _condition_sets(node, identifiers, _IDENTIFIER_LITERALS)


def condition_fields(node: Node, identifiers: Mapping[str, DetectionNode]) -> Literals:
    """Field names one of which an event needs for the (resolved) condition to hold."""
    return _condition_sets(node, identifiers, _IDENTIFIER_FIELDS)


class _SetRules(NamedTuple):
    """How a kind of required set is read off identifiers and combined by AND / OR."""

    of_identifier: Callable[[DetectionNode], Literals]
    conjunction: Callable[[list[frozenset[str]]], Literals]
    disjunction: Callable[[list[Literals]], Literals]


_IDENTIFIER_LITERALS = _SetRules(lambda d: d.literals(), best, union)
_IDENTIFIER_FIELDS = _SetRules(
    lambda d: d.required_fields(), fewest, lambda sets: union(sets, literals=False)
)


def _condition_sets(
    node: Node, identifiers: Mapping[str, DetectionNode], rules: _SetRules
) -> Literals:
    if node.op == "ref":
        return rules.of_identifier(identifiers[node.name])
    if node.op == "not":
        return None
    sets = [_condition_sets(c, identifiers, rules) for c in operands(node)]
    if boolean_op(node) == "and":
        return rules.conjunction([s for s in sets if s is not None])
    return rules.disjunction(sets)


def regex_literals(pattern: str) -> Literals:
    """Casefolded literals one of which every match of ``pattern`` contains, or None.

    Conservative: uses Python's regex parser on the RE2 pattern (anything it cannot parse
    gives None), keeps ASCII literal runs only, and treats every other construct as a break.
    """
    import re._parser as sre_parse  # type: ignore[import-not-found]  # no stubs (private)

    if any(x in pattern for x in ("[:", "[=", "[.")):
        return None  # POSIX classes: Python would read a literal "]" that RE2 does not need
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = sre_parse.parse(pattern)
    except Exception:
        return None
    lits = _sre_required(tree, sre_parse)
    if lits is None or not all(lits):
        return None
    return frozenset(lit.casefold() for lit in lits)


def _sre_required(seq: Any, sp: Any) -> frozenset[str] | None:
    c = sp
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset(["".join(run)]))
            run.clear()

    for op, av in seq:
        if op is c.LITERAL and av < 128:
            run.append(chr(av))
            continue
        flush()
        if op is c.SUBPATTERN:
            sub = _sre_required(av[-1], sp)
            if sub is not None:
                options.append(sub)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) or op is getattr(c, "POSSESSIVE_REPEAT", None):
            lo, _hi, sub_seq = av
            if lo >= 1:
                sub = _sre_required(sub_seq, sp)
                if sub is not None:
                    options.append(sub)
        elif op is getattr(c, "ATOMIC_GROUP", None):
            sub = _sre_required(av, sp)
            if sub is not None:
                options.append(sub)
        elif op is c.BRANCH:
            alts: set[str] = set()
            for alt in av[1]:
                sub = _sre_required(alt, sp)
                if sub is None:
                    alts = set()
                    break
                alts |= sub
            else:
                if alts:
                    options.append(frozenset(alts))
    flush()
    return best(options)
