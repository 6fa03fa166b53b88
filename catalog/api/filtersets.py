"""API filter sets. Rules reuse the catalog's :class:`RuleFilterSet`, so pages and API agree."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field

from catalog.filters import SORTS, RuleFilterSet, sort_rules
from catalog.models import Exclusion, Indicator, Rule, identity_hash
from rules.model import identity_value

# Largest value an integer filter accepts: bigger ones would overflow a database integer.
MAX_INTEGER = 2**31 - 1


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_INTEGER})
class IntegerFilter(django_filters.NumberFilter):
    """A whole-number filter; ``NumberFilter`` would accept ``1.5`` and match row 1."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_INTEGER)
        super().__init__(*args, **kwargs)


class RuleAPIFilterSet(RuleFilterSet):
    """The catalog facets and ``q``, plus ``sort`` (the pages' sort keys) for the API."""

    # Whole numbers only (the pages' NumberFilter accepts decimals); same filter methods.
    indicator = IntegerFilter(method="filter_indicator", help_text="Indicator id")
    exclusion = IntegerFilter(method="filter_exclusion", help_text="Exclusion id")
    sort = django_filters.ChoiceFilter(
        choices=[(key, key) for key in SORTS],
        method="filter_sort",
        help_text="Order of results; relevance (the default) ranks by `q` when given.",
    )

    class Meta(RuleFilterSet.Meta):
        model = Rule

    def filter_sort(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        return sort_rules(queryset, value)


class PredicateFilterForm(forms.Form):
    """``value`` can only be compared once ``kind`` says whether case matters."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "value" in self.data and not cleaned.get("kind") and "kind" not in self.errors:
            self.add_error(
                "value",
                "value needs kind (and field, empty for keyword indicators) to be compared.",
            )
        return cleaned


class PredicateFilterSet(django_filters.FilterSet):
    """Filters shared by indicators and exclusions.

    ``field`` and ``value`` are exact filters for which the empty string is a real value
    (keyword indicators have no field; ``Field: ''`` looks for an empty value), so they apply
    whenever the parameter is present. ``field`` + ``kind`` + ``value`` is a lookup by the
    identity hash (one unique-index probe); ``value`` is compared casefolded unless ``kind``
    keeps case (``re``, ``|cased``), exactly as the importer keyed it.
    """

    # strip=False: whitespace is part of a value (``'curl '``), as it is for the importer.
    field = django_filters.CharFilter(
        method="filter_nothing",
        strip=False,
        help_text="Exact field name; empty for keyword indicators.",
    )
    kind = django_filters.CharFilter(
        field_name="kind", help_text="Exact kind, e.g. `contains`, `endswith`, `re`."
    )
    value = django_filters.CharFilter(
        method="filter_nothing",
        strip=False,
        help_text="Value (needs `kind`); casefolded unless the kind keeps case.",
    )
    min_corpus = IntegerFilter(field_name="rule_count", lookup_expr="gte")
    max_corpus = IntegerFilter(field_name="rule_count", lookup_expr="lte")
    rule = django_filters.CharFilter(method="filter_rule", help_text="Sigma rule id")
    ordering = django_filters.OrderingFilter(
        fields=(
            ("rule_count", "corpus"),
            ("field", "field"),
            ("kind", "kind"),
            ("value_key", "value"),
        )
    )

    class Meta:
        form = PredicateFilterForm
        fields: list[str] = []

    def filter_nothing(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset  # applied in filter_queryset, where absent and empty differ

    def filter_rule(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset.filter(rules__rule_id=value).distinct()

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        data = self.form.cleaned_data
        if "value" in self.data:
            kind = data["kind"]
            value_key = identity_value(kind, data["value"])
            if "field" in self.data:
                queryset = queryset.filter(identity=identity_hash(data["field"], kind, value_key))
            else:
                queryset = queryset.filter(kind=kind, value_key=value_key)
        elif "field" in self.data:
            queryset = queryset.filter(field=data["field"])
        queryset = super().filter_queryset(queryset)
        # Pagination needs a total order; (field, kind, value_key) is unique.
        ordering = list(queryset.query.order_by) or ["-rule_count"]
        return queryset.order_by(*ordering, "field", "kind", "value_key")


class IndicatorFilterSet(PredicateFilterSet):
    class Meta(PredicateFilterSet.Meta):
        model = Indicator


class ExclusionFilterSet(PredicateFilterSet):
    class Meta(PredicateFilterSet.Meta):
        model = Exclusion
