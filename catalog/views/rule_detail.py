"""A rule's page and its YAML download."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.caching import Lazy, fingerprint_cached, flag, last_value
from catalog.correlations import rule_meta
from catalog.models import Rule
from catalog.presentation import predicate_groups, safe_url, tag_groups
from catalog.queries import (
    EventShape,
    event_filter,
    event_slug,
    load_rule_children,
    logsource_query,
)
from catalog.queries.quality import rule_evidence
from catalog.services import catalog_fingerprint
from catalog.views.releases import history_context, removed_rule
from rules import attack, taxonomy

# Rows rendered per predicate table; IOC-list rules (thousands of hashes or domains) get a
# "show all" link instead of a multi-megabyte page.
PREDICATE_ROWS = 300
_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def rule_analysis(rule: Rule, show_all: bool) -> dict[str, Any]:
    """Everything below the rule page's header: a fixed number of queries whatever the rule
    (its children in one, as for the API detail, plus its evidence in three)."""
    children = load_rule_children(rule.pk)
    indicators, exclusions = children.indicators, children.exclusions
    shown = slice(None) if show_all else slice(PREDICATE_ROWS)
    stage_groups: dict[int, list[dict[str, Any]]] = {}
    for stage in children.stages:
        stage_groups.setdefault(stage["group"], []).append(stage)
    # Event IDs may sit past the shown rows of a long rule: every indicator counts.
    selected = event_filter((i.field, i.kind, i.value) for i in indicators)
    sources = EventShape(rule.product, rule.category, rule.service, selected).sources()
    return {
        "references": [{"text": ref, "url": safe_url(ref)} for ref in rule.references],
        # Checks, regression replay, related rules (issue 14): three queries.
        "evidence": rule_evidence(rule),
        "tag_groups": tag_groups(children.tag_rows),
        "coverage": attack.coverage_table(
            t.value for t in children.tag_rows if t.namespace == "attack"
        ),
        "events": [{"source": s, "slug": event_slug(s)} for s in sources],
        "requirement": taxonomy.requirement_for(rule.product, rule.category, rule.service),
        "stage_groups": sorted(stage_groups.items()),
        "exclusion_groups": predicate_groups(exclusions[shown]),
        "exclusion_count": len(exclusions),
        "exclusions_cut": len(exclusions[shown]) < len(exclusions),
        "indicator_groups": predicate_groups(indicators[shown]),
        "indicator_count": len(indicators),
        "indicators_cut": len(indicators[shown]) < len(indicators),
        "row_limit": PREDICATE_ROWS,
        # Correlations using the rule, meta filters applying to it (issue 16): three queries.
        "meta": rule_meta(rule),
    }


@require_safe
# The parameters the page reads: ?all=1 here, ?target=&pipeline= in its conversion section.
@fingerprint_cached(params={"all": flag, "target": last_value, "pipeline": last_value})
def rule_detail(request: HttpRequest, rule_id: str) -> HttpResponse:
    rule = (
        Rule.objects.defer("search_text", "search_vector", "detection")
        .filter(rule_id=rule_id)
        .first()
    )
    if rule is None:  # removed by a release: its history still answers (else a 404)
        return removed_rule(request, rule_id)
    show_all = request.GET.get("all") == "1"
    return render(
        request,
        "catalog/rule_detail.html",
        {
            "rule": rule,
            # The sections are cached per rule and catalog state: corpus counts move with
            # every import, the rule's own text with its revision.
            "fingerprint": catalog_fingerprint(),
            "show_all": show_all,
            "analysis": Lazy(lambda: rule_analysis(rule, show_all)),
            "history": Lazy(lambda: history_context(rule.rule_id)),
            "logsource_url": reverse("catalog:rule-list")
            + logsource_query(rule.product, rule.category, rule.service),
        },
    )


@require_safe
def rule_download(request: HttpRequest, rule_id: str) -> HttpResponse:
    """The rule body exactly as imported, as a ``.yml`` attachment."""
    rule = get_object_or_404(Rule.objects.only("rule_id", "raw_yaml", "source_path"),
                             rule_id=rule_id)  # fmt: skip
    name = _FILENAME.sub("_", rule.source_path.rsplit("/", 1)[-1].split("!")[-1])
    if not name.endswith((".yml", ".yaml")):
        name = _FILENAME.sub("_", rule.rule_id) + ".yml"
    response = HttpResponse(rule.raw_yaml, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
