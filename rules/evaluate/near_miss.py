"""Why a candidate rule did not match: suppressed by a filter, or nearly matched.

* *Suppression*: every positive top-level conjunct of a condition holds but a top-level
  ``not`` conjunct fails; the filter identifiers that matched are named.
* *Near misses*: forcing one false, positively used search identifier true would make the
  rule match, and either another positive identifier already matched ("one identifier
  short", reason ``identifier``), or inside that identifier a single detection item is
  missing from an otherwise matching map of at least two items (reason ``item``), or the
  missing item is a ``|all`` list of which some but not all values matched (reason
  ``all-values``, "2 of 3 values"). Scores are the share of the rule's positive identifiers
  (and of the missing identifier's items/values) that matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from rules.compile import CompiledRule, ItemNode, field_elements, keyword_values
from rules.evaluate.analysis import RuleAnalysis
from rules.evaluate.explain import Explainer, condition_results
from rules.evaluate.results import MissingPredicate, NearMiss, Suppression
from rules.events import Event

__all__ = ["ItemPartial", "MissAnalysis", "analyse_miss", "item_partial"]


class ItemPartial(NamedTuple):
    """How much of one detection item matched."""

    matched: int
    total: int
    missing: list[Any]  # the rule values that did not match


def item_partial(item: ItemNode, ev: Event) -> ItemPartial:
    """Which values of one detection item match the event."""
    elems = keyword_values(ev) if item.field is None else field_elements(ev, item.field)
    matchers, values = item.values()
    missing = [rv for m, rv in zip(matchers, values, strict=True) if not m.test(ev, elems)]
    return ItemPartial(len(matchers) - len(missing), len(matchers), missing)


class _ItemMiss(NamedTuple):
    score: float
    missing: list[MissingPredicate]
    reason: str


def analyse_miss(
    rule: CompiledRule,
    analysis: RuleAnalysis,
    ev: Event,
    explainer: Explainer,
    suppressed: list[Suppression],
    near: list[NearMiss] | None,
) -> None:
    """Append the suppression or (when ``near`` is given) the best near miss of a rule that
    did not match. Most candidates need neither: those return before any work."""
    if analysis.single is not None:  # `condition: selection`: only "one item short" applies
        if near is not None and analysis.partial_possible[analysis.single]:
            found = MissAnalysis(rule, analysis, ev, explainer).one_item_short(analysis.single)
            if found is not None:
                near.append(found)
        return
    if near is None and not analysis.suppressible:
        return
    MissAnalysis(rule, analysis, ev, explainer).run(suppressed, near)


class MissAnalysis:
    """Suppression and near-miss analysis of one rule that did not match one event."""

    __slots__ = ("analysis", "ev", "explainer", "rule", "values")

    def __init__(
        self, rule: CompiledRule, analysis: RuleAnalysis, ev: Event, explainer: Explainer
    ) -> None:
        self.rule = rule
        self.analysis = analysis
        self.ev = ev
        self.explainer = explainer
        self.values: dict[str, bool] = {}  # identifier values computed so far

    def run(self, suppressed: list[Suppression], near: list[NearMiss] | None) -> None:
        """Append the rule's suppression or (when ``near`` is given) its best near miss."""
        suppression = self._suppression()
        if suppression is not None:
            suppressed.append(suppression)
            return
        if near is None:
            return
        self._fill(self.rule.identifiers)
        best = self._near_miss()
        if best is not None:
            near.append(best)

    def one_item_short(self, name: str) -> NearMiss | None:
        """The near miss of a rule whose condition is the single identifier ``name``."""
        return self._near_detail(name, [], 1)

    def _fill(self, names: Iterable[str]) -> None:
        values = self.values
        identifiers = self.rule.identifiers
        for name in names:
            if name not in values:
                values[name] = identifiers[name].fast(self.ev)

    def _suppression(self) -> Suppression | None:
        """Positive stages hold, a `not` stage fails (the first condition where they do)."""
        values = self.values
        for facts in self.analysis.conditions:
            pos, neg = facts.positive_stages, facts.negated_stages
            if not pos or not neg:
                continue
            self._fill(n for stage in pos for n in stage.identifiers)
            if not all(st.holds(values) for st in pos):
                continue
            self._fill(n for stage in neg for n in stage.identifiers)
            failing = [st for st in neg if not st.holds(values)]
            if not failing:
                continue
            filters: list[str] = []
            for s in failing:
                for name in s.identifiers:
                    if values.get(name) and name not in filters:
                        filters.append(name)
            rule = self.rule
            self._fill(rule.identifiers)
            _, idents = self.explainer.identifiers(rule, self.ev)
            return Suppression(
                rule.id,
                rule.title,
                rule.level,
                rule.logsource_label,
                filters,
                [s.text for s in failing],
                condition_results(rule, values),
                idents,
            )
        return None

    def _near_miss(self) -> NearMiss | None:
        values = self.values
        best: NearMiss | None = None
        for facts in self.analysis.conditions:
            positives = facts.positives
            for name in positives:
                if values[name]:
                    continue
                others = [n for n in positives if n != name and values[n]]
                if not others and not self.analysis.partial_possible[name]:
                    continue
                values[name] = True
                flips = facts.condition.holds(values)
                values[name] = False
                if not flips:
                    continue
                candidate = self._near_detail(name, others, len(positives))
                if candidate is not None and (best is None or candidate.score > best.score):
                    best = candidate
        return best

    def _item_miss(self, name: str) -> _ItemMiss | None:
        """The best alternative of identifier ``name`` that misses exactly one item."""
        best: _ItemMiss | None = None
        for alt in self.analysis.alternatives[name]:
            failing: ItemNode | None = None
            n_failing = 0
            for it in alt:
                if not it.fast(self.ev):
                    n_failing += 1
                    if n_failing > 1:
                        break
                    failing = it
            if n_failing != 1 or failing is None:
                continue
            item = failing
            matched, total, missing_values = item_partial(item, self.ev)
            held = len(alt) - 1
            if item.all and total > 1 and 0 < matched < total:
                reason = "all-values"
                score = (held + matched / total) / len(alt)
            elif len(alt) >= 2:
                reason = "item"
                score = held / len(alt)
            else:
                continue
            missing = MissingPredicate(
                name,
                item.field,
                item.label,
                missing_values if item.all else list(item.rule_values),
                matched if item.all else 0,
                total,
            )
            if best is None or score > best.score:
                best = _ItemMiss(score, [missing], reason)
        return best

    def _near_detail(self, name: str, others: list[str], n_positive: int) -> NearMiss | None:
        item_miss = self._item_miss(name)
        if item_miss is None and not others:
            return None
        if item_miss is None:
            score = len(others) / (len(others) + 1)
            missing: list[MissingPredicate] = []
            reason = "identifier"
        else:
            missing, reason = item_miss.missing, item_miss.reason
            score = (len(others) + item_miss.score) / (len(others) + 1)
        rule = self.rule
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
            _near_text(name, others, reason, missing, max(1, n_positive)),
        )


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
