"""Quality pages (issue 14): validator findings and regression outcomes across the catalog,
and the near-duplicate rule pairs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from catalog.caching import cached, fingerprint_cached
from catalog.queries.quality import duplicate_pairs, quality_summary
from catalog.services import catalog_fingerprint
from rules.similarity import DUPLICATE_SCORE


@require_safe
@fingerprint_cached()
def quality(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("quality", fingerprint, quality_summary)
    return render(request, "quality/quality.html", data)


@require_safe
@fingerprint_cached()
def duplicates(request: HttpRequest) -> HttpResponse:
    pairs = cached("quality-duplicates", catalog_fingerprint(), duplicate_pairs)
    return render(
        request, "quality/duplicates.html", {"pairs": pairs, "threshold": DUPLICATE_SCORE}
    )
