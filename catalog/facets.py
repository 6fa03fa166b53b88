"""The rule list's facet engine: per facet value, how many rules the current filters would
select with it, and the links that toggle it.

A facet with a selection counts over the rules matched by the *other* filters, so its
unselected values show what adding them would give. Counts always equal the result count of
the filter they link to (:class:`catalog.filters.RuleFilterSet` defines both).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlencode

from django.db.models import Count, QuerySet
from django.http import QueryDict

from catalog.filters import (
    CHECK_ANY,
    LEVELS,
    REGRESSION_STATES,
    STATUSES,
    RuleFilterSet,
    sort_rules,
)
from catalog.models import Rule, RuleFinding, RuleRegression
from catalog.presentation import NAMESPACE_LABELS
from catalog.queries import scoped, tactic_rows
from rules import attack


@dataclass(frozen=True, slots=True)
class FacetSpec:
    name: str
    label: str
    multi: bool = False  # several values OR together (level, status)


FACETS: tuple[FacetSpec, ...] = (
    FacetSpec("level", "Level", multi=True),
    FacetSpec("status", "Status", multi=True),
    FacetSpec("tactic", "Tactic"),
    FacetSpec("technique", "Technique"),
    FacetSpec("product", "Product"),
    FacetSpec("category", "Category"),
    FacetSpec("service", "Service"),
    FacetSpec("namespace", "Tag namespace"),
    FacetSpec("rule_set", "Rule set"),
    FacetSpec("author", "Author"),
    FacetSpec("changed_since", "Changed"),
    FacetSpec("check", "Checks"),
    FacetSpec("regression", "Regression test"),
)
FILTER_NAMES = tuple(RuleFilterSet.base_filters)
FACET_LIMIT = 40  # values rendered per facet; the rest are reachable by search
FACET_VISIBLE = 8  # shown before "more"
# Chip names of the filters that are not facets.
OTHER_FILTER_LABELS = {"q": "Search", "tag": "Tag", "indicator": "Indicator",
                       "exclusion": "Exclusion", "fires": "Can fire with"}  # fmt: skip


class FacetCount(NamedTuple):
    value: str
    label: str
    count: int


FacetCounts = list[FacetCount]


@dataclass(slots=True)
class FacetValue:
    value: str
    label: str
    count: int
    active: bool
    url: str


@dataclass(slots=True)
class Facet:
    name: str
    label: str
    values: list[FacetValue] = field(default_factory=list)

    @property
    def shown(self) -> list[FacetValue]:
        return self.values[:FACET_VISIBLE]

    @property
    def more(self) -> list[FacetValue]:
        return self.values[FACET_VISIBLE:]

    @property
    def active(self) -> bool:
        return any(v.active for v in self.values)


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def _column_counts(rules: QuerySet[Rule] | None, column: str) -> FacetCounts:
    rows = (
        scoped(Rule.objects.all(), rules, "pk")
        .exclude(**{column: ""})
        .values_list(column)
        .annotate(n=Count("pk"))
        .order_by("-n", column)
    )
    return [FacetCount(value, value, n) for value, n in rows]


def _tactic_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    found = [FacetCount(row.shortname, row.name or row.shortname, row.rules)
             for row in tactic_rows(rules)]  # fmt: skip
    return sorted(found, key=lambda row: attack._matrix_rank(row.value))


def _technique_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """Per technique, distinct rules tagged with it or (for a parent) any sub-technique: the
    same set the ``technique`` filter selects, so a count always equals its result count."""
    pairs = scoped(Rule.techniques.through.objects.all(), rules, "rule_id").values_list(
        "rule_id", "technique__attack_id", "technique__name", "technique__parent_name"
    )
    members: dict[str, set[int]] = defaultdict(set)
    names: dict[str, str] = {}
    for rule_pk, tid, name, parent_name in pairs:
        members[tid].add(rule_pk)
        names.setdefault(tid, name)
        if "." in tid:
            parent = tid.split(".", 1)[0]
            members[parent].add(rule_pk)
            names.setdefault(parent, parent_name)
    ranked = sorted(members.items(), key=lambda item: (-len(item[1]), item[0]))
    return [FacetCount(tid, f"{tid} {names.get(tid) or ''}".strip(), len(ids))
            for tid, ids in ranked]  # fmt: skip


def _namespace_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    rows = (
        scoped(Rule.tags.through.objects.all(), rules, "rule_id")
        .values_list("tag__namespace")
        .annotate(n=Count("rule_id", distinct=True))
        .order_by("-n")
    )
    return [FacetCount(ns, NAMESPACE_LABELS.get(ns, ns), n) for ns, n in rows]


def _author_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """Authors are one comma-separated text per rule; count each person separately."""
    counter: Counter[str] = Counter()
    for text in scoped(Rule.objects.all(), rules, "pk").values_list("author", flat=True):
        for name in {part.strip() for part in text.split(",")}:
            if name:
                counter[name] += 1
    return [FacetCount(name, name, n) for name, n in counter.most_common()]


def _changed_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """One value, "in the latest release": ``changed_since=<the release before it>`` (none
    while there is one release only: it added everything)."""
    from catalog.models import Release, RuleRevision
    from catalog.queries.releases import latest_release_overall

    latest = latest_release_overall()
    if latest is None:
        return []
    before = (
        Release.objects.filter(source=latest.source, sequence__lt=latest.sequence)
        .order_by("-sequence")
        .values_list("name", flat=True)
        .first()
    )
    if before is None:
        return []
    written = RuleRevision.objects.filter(release=latest).values("sigma_id")
    count = scoped(Rule.objects.all(), rules, "pk").filter(rule_id__in=written).count()
    label = f"In the latest release ({latest.name})"
    return [FacetCount(before, label, count)] if count else []


def _check_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """The "has findings" value first, then each validator by the number of rules it flags."""
    findings = scoped(RuleFinding.objects.all(), rules, "rule_id")
    rows = (
        findings.values_list("validator")
        .annotate(n=Count("rule_id", distinct=True))
        .order_by("-n", "validator")
    )
    flagged = findings.values("rule_id").distinct().count()
    found = [FacetCount(CHECK_ANY, "Has findings", flagged)] if flagged else []
    return found + [FacetCount(name, name, n) for name, n in rows]


def _regression_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    from catalog.queries.quality import regression_counts

    counts = regression_counts(scoped(RuleRegression.objects.all(), rules, "rule_id"))
    return [FacetCount(k, label, counts[k]) for k, label in REGRESSION_STATES.items() if counts[k]]


def _ordered(counts: FacetCounts, order: Sequence[str]) -> FacetCounts:
    rank = {value: i for i, value in enumerate(order)}
    return sorted(counts, key=lambda row: rank.get(row.value, len(rank)))


COUNTERS: dict[str, Callable[[QuerySet[Rule] | None], FacetCounts]] = {
    "level": lambda rules: _ordered(_column_counts(rules, "level"), list(reversed(LEVELS))),
    "status": lambda rules: _ordered(_column_counts(rules, "status"), STATUSES),
    "tactic": _tactic_counts,
    "technique": _technique_counts,
    "product": lambda rules: _column_counts(rules, "product"),
    "category": lambda rules: _column_counts(rules, "category"),
    "service": lambda rules: _column_counts(rules, "service"),
    "namespace": _namespace_counts,
    "rule_set": lambda rules: _column_counts(rules, "rule_set"),
    "author": _author_counts,
    "changed_since": _changed_counts,
    "check": _check_counts,
    "regression": _regression_counts,
}


def filter_state(params: QueryDict) -> QueryDict:
    """Only the parameters that select rules (not sort, page or page size)."""
    state = QueryDict(mutable=True)
    for name in FILTER_NAMES:
        values = [v for v in params.getlist(name) if v.strip()]
        if values:
            state.setlist(name, values)
    return state


def facet_counts(state: QueryDict, valid: set[str]) -> dict[str, FacetCounts]:
    """Counts per facet value; ``valid`` names the filters in ``state`` that parsed."""
    everything = not any(name in valid for name in state)
    matched = None if everything else RuleFilterSet(state, queryset=Rule.objects.all()).qs
    counts: dict[str, FacetCounts] = {}
    for spec in FACETS:
        scope = matched
        if spec.name in valid and spec.name in state:
            others = state.copy()
            others.pop(spec.name)
            has_others = any(name in valid for name in others)
            scope = RuleFilterSet(others, queryset=Rule.objects.all()).qs if has_others else None
        counts[spec.name] = COUNTERS[spec.name](scope)[:FACET_LIMIT]
    return counts


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------


def _with_extra(state: QueryDict, extra: QueryDict) -> QueryDict:
    """``state`` plus the page's kept parameters (sort, page size)."""
    for key, values in extra.lists():
        state.setlist(key, values)
    return state


def _toggle(prefix: str, spec: FacetSpec, selected: list[str], value: str) -> str:
    if value in selected:
        values = [v for v in selected if v != value]
    else:
        values = [*selected, value] if spec.multi else [value]
    tail = urlencode([(spec.name, v) for v in values])
    return "?" + "&".join(part for part in (prefix, tail) if part)


def _facet(spec: FacetSpec, state: QueryDict, counts: FacetCounts, extra: QueryDict) -> Facet:
    selected = state.getlist(spec.name)
    others = state.copy()
    others.pop(spec.name, None)
    prefix = _with_extra(others, extra).urlencode()
    facet = Facet(spec.name, spec.label)
    seen = set()
    for value, label, count in counts:
        seen.add(value)
        facet.values.append(
            FacetValue(value, label, count, value in selected,
                       _toggle(prefix, spec, selected, value))
        )  # fmt: skip
    for value in selected:  # a selection with no matching rule still gets its chip
        if value not in seen:
            facet.values.insert(
                0, FacetValue(value, value, 0, True, _toggle(prefix, spec, selected, value))
            )
    return facet


def build_facets(state: QueryDict, counts: dict[str, FacetCounts], extra: QueryDict) -> list[Facet]:
    """Facet values with links that toggle them (the page's sort and size kept)."""
    facets = (_facet(spec, state, counts.get(spec.name, []), extra) for spec in FACETS)
    return [facet for facet in facets if facet.values]


def active_filters(
    state: QueryDict, labels: dict[tuple[str, str], str], extra: QueryDict
) -> list[dict[str, str]]:
    """Chips for every active filter, each with a link that removes just that value."""
    names = {spec.name: spec.label for spec in FACETS} | OTHER_FILTER_LABELS
    chips = []
    for name, values in state.lists():
        for value in values:
            remaining = state.copy()
            remaining.setlist(name, [v for v in values if v != value])
            chips.append(
                {
                    "name": names.get(name, name),
                    "value": labels.get((name, value), value),
                    "url": "?" + _with_extra(remaining, extra).urlencode(),
                }
            )
    return chips


def matching_ids(state: QueryDict, sort: str) -> list[int]:
    """Primary keys of the rules a filter state selects, in display order (cached by the
    rule list: paging through a search then costs one query for the shown rows instead of
    a ranked full-text scan plus a DISTINCT count)."""
    results = sort_rules(RuleFilterSet(state, queryset=Rule.objects.all()).qs, sort)
    return list(dict.fromkeys(results.values_list("pk", flat=True)))
