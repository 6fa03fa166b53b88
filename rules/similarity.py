"""How alike two rules are, by the indicator identities they share.

An indicator identity is :attr:`rules.model.Predicate.identity`, ``(field, kind, value_key)``:
the same triple the catalog stores once per :class:`catalog.models.Indicator` and counts rules
for (``rule_count``). :class:`SimilarityIndex` keeps an inverted index identity -> rule ids,
so :meth:`SimilarityIndex.corpus_count` equals the catalog's count for the identity and
:meth:`SimilarityIndex.similar` only touches rules that share at least one identity with the
draft (a few postings lists, not 3,780 set intersections).

Three relations are reported for each candidate:

- ``score``: Jaccard similarity ``|A & B| / |A | B|``;
- ``contains_all``: the draft contains all of the other rule's identities (``B <= A``);
- ``contained_in``: the draft's identities are all in the other rule (``A <= B``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from rules.model import ParsedRule

Identity = tuple[str, str, str]
"""``(field, kind, value_key)``: see :attr:`rules.model.Predicate.identity`."""

DUPLICATE_SCORE = 0.9
"""Same logsource and at least this Jaccard score: an exact or near duplicate."""
DEFAULT_LIMIT = 10


@dataclass(frozen=True, slots=True)
class IndexedRule:
    """What the index keeps of one catalog rule."""

    id: str
    title: str
    logsource: str
    """:attr:`rules.model.LogSource.label`, e.g. ``windows/process_creation``."""
    identities: frozenset[Identity]


@dataclass(frozen=True, slots=True)
class Similar:
    """One catalog rule compared with a draft (or with another rule)."""

    id: str
    title: str
    logsource: str
    score: float
    shared: tuple[Identity, ...]
    """The identities both have, in the draft's order."""
    contains_all: bool
    contained_in: bool
    same_logsource: bool
    size: int
    """How many identities the catalog rule has."""

    @property
    def duplicate(self) -> bool:
        """An exact or near duplicate: same logsource and ``score >= DUPLICATE_SCORE``."""
        return self.same_logsource and self.score >= DUPLICATE_SCORE


def identities_of(rule: ParsedRule) -> tuple[Identity, ...]:
    """A rule's distinct indicator identities, in written order."""
    return tuple(dict.fromkeys(i.identity for i in rule.indicators))


def indexed(rule: ParsedRule) -> IndexedRule:
    """The index entry of a parsed rule."""
    return IndexedRule(rule.id, rule.title, rule.logsource.label, frozenset(identities_of(rule)))


def jaccard(a: Set[Identity], b: Set[Identity]) -> float:
    """``|a & b| / |a | b|``; 0.0 when both are empty (two empty rules are not duplicates)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(slots=True)
class SimilarityIndex:
    """Catalog rules by indicator identity; build once per catalog state, then query."""

    rules: dict[str, IndexedRule] = field(default_factory=dict)
    postings: dict[Identity, set[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[IndexedRule]) -> SimilarityIndex:
        index = cls()
        for rule in rules:
            index.add(rule)
        return index

    @classmethod
    def from_parsed(cls, rules: Iterable[ParsedRule]) -> SimilarityIndex:
        return cls.build(indexed(rule) for rule in rules)

    @classmethod
    def from_rows(
        cls,
        rules: Mapping[str, tuple[str, str]],
        links: Iterable[tuple[str, str, str, str]],
    ) -> SimilarityIndex:
        """From database-shaped rows: ``{rule_id: (title, logsource)}`` and
        ``(rule_id, field, kind, value_key)`` links (the catalog's RuleIndicator rows)."""
        identities: dict[str, set[Identity]] = {rule_id: set() for rule_id in rules}
        for rule_id, field_name, kind, value_key in links:
            if rule_id in identities:
                identities[rule_id].add((field_name, kind, value_key))
        return cls.build(
            IndexedRule(rule_id, title, logsource, frozenset(identities[rule_id]))
            for rule_id, (title, logsource) in rules.items()
        )

    def add(self, rule: IndexedRule) -> None:
        """Add (or replace) one rule."""
        if rule.id in self.rules:
            self.remove(rule.id)
        self.rules[rule.id] = rule
        for identity in rule.identities:
            self.postings.setdefault(identity, set()).add(rule.id)

    def remove(self, rule_id: str) -> None:
        rule = self.rules.pop(rule_id, None)
        if rule is None:
            return
        for identity in rule.identities:
            holders = self.postings.get(identity)
            if holders is not None:
                holders.discard(rule_id)
                if not holders:
                    del self.postings[identity]

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self.rules

    def corpus_count(self, identity: Identity) -> int:
        """How many catalog rules have this indicator identity (the catalog's ``rule_count``)."""
        return len(self.postings.get(identity, ()))

    def rules_with(self, identity: Identity) -> frozenset[str]:
        """The ids of the catalog rules that have this indicator identity."""
        return frozenset(self.postings.get(identity, ()))

    def similar(
        self,
        identities: Iterable[Identity],
        *,
        logsource: str | None = None,
        exclude: Iterable[str] = (),
        limit: int = DEFAULT_LIMIT,
        min_score: float = 0.0,
        title: str | None = None,
    ) -> list[Similar]:
        """The catalog rules most similar to a set of identities, best first.

        Only rules sharing at least one identity are candidates. Ranked by score, then the
        number of shared identities, then same logsource first, then the same ``title``
        first (a copy's original among rules with the same indicators), then title.
        ``exclude`` drops rule ids (the rule itself, when comparing a catalog rule with the
        rest).
        """
        wanted = tuple(dict.fromkeys(identities))
        if not wanted or limit <= 0:
            return []
        skipped = set(exclude)
        overlap: Counter[str] = Counter()
        for identity in wanted:
            overlap.update(self.postings.get(identity, ()))
        size = len(wanted)
        ranked: list[tuple[float, int, bool, bool, str, str]] = []
        for rule_id, shared in overlap.items():
            if rule_id in skipped:
                continue
            rule = self.rules[rule_id]
            score = shared / (size + len(rule.identities) - shared)
            if score < min_score:
                continue
            same = logsource is not None and rule.logsource == logsource
            ranked.append((-score, -shared, not same, rule.title != title, rule.title, rule_id))
        # The keys end with the unique rule id: the n smallest are the sorted list's first n.
        best = heapq.nsmallest(limit, ranked)
        return [self._compare(wanted, self.rules[r[-1]], logsource) for r in best]

    def similar_to_rule(self, rule_id: str, *, limit: int = DEFAULT_LIMIT) -> list[Similar]:
        """The other catalog rules most similar to a catalog rule ([] for an unknown id)."""
        rule = self.rules.get(rule_id)
        if rule is None:
            return []
        return self.similar(
            sorted(rule.identities), logsource=rule.logsource, exclude=[rule_id], limit=limit
        )

    def _compare(
        self, wanted: tuple[Identity, ...], rule: IndexedRule, logsource: str | None
    ) -> Similar:
        shared = tuple(i for i in wanted if i in rule.identities)
        union = len(wanted) + len(rule.identities) - len(shared)
        return Similar(
            id=rule.id,
            title=rule.title,
            logsource=rule.logsource,
            score=len(shared) / union if union else 0.0,
            shared=shared,
            contains_all=len(shared) == len(rule.identities),
            contained_in=len(shared) == len(wanted),
            same_logsource=logsource is not None and rule.logsource == logsource,
            size=len(rule.identities),
        )
