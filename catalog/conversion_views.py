"""Conversion pages and API: the rule page's Convert section, a dedicated convert page, the
per-rule JSON endpoint, the streamed bulk export and the per-target report.

Every view reads conversions through :mod:`catalog.conversion`, so a page view of an unchanged
rule never converts. Pages accept bad parameters gracefully (fall back to the defaults with a
notice: a stale shared link still shows a query); the API answers them with 400 naming the
parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_safe

from catalog.conversion import convert_rules, get_conversion, report
from catalog.filters import RuleFilterSet, sort_rules
from catalog.models import Rule
from rules.convert import (
    DEFAULT_TARGET,
    EXPORT_FORMATS,
    PIPELINES,
    TARGETS,
    ConversionParameterError,
    ConversionResult,
    export_chunks,
    export_format,
    resolve_options,
)

# --------------------------------------------------------------------------- page section


def _choose(params: QueryDict) -> tuple[str, str, str | None]:
    """(target, pipeline, notice) for a page: unknown or mismatched values fall back."""
    target = params.get("target") or DEFAULT_TARGET
    pipeline = params.get("pipeline") or ""
    notice = None
    if target not in TARGETS:
        notice = f"Unknown target {target!r}; showing {TARGETS[DEFAULT_TARGET].label}."
        target, pipeline = DEFAULT_TARGET, ""
    spec = TARGETS[target]
    if pipeline and pipeline not in spec.pipelines:
        default = PIPELINES[spec.default_pipeline].label
        notice = f"Pipeline {pipeline!r} is not available for {spec.label}; showing {default}."
        pipeline = ""
    return target, pipeline or spec.default_pipeline, notice


def conversion_context(request: HttpRequest | None, rule: Rule) -> dict[str, Any]:
    """Everything ``rules/_convert.html`` shows for one rule (converting only on a miss)."""
    params = request.GET if request is not None else QueryDict()
    target, pipeline, notice = _choose(params)
    result, cached = get_conversion(rule, target, pipeline)
    spec, pipe = TARGETS[target], PIPELINES[pipeline]
    query = urlencode({"target": target, "pipeline": pipeline})
    base = request.path if request is not None else rule.get_absolute_url()
    return {
        "rule": rule,
        "target": spec,
        "pipeline": pipe,
        "result": result,
        "cached": cached,
        "notice": notice,
        "targets": [{"spec": t, "selected": t.id == target} for t in TARGETS.values()],
        "pipelines": [{"spec": PIPELINES[p], "selected": p == pipeline} for p in spec.pipelines],
        "share_url": f"{base}?{query}#convert",
        "page_url": _url("conversion:rule-convert", rule.rule_id, query=query),
        "api_url": _url("conversion:api-rule-convert", rule.rule_id, query=query),
        "report_url": _url("conversion:report"),
    }


def _url(name: str, *args: str, query: str = "") -> str | None:
    """A conversion URL, or None while ``catalog.conversion_urls`` is not wired in yet: the
    rule page includes this section as soon as the template exists and must not break."""
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return None
    return f"{url}?{query}" if query else url


@require_safe
def rule_convert(request: HttpRequest, rule_id: str) -> HttpResponse:
    """A page of its own for one rule's conversions (the same section as on the rule page)."""
    rule = get_object_or_404(Rule, rule_id=rule_id)
    return render(request, "conversion/rule_convert.html", {"rule": rule})


# --------------------------------------------------------------------------- API


def _bad_parameter(exc: ConversionParameterError) -> dict[str, Any]:
    return {"detail": exc.message, "parameter": exc.parameter, "choices": exc.choices}


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


def _rule_or_none(rule_id: str) -> Rule | None:
    return Rule.objects.filter(rule_id=rule_id).first()


@require_safe
def api_rule_convert(request: HttpRequest, rule_id: str) -> JsonResponse:
    """``GET /api/rules/<id>/convert/?target=&pipeline=&format=``: the query as JSON.

    A plain Django view: DRF would read ``format`` as its renderer override. A rule the target
    cannot express is a 200 with ``ok: false`` and the reason: an answer, not a bad request.
    """
    params = request.GET
    try:
        resolve_options(params.get("target"), params.get("pipeline"), params.get("format"))
    except ConversionParameterError as exc:
        return JsonResponse(_bad_parameter(exc), status=400)
    rule = _rule_or_none(rule_id)
    if rule is None:
        return JsonResponse({"detail": f"no rule with id {rule_id!r}"}, status=404)
    result, cached = get_conversion(
        rule, params.get("target"), params.get("pipeline"), params.get("format")
    )
    return JsonResponse(result_json(rule, result, cached), json_dumps_params={"indent": 2})


@require_safe
def api_targets(request: HttpRequest) -> JsonResponse:
    """The registry: targets with their formats and pipelines, for API clients."""
    return JsonResponse(
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


@require_safe
def api_export(request: HttpRequest) -> HttpResponse:
    """``GET /api/convert/export/?target=&pipeline=&format=&<catalog filters>``, streamed.

    The rules are the catalog's current filter result (:class:`RuleFilterSet`, same
    parameters as the rule list); the body is the target's deployable form: Splunk
    ``savedsearches.conf``, Elastic/OpenSearch NDJSON, Loki ruler YAML or a plain query list.
    """
    params = request.GET
    try:
        spec, pipe, _ = resolve_options(params.get("target"), params.get("pipeline"))
        writer = export_format(spec.id, params.get("format"))
    except ConversionParameterError as exc:
        return JsonResponse(_bad_parameter(exc), status=400)
    filters = RuleFilterSet(params, queryset=Rule.objects.all())
    if not filters.is_valid():
        return JsonResponse(
            {"detail": "invalid filter", "errors": filters.errors.get_json_data()}, status=400
        )
    rules = sort_rules(filters.qs, params.get("sort", ""))
    results = convert_rules(rules, spec.id, pipe.id, writer.id)
    chunks = export_chunks(spec.id, writer.id, ((r.rule_id, res) for r, res, _ in results))
    response = StreamingHttpResponse(_encoded(chunks), content_type=writer.content_type)
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


# --------------------------------------------------------------------------- report

FAILURES_PER_REASON = 50
"""Rules listed per failure reason on the overview; a target's own report lists all."""


@require_safe
def conversion_report(request: HttpRequest) -> HttpResponse:
    """Per-target counts and failures from the cache (``convert_rules`` fills it)."""
    target = request.GET.get("target") or None
    pipeline = request.GET.get("pipeline") or None
    if target is not None and target not in TARGETS:
        raise Http404(f"unknown target {target!r}")
    if pipeline is not None and (target is None or pipeline not in TARGETS[target].pipelines):
        raise Http404(f"pipeline {pipeline!r} is not available for this target")
    summaries = report(target, pipeline)
    return render(
        request,
        "conversion/report.html",
        {
            "summaries": summaries,
            "selected_target": target,
            "selected_pipeline": pipeline,
            "limit": None if target else FAILURES_PER_REASON,
            "export_formats": EXPORT_FORMATS,
        },
    )
