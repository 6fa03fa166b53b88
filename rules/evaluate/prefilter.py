"""The prefilter: which rules an event can match at all, from their required literals.

Each rule has a set of casefolded literals at least one of which must occur in the event for
the rule to match, and a set of field names one of which must be present (see
:mod:`rules.compile.literals`); one Aho-Corasick automaton per scope scans the casefolded
values of the event. Rules without a literal set (``not``-only conditions, null / exists /
numeric comparison / cidr / fieldref predicates, regexes without a required literal, or a
common one-character literal) are candidates whenever their fields allow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ahocorasick  # type: ignore[import-not-found]

from rules.compile import CompiledRule
from rules.evaluate.analysis import NearIndex, RuleAnalysis
from rules.events import Event

__all__ = ["Prefilter", "Scope"]


class Prefilter:
    """One Aho-Corasick automaton over the required literals of a set of rules.

    A rule is a candidate when one of its literals (``CompiledRule.literals``) occurs in the
    event and one of its required fields (``CompiledRule.fields``) is present; rules without
    literals always are, subject to the same field check.
    """

    __slots__ = ("always", "automaton", "fields", "literal_rules", "size")

    def __init__(self, rules: Sequence[CompiledRule], indices: Iterable[int]) -> None:
        by_literal: dict[str, list[int]] = {}
        always: list[int] = []
        indices = list(indices)
        self.fields: dict[int, frozenset[str]] = {}  # rule -> field names one of which it needs
        for i in indices:
            needed = rules[i].fields
            if needed is not None:
                self.fields[i] = needed
        for i in indices:
            lits = rules[i].literals
            if lits is None:
                always.append(i)
                continue
            for lit in lits:
                by_literal.setdefault(lit, []).append(i)
        self.always = frozenset(always)
        self.literal_rules: list[tuple[int, ...]] = []
        self.automaton: Any = None
        self.size = len(by_literal)
        if by_literal:
            automaton = ahocorasick.Automaton()
            for lit, owners in by_literal.items():
                automaton.add_word(lit, len(self.literal_rules))
                self.literal_rules.append(tuple(owners))
            automaton.make_automaton()
            self.automaton = automaton

    def candidates(self, haystack: str, names: frozenset[str] | None = None) -> set[int]:
        """Rules that may match an event with this haystack and these field names."""
        out = set(self.always)
        if self.automaton is not None and haystack:
            literal_rules = self.literal_rules
            for lid in {lid for _, lid in self.automaton.iter(haystack)}:
                out.update(literal_rules[lid])
        if names is not None:
            fields = self.fields
            out = {i for i in out if i not in fields or not fields[i].isdisjoint(names)}
        return out

    def event_candidates(self, ev: Event) -> set[int]:
        """:meth:`candidates` for an event."""
        return self.candidates(ev.haystack, ev.names)


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
