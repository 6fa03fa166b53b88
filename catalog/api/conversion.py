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

from catalog import offload
from catalog.api.base import SingleFormatNegotiation
from catalog.api.errors import ErrorSerializer, ParameterError
from catalog.api.sandbox import Busy
from catalog.api.schema import CatalogAutoSchema
from catalog.conversion import (
    convert_rules,
    convert_with_pipeline,
    get_conversion,
    over_limit_message,
)
from catalog.filters import RuleFilterSet, sort_rules
from catalog.models import Rule
from catalog.throttling import (
    HeldStream,
    SandboxRateThrottle,
    Throttled,
    busy_refusal,
    heavy_slot,
)
from rules.convert import (
    EXPORT_FORMATS,
    PIPELINES,
    TARGETS,
    ConversionParameterError,
    ConversionResult,
    PipelineYAMLError,
    export_chunks,
    export_format,
    parse_custom_pipeline,
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
    status = serializers.CharField(
        help_text="verified: parses with the target's grammar; fixed: parses after the declared "
        "fixes; invalid: does not parse (see problem); unchecked: this format is not checked; "
        "failed: no query (see error)",
    )
    valid = serializers.BooleanField(
        allow_null=True, help_text="Does the query parse? null: failed or not checked"
    )
    problem = serializers.CharField(allow_null=True, help_text="The parser's message")
    verifier = serializers.CharField(help_text="luqum, eql, python, json, lexical or empty")
    fixes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Post-processing applied, so the query differs from `sigma convert` on purpose",
    )
    custom_pipeline = serializers.CharField(help_text="Digest of the pasted pipeline, or empty")
    query = serializers.JSONField(help_text="A string, a list (several queries) or empty")
    outputs = serializers.ListField(child=serializers.JSONField())
    error = serializers.CharField(allow_null=True)
    error_kind = serializers.CharField(allow_null=True)
    backend_version = serializers.CharField()
    sigma_cli_command = serializers.CharField()
    cached = serializers.BooleanField()
    page_url = serializers.CharField()


class CustomConvertSerializer(serializers.Serializer):
    target = serializers.ChoiceField(list(TARGETS))
    pipeline = serializers.CharField(required=False, help_text="Catalog pipeline applied too")
    format = serializers.CharField(required=False)
    pipeline_yaml = serializers.CharField(help_text="A pySigma processing pipeline (YAML)")


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
        "status": result.status,
        "valid": result.valid,
        "problem": result.problem,
        "verifier": result.verifier,
        "fixes": list(result.fixes),
        "custom_pipeline": result.custom_pipeline,
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
    http_method_names = ["get", "post", "head", "options"]

    def get_throttles(self) -> list[Any]:
        # A pasted pipeline converts on every request (never cached): the sandbox's limit.
        return [SandboxRateThrottle()] if self.request.method == "POST" else []

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

    @extend_schema(
        summary="One rule as a SIEM query with your own pipeline (YAML)",
        description="`pipeline_yaml` is the YAML `sigma convert -p pipeline.yml` reads, applied "
        "with the chosen catalog pipeline. It is validated (64 KiB, UTF-8, safe YAML, no Jinja "
        "templates or files, at most 256 transformations, 500 items a list, 4,096 characters "
        "a value and 1,024 a replacement) and never run as code; a broken one is a 400 naming "
        "the line. The conversion is stopped past a few seconds or 512 MiB (422).",
        request=CustomConvertSerializer,
        responses={
            200: ConversionResultSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            422: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
    def post(self, request: Request, rule_id: str) -> Response:
        data = request.data if hasattr(request.data, "get") else {}
        for name in ("target", "pipeline", "format", "pipeline_yaml"):
            if data.get(name) is not None and not isinstance(data.get(name), str):
                raise ParameterError(f"{name} must be a string", parameter=name)
        target, pipeline, fmt = (
            data.get(name) or None for name in ("target", "pipeline", "format")
        )
        try:
            resolve_options(target, pipeline, fmt)
        except ConversionParameterError as exc:
            raise parameter_error(exc) from exc
        text = data.get("pipeline_yaml")
        if not isinstance(text, str) or not text.strip():
            raise ParameterError("the pipeline YAML is required", parameter="pipeline_yaml")
        try:
            custom = parse_custom_pipeline(text)
        except PipelineYAMLError as exc:
            raise ParameterError(exc.message, parameter="pipeline_yaml") from exc
        rule = Rule.objects.filter(rule_id=rule_id).first()
        if rule is None:
            raise NotFound(f"no rule with id {rule_id!r}")
        try:
            # A child process per conversion, at most HEAVY_PER_CLIENT per client at once;
            # in a helper process when offloading is on, which also takes one of this
            # process's heavy slots (one helper per slot).
            with heavy_slot(request, "convert", process_cap=offload.enabled()):
                result = convert_with_pipeline(rule, target, pipeline, fmt, custom)
        except offload.OverLimit as exc:
            raise ParameterError(
                over_limit_message(exc), parameter="pipeline_yaml", status_code=422
            ) from None
        except Throttled as refusal:
            raise Busy(refusal) from None
        except offload.OffloadFailed:
            raise Busy(busy_refusal()) from None
        return Response(result_json(rule, result, cached=False))


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
    verifier = serializers.CharField(
        help_text="How queries are checked: lucene (luqum), eql, elastalert, python, json, lexical"
    )


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
                        "verifier": spec.verifier,
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
