"""Catalog-wide reads of indicators and exclusions (both :class:`catalog.models.Predicate`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from catalog.models import Exclusion, Indicator

KEYWORDS = "(keywords)"  # the field filter value for keyword (field-less) predicates


def predicate_facets(model: type[Indicator] | type[Exclusion]) -> dict[str, Any]:
    """The 30 most used fields, every kind with its count, and the number of predicates."""
    fields = list(
        model.objects.values_list("field").annotate(n=Count("pk")).order_by("-n", "field")[:30]
    )
    kinds = list(model.objects.values_list("kind").annotate(n=Count("pk")).order_by("-n"))
    return {
        "fields": [(f or KEYWORDS, n) for f, n in fields],
        "kinds": kinds,
        "total": sum(n for _, n in kinds),
    }
