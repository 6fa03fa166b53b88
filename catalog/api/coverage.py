"""ATT&CK and event-source views of the catalog: a rule's tables, catalog-wide counts, and the
ATT&CK Navigator layer. Plain dicts out (the serializers in ``serializers.py`` document them).

Counts are taken over a rule queryset (the API's rule filters) or, when ``rules`` is None,
over the whole catalog without a subquery.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from catalog.models import Rule, RuleIndicator, Tactic
from rules import attack, taxonomy

# Detection fields whose plain (``equals``) values narrow a logsource to specific events.
EVENT_ID_FIELD = "EventID"
PROVIDER_FIELD = "Provider_Name"

NAVIGATOR_VERSION = "5.1.0"
LAYER_FORMAT_VERSION = "4.5"
LAYER_DOMAIN = "enterprise-attack"
GRADIENT_COLORS = ["#ffffff", "#ff6666"]


# --------------------------------------------------------------------------------------------
# One rule
# --------------------------------------------------------------------------------------------


def _tactic_dict(item: attack.AttackTactic) -> dict[str, Any]:
    return {"id": item.id, "shortname": item.shortname, "name": item.name, "url": item.url}


def _technique_dict(item: attack.AttackTechnique) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "full_name": item.full_name,
        "parent_id": item.parent_id,
        "url": item.url,
    }


def attack_coverage(tag_names: Iterable[str]) -> dict[str, Any]:
    """The rule page's ATT&CK table (:func:`rules.attack.coverage_table`) as JSON."""
    values = [name.split(".", 1)[1] for name in tag_names if name.lower().startswith("attack.")]
    table = attack.coverage_table(values)
    return {
        "rows": [
            {
                "tactic": _tactic_dict(row.tactic),
                "tagged": row.tagged,
                "techniques": [_technique_dict(t) for t in row.techniques],
            }
            for row in table.rows
        ],
        "entities": [
            {"kind": e.kind, "id": e.id, "name": e.name, "url": e.url} for e in table.entities
        ],
        "unknown": [{"kind": u.kind, "id": u.id} for u in table.unknown],
    }


def event_hints(indicators: Iterable[tuple[str, str, str]]) -> tuple[list[int], list[str]]:
    """Event IDs and providers a rule selects (``EventID: 4104``), from its indicators'
    ``(field, kind, value)``."""
    event_ids: list[int] = []
    providers: list[str] = []
    for field, kind, value in indicators:
        if kind != "equals":
            continue
        if field == EVENT_ID_FIELD and value.strip().isdigit():
            event_ids.append(int(value))
        elif field == PROVIDER_FIELD:
            providers.append(value)
    return event_ids, providers


def _source_dict(source: taxonomy.EventSource) -> dict[str, Any]:
    return {
        "provider": source.provider,
        "provider_display": source.provider_display,
        "channel": source.channel,
        "channels": list(source.channels),
        "event_id": source.event_id,
        "event_label": source.event_label,
        "title": source.display_title,
    }


def event_coverage(rule: Rule, indicators: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """The rule page's "Event coverage": the events feeding the rule's logsource."""
    event_ids, providers = event_hints(indicators)
    sources = taxonomy.event_sources(
        rule.product, rule.category, rule.service, event_ids=event_ids, providers=providers
    )
    return {
        "sources": [_source_dict(s) for s in sources],
        "requirement": taxonomy.requirement_for(rule.product, rule.category, rule.service),
    }


# --------------------------------------------------------------------------------------------
# Catalog-wide counts
# --------------------------------------------------------------------------------------------


def _links(through: Any, rules: QuerySet[Rule] | None) -> QuerySet[Any]:
    links = through.objects.all()
    return links if rules is None else links.filter(rule_id__in=rules.values("pk"))


def tactic_counts(rules: QuerySet[Rule] | None) -> dict[str, int]:
    """Rules tagged with each tactic (shortname -> count), as ``?tactic=`` counts them."""
    rows = (
        _links(Rule.tactics.through, rules)
        .values("tactic__shortname")
        .annotate(n=Count("rule_id"))
        .values_list("tactic__shortname", "n")
    )
    return dict(rows)


def technique_counts(rules: QuerySet[Rule] | None) -> dict[str, int]:
    """Rules tagged with exactly each technique id (as ``?tag=attack.t1059`` counts them).

    A parent technique does not count its sub-techniques' rules: ATT&CK Navigator scores
    sub-techniques separately and would count such rules twice.
    """
    rows = (
        _links(Rule.techniques.through, rules)
        .values("technique__attack_id")
        .annotate(n=Count("rule_id"))
        .values_list("technique__attack_id", "n")
    )
    return dict(rows)


def attack_summary(rules: QuerySet[Rule] | None) -> dict[str, Any]:
    """Tactics (matrix order, then any others tagged) and covered techniques with rule counts."""
    by_tactic = tactic_counts(rules)
    tactics = []
    seen: set[str] = set()
    for item in attack.tactics_in_matrix_order():
        seen.add(item.shortname)
        count = by_tactic.get(item.shortname, 0)
        tactics.append({**_tactic_dict(item), "known": True, "rules": count})
    # Tags outside the v19 matrix (retired or misspelt tactics) keep their count too.
    for row in Tactic.objects.exclude(shortname__in=seen).order_by("shortname"):
        found = attack.tactic(row.shortname)
        tactics.append(
            {
                "id": row.attack_id or None,
                "shortname": row.shortname,
                "name": row.name or row.shortname,
                "url": found.url if found else None,
                "known": row.known,
                "rules": by_tactic.get(row.shortname, 0),
            }
        )
    techniques = []
    for attack_id, count in sorted(technique_counts(rules).items()):
        found = attack.technique(attack_id)
        techniques.append(
            {
                "id": attack_id,
                "name": found.name if found else "",
                "parent_id": found.parent_id if found else None,
                "tactics": list(found.tactics) if found else [],
                "url": found.url if found else None,
                "known": found is not None and found.status == "current",
                "rules": count,
            }
        )
    return {"attack_version": attack.ATTACK_VERSION, "tactics": tactics, "techniques": techniques}


def navigator_layer(
    rules: QuerySet[Rule] | None, *, name: str, description: str, rules_url: str
) -> dict[str, Any]:
    """An ATT&CK Navigator layer (format 4.5): one entry per covered v19 technique.

    ``score`` is the number of rules tagged with the technique. ``tactic`` is set when the
    technique belongs to one tactic only; otherwise Navigator shows it under each of them.
    Techniques v19 does not have (retired or unknown ids) cannot be placed on the matrix and
    are listed in the layer's metadata instead. ``rules_url`` (absolute, with the filters
    as a query string ending in ``&`` or ``?``) links each technique to its rules.
    """
    entries = []
    off_matrix = []
    for attack_id, count in sorted(technique_counts(rules).items()):
        found = attack.technique(attack_id)
        if found is None or found.status != "current":
            off_matrix.append(f"{attack_id} ({count})")
            continue
        entry: dict[str, Any] = {"techniqueID": attack_id}
        if len(found.tactics) == 1:
            entry["tactic"] = found.tactics[0]
        entry.update(
            {
                "score": count,
                "comment": f"{count} rule{'s' if count != 1 else ''} tagged {attack_id}",
                "enabled": True,
                "links": [
                    {"label": "Rules", "url": f"{rules_url}tag=attack.{attack_id.lower()}"}
                ],
                "showSubtechniques": False,
            }
        )
        entries.append(entry)
    top = max((e["score"] for e in entries), default=0)
    metadata = [{"name": "ATT&CK version", "value": attack.ATTACK_VERSION}]
    if off_matrix:
        metadata.append({"name": "Not in ATT&CK v19", "value": ", ".join(off_matrix)})
    return {
        "name": name,
        "versions": {
            "attack": attack.ATTACK_VERSION,
            "navigator": NAVIGATOR_VERSION,
            "layer": LAYER_FORMAT_VERSION,
        },
        "domain": LAYER_DOMAIN,
        "description": description,
        "sorting": 3,
        "layout": {
            "layout": "side",
            "showID": True,
            "showName": True,
            "showAggregateScores": False,
            "countUnscored": False,
            "aggregateFunction": "max",
            "expandedSubtechniques": "annotated",
        },
        "hideDisabled": False,
        "techniques": entries,
        # maxValue must exceed minValue, also for an empty layer.
        "gradient": {"colors": GRADIENT_COLORS, "minValue": 0, "maxValue": max(top, 1)},
        "legendItems": [
            {"label": "1 rule", "color": GRADIENT_COLORS[0]},
            {"label": f"{max(top, 1)} rules", "color": GRADIENT_COLORS[-1]},
        ],
        "showTacticRowBackground": False,
        "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
        "metadata": metadata,
        "links": [],
    }


def event_summary(rules: QuerySet[Rule] | None) -> dict[str, Any]:
    """Event sources with the number of rules each feeds, narrowed by the rules' event IDs
    as on each rule's own page; ``unmapped_rules`` counts rules whose logsource has no
    known events."""
    queryset = Rule.objects.all() if rules is None else rules
    logsources = {
        pk: (product, category, service)
        for pk, product, category, service in queryset.order_by().values_list(
            "pk", "product", "category", "service"
        )
    }
    hints = RuleIndicator.objects.filter(
        indicator__kind="equals", indicator__field__in=[EVENT_ID_FIELD, PROVIDER_FIELD]
    )
    if rules is not None:
        hints = hints.filter(rule_id__in=rules.values("pk"))
    per_rule: dict[int, list[tuple[str, str, str]]] = {}
    for rule_pk, field, value in hints.order_by().values_list(
        "rule_id", "indicator__field", "value"
    ):
        per_rule.setdefault(rule_pk, []).append((field, "equals", value))
    # Many rules share a logsource and event IDs: resolve each combination once.
    resolved: dict[tuple[Any, ...], list[taxonomy.EventSource]] = {}
    counts: Counter[tuple[str, str, int | None, str]] = Counter()
    examples: dict[tuple[str, str, int | None, str], taxonomy.EventSource] = {}
    unmapped = 0
    for pk, (product, category, service) in logsources.items():
        event_ids, providers = event_hints(per_rule.get(pk, ()))
        ids, names = sorted(set(event_ids)), sorted(set(providers))
        key = (product, category, service, tuple(ids), tuple(names))
        if key not in resolved:
            resolved[key] = taxonomy.event_sources(
                product, category, service, event_ids=ids, providers=names
            )
        if not resolved[key]:
            unmapped += 1
        for source in resolved[key]:
            shown = (source.provider_display, source.channel, source.event_id, source.display_title)
            counts[shown] += 1
            examples.setdefault(shown, source)
    ordered = sorted(counts, key=lambda k: (-counts[k], k[0], k[1], k[2] or -1, k[3]))
    return {
        "sources": [{**_source_dict(examples[k]), "rules": counts[k]} for k in ordered],
        "unmapped_rules": unmapped,
    }
