"""The sandbox evaluator: which rules match an event, why, and which almost did.

Build an :class:`Evaluator` once from the catalog's :class:`~rules.model.ParsedRule` list
(:func:`~rules.evaluate.get_evaluator` keeps one per process), then call
:meth:`Evaluator.evaluate` per event.

Per event:

1. **Scope.** Unless ``all_rules``, only rules whose logsource fits the event are considered
   (:mod:`rules.taxonomy`: Channel / Provider_Name / EventID). An event without such an
   identity (syslog, cloud, proxy JSON...) is matched against the non-Windows rules and the
   Windows rules the taxonomy cannot place in an event log; Windows event-log rules need the
   event's Channel/EventID. ``not``-only rules would otherwise match unrelated events.
2. **Prefilter** (:mod:`rules.evaluate.prefilter`): candidates by what every matching event
   contains (literals, exact values, fields: :mod:`rules.compile.requirements`).
3. **Match.** Candidates run their compiled closures.
4. **Explain** (``explain=True``). Matched rules are traced (:mod:`rules.evaluate.explain`);
   candidates that did not match are checked for suppression and near misses
   (:mod:`rules.evaluate.near_miss`). Rules are only examined when a near miss is possible
   given which of their items' literals occur in the event (an exact pre-check,
   :mod:`rules.evaluate.analysis`), and suppressed rules are not near misses; the best
   ``near_miss_limit`` near misses are returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from rules.compile import CompiledRule, compile_rule
from rules.evaluate.analysis import RuleAnalysis
from rules.evaluate.explain import Explainer, condition_results
from rules.evaluate.near_miss import analyse_miss
from rules.evaluate.parallel import match_in_workers
from rules.evaluate.prefilter import Scope
from rules.evaluate.results import EventResult, NearMiss, RuleMatch, Suppression, UnsupportedRule
from rules.events import Event, event_from_mapping, scriptblock_event
from rules.model import ParsedRule
from rules.taxonomy import is_scopable, logsource_matches, logsources_for_event

__all__ = ["Evaluator", "LogsourceKey"]

LogsourceKey = tuple[str, str, str]
EventInput = Event | Mapping[str, Any]
_MAX_SCOPES = 256  # distinct event logsource sets kept; past this the cache restarts


class _Selection(NamedTuple):
    """The rules an ``evaluate(rule_ids=...)`` call asked for, against one scope."""

    wanted: set[int] | None  # in scope and requested (None: no restriction)
    requested: set[int]
    out_of_scope: list[str]
    unknown: list[str]


class _Explained(NamedTuple):
    matches: list[RuleMatch]
    suppressed: list[Suppression]
    near_misses: list[NearMiss]


class Evaluator:
    """All catalog rules compiled once; evaluate events against them."""

    def __init__(
        self,
        rules: Iterable[ParsedRule],
        *,
        fingerprint: str = "",
        prefilter: bool = True,
    ) -> None:
        self.fingerprint = fingerprint
        self.use_prefilter = prefilter
        self.rules: list[CompiledRule] = [compile_rule(r) for r in rules]
        self.by_id: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            self.by_id.setdefault(r.id, i)
        self._scopable = [is_scopable(r.logsource) for r in self.rules]
        self._scopes: dict[frozenset[LogsourceKey], Scope] = {}
        self._analyses: dict[int, RuleAnalysis] = {}
        self._explainer = Explainer()
        self._lock = threading.Lock()
        evaluable = [i for i, r in enumerate(self.rules) if r.evaluable]
        unsupported = [i for i, r in enumerate(self.rules) if not r.evaluable]
        self._all = Scope(self.rules, evaluable, unsupported)

    # -- introspection ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def unsupported(self) -> list[UnsupportedRule]:
        """The rules that are never evaluated, with the reasons."""
        return [_unsupported_rule(r) for r in self.rules if not r.evaluable]

    def rule(self, rule_id: str) -> CompiledRule | None:
        """The compiled rule with this Sigma id, if any."""
        i = self.by_id.get(rule_id)
        return None if i is None else self.rules[i]

    # -- scoping --------------------------------------------------------------------------------

    def event_logsources(self, ev: Event) -> frozenset[LogsourceKey]:
        """The logsources (product, category, service) the event can come from."""
        return frozenset(logsources_for_event(ev.fields))

    def _scope(self, keys: frozenset[LogsourceKey]) -> Scope:
        scope = self._scopes.get(keys)
        if scope is not None:
            return scope
        with self._lock:
            scope = self._scopes.get(keys)
            if scope is not None:
                return scope
            identityless = all(not any(k) for k in keys)
            indices: list[int] = []
            unsupported: list[int] = []
            for i, r in enumerate(self.rules):
                fits = logsource_matches(r.logsource, keys) or (
                    identityless and (r.logsource[0] != "windows" or not self._scopable[i])
                )
                if fits:
                    (indices if r.evaluable else unsupported).append(i)
            scope = Scope(self.rules, indices, unsupported)
            if len(self._scopes) > _MAX_SCOPES:
                self._scopes.clear()
            self._scopes[keys] = scope
            return scope

    def candidates(self, event: EventInput, *, all_rules: bool = False) -> set[int]:
        """Indices of rules the prefilter lets through (for tests and diagnostics)."""
        ev = _as_event(event)
        scope = self._all if all_rules else self._scope(self.event_logsources(ev))
        return scope.prefilter.event_candidates(ev)

    # -- evaluation -----------------------------------------------------------------------------

    def match_ids(
        self,
        event: EventInput,
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

    def match_stream(
        self,
        events: Sequence[EventInput],
        *,
        all_rules: bool = False,
        workers: int = 1,
    ) -> list[list[str]]:
        """Matching rule ids per event, in order; bulk inputs use ``workers`` processes
        (:mod:`rules.evaluate.parallel`). Small batches stay in-process."""
        parts = match_in_workers(self, events, all_rules=all_rules, workers=workers)
        if parts is not None:
            return parts
        return [self.match_ids(e, all_rules=all_rules) for e in events]

    def evaluate(
        self,
        event: EventInput | str,
        *,
        all_rules: bool = False,
        rule_ids: Iterable[str] | None = None,
        explain: bool = True,
        prefilter: bool | None = None,
        near_misses: bool | None = None,
        near_miss_limit: int | None = 25,
        explain_limit: int | None = None,
    ) -> EventResult:
        """Evaluate one event (an :class:`Event`, a JSON object, or a scriptblock string).

        ``all_rules`` evaluates every rule regardless of logsource; ``rule_ids`` restricts the
        rules considered (ids that are out of scope or unknown are reported); ``explain=False``
        returns matches without explanation, suppressions or near misses. ``near_misses``
        (default: same as ``explain``) can switch off the near-miss search alone, the costly
        part of an explanation; near misses are ranked by score and cut to
        ``near_miss_limit`` (None: all). ``prefilter`` overrides the evaluator's setting.
        ``explain_limit`` explains only the first that many matches (the rest are bare), a
        cap on the work one request can ask for.
        """
        # Long (64 lines) because it is the one readable sequence of the steps the module
        # docstring lists; splitting it would scatter the scope/prefilter/explain order.
        started = time.perf_counter()
        ev = scriptblock_event(event) if isinstance(event, str) else _as_event(event)
        keys = self.event_logsources(ev)
        scope = self._all if all_rules else self._scope(keys)
        use = self.use_prefilter if prefilter is None else prefilter
        rules = self.rules
        selection = self._select(scope, rule_ids)
        wanted = selection.wanted

        cand_set = scope.prefilter.event_candidates(ev) if use else set(scope.indices)
        if wanted is not None:
            cand_set &= wanted
        candidates = sorted(cand_set)
        matched = [i for i in candidates if rules[i].match(ev)]

        if explain:
            want_near = explain if near_misses is None else near_misses
            misses = self._miss_candidates(scope, ev, cand_set, want_near, wanted) - set(matched)
            found = self._explain(
                ev, matched, sorted(misses), want_near, near_miss_limit, explain_limit
            )
        else:
            found = _Explained([_bare_match(rules[i]) for i in matched], [], [])

        unsupported_idx = scope.unsupported
        if wanted is not None:
            unsupported_idx = [i for i in unsupported_idx if i in selection.requested]
        return EventResult(
            matches=found.matches,
            suppressed=found.suppressed,
            near_misses=found.near_misses,
            rules_in_scope=len(scope.indices) if wanted is None else len(wanted),
            rules_evaluated=len(candidates),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            logsources=_logsource_labels(keys),
            scoped=not all_rules,
            unsupported=[_unsupported_rule(rules[i]) for i in unsupported_idx],
            out_of_scope=selection.out_of_scope,
            unknown_rule_ids=selection.unknown,
            event_index=ev.index,
        )

    def _select(self, scope: Scope, rule_ids: Iterable[str] | None) -> _Selection:
        if rule_ids is None:
            return _Selection(None, set(), [], [])
        wanted: set[int] = set()
        requested: set[int] = set()
        out_of_scope: list[str] = []
        unknown: list[str] = []
        for rid in dict.fromkeys(rule_ids):
            i = self.by_id.get(rid)
            if i is None:
                unknown.append(rid)
                continue
            requested.add(i)
            if i in scope.index_set:
                wanted.add(i)
            elif self.rules[i].evaluable:
                out_of_scope.append(rid)
        return _Selection(wanted, requested, out_of_scope, unknown)

    # -- explanation ---------------------------------------------------------------------------

    def _explain(
        self,
        ev: Event,
        matched: list[int],
        misses: list[int],
        near_misses: bool,
        limit: int | None,
        explain_limit: int | None = None,
    ) -> _Explained:
        """Trace the matched rules; analyse the misses for suppression and near misses."""
        rules = self.rules
        cap = len(matched) if explain_limit is None else explain_limit
        matches = [
            self._explain_match(rules[i], ev) if n < cap else _bare_match(rules[i])
            for n, i in enumerate(matched)
        ]
        suppressed: list[Suppression] = []
        near: list[NearMiss] = []
        for i in misses:
            analyse_miss(
                rules[i],
                self._analysis(i),
                ev,
                self._explainer,
                suppressed,
                near if near_misses else None,
            )
        near.sort(key=lambda n: (-n.score, n.rule_id))
        if limit is not None:
            del near[limit:]
        return _Explained(matches, suppressed, near)

    def _miss_candidates(
        self,
        scope: Scope,
        ev: Event,
        candidates: set[int],
        near_misses: bool,
        wanted: set[int] | None,
    ) -> set[int]:
        """Rules to examine for suppression (the prefilter's candidates) and, when asked,
        for near misses (the near-miss index's candidates)."""
        out = scope.near_index(self._analysis).candidates(ev.haystack) if near_misses else set()
        out |= candidates
        if wanted is not None:
            out &= wanted
        return out

    def _explain_match(self, rule: CompiledRule, ev: Event) -> RuleMatch:
        values, idents = self._explainer.identifiers(rule, ev)
        conditions = condition_results(rule, values)
        # Predicates only for identifiers that held; filters that held are not deciding.
        for ir in idents:
            if not ir.value:
                ir.predicates = []
        return RuleMatch(rule.id, rule.title, rule.level, rule.logsource_label, conditions, idents)

    def _analysis(self, index: int) -> RuleAnalysis:
        analysis = self._analyses.get(index)
        if analysis is None:
            analysis = RuleAnalysis(self.rules[index])
            self._analyses[index] = analysis
        return analysis


def _bare_match(rule: CompiledRule) -> RuleMatch:
    return RuleMatch(rule.id, rule.title, rule.level, rule.logsource_label)


def _unsupported_rule(rule: CompiledRule) -> UnsupportedRule:
    return UnsupportedRule(rule.id, rule.title, list(rule.unsupported))


def _logsource_labels(keys: Iterable[LogsourceKey]) -> list[str]:
    """``product/category/service`` labels (empty parts dropped) of an event's logsources."""
    full = [k for k in keys if k[0] and (k[1] or k[2])]
    chosen = full or [k for k in keys if any(k)]
    return sorted({"/".join(p for p in k if p) for k in chosen})


def _as_event(event: EventInput) -> Event:
    if isinstance(event, Event):
        return event
    if isinstance(event, Mapping):
        return event_from_mapping(event)
    raise TypeError(f"expected an Event or a mapping, got {type(event).__name__}")
