"""API views (NetBox style): read-only viewsets for rules, indicators and exclusions, computed
ATT&CK / event views and streaming exports over the same rule filters.

Every view rejects unknown query parameters (a typo would otherwise silently widen the
result) and every read view answers conditional GETs from the catalog fingerprint (see
:mod:`catalog.api.base`). Imports, the sandbox and conversion have modules of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from django.db.models import Model, QuerySet
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import viewsets
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import coverage, exports
from catalog.api.base import (
    CatalogViewMixin,
    SingleFormatNegotiation,
    brief_rules,
    rules_filter_given,
    with_total_order,
)
from catalog.api.detail import load_rule_detail
from catalog.api.filtersets import ExclusionFilterSet, IndicatorFilterSet, RuleAPIFilterSet
from catalog.api.serializers import (
    AttackSummarySerializer,
    EventSummarySerializer,
    ExclusionSerializer,
    IndicatorSerializer,
    NavigatorLayerSerializer,
    RuleBriefSerializer,
    RuleSerializer,
)
from catalog.models import Exclusion, Indicator, Rule, identity_hash
from rules.model import identity_value

# --------------------------------------------------------------------------------------------
# Root and fallbacks
# --------------------------------------------------------------------------------------------


class APIRootView(CatalogViewMixin, APIView):
    """Links to every API endpoint."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        names = {
            "rules": "api:rule-list",
            "rules_export_ndjson": "api:rule-export-ndjson",
            "rules_export_csv": "api:rule-export-csv",
            "indicators": "api:indicator-list",
            "exclusions": "api:exclusion-list",
            "attack": "api:attack",
            "attack_layer": "api:attack-layer",
            "events": "api:events",
            "imports": "api:import-list",
            "schema": "api:schema",
            "docs": "api:docs",
        }
        return Response(
            {key: request.build_absolute_uri(reverse(name)) for key, name in names.items()}
        )


# The site's policy minus inline styles, which Swagger UI sets on its elements.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SwaggerDocsView(SpectacularSwaggerSplitView):
    """Swagger UI from the vendored drf-spectacular-sidecar assets. The split view serves its
    start-up script as a second request (``?script``), so the page has no inline script."""

    url_name = "api:schema"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Rules matching the catalog filters (brief items)"),
    retrieve=extend_schema(
        summary="One rule by Sigma id: metadata, YAML, ATT&CK, events, stages, indicators",
        parameters=[
            OpenApiParameter(
                "rule_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The Sigma rule id"
            )
        ],
    ),
)
class RuleViewSet(CatalogViewMixin, viewsets.ReadOnlyModelViewSet):
    lookup_field = "rule_id"
    lookup_value_regex = r"[^/]+"
    filterset_class = RuleAPIFilterSet
    conditional = True
    queryset = Rule.objects.all()

    def get_queryset(self) -> QuerySet[Rule]:
        return brief_rules()

    def get_serializer_class(self) -> type[RuleBriefSerializer]:
        return RuleSerializer if self.action == "retrieve" else RuleBriefSerializer

    def filter_queryset(self, queryset: QuerySet[Rule]) -> QuerySet[Rule]:
        return with_total_order(super().filter_queryset(queryset))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Two queries (see catalog.api.detail) instead of a prefetching get_object().
        detail = load_rule_detail(self.kwargs[self.lookup_field])
        if detail is None:
            raise Http404("No rule has this id.")
        return Response(self.get_serializer(detail).data)


class RuleFilteredView(CatalogViewMixin, GenericAPIView):
    """Base of the views computed over the rules that match the rule filters."""

    queryset = Rule.objects.all()
    filterset_class = RuleAPIFilterSet
    filter_backends = [DjangoFilterBackend]
    pagination_class = None
    conditional = True
    computed_over_rules = True

    def filtered_rules(self) -> QuerySet[Rule] | None:
        """The matching rules, or None when no filter is given (the whole catalog)."""
        queryset = self.filter_queryset(self.get_queryset())
        return queryset if rules_filter_given(self.request) else None


class RuleExportView(RuleFilteredView):
    """Base of the streaming exports; subclasses set the format."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = SingleFormatNegotiation
    content_type = ""
    filename = ""

    stream: Callable[[QuerySet[Rule]], Iterator[str]]  # the format's lines, per subclass

    def get(self, request: Request) -> StreamingHttpResponse:
        rules = with_total_order(self.filter_queryset(self.get_queryset()))
        response = StreamingHttpResponse(self.stream(rules), content_type=self.content_type)
        response["Content-Disposition"] = f'attachment; filename="{self.filename}"'
        return response


@extend_schema(
    summary="Export the matching rules as NDJSON (streamed)",
    description="One JSON object per line: metadata, logsource, tags, indicators, exclusions "
    "and the rule's YAML.",
    responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
)
class RuleNdjsonExportView(RuleExportView):
    content_type = "application/x-ndjson; charset=utf-8"
    filename = "rules.ndjson"
    stream = staticmethod(exports.ndjson_lines)


@extend_schema(
    summary="Export the matching rules as CSV (streamed)",
    description="Columns: " + ", ".join(exports.CSV_COLUMNS) + ". Tags are space-separated; "
    "indicators and exclusions are JSON lists of [field, kind, value].",
    responses={(200, "text/csv"): OpenApiTypes.STR},
)
class RuleCsvExportView(RuleExportView):
    content_type = "text/csv; charset=utf-8"
    filename = "rules.csv"
    stream = staticmethod(exports.csv_lines)


# --------------------------------------------------------------------------------------------
# Indicators and exclusions
# --------------------------------------------------------------------------------------------


IDENTITY_PARAMS = frozenset({"field", "kind", "value"})
PAGE_PARAMS = frozenset({"limit", "offset", "format"})


def identity_of(params: Any) -> str | None:
    """The identity hash when the query is exactly ``field`` + ``kind`` + ``value`` (with
    at most pagination and ``format`` beside them) and needs no validation, else None."""
    names = set(params)
    if not names.issuperset(IDENTITY_PARAMS) or names - IDENTITY_PARAMS - PAGE_PARAMS:
        return None
    field, kind, value = (params.get(name) for name in ("field", "kind", "value"))
    kind = kind.strip()  # as the filter set's ``kind`` (field and value keep whitespace)
    if not kind or any(
        "\x00" in text or len(params.getlist(name)) > 1
        for name, text in (("field", field), ("kind", kind), ("value", value))
    ):
        return None  # left to the filter set, which answers with the right 400
    return identity_hash(field, kind, identity_value(kind, value))


class PredicateViewSet(CatalogViewMixin, viewsets.ReadOnlyModelViewSet):
    """Indicator or exclusion identities with their corpus counts."""

    lookup_value_regex = r"\d+"
    conditional = True

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action == "list" and (identity := identity_of(self.request.query_params)):
            # The commonest call, answered with one unique-index probe: building and
            # validating the whole filter set would cost more than the query (same result
            # as the filter set's identity branch). One row at most: no ordering to compile.
            return queryset.filter(identity=identity).order_by()
        return super().filter_queryset(queryset)


def _predicate_schema(noun: str) -> Any:
    """The summaries of an indicator or exclusion viewset."""
    return extend_schema_view(
        list=extend_schema(summary=f"{noun}s; field+kind+value is an exact identity lookup"),
        retrieve=extend_schema(summary=f"One {noun.lower()}"),
    )


@_predicate_schema("Indicator")
class IndicatorViewSet(PredicateViewSet):
    queryset = Indicator.objects.all()
    serializer_class = IndicatorSerializer
    filterset_class = IndicatorFilterSet


@_predicate_schema("Exclusion")
class ExclusionViewSet(PredicateViewSet):
    queryset = Exclusion.objects.all()
    serializer_class = ExclusionSerializer
    filterset_class = ExclusionFilterSet


class PredicateRulesView(CatalogViewMixin, ListAPIView):
    """The rules using one indicator (or exclusion), with the rule filters."""

    serializer_class = RuleBriefSerializer
    filterset_class = RuleAPIFilterSet
    conditional = True
    queryset = Rule.objects.all()
    model: type[Model] = Indicator
    link_field = "rule_indicators__indicator"

    def get_queryset(self) -> QuerySet[Rule]:
        target = get_object_or_404(self.model, pk=self.kwargs["pk"])
        # A subquery, not a join: a rule using the identity twice is listed once.
        using = Rule.objects.filter(**{self.link_field: target}).values("pk")
        return brief_rules().filter(pk__in=using)

    def filter_queryset(self, queryset: QuerySet[Rule]) -> QuerySet[Rule]:
        return with_total_order(super().filter_queryset(queryset))


@extend_schema(summary="Rules using this indicator")
class IndicatorRulesView(PredicateRulesView):
    model = Indicator
    link_field = "rule_indicators__indicator"


@extend_schema(summary="Rules using this exclusion")
class ExclusionRulesView(PredicateRulesView):
    model = Exclusion
    link_field = "rule_exclusions__exclusion"


# --------------------------------------------------------------------------------------------
# ATT&CK and events
# --------------------------------------------------------------------------------------------


@extend_schema(
    summary="ATT&CK tactics and techniques with rule counts (over the rule filters)",
    responses=AttackSummarySerializer,
)
class AttackView(RuleFilteredView):
    def get(self, request: Request) -> Response:
        return Response(coverage.attack_summary(self.filtered_rules()))


@extend_schema(
    summary="ATT&CK Navigator layer (format 4.5) of the matching rules",
    description="One technique entry per covered ATT&CK v19 technique; score = number of "
    "rules tagged with it. Load it in ATT&CK Navigator (Open existing layer).",
    responses=NavigatorLayerSerializer,
)
class NavigatorLayerView(RuleFilteredView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = SingleFormatNegotiation

    def get(self, request: Request) -> Response:
        rules = self.filtered_rules()
        filters = [
            (name, value)
            for name in RuleAPIFilterSet.base_filters
            if name != "sort"
            for value in request.query_params.getlist(name)
        ]
        query = urlencode(filters)
        rules_url = request.build_absolute_uri(reverse("api:rule-list")) + "?"
        if query:
            rules_url += query + "&"
        label = ", ".join(f"{n}={v}" for n, v in filters) or "all rules"
        layer = coverage.navigator_layer(
            rules,
            name=f"Sigma rules ({label})"[:200],
            description=f"Rules per ATT&CK technique in the Sigma catalog, {label}.",
            rules_url=rules_url,
        )
        response = Response(layer)
        # Navigator fetches "load from URL" layers from its own origin; the data is public.
        response["Access-Control-Allow-Origin"] = "*"
        return response


@extend_schema(
    summary="Event sources (provider, channel, event ID) with the number of rules they feed",
    responses=EventSummarySerializer,
)
class EventSourceView(RuleFilteredView):
    def get(self, request: Request) -> Response:
        return Response(coverage.event_summary(self.filtered_rules()))
