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

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.conversion import get_conversion, report
from catalog.models import Rule
from rules.convert import (
    DEFAULT_TARGET,
    EXPORT_FORMATS,
    PIPELINES,
    TARGETS,
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
        "api_url": _url("api:rule-convert", rule.rule_id, query=query),
        "report_url": _url("conversion:report"),
    }


def _url(name: str, *args: str, query: str = "") -> str:
    url = reverse(name, args=args)
    return f"{url}?{query}" if query else url


@require_safe
def rule_convert(request: HttpRequest, rule_id: str) -> HttpResponse:
    """A page of its own for one rule's conversions (the same section as on the rule page)."""
    rule = get_object_or_404(Rule, rule_id=rule_id)
    return render(request, "conversion/rule_convert.html", {"rule": rule})


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
