"""The prefilter: which rules an event can match at all, from their requirements.

Each rule carries clauses that every matching event satisfies
(:mod:`rules.compile.requirements`), made of facts such as "``\\cmd.exe`` occurs in the
event", "``EventID`` is 4688" or "``CommandLine`` is present". Per event the prefilter works
out which of the scope's facts hold, all at once:

1. one Aho-Corasick scan of the casefolded haystack finds every required literal;
2. exact values are looked up per field in a dict (the field's values are the ones the
   matchers will read: :func:`rules.compile.access.field_elements`, cached on the event);
3. presence is a set intersection with the event's names.

A rule is a candidate when every one of its clauses has a fact that holds; the rarest clause
nominates the rule, the others are then checked. Rules without clauses (``not``-only
conditions, null / numeric comparison / cidr / fieldref predicates, regexes without a required
literal, weak literals) always are. Facts are only ever over-approximated (a literal is looked
for in the whole event, not only in the field that needs it), so a rule that could match is
never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ahocorasick  # type: ignore[import-not-found]

from rules.compile import CompiledRule
from rules.compile.access import field_elements
from rules.compile.requirements import (
    CONTAINS,
    EQUALS,
    HAS,
    NUMBER,
    Atom,
    Clause,
    simple_field,
)
from rules.evaluate.analysis import NearIndex, RuleAnalysis
from rules.events import MISSING, Event

__all__ = ["Prefilter", "Scope"]


class _Atoms:
    """The distinct facts of a scope, numbered, with the indexes that evaluate them."""

    def __init__(self) -> None:
        self.ids: dict[Atom | str, int] = {}
        self.literals: dict[str, int] = {}  # literal -> atom id (in any field: see module doc)
        # field -> (casefolded text -> atom ids, number -> atom ids)
        self.equals: dict[str, tuple[dict[str, list[int]], dict[float, list[int]]]] = {}
        self.has: dict[str, int] = {}  # simple field name -> atom id

    def id(self, atom: Atom) -> int:
        kind, name, value = atom
        if kind != NUMBER:
            return self._id(atom)
        # A number is the same fact as its text (a value equal to either makes it hold), so
        # a number's clause {text, number} is one fact.
        aid = self._id(Atom(EQUALS, name, str(value)))
        if name is not None and isinstance(value, int | float):
            owners = self.equals[name][1].setdefault(value, [])
            if aid not in owners:
                owners.append(aid)
        return aid

    def _id(self, atom: Atom) -> int:
        kind, name, value = atom
        # A literal is one fact wherever it is needed: the scan does not say in which field.
        key: Atom | str = str(value) if kind == CONTAINS else atom
        aid = self.ids.get(key)
        if aid is not None:
            return aid
        aid = self.ids[key] = len(self.ids)
        if kind == CONTAINS:
            self.literals[str(value)] = aid
        elif kind == HAS and name is not None:
            self.has[name] = aid
        elif name is not None:  # EQUALS
            texts, _ = self.equals.setdefault(name, ({}, {}))
            texts.setdefault(str(value), []).append(aid)
        return aid


class Prefilter:
    """The requirements of a set of rules, indexed by fact (see the module docstring)."""

    __slots__ = (
        "always",
        "automaton",
        "equals",
        "equals_names",
        "equals_other",
        "has",
        "has_names",
        "must",
        "rest",
        "size",
        "triggers",
    )

    def __init__(self, rules: Sequence[CompiledRule], indices: Iterable[int]) -> None:
        atoms = _Atoms()
        always: list[int] = []
        by_atom: dict[int, list[int]] = {}
        # Clauses left to check when a rule is nominated: one-fact clauses as one set that
        # must be among the facts, the others one by one.
        self.must: dict[int, frozenset[int]] = {}
        self.rest: dict[int, tuple[frozenset[int], ...]] = {}
        for i in indices:
            clauses = rules[i].requirements
            if not clauses:
                always.append(i)
                continue
            # The rarest clause (requirements come rarest first) nominates the rule; the
            # others are checked on nomination.
            trigger = clauses[0]
            for aid in set(map(atoms.id, trigger)):
                by_atom.setdefault(aid, []).append(i)
            rest = {_ids(atoms, c) for c in clauses if c is not trigger and _worth(c)}
            must = frozenset(a for c in rest if len(c) == 1 for a in c)
            if must:
                self.must[i] = must
            others = tuple(c for c in rest if len(c) > 1)
            if others:
                self.rest[i] = others
        self.always = frozenset(always)
        self.triggers = [tuple(by_atom.get(a, ())) for a in range(len(atoms.ids))]
        self.size = len(atoms.literals)
        self.automaton: Any = None
        if atoms.literals:
            automaton = ahocorasick.Automaton()
            for lit, aid in atoms.literals.items():
                automaton.add_word(lit, aid)
            automaton.make_automaton()
            self.automaton = automaton
        self.equals = atoms.equals
        self.equals_names = frozenset(name for name in atoms.equals if simple_field(name))
        self.equals_other = tuple(
            (name, *_gates(name)) for name in atoms.equals if not simple_field(name)
        )
        self.has = atoms.has
        self.has_names = frozenset(atoms.has)

    def facts(self, ev: Event) -> set[int]:
        """The facts (atom ids) that hold for this event."""
        haystack = ev.haystack
        true: set[int] = (
            {aid for _, aid in self.automaton.iter(haystack)}
            if self.automaton is not None and haystack
            else set()
        )
        names = ev.names
        if self.equals:
            self._equal_values(ev, names, true)
        has = self.has
        for name in self.has_names & names:
            true.add(has[name])
        return true

    def _equal_values(self, ev: Event, names: frozenset[str], true: set[int]) -> None:
        """Add the exact-value facts of the fields the event has."""
        equals = self.equals
        fields = ev.fields
        for name in self.equals_names & names:
            texts, numbers = equals[name]
            value = fields.get(name, MISSING)
            kind = value.__class__
            # The common shapes read directly: the same text and number the field's elements
            # hold (access.field_elements), without building them for fields no rule needs.
            if kind is str:
                found = texts.get(value.casefold())
            elif kind is int or kind is float:
                found = texts.get(str(value))
                if found:
                    true.update(found)
                found = numbers.get(value)
            else:
                self._equal_elements(ev, name, true)
                continue
            if found:
                true.update(found)
        if self.equals_other:
            present = _present(ev)
            for name, gate, other in self.equals_other:
                if gate in present or other in present:
                    self._equal_elements(ev, name, true)

    def _equal_elements(self, ev: Event, name: str, true: set[int]) -> None:
        elems = field_elements(ev, name)
        if elems is None:
            return
        texts, numbers = self.equals[name]
        for e in elems:
            folded = e.folded
            if folded is not None:
                found = texts.get(folded)
                if found:
                    true.update(found)
            if numbers:
                raw = e.raw
                if raw.__class__ is not str and isinstance(raw, int | float):
                    found = numbers.get(raw)
                    if found:
                        true.update(found)

    def event_candidates(self, ev: Event) -> set[int]:
        """Rules that may match this event."""
        true = self.facts(ev)
        nominated: set[int] = set()
        triggers = self.triggers
        for aid in true:
            nominated.update(triggers[aid])
        out = set(self.always)
        must = self.must
        rest = self.rest
        for i in nominated:
            needed = must.get(i)
            if needed is not None and not needed <= true:
                continue
            clauses = rest.get(i)
            if clauses is not None and not _all_hold(clauses, true):
                continue
            out.add(i)
        return out


def _all_hold(clauses: tuple[frozenset[int], ...], true: set[int]) -> bool:
    for clause in clauses:  # noqa: SIM110 (a loop is faster than all() here)
        if clause.isdisjoint(true):
            return False
    return True


def _gates(name: str) -> tuple[str, str]:
    """What must be among :func:`_present` for a lookup of ``name`` to find anything: the
    first dotted part of the name, or of the name without spaces (see ``Event.lookup``)."""
    return name.partition(".")[0], name.replace(" ", "").partition(".")[0]


_PRESENT_KEY = ("prefilter", "present")  # match_cache key (field names are strings)


def _present(ev: Event) -> frozenset[str]:
    """The event's names and the first dotted part of each: a lookup of a name whose gates
    (:func:`_gates`) are both missing here finds nothing (exact key, space-less alias and
    dotted path all start with one of these)."""
    cache = ev.match_cache
    present: frozenset[str] | None = cache.get(_PRESENT_KEY)
    if present is None:
        names = ev.names
        heads = {k.partition(".")[0] for k in names if isinstance(k, str) and "." in k}
        present = cache[_PRESENT_KEY] = names | heads if heads else names
    return present


_SHORT = 3  # literals shorter than this are in most events ("c:", "-s", "os", "0x")


def _worth(clause: Clause) -> bool:
    """Whether checking a (non-nominating) clause pays: not when one of its literals is short.
    Such a literal is found in most events (so the clause rarely rules a rule out) and every
    occurrence costs the scan a hit."""
    return all(a.kind != CONTAINS or len(str(a.value)) >= _SHORT for a in clause)


def _ids(atoms: _Atoms, clause: Clause) -> frozenset[int]:
    return frozenset(map(atoms.id, clause))


class Scope:
    """The rules that fit one set of event logsources, with their prefilter."""

    __slots__ = ("indices", "index_set", "near", "prefilter", "unsupported")

    def __init__(
        self, rules: Sequence[CompiledRule], indices: list[int], unsupported: list[int]
    ) -> None:
        self.indices = indices
        self.index_set = frozenset(indices)
        self.unsupported = unsupported
        self.prefilter = Prefilter(rules, indices)
        self.near: NearIndex | None = None

    def near_index(self, analysis: Callable[[int], RuleAnalysis]) -> NearIndex:
        """Built on first use: only explanations need it."""
        if self.near is None:
            self.near = NearIndex({i: analysis(i) for i in self.indices}, self.indices)
        return self.near
