"""The rule list: search, facets, sorting, pagination."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe

from catalog.caching import cached, every_value, fingerprint_cached
from catalog.facets import (
    FILTER_NAMES,
    active_filters,
    build_facets,
    facet_counts,
    filter_state,
    matching_ids,
)
from catalog.filters import SORTS, RuleFilterSet
from catalog.models import Rule
from catalog.services import catalog_fingerprint
from catalog.views.common import PAGE_SIZES, clean_params, page_of_ids, page_size

SORT_LABELS = {
    "relevance": "Relevance",
    "title": "Title A-Z",
    "-title": "Title Z-A",
    "-level": "Level (critical first)",
    "level": "Level (informational first)",
    "-date": "Newest",
    "date": "Oldest",
    "-modified": "Recently modified",
    "-changed": "Last changed (newest revision first)",
}


def _facet_sidebar(
    state: QueryDict, valid: set[str], extra: QueryDict, fingerprint: str
) -> dict[str, Any]:
    """The rendered facet column and the labels of selected values (for the filter chips)."""
    counts = cached(f"facets:{state.urlencode()}", fingerprint,
                    lambda: facet_counts(state, valid))  # fmt: skip
    facets = build_facets(state, counts, extra)
    return {
        "html": render_to_string("catalog/_facets.html", {"facets": facets}),
        "labels": {(f.name, v.value): v.label for f in facets for v in f.values if v.active},
    }


def _kept_params(params: QueryDict, per_page: int) -> QueryDict:
    """Sort and page size survive a facet click; the page number does not."""
    extra = QueryDict(mutable=True)
    if params.get("sort") in SORTS:
        extra["sort"] = params["sort"]
    if per_page != PAGE_SIZES[0]:
        extra["per_page"] = str(per_page)
    return extra


@require_safe
# Whole pages cached per filter, sort and page: junk parameters share the entry.
@fingerprint_cached(params={n: every_value for n in [*FILTER_NAMES, "sort", "per_page", "page"]})
def rule_list(request: HttpRequest) -> HttpResponse:
    params = clean_params(request)
    state = filter_state(params)
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
                 lambda: matching_ids(state, sort))  # fmt: skip
    page, rules = page_of_ids(request, ids, per_page)
    extra = _kept_params(params, per_page)
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
            "chips": active_filters(state, sidebar["labels"], extra),
            "notices": notices,
            "query_text": query_text,
            "sort": sort,
            "sorts": sorts,
            "per_page": per_page,
            "page_sizes": PAGE_SIZES,
            "hidden_filters": [(k, v) for k, vs in state.lists() if k != "q" for v in vs],
        },
    )
