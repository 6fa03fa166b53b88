"""The sandbox evaluator: which rules match an event, why, and which almost did.

Build an :class:`Evaluator` once from the catalog's :class:`~rules.model.ParsedRule` list
(:func:`get_evaluator` keeps one per process, rebuilt when the catalog fingerprint changes),
then call :meth:`Evaluator.evaluate` per event.

Per event:

1. **Scope.** Unless ``all_rules``, only rules whose logsource fits the event are considered
   (:mod:`rules.taxonomy`: Channel / Provider_Name / EventID). An event without such an
   identity (syslog, cloud, proxy JSON...) is matched against the non-Windows rules and the
   Windows rules the taxonomy cannot place in an event log; Windows event-log rules need the
   event's Channel/EventID. ``not``-only rules would otherwise match unrelated events.
2. **Prefilter.** Each rule has a set of casefolded literals at least one of which must occur
   in the event for the rule to match, and a set of field names one of which must be present
   (see :mod:`rules.compile`); one Aho-Corasick automaton per scope scans the casefolded
   values of the event. Rules without a literal set (``not``-only conditions, null / exists /
   numeric comparison / cidr / fieldref predicates, regexes without a required literal, or a
   common one-character literal) are candidates whenever their fields allow.
3. **Match.** Candidates run their compiled closures.
4. **Explain** (``explain=True``). Matched rules are re-run by a tracing interpreter that
   records each condition stage, each search identifier and the predicates that decided them
   (field, kind, rule value, event value, span). Candidates that did not match are checked for:

   * *suppression*: every positive top-level conjunct of a condition holds but a top-level
     ``not`` conjunct fails; the filter identifiers that matched are named;
   * *near misses*: forcing one false, positively used search identifier true would make the
     rule match, and either another positive identifier already matched ("one identifier
     short", reason ``identifier``), or inside that identifier a single detection item is
     missing from an otherwise matching map of at least two items (reason ``item``), or the
     missing item is a ``|all`` list of which some but not all values matched (reason
     ``all-values``, "2 of 3 values"). Scores are the share of the rule's positive identifiers
     (and of the missing identifier's items/values) that matched; the best
     ``near_miss_limit`` are returned. Rules are only examined when a near miss is possible
     given which of their items' literals occur in the event (an exact pre-check), and
     suppressed rules are not near misses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ahocorasick

from rules.compile import (
    CONTAINS,
    CompiledRule,
    CondNode,
    DetectionNode,
    ItemNode,
    Matcher,
    NullMatcher,
    Span,
    StringMatcher,
    compile_rule,
    field_elements,
    keyword_elements,
    keyword_values,
    map_span,
)
from rules.events import Event, event_from_mapping, scriptblock_event
from rules.model import ParsedRule

__all__ = [
    "ConditionResult",
    "Evaluator",
    "EventResult",
    "IdentifierResult",
    "MissingPredicate",
    "NearMiss",
    "PredicateResult",
    "RuleMatch",
    "StageResult",
    "Suppression",
    "UnsupportedRule",
    "clear_evaluator_cache",
    "get_evaluator",
]

LogsourceKey = tuple[str, str, str]


# --------------------------------------------------------------------------------------------
# Taxonomy adapter


def _load_taxonomy() -> tuple[
    Callable[[Mapping[str, Any]], frozenset[LogsourceKey]],
    Callable[[LogsourceKey, frozenset[LogsourceKey]], bool],
    Callable[[LogsourceKey], bool],
]:
    """(logsources_for_event, logsource_matches, is_scopable) from :mod:`rules.taxonomy`."""
    from rules import taxonomy

    is_scopable = getattr(taxonomy, "is_scopable", lambda ls: True)
    return taxonomy.logsources_for_event, taxonomy.logsource_matches, is_scopable


# --------------------------------------------------------------------------------------------
# Results


class _ToDict:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass(slots=True)
class PredicateResult(_ToDict):
    """One rule value that decided a search identifier, and where it matched."""

    identifier: str
    field: str | None  # the rule's field; None for keywords
    kind: str  # modifiers as written ("contains|windash", "re|i") or equals/keyword/null
    rule_value: Any
    event_value: Any  # the event value (array element) that matched; None when absent
    span: Span | None  # [start, end) in the event value's text
    matched_field: str | None  # the event field that matched (keywords: the value's path)
    present: bool = True  # False: the field was absent (null / exists: false)
    negated: bool = False  # the item was negated (|neq): it held because nothing matched


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
class RuleMatch(_ToDict):
    rule_id: str
    title: str
    level: str
    logsource: str
    conditions: list[ConditionResult] = field(default_factory=list)
    identifiers: list[IdentifierResult] = field(default_factory=list)


@dataclass(slots=True)
class Suppression(_ToDict):
    """The selection matched but a top-level ``not`` filter suppressed the rule."""

    rule_id: str
    title: str
    level: str
    logsource: str
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
class NearMiss(_ToDict):
    rule_id: str
    title: str
    level: str
    logsource: str
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


# --------------------------------------------------------------------------------------------
# Prefilter


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
        self.fields = {i: rules[i].fields for i in indices if rules[i].fields is not None}
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
        return self.candidates(ev.haystack, ev.names)


class _Scope:
    __slots__ = ("indices", "index_set", "near", "prefilter", "unsupported")

    def __init__(
        self, rules: Sequence[CompiledRule], indices: list[int], unsupported: list[int]
    ) -> None:
        self.indices = indices
        self.index_set = frozenset(indices)
        self.unsupported = unsupported
        self.prefilter = Prefilter(rules, indices)
        self.near: _NearIndex | None = None

    def near_index(self, analysis: Callable[[int], _RuleAnalysis]) -> _NearIndex:
        """Built on first use: only explanations need it."""
        if self.near is None:
            self.near = _NearIndex({i: analysis(i) for i in self.indices}, self.indices)
        return self.near


class _NearIndex:
    """Which rules could be near misses: an automaton over every literal of every positive
    detection item, mapped to (rule, item bit); :meth:`_RuleAnalysis.feasible` then decides
    from the items that may hold whether a near miss is possible at all (exact pre-check:
    an item that holds has one of its literals in the event, or has none)."""

    __slots__ = ("always", "analyses", "automaton", "entries")

    def __init__(self, analyses: Mapping[int, _RuleAnalysis], indices: Iterable[int]) -> None:
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
        self.entries: list[tuple[tuple[int, int], ...]] = []
        self.automaton: Any = None
        if by_literal:
            automaton = ahocorasick.Automaton()
            for lit, owners in by_literal.items():
                automaton.add_word(lit, len(self.entries))
                self.entries.append(tuple(owners.items()))
            automaton.make_automaton()
            self.automaton = automaton

    def candidates(self, haystack: str) -> set[int]:
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


# --------------------------------------------------------------------------------------------
# Tracing interpreter (explanations)


def _item_matchers(item: ItemNode) -> tuple[list[Matcher], list[Any]]:
    if not item.matchers:  # `field: []` reads as null
        return [NullMatcher()], [None]
    return item.matchers, item.rule_values


def _predicate(
    item: ItemNode, ident: str, rule_value: Any, found: tuple[int, Span | None], ev: Event
) -> PredicateResult:
    idx, span = found
    if item.field is None:
        path, elem = keyword_elements(ev)[idx]
        return PredicateResult(ident, None, item.kind, rule_value, elem[0], span, path)
    if idx < 0:
        elems = field_elements(ev, item.field)
        present = elems is not None
        value = elems[0][0] if elems else None
        return PredicateResult(
            ident, item.field, item.kind, rule_value, value, span, item.field, present=present
        )
    elems = field_elements(ev, item.field)
    assert elems is not None
    return PredicateResult(
        ident, item.field, item.kind, rule_value, elems[idx][0], span, item.field
    )


def _trace_item(item: ItemNode, ev: Event, ident: str) -> tuple[bool, list[PredicateResult]]:
    holds = item.fast(ev)  # the grouped check first: locating values only when it holds
    if not holds:
        return False, []
    elems = keyword_values(ev) if item.field is None else field_elements(ev, item.field)
    matchers, values = _item_matchers(item)
    if item.negated:
        present = elems is not None
        value = elems[0][0] if elems else None
        return True, [
            PredicateResult(
                ident,
                item.field,
                item.kind,
                values if len(values) != 1 else values[0],
                value,
                None,
                item.field,
                present=present,
                negated=True,
            )
        ]
    preds: list[PredicateResult] = []
    if item.all and len(matchers) > 1:
        for m, rv in zip(matchers, values, strict=True):
            found = m.find(ev, elems)
            if found is None:  # pragma: no cover - the fast path said every value holds
                return False, []
            preds.append(_predicate(item, ident, rv, found, ev))
        return True, preds
    located = _locate_contains(item, elems)
    if located is not None:
        index, found = located
        return True, [_predicate(item, ident, values[index], found, ev)]
    for m, rv in zip(matchers, values, strict=True):
        found = m.find(ev, elems)
        if found is not None:
            return True, [_predicate(item, ident, rv, found, ev)]
    return False, []  # pragma: no cover - the fast path said a value holds


_LOCATOR_MIN = 64


def _locate_contains(item: ItemNode, elems: Any) -> tuple[int, tuple[int, Span]] | None:
    """For a long OR-list of plain ``contains`` values, one Aho-Corasick pass finds the
    first value present (instead of one ``find`` per value): (value index, (element, span))."""
    if not elems:
        return None
    if item.locator is False:
        plain = [
            (n, m.lit)
            for n, m in enumerate(item.matchers)
            if isinstance(m, StringMatcher) and not m.cased and m.mode == CONTAINS
        ]
        if len(plain) < _LOCATOR_MIN:
            item.locator = None
        else:
            automaton = ahocorasick.Automaton()
            owners: list[int] = []
            for n, lit in plain:
                if lit not in automaton:
                    automaton.add_word(lit, len(owners))
                    owners.append(n)
            automaton.make_automaton()
            item.locator = (automaton, owners)
    locator = item.locator
    if locator is None:
        return None
    automaton, owners = locator
    for i, (_raw, text, cf) in enumerate(elems):
        if cf is None:
            continue
        for end, slot in automaton.iter(cf):
            n = owners[slot]
            lit = item.matchers[n].lit  # type: ignore[attr-defined]
            span = map_span(text or "", cf, (end - len(lit) + 1, end + 1))
            return n, (i, span)
    return None


def _trace_detection(
    node: DetectionNode | ItemNode, ev: Event, ident: str
) -> tuple[bool, list[PredicateResult]]:
    if isinstance(node, ItemNode):
        return _trace_item(node, ev, ident)
    preds: list[PredicateResult] = []
    if node.all:
        for child in node.children:
            ok, p = _trace_detection(child, ev, ident)
            if not ok:
                return False, []
            preds.extend(p)
        return True, preds
    for child in node.children:
        ok, p = _trace_detection(child, ev, ident)
        if ok:
            return True, p
    return False, []


def _polarity_identifiers(node: CondNode, positive: bool = True) -> list[tuple[str, bool]]:
    if node.op == "id":
        return [(node.name, positive)]
    if node.op == "not":
        return _polarity_identifiers(node.children[0], not positive)
    out: list[tuple[str, bool]] = []
    for c in node.children:
        out.extend(_polarity_identifiers(c, positive))
    return out


def _condition_results(rule: CompiledRule, values: dict[str, bool]) -> list[ConditionResult]:
    results: list[ConditionResult] = []
    for group, (cond, text) in enumerate(zip(rule.conditions, rule.condition_texts, strict=True)):
        stages = [
            StageResult(
                index=i,
                text=stage.text,
                value=stage.evaluate(values),
                negated=stage.op == "not",
                identifiers=stage.identifiers(),
            )
            for i, stage in enumerate(cond.conjuncts(), start=1)
        ]
        results.append(ConditionResult(group, text, cond.evaluate(values), stages))
    return results


def _explain_identifiers(
    rule: CompiledRule, ev: Event
) -> tuple[dict[str, bool], list[IdentifierResult]]:
    values: dict[str, bool] = {}
    results: list[IdentifierResult] = []
    for name, node in rule.identifiers.items():
        ok, preds = _trace_detection(node, ev, name)
        values[name] = ok
        results.append(IdentifierResult(name, ok, preds))
    return values, results


_DNF_LIMIT = 64
_EVIDENCE_LIMIT = 10


def _evidence_identifiers(cond: CondNode, positives: list[str]) -> set[str]:
    """Positive identifiers J for which some assignment has J true, another positive
    identifier I false, the condition false, and the condition true once I is forced true."""
    names = cond.identifiers()
    if len(names) > _EVIDENCE_LIMIT:
        return set(positives)
    found: set[str] = set()
    for bits in range(1 << len(names)):
        values = {n: bool(bits >> k & 1) for k, n in enumerate(names)}
        if cond.evaluate(values):
            continue
        for i in positives:
            if values[i]:
                continue
            values[i] = True
            flips = cond.evaluate(values)
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
    out: set[str] = set()
    for m in item.matchers:
        lits = m.literals()
        if lits is None:
            return None
        out |= lits
    return frozenset(out) if out else None


def _alternatives(node: DetectionNode | ItemNode, limit: int = _DNF_LIMIT) -> list[list[ItemNode]]:
    """The identifier in disjunctive normal form over its items (capped)."""
    if isinstance(node, ItemNode):
        return [[node]]
    if not node.all:
        alts: list[list[ItemNode]] = []
        for child in node.children:
            alts.extend(_alternatives(child, limit))
        return alts[:limit]
    alts = [[]]
    for child in node.children:
        child_alts = _alternatives(child, limit)
        alts = [a + b for a in alts for b in child_alts][:limit]
    return alts


def _item_partial(item: ItemNode, ev: Event) -> tuple[int, int, list[Any]]:
    """(values matched, values total, values missing) of one detection item."""
    elems = keyword_values(ev) if item.field is None else field_elements(ev, item.field)
    matchers, values = _item_matchers(item)
    missing = [rv for m, rv in zip(matchers, values, strict=True) if not m.test(ev, elems)]
    return len(matchers) - len(missing), len(matchers), missing


# --------------------------------------------------------------------------------------------
# Evaluator


class Evaluator:
    """All catalog rules compiled once; evaluate events against them."""

    def __init__(
        self,
        rules: Iterable[ParsedRule],
        *,
        fingerprint: str = "",
        prefilter: bool = True,
    ) -> None:
        started = time.perf_counter()
        self.fingerprint = fingerprint
        self.use_prefilter = prefilter
        self.rules: list[CompiledRule] = [compile_rule(r) for r in rules]
        self.by_id: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            self.by_id.setdefault(r.id, i)
        self._taxonomy = _load_taxonomy()
        _, _, is_scopable = self._taxonomy
        self._scopable = [is_scopable(r.logsource) for r in self.rules]
        self._scopes: dict[frozenset[LogsourceKey], _Scope] = {}
        self._analyses: dict[int, _RuleAnalysis] = {}
        self._lock = threading.Lock()
        evaluable = [i for i, r in enumerate(self.rules) if r.evaluable]
        unsupported = [i for i, r in enumerate(self.rules) if not r.evaluable]
        self._all = _Scope(self.rules, evaluable, unsupported)
        self.build_ms = (time.perf_counter() - started) * 1000

    # -- introspection ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def unsupported(self) -> list[UnsupportedRule]:
        return [
            UnsupportedRule(r.id, r.title, list(r.unsupported))
            for r in self.rules
            if not r.evaluable
        ]

    def rule(self, rule_id: str) -> CompiledRule | None:
        i = self.by_id.get(rule_id)
        return None if i is None else self.rules[i]

    # -- scoping --------------------------------------------------------------------------------

    def event_logsources(self, ev: Event) -> frozenset[LogsourceKey]:
        logsources_for_event, _, _ = self._taxonomy
        return frozenset(logsources_for_event(ev.fields))

    def _scope(self, keys: frozenset[LogsourceKey]) -> _Scope:
        scope = self._scopes.get(keys)
        if scope is not None:
            return scope
        with self._lock:
            scope = self._scopes.get(keys)
            if scope is not None:
                return scope
            _, logsource_matches, _ = self._taxonomy
            identityless = all(not any(k) for k in keys)
            indices: list[int] = []
            unsupported: list[int] = []
            for i, r in enumerate(self.rules):
                fits = logsource_matches(r.logsource, keys) or (
                    identityless and (r.logsource[0] != "windows" or not self._scopable[i])
                )
                if fits:
                    (indices if r.evaluable else unsupported).append(i)
            scope = _Scope(self.rules, indices, unsupported)
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[keys] = scope
            return scope

    def candidates(self, event: Event | Mapping[str, Any], *, all_rules: bool = False) -> set[int]:
        """Indices of rules the prefilter lets through (for tests and diagnostics)."""
        ev = _as_event(event)
        scope = self._all if all_rules else self._scope(self.event_logsources(ev))
        return scope.prefilter.event_candidates(ev)

    # -- evaluation -----------------------------------------------------------------------------

    def match_ids(
        self,
        event: Event | Mapping[str, Any],
        *,
        all_rules: bool = False,
        prefilter: bool | None = None,
    ) -> list[str]:
        """Just the ids of matching rules: the fastest path."""
        ev = _as_event(event)
        scope = self._all if all_rules else self._scope(self.event_logsources(ev))
        use = self.use_prefilter if prefilter is None else prefilter
        cands: Iterable[int] = scope.prefilter.event_candidates(ev) if use else scope.indices
        rules = self.rules
        return [rules[i].id for i in sorted(cands) if rules[i].match(ev)]

    def evaluate(
        self,
        event: Event | Mapping[str, Any] | str,
        *,
        all_rules: bool = False,
        rule_ids: Iterable[str] | None = None,
        explain: bool = True,
        prefilter: bool | None = None,
        near_misses: bool | None = None,
        near_miss_limit: int | None = 25,
    ) -> EventResult:
        """Evaluate one event (an :class:`Event`, a JSON object, or a scriptblock string).

        ``all_rules`` evaluates every rule regardless of logsource; ``rule_ids`` restricts the
        rules considered (ids that are out of scope or unknown are reported); ``explain=False``
        returns matches without explanation, suppressions or near misses. ``near_misses``
        (default: same as ``explain``) can switch off the near-miss search alone, the costly
        part of an explanation; near misses are ranked by score and cut to
        ``near_miss_limit`` (None: all). ``prefilter`` overrides the evaluator's setting.
        """
        started = time.perf_counter()
        ev = scriptblock_event(event) if isinstance(event, str) else _as_event(event)
        keys = self.event_logsources(ev)
        scope = self._all if all_rules else self._scope(keys)
        use = self.use_prefilter if prefilter is None else prefilter
        rules = self.rules

        wanted: set[int] | None = None
        requested: set[int] = set()
        out_of_scope: list[str] = []
        unknown: list[str] = []
        if rule_ids is not None:
            wanted = set()
            for rid in dict.fromkeys(rule_ids):
                i = self.by_id.get(rid)
                if i is None:
                    unknown.append(rid)
                    continue
                requested.add(i)
                if i in scope.index_set:
                    wanted.add(i)
                elif rules[i].evaluable:
                    out_of_scope.append(rid)
            in_scope = len(wanted)
        else:
            in_scope = len(scope.indices)

        cand_set = scope.prefilter.event_candidates(ev) if use else set(scope.indices)
        if wanted is not None:
            cand_set &= wanted
        candidates = sorted(cand_set)
        matched = [i for i in candidates if rules[i].match(ev)]

        matches: list[RuleMatch] = []
        suppressed: list[Suppression] = []
        near: list[NearMiss] = []
        if explain:
            matched_set = set(matched)
            for i in matched:
                matches.append(self._explain_match(rules[i], ev))
            want_near = explain if near_misses is None else near_misses
            near_cands = (
                scope.near_index(self._analysis).candidates(ev.haystack) if want_near else set()
            )
            near_cands |= cand_set
            if wanted is not None:
                near_cands &= wanted
            for i in sorted(near_cands - matched_set):
                self._analyse_miss(i, ev, suppressed, near if want_near else None)
            near.sort(key=lambda n: (-n.score, n.rule_id))
            if near_miss_limit is not None:
                del near[near_miss_limit:]
        else:
            for i in matched:
                r = rules[i]
                matches.append(RuleMatch(r.id, r.title, r.level, r.logsource_label))

        unsupported_idx = scope.unsupported
        if wanted is not None:
            unsupported_idx = [i for i in unsupported_idx if i in requested]
        unsupported = [
            UnsupportedRule(rules[i].id, rules[i].title, list(rules[i].unsupported))
            for i in unsupported_idx
        ]
        return EventResult(
            matches=matches,
            suppressed=suppressed,
            near_misses=near,
            rules_in_scope=in_scope,
            rules_evaluated=len(candidates),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            logsources=_logsource_labels(keys),
            scoped=not all_rules,
            unsupported=unsupported,
            out_of_scope=out_of_scope,
            unknown_rule_ids=unknown,
            event_index=ev.index,
        )

    def evaluate_many(
        self, events: Iterable[Event | Mapping[str, Any]], **options: Any
    ) -> list[EventResult]:
        return [self.evaluate(e, **options) for e in events]

    def match_stream(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        all_rules: bool = False,
        workers: int = 1,
    ) -> list[list[str]]:
        """Matching rule ids per event, in order; bulk inputs use ``workers`` processes.

        Workers are forked, so they share this evaluator's compiled rules copy-on-write and
        nothing is pickled but events and rule ids. Small batches stay in-process.
        """
        if workers < 2 or len(events) < _PARALLEL_MIN_EVENTS or not _can_fork():
            return [self.match_ids(e, all_rules=all_rules) for e in events]
        import multiprocessing as mp

        global _FORKED
        _FORKED = (self, all_rules)
        try:
            chunk = max(64, len(events) // (workers * 8))
            batches = [list(events[i : i + chunk]) for i in range(0, len(events), chunk)]
            with mp.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_match_batch, batches)
        finally:
            _FORKED = None
        return [ids for part in parts for ids in part]

    # -- explanation ---------------------------------------------------------------------------

    def _explain_match(self, rule: CompiledRule, ev: Event) -> RuleMatch:
        values, idents = _explain_identifiers(rule, ev)
        conditions = _condition_results(rule, values)
        # Predicates only for identifiers that held; filters that held are not deciding.
        for ir in idents:
            if not ir.value:
                ir.predicates = []
        return RuleMatch(rule.id, rule.title, rule.level, rule.logsource_label, conditions, idents)

    def _analysis(self, index: int) -> _RuleAnalysis:
        analysis = self._analyses.get(index)
        if analysis is None:
            analysis = _RuleAnalysis(self.rules[index])
            self._analyses[index] = analysis
        return analysis

    def _analyse_miss(
        self,
        index: int,
        ev: Event,
        suppressed: list[Suppression],
        near: list[NearMiss] | None,
    ) -> None:
        rule = self.rules[index]
        an = self._analysis(index)
        if an.single is not None:  # `condition: selection`: only "one item short" applies
            if near is not None and an.partial_possible[an.single]:
                found = self._near_detail(rule, an, ev, an.single, [], 1)
                if found is not None:
                    near.append(found)
            return
        if near is None and not an.suppressible:
            return
        identifiers = rule.identifiers
        values: dict[str, bool] = {}

        def fill(names: Iterable[str]) -> None:
            for name in names:
                if name not in values:
                    values[name] = identifiers[name].fast(ev)

        # Suppression: positive stages hold, a `not` stage fails.
        for _cond, pos, neg, _ in an.conditions:
            if not pos or not neg:
                continue
            fill(n for stage in pos for n in stage.identifiers())
            if not all(st.evaluate(values) for st in pos):
                continue
            fill(n for stage in neg for n in stage.identifiers())
            failing = [st for st in neg if not st.evaluate(values)]
            if not failing:
                continue
            filters: list[str] = []
            for s in failing:
                for name in s.identifiers():
                    if values.get(name) and name not in filters:
                        filters.append(name)
            fill(identifiers)
            _, idents = _explain_identifiers(rule, ev)
            suppressed.append(
                Suppression(
                    rule.id,
                    rule.title,
                    rule.level,
                    rule.logsource_label,
                    filters,
                    [s.text for s in failing],
                    _condition_results(rule, values),
                    idents,
                )
            )
            return
        if near is None:
            return
        fill(identifiers)
        best = self._near_miss(rule, an, ev, values)
        if best is not None:
            near.append(best)

    def _near_miss(
        self, rule: CompiledRule, an: _RuleAnalysis, ev: Event, values: dict[str, bool]
    ) -> NearMiss | None:
        best: NearMiss | None = None
        for cond, _, _, positives in an.conditions:
            for name in positives:
                if values[name]:
                    continue
                others = [n for n in positives if n != name and values[n]]
                if not others and not an.partial_possible[name]:
                    continue
                values[name] = True
                flips = cond.evaluate(values)
                values[name] = False
                if not flips:
                    continue
                candidate = self._near_detail(rule, an, ev, name, others, len(positives))
                if candidate is not None and (best is None or candidate.score > best.score):
                    best = candidate
        return best

    def _near_detail(
        self,
        rule: CompiledRule,
        an: _RuleAnalysis,
        ev: Event,
        name: str,
        others: list[str],
        n_positive: int,
    ) -> NearMiss | None:
        best_alt: tuple[float, list[MissingPredicate], str] | None = None
        for alt in an.alternatives[name]:
            failing: ItemNode | None = None
            n_failing = 0
            for it in alt:
                if not it.fast(ev):
                    n_failing += 1
                    if n_failing > 1:
                        break
                    failing = it
            if n_failing != 1 or failing is None:
                continue
            item = failing
            matched, total, missing_values = _item_partial(item, ev)
            held = len(alt) - 1
            if item.all and total > 1 and 0 < matched < total:
                reason = "all-values"
                score = (held + matched / total) / len(alt)
            elif len(alt) >= 2:
                reason = "item"
                score = held / len(alt)
            else:
                continue
            missing = [
                MissingPredicate(
                    name,
                    item.field,
                    item.kind,
                    missing_values if item.all else list(item.rule_values),
                    matched if item.all else 0,
                    total,
                )
            ]
            if best_alt is None or score > best_alt[0]:
                best_alt = (score, missing, reason)
        if best_alt is None and not others:
            return None
        if best_alt is None:
            score = len(others) / (len(others) + 1)
            missing = []
            reason = "identifier"
        else:
            item_score, missing, reason = best_alt
            score = (len(others) + item_score) / (len(others) + 1)
        explanation = _near_text(name, others, reason, missing, max(1, n_positive))
        return NearMiss(
            rule.id,
            rule.title,
            rule.level,
            rule.logsource_label,
            name,
            reason,
            others,
            missing,
            round(score, 4),
            explanation,
        )


class _RuleAnalysis:
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
        self.conditions: list[tuple[CondNode, list[CondNode], list[CondNode], list[str]]] = []
        for cond in rule.conditions:
            stages = cond.conjuncts()
            pos = [st for st in stages if st.op != "not"]
            neg = [st for st in stages if st.op == "not"]
            positives = list(dict.fromkeys(n for n, p in _polarity_identifiers(cond) if p))
            self.conditions.append((cond, pos, neg, positives))
        # Suppression needs a condition with both positive and `not` top-level stages.
        self.suppressible = any(pos and neg for _, pos, neg, _ in self.conditions)
        self.alternatives = {name: _alternatives(node) for name, node in rule.identifiers.items()}
        # Whether an identifier alone can be "one item short" (a map of >= 2 items or an
        # |all item with several values): otherwise it needs another identifier that held.
        self.partial_possible = {
            name: any(
                len(alt) >= 2 or any(it.all and len(it.matchers) > 1 for it in alt) for alt in alts
            )
            for name, alts in self.alternatives.items()
        }
        only = rule.conditions[0] if len(rule.conditions) == 1 else None
        self.single = only.name if only is not None and only.op == "id" else None
        # Bit masks over the items of positively used identifiers for the pre-check.
        positives = list(dict.fromkeys(n for c in self.conditions for n in c[3]))
        # Identifiers whose holding can make a rule "one identifier short" of a match.
        evidence: set[str] = set()
        for cond, _, _, cond_positives in self.conditions:
            evidence |= _evidence_identifiers(cond, cond_positives)
        bits: dict[int, int] = {}
        self.item_literals: list[frozenset[str] | None] = []
        self.base = 0
        self.alt_masks: list[tuple[bool, list[tuple[int, int, int]]]] = []
        self.truncated = False
        for name in positives:
            node = rule.identifiers[name]
            if _dnf_size(node) > _DNF_LIMIT:
                self.truncated = True
            masks: list[tuple[int, int, int]] = []
            for alt in self.alternatives[name]:
                alt_mask = 0
                all_mask = 0
                for it in alt:
                    bit = bits.get(id(it))
                    if bit is None:
                        bit = len(self.item_literals)
                        bits[id(it)] = bit
                        lits = None if it.negated else _any_literals(it)
                        self.item_literals.append(lits)
                        if lits is None:
                            self.base |= 1 << bit
                    alt_mask |= 1 << bit
                    if it.all and len(it.matchers) > 1:
                        all_mask |= 1 << bit
                masks.append((alt_mask, len(alt), all_mask))
            self.alt_masks.append((name in evidence, masks))

    def feasible(self, possible: int) -> bool:
        """Whether a near miss is possible when only the items in ``possible`` can hold."""
        if self.truncated:
            return True
        for is_evidence, masks in self.alt_masks:
            for alt_mask, size, all_mask in masks:
                missing = (alt_mask & ~possible).bit_count()
                if missing == 0 and is_evidence:
                    return True
                if size >= 2 and missing <= 1:
                    return True
                if size == 1 and all_mask & possible:
                    return True
        return False


def _near_text(
    name: str, others: list[str], reason: str, missing: list[MissingPredicate], total: int
) -> str:
    if reason == "identifier":
        return f"'{name}' did not match; {', '.join(others)} did ({len(others)} of {total})"
    m = missing[0]
    where = m.field if m.field is not None else "keywords"
    if reason == "all-values":
        return (
            f"'{name}': {where}|{m.kind} matched {m.matched} of {m.total} values; "
            f"missing {m.missing_values!r}"
        )
    return f"'{name}': every item matched except {where} ({m.kind})"


def _logsource_labels(keys: Iterable[LogsourceKey]) -> list[str]:
    """``product/category/service`` labels (empty parts dropped) of an event's logsources."""
    full = [k for k in keys if k[0] and (k[1] or k[2])]
    chosen = full or [k for k in keys if any(k)]
    return sorted({"/".join(p for p in k if p) for k in chosen})


def _as_event(event: Event | Mapping[str, Any]) -> Event:
    if isinstance(event, Event):
        return event
    if isinstance(event, Mapping):
        return event_from_mapping(event)
    raise TypeError(f"expected an Event or a mapping, got {type(event).__name__}")


# --------------------------------------------------------------------------------------------
# Parallel bulk matching

_PARALLEL_MIN_EVENTS = 2000
_FORKED: tuple[Evaluator, bool] | None = None


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def _match_batch(batch: list[Event | Mapping[str, Any]]) -> list[list[str]]:
    assert _FORKED is not None  # set by the parent before forking
    evaluator, all_rules = _FORKED
    return [evaluator.match_ids(e, all_rules=all_rules) for e in batch]


# --------------------------------------------------------------------------------------------
# Per-process cache


_CACHE: dict[str, Evaluator] = {}
_CACHE_LOCK = threading.Lock()


def get_evaluator(fingerprint: str, load_rules: Callable[[], Iterable[ParsedRule]]) -> Evaluator:
    """The process-wide evaluator for the catalog state ``fingerprint``.

    ``load_rules`` is called (and the evaluator rebuilt) only when the fingerprint differs
    from the cached one, e.g. a hash of rule ids and modification times.
    """
    with _CACHE_LOCK:
        current = _CACHE.get("catalog")
        if current is None or current.fingerprint != fingerprint:
            current = Evaluator(load_rules(), fingerprint=fingerprint)
            _CACHE["catalog"] = current
        return current


def clear_evaluator_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
