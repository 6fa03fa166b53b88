"""ATT&CK and event-source views of the catalog: a rule's tables, catalog-wide counts, and the
ATT&CK Navigator layer. Plain dicts out (the serializers in ``serializers.py`` document them).

Counts are taken over a rule queryset (the API's rule filters) or, when ``rules`` is None,
over the whole catalog without a subquery.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from catalog.models import Rule, Tactic
from catalog.queries import (
    EventShape,
    event_filter,
    source_counts,
    tactic_counts,
    technique_counts,
)
from rules import attack, taxonomy

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
    shape = EventShape(rule.product, rule.category, rule.service, event_filter(indicators))
    return {
        "sources": [_source_dict(s) for s in shape.sources()],
        "requirement": taxonomy.requirement_for(rule.product, rule.category, rule.service),
    }


# --------------------------------------------------------------------------------------------
# Catalog-wide counts
# --------------------------------------------------------------------------------------------


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

    Long because it is the layer format itself, field by field, in the order Navigator's
    schema documents them; splitting it would scatter one document over several functions.
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
                "links": [{"label": "Rules", "url": f"{rules_url}tag=attack.{attack_id.lower()}"}],
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
    found = source_counts(rules)
    counts = found.counts
    ordered = sorted(counts, key=lambda k: (-counts[k], k[0], k[1], k[2] or -1, k[3]))
    return {
        "sources": [{**_source_dict(found.examples[k]), "rules": counts[k]} for k in ordered],
        "unmapped_rules": found.unmapped,
    }
