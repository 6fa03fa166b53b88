"""One rule filter set shared by the catalog pages (facets) and the API.

Full-text search uses PostgreSQL's weighted ``search_vector`` with ranking; on SQLite it
falls back to case-insensitive substring matching over the same text.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import django_filters
from django import forms
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Subquery

from catalog.models import Rule, RuleFinding, RuleRegression, RuleRevision

LEVELS = ["informational", "low", "medium", "high", "critical"]
STATUSES = ["stable", "test", "experimental", "deprecated", "unsupported"]
# Issue 14: ``check=any|none|<validator>`` and ``regression=<one of these>``.
CHECK_ANY, CHECK_NONE = "any", "none"
REGRESSION_STATES = {
    "tested": "Has a regression test",
    "passed": "Regression test passes",
    "failed": "Regression test fails",
    "missing": "Names a regression test the corpus lacks",
}
SORTS = {
    "relevance": None,
    "title": ("title",),
    "-title": ("-title",),
    "level": ("level_rank", "title"),
    "-level": ("-level_rank", "title"),
    "date": ("date", "title"),
    "-date": ("-date", "title"),
    "modified": ("modified", "title"),
    "-modified": ("-modified", "title"),
    # Newest revision first (its release's date, then the import order); never-revised last.
    "-changed": (F("last_changed").desc(nulls_last=True), "title"),
}


def search_rules(queryset: QuerySet[Rule], text: str) -> QuerySet[Rule]:
    """Filter (and on PostgreSQL rank) rules by a free-text query."""
    text = text.strip()
    if not text:
        return queryset
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config="simple", search_type="websearch")
        return (
            queryset.annotate(rank=SearchRank(F("search_vector"), query))
            .filter(Q(search_vector=query) | Q(rule_id__iexact=text) | Q(title__icontains=text))
            .order_by("-rank", "title")
        )
    condition = Q()
    for word in text.split():
        condition &= Q(search_text__icontains=word) | Q(rule_id__iexact=word)
    return queryset.filter(condition)


class ChangedSinceField(forms.CharField):
    """A release name or a ``YYYY-MM-DD`` date, cleaned to the revisions it selects (a Q)."""

    def clean(self, value: Any) -> Q | None:
        text = super().clean(value)
        if not text:
            return None
        from catalog.queries.releases import changed_since_revisions

        try:
            return changed_since_revisions(text)
        except ValueError as exc:
            raise forms.ValidationError(
                "%(detail)s", code="invalid", params={"detail": str(exc)}
            ) from exc


class ChangedSinceFilter(django_filters.Filter):
    field_class = ChangedSinceField


def check_choices() -> list[tuple[str, str]]:
    """``any``, ``none`` and every validator identifier (pySigma's and SigmaHQ's)."""
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq

    names = sorted(set(core) | set(sigmahq))
    return [(CHECK_ANY, "Has findings"), (CHECK_NONE, "No findings")] + [(n, n) for n in names]


class ProfileField(forms.CharField):
    """A telemetry profile in its URL form (``/coverage/?p=``), cleaned to a Profile."""

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        from catalog.queries.telemetry import decode_profile
        from rules.coverage import ProfileError

        try:
            return decode_profile(text)
        except ProfileError as exc:
            raise forms.ValidationError(
                "%(detail)s", code="invalid", params={"detail": str(exc)}
            ) from exc


class ProfileFilter(django_filters.Filter):
    field_class = ProfileField


class RuleFilterSet(django_filters.FilterSet):
    """Filters named like the catalog facets; every value is a plain query parameter."""

    q = django_filters.CharFilter(method="filter_q", label="Search")
    tactic = django_filters.CharFilter(method="filter_tactic")
    technique = django_filters.CharFilter(method="filter_technique")
    product = django_filters.CharFilter(field_name="product")
    category = django_filters.CharFilter(field_name="category")
    service = django_filters.CharFilter(field_name="service")
    level = django_filters.MultipleChoiceFilter(choices=[(v, v) for v in LEVELS])
    status = django_filters.MultipleChoiceFilter(choices=[(v, v) for v in STATUSES])
    author = django_filters.CharFilter(field_name="author", lookup_expr="icontains")
    tag = django_filters.CharFilter(method="filter_tag")
    namespace = django_filters.CharFilter(method="filter_namespace")
    rule_set = django_filters.CharFilter(field_name="rule_set")
    indicator = django_filters.NumberFilter(method="filter_indicator")
    exclusion = django_filters.NumberFilter(method="filter_exclusion")
    check = django_filters.ChoiceFilter(
        choices=check_choices,
        method="filter_check",
        help_text="Validator findings: 'any', 'none', or a validator identifier",
    )
    fires = ProfileFilter(
        method="filter_fires",
        help_text="Rules that can fire with a telemetry profile (the p= value of /coverage/)",
    )
    regression = django_filters.ChoiceFilter(
        choices=list(REGRESSION_STATES.items()), method="filter_regression"
    )
    changed_since = ChangedSinceFilter(
        method="filter_changed_since",
        help_text="Added or changed after this release, or on or after this date (YYYY-MM-DD)",
    )

    class Meta:
        model = Rule
        fields: list[str] = []

    def filter_q(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        return search_rules(queryset, value)

    def filter_tactic(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        tactic = value.strip().lower().replace("_", "-")
        return _across(
            queryset, Q(tactics__shortname=tactic) | Q(tactics__attack_id__iexact=tactic)
        )

    def filter_technique(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        tid = value.strip().upper()
        # A technique also matches rules tagged with its sub-techniques.
        sub_techniques = Q(techniques__attack_id__startswith=tid + ".")
        return _across(queryset, Q(techniques__attack_id=tid) | sub_techniques)

    def filter_tag(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        return _across(queryset, Q(tags__name__iexact=value.strip()))

    def filter_namespace(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        return _across(queryset, Q(tags__namespace=value.strip().lower()))

    def filter_indicator(self, queryset: QuerySet[Rule], name: str, value: Any) -> QuerySet[Rule]:
        pk = row_id(value)
        if pk is None:
            return queryset.none()
        return _across(queryset, Q(rule_indicators__indicator_id=pk))

    def filter_exclusion(self, queryset: QuerySet[Rule], name: str, value: Any) -> QuerySet[Rule]:
        pk = row_id(value)
        if pk is None:
            return queryset.none()
        return _across(queryset, Q(rule_exclusions__exclusion_id=pk))

    def filter_check(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        value = value.strip()
        if value == CHECK_ANY:
            return queryset.filter(pk__in=RuleFinding.objects.values("rule_id"))
        if value == CHECK_NONE:
            return queryset.exclude(pk__in=RuleFinding.objects.values("rule_id"))
        return queryset.filter(pk__in=RuleFinding.objects.filter(validator=value).values("rule_id"))

    def filter_fires(self, queryset: QuerySet[Rule], name: str, value: Any) -> QuerySet[Rule]:
        if value is None:
            return queryset
        from catalog.queries.telemetry import coverage_answer

        result, _ = coverage_answer(value)
        return queryset.filter(rule_id__in=result.firable)

    def filter_regression(self, queryset: QuerySet[Rule], name: str, value: str) -> QuerySet[Rule]:
        runs = {
            "tested": Q(tested=True),
            "passed": Q(tested=True, passed=True),
            "failed": Q(tested=True, passed=False),
            "missing": Q(tested=False),
        }[value]
        return queryset.filter(pk__in=RuleRegression.objects.filter(runs).values("rule_id"))

    def filter_changed_since(
        self, queryset: QuerySet[Rule], name: str, value: Q | None
    ) -> QuerySet[Rule]:
        if value is None:
            return queryset
        return queryset.filter(rule_id__in=RuleRevision.objects.filter(value).values("sigma_id"))


MAX_ROW_ID = 2**63 - 1


def row_id(value: Any) -> int | None:
    """A filter value as a row id, or ``None`` when no row can have it (fractional, negative,
    or past the database's 64-bit integers, which would overflow the query: finding 7)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    if not 0 < number <= MAX_ROW_ID:
        return None
    return int(number)


def _across(queryset: QuerySet[Rule], condition: Q) -> QuerySet[Rule]:
    """Filter over a to-many relation; DISTINCT so a rule matching twice is listed once."""
    return queryset.filter(condition).distinct()


def with_level_rank(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Annotate ``level_rank`` (informational=0 .. critical=4) for sorting by severity."""
    from django.db.models import Case, IntegerField, Value, When

    return queryset.annotate(
        level_rank=Case(
            *[When(level=name, then=Value(rank)) for rank, name in enumerate(LEVELS)],
            default=Value(-1),
            output_field=IntegerField(),
        )
    )


def with_last_changed(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Annotate ``last_changed``: the release date of the rule's newest revision."""
    newest = RuleRevision.objects.filter(sigma_id=OuterRef("rule_id")).order_by("-number")
    return queryset.annotate(last_changed=Subquery(newest.values("release__released_at")[:1]))


def sort_rules(queryset: QuerySet[Rule], sort: str) -> QuerySet[Rule]:
    """Apply one of :data:`SORTS`; unknown values keep the current (relevance/title) order."""
    fields = SORTS.get(sort)
    if not fields:
        return queryset
    if any("level_rank" in f for f in fields if isinstance(f, str)):
        queryset = with_level_rank(queryset)
    if sort == "-changed":
        queryset = with_last_changed(queryset)
    return queryset.order_by(*fields)
