"""The home page: catalog statistics and charts."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.caching import cached
from catalog.filters import LEVELS, STATUSES
from catalog.models import Exclusion, ImportRun, Indicator, Rule, Technique
from catalog.queries import logsource_label, logsource_query, tactic_counts
from catalog.services import catalog_fingerprint
from catalog.templatetags.catalog_tags import ChartRow
from rules import attack


def home_stats() -> dict[str, Any]:
    """Counts and charts of the whole catalog (cached per catalog state by the view)."""
    rules_url = reverse("catalog:rule-list")
    levels = dict(Rule.objects.values_list("level").annotate(n=Count("pk")).order_by())
    logsources = list(
        Rule.objects.values_list("product", "category", "service")
        .annotate(n=Count("pk"))
        .order_by("-n", "product", "category", "service")
    )
    by_tactic = tactic_counts()
    statuses = dict(Rule.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return {
        "rule_count": sum(levels.values()),
        "indicator_count": Indicator.objects.count(),
        "exclusion_count": Exclusion.objects.count(),
        "technique_count": Technique.objects.filter(known=True).count(),
        "logsource_count": len(logsources),
        "level_chart": [
            ChartRow(
                level.title(), levels.get(level, 0), f"{rules_url}?level={level}", f"level-{level}"
            )
            for level in reversed(LEVELS)
            if levels.get(level)
        ],  # fmt: skip
        "logsource_chart": [
            ChartRow(logsource_label(p, c, s), n, rules_url + logsource_query(p, c, s))
            for p, c, s, n in logsources[:12]
        ],
        "tactic_chart": [
            ChartRow(
                t.name,
                by_tactic.get(t.shortname, 0),
                reverse("catalog:tactic-detail", args=[t.shortname]),
            )
            for t in attack.tactics_in_matrix_order()
        ],  # fmt: skip
        "rule_sets": list(
            Rule.objects.values_list("rule_set").annotate(n=Count("pk")).order_by("-n", "rule_set")
        ),
        "statuses": [(s, statuses[s]) for s in STATUSES if s in statuses],
        "latest_release": latest_release_box(),
        "recent": list(
            Rule.objects.exclude(modified="")
            .order_by("-modified", "title")
            .values("rule_id", "title", "level", "modified")[:8]
        ),
    }


def latest_release_box() -> dict[str, Any] | None:
    """The newest release's counts per kind of change, each linking to its release page."""
    from catalog.queries.releases import latest_release_overall

    release = latest_release_overall()
    if release is None:
        return None
    url, c = release.get_absolute_url(), release.counts
    kinds = [("added", "New", "h-added"), ("detection", "Detection changes", "h-detection"),
             ("tuning", "Tuning (exclusions only)", "h-tuning"),
             ("metadata", "Metadata only", "h-metadata"), ("deprecated", "Deprecated", ""),
             ("removed", "Removed", "h-removed")]  # fmt: skip
    return {
        "name": release.name,
        "source": release.source,
        "released_at": release.released_at,
        "url": url,
        "rules": c.get("rules", 0),
        "kinds": [
            (label, c.get(key, 0), f"{url}#{anchor}" if anchor else url)
            for key, label, anchor in kinds
        ],  # fmt: skip
    }


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    stats = cached("home", fingerprint, home_stats)
    latest = ImportRun.objects.first()
    return render(
        request,
        "catalog/home.html",
        {**stats, "latest_import": latest, "fingerprint": fingerprint},
    )
