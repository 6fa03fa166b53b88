"""Server-rendered catalog pages: home, rule list and rule pages, ATT&CK, events, indicators.

Every list uses :class:`catalog.filters.RuleFilterSet` (or the same query shapes) so a page and
the API always agree. Aggregates that scan the whole catalog (home statistics, the ATT&CK
matrix, facet counts, event sources, the ordered pks a search selects) are cached under
:func:`catalog_fingerprint`, which changes with every import, so a page reflects a new import
on its next request. Rendered fragments (a rule page's sections, result tables) are cached
under the same fingerprint with ``{% cache %}``; the data behind them is passed as
:class:`Lazy` values so a cached fragment costs no query at all.
Query counts stay constant per page: related rows come from ``prefetch_related`` /
``select_related``, never from per-row lookups in templates.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from catalog.filters import LEVELS, SORTS, STATUSES, RuleFilterSet, sort_rules
from catalog.models import (
    Exclusion,
    ImportRun,
    Indicator,
    Rule,
    RuleExclusion,
    RuleIndicator,
    Stage,
    Tactic,
    Tag,
    Technique,
)
from catalog.services import catalog_fingerprint, current_fingerprint
from catalog.templatetags.catalog_tags import ChartRow, heat_level, rarity
from rules import attack, taxonomy

T = TypeVar("T")

PAGE_SIZES = (25, 50, 100)
CACHE_SECONDS = 3600
# Columns a rule row in a list needs; the YAML, detection JSON and search columns stay behind.
LIST_COLUMNS = (
    "rule_id", "title", "status", "level", "description", "author", "date", "modified",
    "product", "category", "service", "rule_set",
)  # fmt: skip
# Templates colleagues add to the rule page (the "Test this rule" box, "Convert"); included
# only once they exist so the page works before and after.
RULE_EXTRA_TEMPLATES = ("rules/_sandbox_box.html", "rules/_convert.html")
SORT_LABELS = {
    "relevance": "Relevance",
    "title": "Title A-Z",
    "-title": "Title Z-A",
    "-level": "Level (critical first)",
    "level": "Level (informational first)",
    "-date": "Newest",
    "date": "Oldest",
    "-modified": "Recently modified",
}
_EVENT_FIELDS = ("EventID", "Provider_Name")
_TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def cached(name: str, fingerprint: str, build: Callable[[], T]) -> T:
    """``build()`` once per catalog state: the fingerprint is part of the key, so an import
    (which changes it) makes every page recompute on its next request."""
    key = "pages:" + hashlib.sha1(f"{name}\x1f{fingerprint}".encode()).hexdigest()
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, CACHE_SECONDS)
    return value


def clean_params(request: HttpRequest) -> QueryDict:
    """The query string without NUL characters, which PostgreSQL refuses in text values."""
    params = request.GET.copy()
    for key in list(params):
        params.setlist(key, [v.replace("\x00", "") for v in params.getlist(key)])
    return params


def page_size(params: QueryDict) -> int:
    value = params.get("per_page", "")
    return int(value) if value.isdigit() and int(value) in PAGE_SIZES else PAGE_SIZES[0]


def paginate(request: HttpRequest, items: Any, per_page: int) -> Page:
    """``get_page`` turns ``?page=abc`` into page 1 and ``?page=99999`` into the last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


class Lazy:
    """A context value computed on first use and kept: inside a ``{% cache %}`` block it runs
    only when the fragment is not cached, so a warm page skips the queries behind it."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build
        self.value: Any = None
        self.done = False

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self.build(), True
        return self.value


def page_of_ids(request: HttpRequest, ids: Sequence[int], per_page: int) -> tuple[Page, Lazy]:
    """One page of an ordered list of rule pks; its rows are fetched only if a template
    renders them (a cached fragment does not)."""
    page = paginate(request, ids, per_page)
    wanted = list(page.object_list)

    def load() -> list[Rule]:
        found = {r.pk: r for r in rule_rows(Rule.objects.filter(pk__in=wanted).order_by())}
        return [found[pk] for pk in wanted if pk in found]

    return page, Lazy(load)


def rule_rows(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Rules as list rows: light columns plus tactics and techniques in two extra queries."""
    return queryset.only(*LIST_COLUMNS).prefetch_related(
        Prefetch("tactics", queryset=Tactic.objects.only("shortname", "name")),
        Prefetch("techniques", queryset=Technique.objects.only("attack_id", "name")),
    )


def logsource_query(product: str, category: str, service: str) -> str:
    """``?product=windows&category=ps_script``: the rule list of one logsource."""
    pairs = [(k, v) for k, v in (("product", product), ("category", category),
                                  ("service", service)) if v]  # fmt: skip
    return "?" + urlencode(pairs)


def logsource_label(product: str, category: str, service: str) -> str:
    return "/".join(p for p in (product, category, service) if p) or "(no logsource)"


def safe_url(url: str) -> str | None:
    """Only http(s) references become links; ``javascript:`` and the like stay text."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


# --------------------------------------------------------------------------------------------
# Home
# --------------------------------------------------------------------------------------------


def _home_stats() -> dict[str, Any]:
    rules_url = reverse("catalog:rule-list")
    levels = dict(Rule.objects.values_list("level").annotate(n=Count("pk")).order_by())
    logsources = list(
        Rule.objects.values_list("product", "category", "service")
        .annotate(n=Count("pk"))
        .order_by("-n", "product", "category", "service")
    )
    tactic_counts = dict(
        Rule.tactics.through.objects.values_list("tactic__shortname")
        .annotate(n=Count("rule_id"))
        .order_by()
    )
    rule_sets = list(
        Rule.objects.values_list("rule_set").annotate(n=Count("pk")).order_by("-n", "rule_set")
    )
    statuses = dict(Rule.objects.values_list("status").annotate(n=Count("pk")).order_by())
    recent = list(
        Rule.objects.exclude(modified="")
        .order_by("-modified", "title")
        .values("rule_id", "title", "level", "modified")[:8]
    )
    return {
        "rule_count": sum(levels.values()),
        "indicator_count": Indicator.objects.count(),
        "exclusion_count": Exclusion.objects.count(),
        "technique_count": Technique.objects.filter(known=True).count(),
        "logsource_count": len(logsources),
        "level_chart": [
            ChartRow(level.title(), levels.get(level, 0), f"{rules_url}?level={level}",
                     f"level-{level}")
            for level in reversed(LEVELS)
            if levels.get(level)
        ],
        "logsource_chart": [
            ChartRow(logsource_label(p, c, s), n, rules_url + logsource_query(p, c, s))
            for p, c, s, n in logsources[:12]
        ],
        "tactic_chart": [
            ChartRow(t.name, tactic_counts.get(t.shortname, 0),
                     reverse("catalog:tactic-detail", args=[t.shortname]))
            for t in attack.tactics_in_matrix_order()
        ],
        "rule_sets": rule_sets,
        "statuses": [(s, statuses[s]) for s in STATUSES if s in statuses],
        "recent": recent,
    }


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    stats = cached("home", fingerprint, _home_stats)
    latest = ImportRun.objects.first()
    return render(
        request,
        "catalog/home.html",
        {**stats, "latest_import": latest, "fingerprint": fingerprint},
    )


# --------------------------------------------------------------------------------------------
# Rule list: search, facets, sorting, pagination
# --------------------------------------------------------------------------------------------


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
)
FILTER_NAMES = tuple(RuleFilterSet.base_filters)
FACET_LIMIT = 40  # values rendered per facet; the rest are reachable by search
FACET_VISIBLE = 8  # shown before "more"
NAMESPACE_LABELS = {
    "attack": "ATT&CK",
    "cve": "CVE",
    "car": "CAR",
    "detection": "Detection",
    "stp": "STP",
    "tlp": "TLP",
    "d3fend": "D3FEND",
}

FacetCounts = list[tuple[str, str, int]]  # (value, label, count)


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


def _scoped(queryset: QuerySet[Any], rules: QuerySet[Rule] | None, column: str) -> QuerySet[Any]:
    """Restrict ``queryset`` to ``rules`` (``None`` = every rule, no subquery needed)."""
    if rules is None:
        return queryset
    return queryset.filter(**{f"{column}__in": rules.order_by().values("pk")})


def _column_counts(rules: QuerySet[Rule] | None, column: str) -> FacetCounts:
    rows = (
        _scoped(Rule.objects.all(), rules, "pk")
        .exclude(**{column: ""})
        .values_list(column)
        .annotate(n=Count("pk"))
        .order_by("-n", column)
    )
    return [(value, value, n) for value, n in rows]


def _tactic_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    rows = (
        _scoped(Rule.tactics.through.objects.all(), rules, "rule_id")
        .values_list("tactic__shortname", "tactic__name")
        .annotate(n=Count("rule_id"))
        .order_by()
    )
    found = [(short, name or short, n) for short, name, n in rows]
    return sorted(found, key=lambda row: attack._matrix_rank(row[0]))


def _technique_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """Per technique, distinct rules tagged with it or (for a parent) any sub-technique: the
    same set the ``technique`` filter selects, so a count always equals its result count."""
    pairs = _scoped(Rule.techniques.through.objects.all(), rules, "rule_id").values_list(
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
    return [(tid, f"{tid} {names.get(tid) or ''}".strip(), len(ids)) for tid, ids in ranked]


def _namespace_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    rows = (
        _scoped(Rule.tags.through.objects.all(), rules, "rule_id")
        .values_list("tag__namespace")
        .annotate(n=Count("rule_id", distinct=True))
        .order_by("-n")
    )
    return [(ns, NAMESPACE_LABELS.get(ns, ns), n) for ns, n in rows]


def _author_counts(rules: QuerySet[Rule] | None) -> FacetCounts:
    """Authors are one comma-separated text per rule; count each person separately."""
    counter: Counter[str] = Counter()
    for text in _scoped(Rule.objects.all(), rules, "pk").values_list("author", flat=True):
        for name in {part.strip() for part in text.split(",")}:
            if name:
                counter[name] += 1
    return [(name, name, n) for name, n in counter.most_common()]


def _ordered(counts: FacetCounts, order: Sequence[str]) -> FacetCounts:
    rank = {value: i for i, value in enumerate(order)}
    return sorted(counts, key=lambda row: rank.get(row[0], len(rank)))


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
}


def _filter_state(params: QueryDict) -> QueryDict:
    """Only the parameters that select rules (not sort, page or page size)."""
    state = QueryDict(mutable=True)
    for name in FILTER_NAMES:
        values = [v for v in params.getlist(name) if v.strip()]
        if values:
            state.setlist(name, values)
    return state


def _facet_counts(state: QueryDict, valid: set[str]) -> dict[str, FacetCounts]:
    """Counts per facet value. A facet with a selection counts over the rules matched by the
    *other* filters, so its unselected values show what adding them would give."""
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


def _build_facets(
    state: QueryDict, counts: dict[str, FacetCounts], extra: QueryDict
) -> list[Facet]:
    """Facet values with links that toggle them (the page's sort and size kept)."""
    facets = []
    for spec in FACETS:
        selected = state.getlist(spec.name)
        others = state.copy()
        others.pop(spec.name, None)
        for key, values in extra.lists():
            others.setlist(key, values)
        prefix = others.urlencode()
        facet = Facet(spec.name, spec.label)
        seen = set()
        for value, label, count in counts.get(spec.name, []):
            seen.add(value)
            facet.values.append(
                FacetValue(value, label, count, value in selected,
                           _toggle(prefix, spec, selected, value))
            )
        for value in selected:  # a selection with no matching rule still gets its chip
            if value not in seen:
                facet.values.insert(
                    0, FacetValue(value, value, 0, True, _toggle(prefix, spec, selected, value))
                )
        if facet.values:
            facets.append(facet)
    return facets


def _toggle(prefix: str, spec: FacetSpec, selected: list[str], value: str) -> str:
    if value in selected:
        values = [v for v in selected if v != value]
    else:
        values = [*selected, value] if spec.multi else [value]
    tail = urlencode([(spec.name, v) for v in values])
    return "?" + "&".join(part for part in (prefix, tail) if part)


def _active_filters(
    state: QueryDict, labels: dict[tuple[str, str], str], extra: QueryDict
) -> list[dict[str, str]]:
    """Chips for every active filter, each with a link that removes just that value."""
    names = {spec.name: spec.label for spec in FACETS} | {
        "q": "Search", "tag": "Tag", "indicator": "Indicator", "exclusion": "Exclusion",
    }  # fmt: skip
    chips = []
    for name, values in state.lists():
        for value in values:
            remaining = state.copy()
            remaining.setlist(name, [v for v in values if v != value])
            for key, kept in extra.lists():
                remaining.setlist(key, kept)
            chips.append(
                {
                    "name": names.get(name, name),
                    "value": labels.get((name, value), value),
                    "url": "?" + remaining.urlencode(),
                }
            )
    return chips


def _matching_ids(state: QueryDict, sort: str) -> list[int]:
    """Primary keys of the rules a filter state selects, in display order.

    Cached per catalog state: paging through a search, or re-rendering it, then costs one
    query for the shown rows instead of a ranked full-text scan plus a DISTINCT count.
    """
    results = sort_rules(RuleFilterSet(state, queryset=Rule.objects.all()).qs, sort)
    return list(dict.fromkeys(results.values_list("pk", flat=True)))


def _facet_sidebar(
    state: QueryDict, valid: set[str], extra: QueryDict, fingerprint: str
) -> dict[str, Any]:
    """The rendered facet column and the labels of selected values (for the filter chips)."""
    counts = cached(f"facets:{state.urlencode()}", fingerprint,
                    lambda: _facet_counts(state, valid))  # fmt: skip
    facets = _build_facets(state, counts, extra)
    return {
        "html": render_to_string("catalog/_facets.html", {"facets": facets}),
        "labels": {(f.name, v.value): v.label for f in facets for v in f.values if v.active},
    }


@require_safe
def rule_list(request: HttpRequest) -> HttpResponse:
    params = clean_params(request)
    state = _filter_state(params)
    filterset = RuleFilterSet(state, queryset=Rule.objects.all())
    notices = [
        f"Ignored {name}={', '.join(state.getlist(name))!s}: {' '.join(errors)}"
        for name, errors in filterset.errors.items()
    ]
    valid = {name for name in state if name not in filterset.errors}
    for name in filterset.errors:
        state.pop(name)
    query_text = state.get("q", "").strip()
    sort = params.get("sort", "")
    if sort and sort not in SORTS:
        notices.append(f"Unknown sort {sort!r}; showing the default order.")
        sort = ""
    sort = sort or ("relevance" if query_text else "title")
    per_page = page_size(params)
    if params.get("per_page") and str(per_page) != params.get("per_page"):
        notices.append(f"Page size must be one of {', '.join(map(str, PAGE_SIZES))}.")

    fingerprint = catalog_fingerprint()
    ids = cached(f"rule-ids:{sort}:{state.urlencode()}", fingerprint,
                 lambda: _matching_ids(state, sort))  # fmt: skip
    page, rules = page_of_ids(request, ids, per_page)

    # Sort and page size survive a facet click; the page number does not.
    extra = QueryDict(mutable=True)
    if params.get("sort") in SORTS:
        extra["sort"] = params["sort"]
    if per_page != PAGE_SIZES[0]:
        extra["per_page"] = str(per_page)
    sidebar = cached(
        f"facet-sidebar:{state.urlencode()}:{extra.urlencode()}",
        fingerprint,
        lambda: _facet_sidebar(state, valid, extra, fingerprint),
    )
    sorts = [(key, label) for key, label in SORT_LABELS.items()
             if key != "relevance" or query_text]  # fmt: skip
    return render(
        request,
        "catalog/rule_list.html",
        {
            "page_obj": page,
            "rules": rules,
            "fingerprint": fingerprint,
            "facets_html": mark_safe(sidebar["html"]),  # noqa: S308 - rendered by a template
            "chips": _active_filters(state, sidebar["labels"], extra),
            "notices": notices,
            "query_text": query_text,
            "sort": sort,
            "sorts": sorts,
            "per_page": per_page,
            "page_sizes": PAGE_SIZES,
            "hidden_filters": [(k, v) for k, vs in state.lists() if k != "q" for v in vs],
        },
    )


# --------------------------------------------------------------------------------------------
# Rule page
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TagLink:
    label: str
    title: str = ""
    url: str = ""  # the catalog page (rules with this tag, technique page...)
    external: str = ""  # MITRE, NVD, CAR
    known: bool = True


@dataclass(slots=True)
class TagGroup:
    namespace: str
    label: str
    tags: list[TagLink] = field(default_factory=list)


def _tag_link(tag: Tag) -> TagLink:
    rules_url = reverse("catalog:rule-list") + "?" + urlencode({"tag": tag.name})
    value = tag.value
    if tag.namespace == "attack":
        resolved = attack.resolve_attack_tag(value)
        label = f"{resolved.id} {resolved.name}" if resolved.name else resolved.id
        if resolved.kind == "technique":
            url = reverse("catalog:technique-detail", args=[resolved.id])
        elif resolved.kind == "tactic" and resolved.known:
            found = attack.tactic(value)
            url = reverse("catalog:tactic-detail", args=[found.shortname]) if found else ""
            label = resolved.name or value
        else:
            url = rules_url
        return TagLink(label, tag.name, url, resolved.url or "", resolved.known)
    if tag.namespace == "cve":
        cve = "CVE-" + value.upper().removeprefix("CVE-")
        return TagLink(cve, tag.name, rules_url, f"https://nvd.nist.gov/vuln/detail/{cve}")
    if tag.namespace == "car":
        car = "CAR-" + value.upper().removeprefix("CAR-")
        return TagLink(car, tag.name, rules_url, f"https://car.mitre.org/analytics/{car}/")
    return TagLink(value, tag.name, rules_url)


def tag_groups(tags: Iterable[Tag]) -> list[TagGroup]:
    """Tags grouped by namespace in a fixed order (ATT&CK, CVE, CAR, detection, STP, TLP)."""
    groups: dict[str, TagGroup] = {}
    for tag in tags:
        group = groups.setdefault(
            tag.namespace, TagGroup(tag.namespace, NAMESPACE_LABELS.get(tag.namespace,
                                                                        tag.namespace))
        )
        group.tags.append(_tag_link(tag))
    order = list(NAMESPACE_LABELS)
    return sorted(groups.values(), key=lambda g: (order.index(g.namespace)
                                                  if g.namespace in order else len(order),
                                                  g.namespace))  # fmt: skip


@dataclass(slots=True)
class PredicateGroup:
    """Rows of one (field, kind) on the rule page: the rule's values and their corpus counts."""

    field: str
    kind: str
    rows: list[Any] = field(default_factory=list)


def predicate_groups(links: Iterable[RuleIndicator] | Iterable[RuleExclusion]) -> list[
    PredicateGroup
]:
    groups: dict[tuple[str, str], PredicateGroup] = {}
    for link in links:
        target = link.indicator if isinstance(link, RuleIndicator) else link.exclusion
        key = (target.field, target.kind)
        groups.setdefault(key, PredicateGroup(target.field, target.kind)).rows.append(
            {"link": link, "target": target, "rarity": rarity(target.rule_count)}
        )
    return list(groups.values())


def rule_event_filter(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Event IDs and providers a rule selects, from its ``EventID``/``Provider_Name``
    indicators (the positive predicates), to narrow its logsource's event list."""
    event_ids: list[int] = []
    providers: list[str] = []
    for name, value in pairs:
        if name == "EventID" and value.strip().isdigit():
            event_ids.append(int(value))
        elif name == "Provider_Name" and value.strip():
            providers.append(value.strip())
    return tuple(dict.fromkeys(event_ids)), tuple(dict.fromkeys(providers))


def event_slug(source: taxonomy.EventSource) -> str:
    """``powershell-4104``, ``sysmon-1``, ``system-all``: the event page's URL key."""
    name = source.provider_display or (source.channels[0] if source.channels else "events")
    return slugify(f"{name}-{source.event_id if source.event_id is not None else 'all'}")


def _extra_templates() -> list[str]:
    found = []
    for name in RULE_EXTRA_TEMPLATES:
        try:
            get_template(name)
        except TemplateDoesNotExist:
            continue
        found.append(name)
    return found


# Rows rendered per predicate table; IOC-list rules (thousands of hashes or domains) get a
# "show all" link instead of a multi-megabyte page.
PREDICATE_ROWS = 300


def _predicate_links(
    link: type[RuleIndicator] | type[RuleExclusion], target: str, rule: Rule, show_all: bool
) -> tuple[list[Any], int]:
    """The rule's first rows (all with ``show_all``) and its total number of rows."""
    rows = link.objects.filter(rule=rule).select_related(target).order_by("position")
    shown = list(rows if show_all else rows[:PREDICATE_ROWS])
    total = len(shown) if show_all or len(shown) < PREDICATE_ROWS else rows.count()
    return shown, total


def rule_analysis(rule: Rule, show_all: bool) -> dict[str, Any]:
    """Everything below the rule page's header: a fixed number of queries whatever the rule."""
    tags = list(rule.tags.order_by("name"))
    indicator_links, indicator_total = _predicate_links(RuleIndicator, "indicator", rule,
                                                        show_all)  # fmt: skip
    exclusion_links, exclusion_total = _predicate_links(RuleExclusion, "exclusion", rule,
                                                        show_all)  # fmt: skip
    related_ids = [str(item.get("id", "")) for item in rule.related if isinstance(item, dict)]
    found = (
        dict(Rule.objects.filter(rule_id__in=related_ids).values_list("rule_id", "title"))
        if related_ids
        else {}
    )
    related = [
        {"id": str(item.get("id", "")), "type": str(item.get("type", "")),
         "title": found.get(str(item.get("id", "")))}
        for item in rule.related
        if isinstance(item, dict)
    ]  # fmt: skip
    stage_groups: dict[int, list[Stage]] = defaultdict(list)
    for stage in rule.stages.order_by("group", "index"):
        stage_groups[stage.group].append(stage)
    # Event IDs may sit past the shown rows of a long rule: read them on their own.
    selected = RuleIndicator.objects.filter(
        rule=rule, indicator__field__in=_EVENT_FIELDS, indicator__kind="equals"
    ).values_list("indicator__field", "value")
    event_ids, providers = rule_event_filter(selected)
    sources = taxonomy.event_sources(
        rule.product, rule.category, rule.service, event_ids=event_ids, providers=providers
    )
    return {
        "references": [{"text": ref, "url": safe_url(ref)} for ref in rule.references],
        "related": related,
        "tag_groups": tag_groups(tags),
        "coverage": attack.coverage_table(t.value for t in tags if t.namespace == "attack"),
        "events": [{"source": s, "slug": event_slug(s)} for s in sources],
        "requirement": taxonomy.requirement_for(rule.product, rule.category, rule.service),
        "stage_groups": sorted(stage_groups.items()),
        "exclusion_groups": predicate_groups(exclusion_links),
        "exclusion_count": exclusion_total,
        "exclusions_cut": len(exclusion_links) < exclusion_total,
        "indicator_groups": predicate_groups(indicator_links),
        "indicator_count": indicator_total,
        "indicators_cut": len(indicator_links) < indicator_total,
        "row_limit": PREDICATE_ROWS,
    }


def fingerprint_cached(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Cache whole responses of a public page per URL and catalog state.

    Only anonymous GETs (no session cookie) are cached, and only 200s: the page must hold
    nothing per user (no CSRF token: the sandbox forms it posts to are CSRF-exempt because
    evaluating text changes nothing). A new import changes the fingerprint, so the next
    request renders afresh.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "GET" or settings.SESSION_COOKIE_NAME in request.COOKIES:
            return view(request, *args, **kwargs)
        digest = hashlib.sha1(
            f"{current_fingerprint()}|{request.get_full_path()}".encode()
        ).hexdigest()
        key = f"page:{view.__name__}:{digest}"
        hit = cache.get(key)
        if hit is not None:
            content, content_type = hit
            return HttpResponse(content, content_type=content_type)
        response = view(request, *args, **kwargs)
        if response.status_code == 200 and not response.streaming and not response.cookies:
            cache.set(key, (response.content, response["Content-Type"]), PAGE_CACHE_SECONDS)
        return response

    return wrapper


PAGE_CACHE_SECONDS = 600


@require_safe
@fingerprint_cached
def rule_detail(request: HttpRequest, rule_id: str) -> HttpResponse:
    rule = get_object_or_404(Rule.objects.defer("search_text", "search_vector", "detection"),
                             rule_id=rule_id)  # fmt: skip
    show_all = request.GET.get("all") == "1"
    return render(
        request,
        "catalog/rule_detail.html",
        {
            "rule": rule,
            # The sections are cached per rule and catalog state: corpus counts move with
            # every import, the rule's own text with its revision.
            "fingerprint": catalog_fingerprint(),
            "show_all": show_all,
            "analysis": Lazy(lambda: rule_analysis(rule, show_all)),
            "extra_templates": _extra_templates(),
            "logsource_url": reverse("catalog:rule-list")
            + logsource_query(rule.product, rule.category, rule.service),
        },
    )


_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@require_safe
def rule_download(request: HttpRequest, rule_id: str) -> HttpResponse:
    """The rule body exactly as imported, as a ``.yml`` attachment."""
    rule = get_object_or_404(Rule.objects.only("rule_id", "raw_yaml", "source_path"),
                             rule_id=rule_id)  # fmt: skip
    name = _FILENAME.sub("_", rule.source_path.rsplit("/", 1)[-1].split("!")[-1])
    if not name.endswith((".yml", ".yaml")):
        name = _FILENAME.sub("_", rule.rule_id) + ".yml"
    response = HttpResponse(rule.raw_yaml, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --------------------------------------------------------------------------------------------
# ATT&CK
# --------------------------------------------------------------------------------------------


def _technique_members() -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """(rules per exact technique id, rules per top-level id including its sub-techniques)."""
    exact: dict[str, set[int]] = defaultdict(set)
    rolled: dict[str, set[int]] = defaultdict(set)
    for rule_pk, tid in Rule.techniques.through.objects.values_list(
        "rule_id", "technique__attack_id"
    ):
        exact[tid].add(rule_pk)
        rolled[tid.split(".", 1)[0]].add(rule_pk)
    return exact, rolled


def _matrix_data() -> dict[str, Any]:
    exact, rolled = _technique_members()
    subs: dict[str, list[str]] = defaultdict(list)
    for tid in sorted(exact):
        if "." in tid:
            subs[tid.split(".", 1)[0]].append(tid)
    tactic_counts = dict(
        Rule.tactics.through.objects.values_list("tactic__shortname")
        .annotate(n=Count("rule_id"))
        .order_by()
    )
    columns = []
    placed: set[str] = set()
    for tactic in attack.tactics_in_matrix_order():
        cells = []
        for tech in attack.techniques_for_tactic(tactic.shortname):
            placed.add(tech.id)
            count = len(rolled.get(tech.id, ()))
            cells.append(
                {
                    "id": tech.id,
                    "name": tech.name,
                    "count": count,
                    "heat": heat_level(count),
                    "subs": len(subs.get(tech.id, ())),
                }
            )
        columns.append(
            {
                "tactic": tactic,
                "rule_count": tactic_counts.get(tactic.shortname, 0),
                "covered": sum(1 for c in cells if c["count"]),
                "cells": cells,
            }
        )
    matrix_names = {t.shortname for t in attack.tactics_in_matrix_order()}
    legacy = [
        {"shortname": s, "name": (attack.tactic(s).name if attack.tactic(s) else s), "count": n}
        for s, n in sorted(tactic_counts.items())
        if s not in matrix_names
    ]
    outside = []
    for tid in sorted(rolled):
        if tid in placed:
            continue
        found = attack.technique(tid)
        outside.append(
            {"id": tid, "name": found.name if found else "", "known": found is not None,
             "status": found.status if found else "unknown", "count": len(rolled[tid])}
        )  # fmt: skip
    return {
        "columns": columns,
        "legacy": legacy,
        "outside": outside,
        "covered": sum(c["covered"] for c in columns),
        "total": sum(len(c["cells"]) for c in columns),
    }


@require_safe
def attack_matrix(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("matrix", fingerprint, _matrix_data)
    covered_only = request.GET.get("covered") == "1"
    return render(
        request,
        "catalog/attack_matrix.html",
        {**data, "covered_only": covered_only, "fingerprint": fingerprint,
         "heat_levels": [(0, "0"), (1, "1-2"), (2, "3-9"), (3, "10-29"), (4, "30-99"),
                         (5, "100+")]},
    )  # fmt: skip


@require_safe
def tactic_detail(request: HttpRequest, shortname: str) -> HttpResponse:
    found = attack.tactic(shortname)
    if found is None:
        raise Http404("No such ATT&CK tactic")
    fingerprint = catalog_fingerprint()
    data = cached("matrix", fingerprint, _matrix_data)
    column = next((c for c in data["columns"] if c["tactic"].shortname == found.shortname), None)
    ids = cached(f"tactic-ids:{found.shortname}", fingerprint, lambda: list(
        Rule.objects.filter(tactics__shortname=found.shortname)
        .order_by("title").values_list("pk", flat=True)
    ))  # fmt: skip
    page, rules = page_of_ids(request, ids, 50)
    cells = sorted(column["cells"], key=lambda c: (-c["count"], c["name"])) if column else []
    return render(
        request,
        "catalog/tactic_detail.html",
        {"tactic": found, "cells": cells, "page_obj": page, "rules": rules,
         "fingerprint": fingerprint,
         "rules_url": reverse("catalog:rule-list") + "?" + urlencode({"tactic": found.shortname})},
    )  # fmt: skip


def _technique_rules(tid: str) -> dict[str, Any]:
    """Rules tagged with a technique or its sub-techniques (by title), and per-sub counts."""
    rules = (
        Rule.objects.filter(Q(techniques__attack_id=tid)
                            | Q(techniques__attack_id__startswith=tid + "."))
        .order_by("title")
        .values_list("pk", flat=True)
    )  # fmt: skip
    subs = []
    if "." not in tid:
        subs = [
            {"id": sid, "name": sname, "count": n}
            for sid, sname, n in Technique.objects.filter(parent_id=tid)
            .values_list("attack_id", "name")
            .annotate(n=Count("rules"))
            .order_by("attack_id")
        ]
    return {"ids": list(dict.fromkeys(rules)), "subs": subs}


@require_safe
def technique_detail(request: HttpRequest, attack_id: str) -> HttpResponse:
    tid = attack_id.strip().upper()
    if not _TECHNIQUE_ID.match(tid):
        raise Http404("Not an ATT&CK technique id")
    row = Technique.objects.filter(attack_id=tid).first()
    found = attack.technique(tid)
    if row is None and found is None:
        raise Http404("No such ATT&CK technique")
    name = found.name if found else (row.name if row else "")
    parent_id = found.parent_id if found else (row.parent_id if row else "")
    tactics = [t for t in (attack.tactic(s) for s in (found.tactics if found else row.tactics))
               if t is not None]  # fmt: skip
    fingerprint = catalog_fingerprint()
    data = cached(f"technique:{tid}", fingerprint, lambda: _technique_rules(tid))
    page, rules = page_of_ids(request, data["ids"], 50)
    return render(
        request,
        "catalog/technique_detail.html",
        {
            "tid": tid,
            "name": name,
            "found": found,
            "known": found is not None,
            "parent_id": parent_id,
            "parent_name": (found.parent_name if found else "") or "",
            "tactics": tactics,
            "subs": data["subs"],
            "page_obj": page,
            "rules": rules,
            "fingerprint": fingerprint,
            "rules_url": reverse("catalog:rule-list") + "?" + urlencode({"technique": tid}),
        },
    )


# --------------------------------------------------------------------------------------------
# Events (logsource taxonomy)
# --------------------------------------------------------------------------------------------


def _events_data() -> dict[str, Any]:
    """Every event source feeding some catalog rule, with the rules it feeds.

    Rules are grouped by (logsource, selected event IDs, providers) first so
    :func:`taxonomy.event_sources` runs once per distinct shape, not once per rule.
    """
    selections: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for rule_pk, name, value in RuleIndicator.objects.filter(
        indicator__field__in=_EVENT_FIELDS, indicator__kind="equals"
    ).values_list("rule_id", "indicator__field", "value"):
        selections[rule_pk].append((name, value))
    shapes: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    rank: dict[int, int] = {}
    # Title order here makes every event's rule list come out sorted for its page.
    for rule_pk, product, category, service in Rule.objects.order_by("title", "pk").values_list(
        "pk", "product", "category", "service"
    ):
        event_ids, providers = rule_event_filter(selections.get(rule_pk, ()))
        shapes[(product, category, service, event_ids, providers)].append(rule_pk)
        rank[rule_pk] = len(rank)
    events: dict[str, dict[str, Any]] = {}
    unmapped: Counter[tuple[str, str, str]] = Counter()
    for (product, category, service, event_ids, providers), pks in shapes.items():
        sources = taxonomy.event_sources(
            product, category, service, event_ids=event_ids, providers=providers
        )
        if not sources:
            unmapped[(product, category, service)] += len(pks)
        for source in sources:
            slug = event_slug(source)
            entry = events.setdefault(
                slug,
                {
                    "slug": slug,
                    "provider": source.provider_display or "—",
                    "channel": " | ".join(source.channels),
                    "event_id": source.event_id,
                    "label": source.event_label,
                    "title": source.display_title,
                    "rules": set(),
                    "logsources": set(),
                },
            )
            entry["rules"].update(pks)
            entry["logsources"].add(logsource_label(product, category, service))
    rows = []
    for entry in events.values():
        entry["rule_count"] = len(entry["rules"])
        entry["rules"] = sorted(entry["rules"], key=rank.__getitem__)
        entry["logsources"] = sorted(entry["logsources"])
        rows.append(entry)
    rows.sort(key=lambda e: (-e["rule_count"], e["provider"], e["event_id"] or 0))
    return {
        "events": rows,
        "unmapped": [
            {"label": logsource_label(*key), "query": logsource_query(*key), "count": n}
            for key, n in unmapped.most_common()
        ],
    }


@require_safe
def event_list(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("events", fingerprint, _events_data)
    params = clean_params(request)
    provider = params.get("provider", "")
    text = params.get("q", "").strip()[:200]
    providers = Counter(e["provider"] for e in data["events"])
    notices = []
    if provider and provider not in providers:
        notices.append(f"No provider named {provider!r}; the filter was ignored.")
        provider = ""
    events = [e for e in data["events"] if not provider or e["provider"] == provider]
    if text:
        needle = text.casefold()
        events = [
            e for e in events
            if needle in f"{e['provider']} {e['channel']} {e['label']} {e['title']}".casefold()
        ]  # fmt: skip
    page = paginate(request, events, 50)
    chart = [
        ChartRow(f"{e['provider']} {e['label']}" + (f" · {e['title']}" if e["title"] else ""),
                 e["rule_count"], reverse("catalog:event-detail", args=[e["slug"]]))
        for e in events[:12]
    ]  # fmt: skip
    return render(
        request,
        "catalog/event_list.html",
        {"events": page.object_list, "page_obj": page, "unmapped": data["unmapped"],
         "providers": sorted(providers.items()), "provider": provider, "text": text,
         "notices": notices, "chart": chart, "rules_url": reverse("catalog:rule-list"),
         "top_providers": providers.most_common(10), "total_events": len(data["events"]),
         "fingerprint": fingerprint},
    )  # fmt: skip


def _predicates_by_rule(
    link: type[RuleIndicator] | type[RuleExclusion], target: str
) -> dict[int, dict[str, set[int]]]:
    """rule pk -> field -> ids of the rule's indicators (or exclusions) on that field."""
    found: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for rule_pk, name, target_pk in link.objects.values_list(
        "rule_id", f"{target}__field", f"{target}_id"
    ).order_by():
        found[rule_pk][name].add(target_pk)
    return found


def _all_field_usage(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per event slug, per field: rules matching it, rules excluding it, distinct values.

    Two scans of the link tables serve every event page, instead of one grouped
    ``COUNT(DISTINCT)`` over a long ``IN`` list per event.
    """
    matched = _predicates_by_rule(RuleIndicator, "indicator")
    excluded = _predicates_by_rule(RuleExclusion, "exclusion")
    usage: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        fields: dict[str, dict[str, Any]] = {}
        for rule_pk in event["rules"]:
            for source, rules_key, values_key in (
                (matched, "matched", "values"),
                (excluded, "excluded", "excluded_values"),
            ):
                for name, ids in source.get(rule_pk, {}).items():
                    entry = fields.setdefault(name, {
                        "field": name, "matched": 0, "excluded": 0,
                        "values": set(), "excluded_values": set(),
                    })  # fmt: skip
                    entry[rules_key] += 1
                    entry[values_key] |= ids
        rows = []
        for entry in fields.values():
            entry["values"] = len(entry["values"])
            entry["excluded_values"] = len(entry["excluded_values"])
            rows.append(entry)
        rows.sort(key=lambda e: (-e["matched"], -e["excluded"], e["field"]))
        usage[event["slug"]] = rows
    return usage


@require_safe
def event_detail(request: HttpRequest, slug: str) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("events", fingerprint, _events_data)
    event = next((e for e in data["events"] if e["slug"] == slug), None)
    if event is None:
        raise Http404("No catalog rule uses this event")
    fields = cached("event-fields", fingerprint,
                    lambda: _all_field_usage(data["events"]))[slug]  # fmt: skip
    page, rules = page_of_ids(request, event["rules"], 50)
    return render(
        request,
        "catalog/event_detail.html",
        {"event": event, "fields": fields, "page_obj": page, "rules": rules,
         "fingerprint": fingerprint},
    )


# --------------------------------------------------------------------------------------------
# Indicators and exclusions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PredicateKind:
    """What differs between the indicator pages and the exclusion pages."""

    model: type[Indicator] | type[Exclusion]
    link: type[RuleIndicator] | type[RuleExclusion]
    link_field: str
    name: str
    plural: str
    list_url: str
    detail_url: str
    other: str  # the other kind, for "also excluded by" / "also matched by" links


INDICATORS = PredicateKind(
    Indicator, RuleIndicator, "indicator", "indicator", "Indicators",
    "catalog:indicator-list", "catalog:indicator-detail", "exclusion",
)  # fmt: skip
EXCLUSIONS = PredicateKind(
    Exclusion, RuleExclusion, "exclusion", "exclusion", "Exclusions",
    "catalog:exclusion-list", "catalog:exclusion-detail", "indicator",
)  # fmt: skip
KEYWORDS = "(keywords)"  # the field filter value for keyword (field-less) predicates


def _predicate_facets(kind: PredicateKind) -> dict[str, Any]:
    fields = list(
        kind.model.objects.values_list("field")
        .annotate(n=Count("pk"))
        .order_by("-n", "field")[:30]
    )
    kinds = list(kind.model.objects.values_list("kind").annotate(n=Count("pk")).order_by("-n"))
    return {
        "fields": [(f or KEYWORDS, n) for f, n in fields],
        "kinds": kinds,
        "total": sum(n for _, n in kinds),
    }


class KnownCount:
    """A queryset whose ``count()`` is already known, so the paginator does not run it."""

    def __init__(self, queryset: QuerySet[Any], count: int) -> None:
        self.queryset = queryset
        self.known = count

    def count(self) -> int:
        return self.known

    def __len__(self) -> int:
        return self.known

    def __getitem__(self, key: Any) -> Any:
        return self.queryset[key]


def _chart_rows(kind: PredicateKind, items: Iterable[Indicator | Exclusion]) -> list[ChartRow]:
    return [
        ChartRow(f"{p.field or KEYWORDS} {p.kind} {p.value}", p.rule_count,
                 reverse(kind.detail_url, args=[p.pk]))
        for p in items
    ]  # fmt: skip


def _predicate_list(request: HttpRequest, kind: PredicateKind) -> HttpResponse:
    params = clean_params(request)
    fingerprint = catalog_fingerprint()
    facets = cached(f"{kind.name}-facets", fingerprint, lambda: _predicate_facets(kind))
    queryset = kind.model.objects.all()
    notices = []
    field_name = params.get("field", "")
    if field_name:
        queryset = queryset.filter(field="" if field_name == KEYWORDS else field_name)
    kind_name = params.get("kind", "")
    if kind_name:
        if kind_name not in {k for k, _ in facets["kinds"]}:
            notices.append(f"No {kind.name} kind {kind_name!r}; the filter was ignored.")
            kind_name = ""
        else:
            queryset = queryset.filter(kind=kind_name)
    text = params.get("q", "").strip()[:200]
    if text:
        queryset = queryset.filter(value_key__icontains=text.casefold())
    shared = params.get("shared") == "1"
    if shared:
        queryset = queryset.filter(rule_count__gte=2)
    queryset = queryset.order_by("-rule_count", "field", "kind", "value_key").only(
        "field", "kind", "value", "rule_count"
    )
    state = f"{field_name}\x1f{kind_name}\x1f{text}\x1f{shared}"
    # The total and the chart's top 15 only change with the catalog: cache them with it.
    summary = cached(f"{kind.name}-list:{state}", fingerprint, lambda: {
        "count": queryset.count(), "chart": _chart_rows(kind, queryset[:15]),
    })  # fmt: skip
    page = paginate(request, KnownCount(queryset, summary["count"]), 50)
    # A field outside the top list (linked from an event page) must stay selectable.
    field_choices: list[tuple[str, int | None]] = list(facets["fields"])
    if field_name and field_name not in {name for name, _ in field_choices}:
        field_choices.append((field_name, None))
    return render(
        request,
        "catalog/predicate_list.html",
        {"kind": kind, "facets": facets, "page_obj": page, "fingerprint": fingerprint,
         "items": Lazy(lambda: list(page.object_list)),
         "chart": summary["chart"], "notices": notices, "field": field_name,
         "kind_name": kind_name, "field_choices": field_choices, "text": text,
         "shared": shared},
    )  # fmt: skip


def _predicate_detail(request: HttpRequest, pk: int, kind: PredicateKind) -> HttpResponse:
    target = get_object_or_404(kind.model, pk=pk)
    links = (
        kind.link.objects.filter(**{kind.link_field: target})
        .select_related("rule")
        .only("value", "identifier", "position", "rule__rule_id", "rule__title", "rule__level",
              "rule__product", "rule__category", "rule__service", "rule__status")
        .order_by("rule__title", "position")
    )  # fmt: skip
    page = paginate(request, links, 50)
    other_model = Exclusion if kind.other == "exclusion" else Indicator
    other = other_model.objects.filter(identity=target.identity).only("pk", "rule_count").first()
    return render(
        request,
        "catalog/predicate_detail.html",
        {"kind": kind, "target": target, "page_obj": page, "links": page.object_list,
         "other": other, "other_url": (reverse(f"catalog:{kind.other}-detail", args=[other.pk])
                                       if other else ""),
         "rarity": rarity(target.rule_count),
         "rules_url": reverse("catalog:rule-list") + "?" + urlencode({kind.name: target.pk})},
    )  # fmt: skip


@require_safe
def indicator_list(request: HttpRequest) -> HttpResponse:
    return _predicate_list(request, INDICATORS)


@require_safe
def indicator_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _predicate_detail(request, pk, INDICATORS)


@require_safe
def exclusion_list(request: HttpRequest) -> HttpResponse:
    return _predicate_list(request, EXCLUSIONS)


@require_safe
def exclusion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _predicate_detail(request, pk, EXCLUSIONS)
