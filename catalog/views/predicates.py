"""Indicator and exclusion pages: one list and one detail view each, sharing one code path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.caching import Lazy, cached
from catalog.models import Exclusion, Indicator, RuleExclusion, RuleIndicator
from catalog.queries import KEYWORDS, predicate_facets
from catalog.services import catalog_fingerprint
from catalog.templatetags.catalog_tags import ChartRow, rarity
from catalog.views.common import KnownCount, clean_params, paginate


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


def _chart_rows(kind: PredicateKind, items: Iterable[Indicator | Exclusion]) -> list[ChartRow]:
    return [
        ChartRow(f"{p.field or KEYWORDS} {p.kind} {p.value}", p.rule_count,
                 reverse(kind.detail_url, args=[p.pk]))
        for p in items
    ]  # fmt: skip


def predicate_list(request: HttpRequest, kind: PredicateKind) -> HttpResponse:
    params = clean_params(request)
    fingerprint = catalog_fingerprint()
    facets = cached(f"{kind.name}-facets", fingerprint, lambda: predicate_facets(kind.model))
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


def predicate_detail(request: HttpRequest, pk: int, kind: PredicateKind) -> HttpResponse:
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


View = Callable[..., HttpResponse]


def _views_for(kind: PredicateKind) -> tuple[View, View]:
    """The list and detail views of one kind (``indicator_list``, ``indicator_detail``...)."""

    @require_safe
    def list_view(request: HttpRequest) -> HttpResponse:
        return predicate_list(request, kind)

    @require_safe
    def detail_view(request: HttpRequest, pk: int) -> HttpResponse:
        return predicate_detail(request, pk, kind)

    for view, suffix in ((list_view, "list"), (detail_view, "detail")):
        view.__name__ = view.__qualname__ = f"{kind.name}_{suffix}"
    return list_view, detail_view


indicator_list, indicator_detail = _views_for(INDICATORS)
exclusion_list, exclusion_detail = _views_for(EXCLUSIONS)
