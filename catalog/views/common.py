"""Request helpers every page shares: clean query parameters, page sizes, pagination."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict

from catalog.caching import Lazy
from catalog.models import Rule
from catalog.queries import rule_rows

PAGE_SIZES = (25, 50, 100)


def clean_params(request: HttpRequest) -> QueryDict:
    """The query string without NUL characters, which PostgreSQL refuses in text values."""
    params = request.GET.copy()
    for key in list(params):
        params.setlist(key, [v.replace("\x00", "") for v in params.getlist(key)])
    return params


def page_size(params: QueryDict) -> int:
    """``?per_page=`` if it is one of :data:`PAGE_SIZES`, else the smallest."""
    value = params.get("per_page", "")
    return int(value) if value.isdigit() and int(value) in PAGE_SIZES else PAGE_SIZES[0]


def paginate(request: HttpRequest, items: Any, per_page: int) -> Page:
    """``get_page`` turns ``?page=abc`` into page 1 and ``?page=99999`` into the last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def page_of_ids(request: HttpRequest, ids: Sequence[int], per_page: int) -> tuple[Page, Lazy]:
    """One page of an ordered list of rule pks; its rows are fetched only if a template
    renders them (a cached fragment does not)."""
    page = paginate(request, ids, per_page)
    wanted = list(page.object_list)

    def load() -> list[Rule]:
        found = {r.pk: r for r in rule_rows(Rule.objects.filter(pk__in=wanted).order_by())}
        return [found[pk] for pk in wanted if pk in found]

    return page, Lazy(load)


def rules_page(request: HttpRequest, ids: Sequence[int], fingerprint: str) -> dict[str, Any]:
    """The context of a page's rule table (50 rules a page, cached with the catalog)."""
    page, rules = page_of_ids(request, ids, 50)
    return {"page_obj": page, "rules": rules, "fingerprint": fingerprint}


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
