"""Correlation and meta filter pages: the list, one correlation, one filter."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from catalog.correlations import correlation_context, filter_context
from catalog.models import Correlation, MetaFilter


@require_safe
def correlation_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "correlations/correlation_list.html",
        {
            "correlations": Correlation.objects.prefetch_related("refs"),
            "filters": MetaFilter.objects.prefetch_related("rules"),
        },
    )


@require_safe
def correlation_detail(request: HttpRequest, correlation_id: str) -> HttpResponse:
    row = get_object_or_404(Correlation, correlation_id=correlation_id)
    return render(request, "correlations/correlation_detail.html", correlation_context(row))


@require_safe
def filter_detail(request: HttpRequest, filter_id: str) -> HttpResponse:
    row = get_object_or_404(MetaFilter, filter_id=filter_id)
    return render(request, "correlations/filter_detail.html", filter_context(row))
