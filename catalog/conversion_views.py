"""Conversion pages: the rule page's Convert section, a dedicated convert page and the
per-target report. The JSON endpoints (one rule, targets, bulk export) are in
:mod:`catalog.api.conversion`.

Every view reads conversions through :mod:`catalog.conversion`, so a page view of an unchanged
rule never converts. Pages accept bad parameters gracefully (fall back to the defaults with a
notice: a stale shared link still shows a query); the API answers them with 400 naming the
parameter.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from catalog import offload
from catalog.conversion import convert_with_pipeline, get_conversion, over_limit_message, report
from catalog.models import Rule
from catalog.throttling import Throttled, busy_refusal, check_sandbox_rate, heavy_slot
from rules.convert import (
    DEFAULT_TARGET,
    EXPORT_FORMATS,
    PIPELINES,
    TARGETS,
    CustomPipeline,
    PipelineYAMLError,
    parse_custom_pipeline,
)
from rules.convert.pipelines import MAX_PIPELINE_BYTES
from rules.convert.registry import CUSTOM_PIPELINE_FILE

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


def _custom(request: HttpRequest | None) -> tuple[str, CustomPipeline | None, str | None]:
    """(pasted YAML, validated pipeline, error naming the line) of a POSTed convert form,
    validated once per request (the view checks it, then the section shows it)."""
    if request is None or request.method != "POST":
        return "", None, None
    known = getattr(request, "_custom_pipeline", None)
    if known is None:
        known = _parse_custom(request.POST.get("pipeline_yaml", ""))
        request._custom_pipeline = known  # type: ignore[attr-defined]
    return known  # type: ignore[no-any-return]


def _parse_custom(text: str) -> tuple[str, CustomPipeline | None, str | None]:
    if not text.strip():
        return text, None, None
    try:
        return text, parse_custom_pipeline(text), None
    except PipelineYAMLError as exc:
        return text, None, exc.message


Refusal = tuple[int, int | None]
"""A custom-pipeline conversion refused: (status code, Retry-After seconds or None)."""


def _convert_custom(
    request: HttpRequest, rule: Rule, target: str, pipeline: str, custom: CustomPipeline
) -> tuple[Any, str | None, Refusal | None]:
    """(result, message, refusal) of a conversion with a pasted pipeline: the result, or no
    result and why (stopped past its limits: 422; busy: 429/503 with Retry-After)."""
    try:
        # As POST /api/rules/<id>/convert/: a child process per conversion, the client's heavy
        # slots, and a heavy slot of this process when it runs in a helper.
        with heavy_slot(request, "convert", process_cap=offload.enabled()):
            return convert_with_pipeline(rule, target, pipeline, None, custom), None, None
    except offload.OverLimit as exc:
        return None, over_limit_message(exc), (422, None)
    except Throttled as refusal:
        return None, _retry(refusal), (refusal.status_code, refusal.wait)
    except offload.OffloadFailed:
        refusal = busy_refusal()
        return None, _retry(refusal), (refusal.status_code, refusal.wait)


def _retry(refusal: Throttled) -> str:
    wait = refusal.wait
    return f"{refusal}. Try again in {wait} second{'s' if wait != 1 else ''}."


def conversion_context(request: HttpRequest | None, rule: Rule) -> dict[str, Any]:
    """Everything ``rules/_convert.html`` shows for one rule (converting only on a miss).

    A POST of the convert page carries a pasted pipeline: that conversion is never cached,
    and it is made once per request (the view reads its refusal, the section shows it).
    """
    known = getattr(request, "_conversion_context", None)
    if known is not None and known["rule"].pk == rule.pk:
        return known  # type: ignore[no-any-return]
    params = request.GET if request is not None else QueryDict()
    if request is not None and request.method == "POST":
        params = request.POST
    target, pipeline, notice = _choose(params)
    pasted, custom, custom_error = _custom(request)
    refusal: Refusal | None = None
    result = None
    cached = False
    if custom is not None and request is not None:
        result, message, refusal = _convert_custom(request, rule, target, pipeline, custom)
        if result is None:
            custom, custom_error = None, message
    if result is None:
        result, cached = get_conversion(rule, target, pipeline)
    spec, pipe = TARGETS[target], PIPELINES[pipeline]
    query = urlencode({"target": target, "pipeline": pipeline})
    base = request.path if request is not None else rule.get_absolute_url()
    context = {
        "rule": rule,
        "target": spec,
        "pipeline": pipe,
        "result": result,
        "cached": cached,
        "notice": notice,
        "targets": [{"spec": t, "selected": t.id == target} for t in TARGETS.values()],
        "pipelines": [{"spec": PIPELINES[p], "selected": p == pipeline} for p in spec.pipelines],
        "share_url": f"{base}?{query}#convert",
        "verifier_label": VERIFIER_LABELS.get(result.verifier, ""),
        "page_url": _url("conversion:rule-convert", rule.rule_id, query=query),
        "api_url": _url("api:rule-convert", rule.rule_id, query=query),
        "report_url": _url("conversion:report"),
        "pipeline_yaml": pasted,
        "custom": custom,
        "custom_error": custom_error,
        "custom_refusal": refusal,
        "custom_file": CUSTOM_PIPELINE_FILE,
        "custom_seconds": f"{settings.CUSTOM_PIPELINE_SECONDS:g}",
        "status_label": STATUS_LABELS.get(result.status, ""),
    }
    if request is not None and request.method == "POST":
        request._conversion_context = context  # type: ignore[attr-defined]
    return context


STATUS_LABELS = {
    "verified": "Parses",
    "fixed": "Parses after a fix",
    "invalid": "Does not parse",
    "unchecked": "Not checked",
}
VERIFIER_LABELS = {
    "luqum": "the Lucene grammar (luqum)",
    "eql": "Elastic's EQL parser (eql)",
    "python": "Python's parser (never run)",
    "json": "a JSON parser",
    "lexical": "a lexical check (quotes, brackets, placeholders)",
}


def _url(name: str, *args: str, query: str = "") -> str:
    url = reverse(name, args=args)
    return f"{url}?{query}" if query else url


@csrf_exempt  # a POST converts and stores nothing; the page may be served from a cache
@require_http_methods(["GET", "HEAD", "POST"])
def rule_convert(request: HttpRequest, rule_id: str) -> HttpResponse:
    """A page of its own for one rule's conversions (the same section as on the rule page).

    POST: the form with a pasted pipeline YAML (converted, never cached); a broken pipeline
    is a 400 page whose message names the line, one stopped past its limits a 422 page, and
    a busy server a 429/503 page with Retry-After (each with the catalog pipeline's query).
    """
    rule = get_object_or_404(Rule, rule_id=rule_id)
    status = 200
    wait = None
    if request.method == "POST":
        if len(request.POST.get("pipeline_yaml", "")) > MAX_PIPELINE_BYTES * 2:
            status = 413
        elif _custom(request)[2] is not None:
            status = 400
        elif check_sandbox_rate(request) is not None:
            status = 429
        if status == 413 or status == 429:
            message = (
                "The pipeline is too large."
                if status == 413
                else "Too many conversions with a pasted pipeline; try again in a minute."
            )
            return HttpResponse(message, status=status, content_type="text/plain")
        if status == 200:
            # Converted here, before the page renders, so the page's status can say how it
            # went; the section's template tag reads the same context back.
            refusal = conversion_context(request, rule)["custom_refusal"]
            if refusal is not None:
                status, wait = refusal
    response = render(request, "conversion/rule_convert.html", {"rule": rule}, status=status)
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response


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
