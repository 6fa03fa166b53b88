"""API views (NetBox style): read-only viewsets for rules, indicators and exclusions, computed
ATT&CK / event views and streaming exports over the same rule filters, staff-only imports.

Every view rejects unknown query parameters (a typo would otherwise silently widen the
result) and every read view answers conditional GETs from the catalog fingerprint.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

from django.db.models import Model, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.http import http_date
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from catalog.api import coverage, exports
from catalog.api.detail import load_rule_detail
from catalog.api.filtersets import ExclusionFilterSet, IndicatorFilterSet, RuleAPIFilterSet
from catalog.api.schema import CatalogAutoSchema
from catalog.api.serializers import (
    AttackSummarySerializer,
    EventSummarySerializer,
    ExclusionSerializer,
    ImportReportSerializer,
    ImportRunSerializer,
    ImportUploadSerializer,
    IndicatorSerializer,
    NavigatorLayerSerializer,
    RuleBriefSerializer,
    RuleSerializer,
)
from catalog.models import (
    Exclusion,
    ImportRun,
    Indicator,
    Rule,
    Tag,
    identity_hash,
)
from catalog.services import (
    ImportAborted,
    ImportReport,
    current_fingerprint,
    import_rules,
)
from rules.model import identity_value

# Bump when a response's shape changes: ETags must not survive a change of representation.
REPRESENTATION_VERSION = "1"

BRIEF_RULE_FIELDS = (
    "rule_id", "title", "status", "level", "product", "category", "service", "rule_set",
    "date", "modified",
)


# --------------------------------------------------------------------------------------------
# Shared behaviour
# --------------------------------------------------------------------------------------------


class _Conditional(Exception):
    """Carries the 304 (or 412) that answers a conditional request."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def catalog_validators(request: Request) -> tuple[str, int | None]:
    """ETag and Last-Modified (Unix time) of the current catalog for this representation.

    The catalog fingerprint (rule count + latest ``updated_at``) changes with every import
    that changes anything, and indicator counts only change through imports.
    """
    fingerprint = current_fingerprint()
    latest = fingerprint.partition(":")[2]
    try:
        last_modified = int(datetime.fromisoformat(latest).timestamp()) if latest else None
    except ValueError:
        last_modified = None
    key = "|".join(
        [REPRESENTATION_VERSION, fingerprint, request.accepted_media_type or "",
         request.get_full_path()]
    )
    return f'"{hashlib.sha1(key.encode()).hexdigest()}"', last_modified


class CatalogViewMixin:
    """Base of every API view: token auth first (so anonymous writes get 401 with
    ``WWW-Authenticate``), strict query parameters, conditional GETs when ``conditional``."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    schema = CatalogAutoSchema()
    conditional = False

    def is_collection(self) -> bool:
        """Whether filters and pagination apply (lists, not details or writes)."""
        return getattr(self, "action", "list") == "list"

    def allowed_query_params(self) -> set[str]:
        allowed = {api_settings.URL_FORMAT_OVERRIDE}
        if not self.is_collection():
            return allowed
        filterset = getattr(self, "filterset_class", None)
        if filterset is not None:
            allowed |= set(filterset.base_filters)
        paginator = getattr(self, "paginator", None)
        if paginator is not None:
            allowed |= {paginator.limit_query_param, paginator.offset_query_param}
        return allowed

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        unknown = sorted(set(request.query_params) - self.allowed_query_params())
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})
        if self.conditional and request.method in ("GET", "HEAD"):
            self._validators = catalog_validators(request)
            etag, last_modified = self._validators
            answer = get_conditional_response(
                request._request, etag=etag, last_modified=last_modified
            )
            if answer is not None:
                raise _Conditional(answer)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Conditional):
            return exc.response
        return super().handle_exception(exc)  # type: ignore[misc]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        validators = getattr(self, "_validators", None)
        if validators and response.status_code in (200, 304):
            etag, last_modified = validators
            response.headers["ETag"] = etag
            if last_modified is not None:
                response.headers["Last-Modified"] = http_date(last_modified)
            # Cacheable, but revalidated every time: the ETag makes that a cheap 304.
            patch_cache_control(response, no_cache=True)
            patch_vary_headers(response, ["Accept"])
        return response


class SingleFormatNegotiation(BaseContentNegotiation):
    """Serve the view's first renderer whatever ``Accept`` says (files such as a layer or an
    export have one format; errors still render as JSON)."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


def rules_filter_given(request: Request) -> bool:
    return any(name in request.query_params for name in RuleAPIFilterSet.base_filters)


def with_total_order(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Append the primary key to the ordering: pages must not overlap or skip rules."""
    ordering = list(queryset.query.order_by) or list(Rule._meta.ordering)
    return queryset.order_by(*ordering, "pk")


def brief_rules() -> QuerySet[Rule]:
    return Rule.objects.only(*BRIEF_RULE_FIELDS).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("name"))
    )


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


def api_not_found(request: HttpRequest) -> JsonResponse:
    """Unknown API paths get JSON, like every other API error."""
    return JsonResponse({"detail": "Not found."}, status=404)


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Rules matching the catalog filters (brief items)"),
    retrieve=extend_schema(
        summary="One rule by Sigma id: metadata, YAML, ATT&CK, events, stages, indicators",
        parameters=[OpenApiParameter("rule_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                     description="The Sigma rule id")],
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

    def stream(self, rules: QuerySet[Rule]) -> Any:
        raise NotImplementedError

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

    def stream(self, rules: QuerySet[Rule]) -> Any:
        return exports.ndjson_lines(rules)


@extend_schema(
    summary="Export the matching rules as CSV (streamed)",
    description="Columns: " + ", ".join(exports.CSV_COLUMNS) + ". Tags are space-separated; "
    "indicators and exclusions are JSON lists of [field, kind, value].",
    responses={(200, "text/csv"): OpenApiTypes.STR},
)
class RuleCsvExportView(RuleExportView):
    content_type = "text/csv; charset=utf-8"
    filename = "rules.csv"

    def stream(self, rules: QuerySet[Rule]) -> Any:
        return exports.csv_lines(rules)


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
    if not kind or any("\x00" in text or len(params.getlist(name)) > 1
                       for name, text in (("field", field), ("kind", kind), ("value", value))):
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


@extend_schema_view(
    list=extend_schema(
        summary="Indicators; field+kind+value is an exact identity lookup",
    ),
    retrieve=extend_schema(summary="One indicator"),
)
class IndicatorViewSet(PredicateViewSet):
    queryset = Indicator.objects.all()
    serializer_class = IndicatorSerializer
    filterset_class = IndicatorFilterSet


@extend_schema_view(
    list=extend_schema(
        summary="Exclusions; field+kind+value is an exact identity lookup",
    ),
    retrieve=extend_schema(summary="One exclusion"),
)
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


# --------------------------------------------------------------------------------------------
# Imports (staff only)
# --------------------------------------------------------------------------------------------

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def import_upload(upload: Any, *, prune: bool) -> ImportReport:
    """Run the importer on an uploaded file saved under a temporary directory.

    The file keeps its (sanitised) name: the importer picks the reader by suffix and stores
    a single file's name as the rule's source path. Error paths lose the temporary prefix.
    """
    name = _UNSAFE_NAME_CHARS.sub("_", PurePosixPath(upload.name).name)[-120:]
    with tempfile.TemporaryDirectory(prefix="sigma-upload-") as folder:
        target = Path(folder) / name
        with target.open("wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        try:
            report = import_rules([str(target)], prune=prune, trigger="api")
        except ImportAborted as exc:
            exc.report.errors = _relative_errors(exc.report, folder)
            raise
    report.errors = _relative_errors(report, folder)
    return report


def _relative_errors(report: ImportReport, folder: str) -> list[Any]:
    for error in report.errors:
        error.path = error.path.replace(folder + "/", "")
    return report.errors


@extend_schema_view(
    list=extend_schema(summary="Import runs, newest first (staff)"),
    retrieve=extend_schema(summary="One import run (staff)"),
    create=extend_schema(
        summary="Import an uploaded rule file or archive (staff)",
        request={"multipart/form-data": ImportUploadSerializer},
        responses={201: ImportReportSerializer},
    ),
)
class ImportRunViewSet(
    CatalogViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Import runs for staff; POST a .yml/.zip/.tar.gz to import it (synchronously)."""

    queryset = ImportRun.objects.order_by("-started_at", "-pk")
    serializer_class = ImportRunSerializer
    permission_classes = [IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_regex = r"\d+"

    def get_serializer_class(self) -> type[Any]:
        return ImportUploadSerializer if self.action == "create" else ImportRunSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            report = import_upload(
                upload.validated_data["file"], prune=upload.validated_data["prune"]
            )
        except ImportAborted as exc:
            messages = [f"{exc} (import run {exc.report.run_id})"]
            messages += [f"{e.path}: {e.error}" for e in exc.report.errors]
            raise ValidationError({"file": messages}) from exc
        run_url = (
            request.build_absolute_uri(reverse("api:import-detail", args=[report.run_id]))
            if report.run_id
            else None
        )
        data = {
            "run": run_url,
            "run_id": report.run_id,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "failed": report.failed,
            "pruned": report.pruned,
            "seconds": report.seconds,
            "summary": report.summary(),
            "errors": [e.to_dict() for e in report.errors],
        }
        headers = {"Location": run_url} if run_url else {}
        return Response(data, status=status.HTTP_201_CREATED, headers=headers)
