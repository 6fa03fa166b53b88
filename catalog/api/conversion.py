"""Conversion API: one rule as a SIEM query (``/api/rules/<id>/convert/``), the registry of
targets and pipelines (``/api/convert/targets/``) and the streamed bulk export of the
catalog's filter result (``/api/convert/export/``).

Every read goes through :mod:`catalog.conversion`, so an unchanged rule is converted once.
A rule the target cannot express is a 200 with ``ok: false`` and the reason (an answer, not
a bad request); an unknown target, pipeline or format is a 400 naming it, with its choices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.base import SingleFormatNegotiation
from catalog.api.errors import ErrorSerializer, ParameterError
from catalog.api.schema import CatalogAutoSchema
from catalog.conversion import convert_rules, get_conversion
from catalog.filters import RuleFilterSet, sort_rules
from catalog.models import Rule
from catalog.throttling import HeldStream, Throttled
from rules.convert import (
    EXPORT_FORMATS,
    PIPELINES,
    TARGETS,
    ConversionParameterError,
    ConversionResult,
    export_chunks,
    export_format,
    resolve_options,
)


def parameter_error(exc: ConversionParameterError) -> ParameterError:
    """The API's 400 for an unknown target, pipeline or format."""
    return ParameterError(exc.message, parameter=exc.parameter, choices=exc.choices)


class DjangoJSONRenderer(JSONRenderer):
    """JSON as Django's ``JsonResponse`` writes it (ASCII, ``", "`` separators), the bytes
    these endpoints answered with before they were DRF views."""

    indent: int | None = None

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        return json.dumps(data, cls=DjangoJSONEncoder, indent=self.indent).encode()


class IndentedJSONRenderer(DjangoJSONRenderer):
    indent = 2


class ConversionView(APIView):
    """Base of the conversion endpoints: public, read-only, unauthenticated (a token sent
    along is ignored), and ``format`` is this API's output format, not DRF's renderer
    override (one renderer, whatever the query says)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    content_negotiation_class = SingleFormatNegotiation
    renderer_classes = [DjangoJSONRenderer]
    schema = CatalogAutoSchema()
    http_method_names = ["get", "head", "options"]


# --------------------------------------------------------------------------- one rule

_TARGET = OpenApiParameter(
    "target", OpenApiTypes.STR, required=True, enum=list(TARGETS), description="SIEM target"
)
_PIPELINE = OpenApiParameter(
    "pipeline",
    OpenApiTypes.STR,
    enum=list(PIPELINES),
    description="Processing pipeline (default: the target's own); must suit the target",
)


class ConversionResultSerializer(serializers.Serializer):
    """One rule converted for one target, pipeline and output format (documentation only)."""

    rule_id = serializers.CharField()
    title = serializers.CharField()
    revision = serializers.IntegerField()
    target = serializers.CharField()
    target_label = serializers.CharField()
    pipeline = serializers.CharField()
    pipeline_label = serializers.CharField()
    output_format = serializers.CharField()
    ok = serializers.BooleanField(help_text="False: the target cannot express the rule")
    query = serializers.JSONField(help_text="A string, a list (several queries) or empty")
    outputs = serializers.ListField(child=serializers.JSONField())
    error = serializers.CharField(allow_null=True)
    error_kind = serializers.CharField(allow_null=True)
    backend_version = serializers.CharField()
    sigma_cli_command = serializers.CharField()
    cached = serializers.BooleanField()
    page_url = serializers.CharField()


def result_json(rule: Rule, result: ConversionResult, cached: bool) -> dict[str, Any]:
    """The API representation of one conversion."""
    spec, pipe = TARGETS[result.target], PIPELINES[result.pipeline]
    query = urlencode({"target": spec.id, "pipeline": pipe.id})
    return {
        "rule_id": rule.rule_id,
        "title": rule.title,
        "revision": rule.revision,
        "target": spec.id,
        "target_label": spec.label,
        "pipeline": pipe.id,
        "pipeline_label": pipe.label,
        "output_format": result.output_format,
        "ok": result.ok,
        "query": result.query,
        "outputs": list(result.outputs),
        "error": result.error,
        "error_kind": result.error_kind,
        "backend_version": result.backend_version,
        "sigma_cli_command": result.sigma_cli_command,
        "cached": cached,
        "page_url": reverse("conversion:rule-convert", args=[rule.rule_id]) + f"?{query}",
    }


@extend_schema(
    summary="One rule as a SIEM query",
    parameters=[
        OpenApiParameter(
            "rule_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The Sigma rule id"
        ),
        _TARGET,
        _PIPELINE,
        OpenApiParameter(
            "format", OpenApiTypes.STR, description="Output format (default: the target's)"
        ),
    ],
    responses={200: ConversionResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
)
class RuleConvertView(ConversionView):
    renderer_classes = [IndentedJSONRenderer]

    def get(self, request: Request, rule_id: str) -> Response:
        params = request.query_params
        target, pipeline, fmt = (params.get(name) for name in ("target", "pipeline", "format"))
        try:
            resolve_options(target, pipeline, fmt)
        except ConversionParameterError as exc:
            raise parameter_error(exc) from exc
        rule = Rule.objects.filter(rule_id=rule_id).first()
        if rule is None:
            raise NotFound(f"no rule with id {rule_id!r}")
        result, cached = get_conversion(rule, target, pipeline, fmt)
        return Response(result_json(rule, result, cached))


# --------------------------------------------------------------------------- registry


class TargetSerializer(serializers.Serializer):
    id = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    formats = serializers.DictField(
        child=serializers.CharField(), help_text="Output format id to label"
    )
    export_formats = serializers.ListField(child=serializers.CharField())
    default_pipeline = serializers.CharField()
    pipelines = serializers.ListField(child=serializers.CharField())


class PipelineSerializer(serializers.Serializer):
    id = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    sigma_pipelines = serializers.ListField(child=serializers.CharField())


class TargetRegistrySerializer(serializers.Serializer):
    targets = TargetSerializer(many=True)
    pipelines = PipelineSerializer(many=True)


@extend_schema(
    summary="Conversion targets with their formats and pipelines",
    responses=TargetRegistrySerializer,
)
class TargetsView(ConversionView):
    def get(self, request: Request) -> Response:
        return Response(
            {
                "targets": [
                    {
                        "id": spec.id,
                        "label": spec.label,
                        "description": spec.description,
                        "formats": {f: spec.format_label(f) for f in spec.formats},
                        "export_formats": list(spec.export_formats),
                        "default_pipeline": spec.default_pipeline,
                        "pipelines": list(spec.pipelines),
                    }
                    for spec in TARGETS.values()
                ],
                "pipelines": [
                    {
                        "id": pipe.id,
                        "label": pipe.label,
                        "description": pipe.description,
                        "sigma_pipelines": list(pipe.sigma_pipelines),
                    }
                    for pipe in PIPELINES.values()
                ],
            }
        )


# --------------------------------------------------------------------------- bulk export

# Each export format's media type with its body: text, except Loki's ruler file, a YAML
# document (clients such as schemathesis parse it).
_EXPORT_BODIES = {
    f.content_type: OpenApiTypes.OBJECT if f.kind == "loki_ruler" else OpenApiTypes.STR
    for f in EXPORT_FORMATS.values()
}


@extend_schema(
    summary="The matching rules in a target's deployable form (streamed)",
    description="Splunk `savedsearches.conf`, Elastic/OpenSearch NDJSON, Loki ruler YAML or "
    "a plain query list, over the rules that match the catalog filters (as the rule list).",
    parameters=[
        _TARGET,
        _PIPELINE,
        OpenApiParameter(
            "format",
            OpenApiTypes.STR,
            enum=list(EXPORT_FORMATS),
            description="Export format (default: the target's first)",
        ),
        OpenApiParameter("sort", OpenApiTypes.STR, description="Order of the rules"),
    ],
    responses={
        **{(200, media_type): body for media_type, body in sorted(_EXPORT_BODIES.items())},
        400: ErrorSerializer,
    },
)
class ConversionExportView(ConversionView, GenericAPIView):
    queryset = Rule.objects.all()
    filterset_class = RuleFilterSet
    filter_backends = [DjangoFilterBackend]
    pagination_class = None
    computed_over_rules = True  # takes the rule filters (see CatalogAutoSchema)

    def get(self, request: Request) -> StreamingHttpResponse:
        params = request.query_params
        try:
            spec, pipe, _ = resolve_options(params.get("target"), params.get("pipeline"))
            writer = export_format(spec.id, params.get("format"))
        except ConversionParameterError as exc:
            raise parameter_error(exc) from exc
        rules: QuerySet[Rule] = self.filter_queryset(self.get_queryset())
        rules = sort_rules(rules, params.get("sort", ""))
        results = convert_rules(rules, spec.id, pipe.id, writer.id)
        chunks = export_chunks(spec.id, writer.id, ((r.rule_id, res) for r, res, _ in results))
        try:
            # A heavy request: one of the client's heavy slots until the stream is sent.
            body = HeldStream(request, "convert-export", _encoded(chunks))
        except Throttled as refusal:
            raise exceptions.Throttled(wait=refusal.wait, detail=str(refusal)) from None
        response = StreamingHttpResponse(body, content_type=writer.content_type)
        name = (
            "savedsearches.conf"
            if writer.id == "savedsearches"
            else f"sigma-{spec.id}-{pipe.id}.{writer.extension}"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


def _encoded(chunks: Iterator[str], size: int = 64 * 1024) -> Iterator[bytes]:
    """Group small chunks so the stream is not one write per query."""
    buffer: list[str] = []
    length = 0
    for chunk in chunks:
        buffer.append(chunk)
        length += len(chunk)
        if length >= size:
            yield "".join(buffer).encode()
            buffer, length = [], 0
    if buffer:
        yield "".join(buffer).encode()
