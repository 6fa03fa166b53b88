"""Event sources (the logsource taxonomy) of catalog rules, shared by the rule page, the
event pages and the API: which events feed a rule, narrowed by the event IDs and providers
its ``EventID`` / ``Provider_Name`` indicators select."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from django.db.models import QuerySet
from django.utils.text import slugify

from catalog.models import Rule, RuleExclusion, RuleIndicator
from catalog.queries.attack import scoped
from catalog.queries.rules import logsource_label, logsource_query
from rules import taxonomy

# Detection fields whose plain (``equals``) values narrow a logsource to specific events.
EVENT_ID_FIELD = "EventID"
PROVIDER_FIELD = "Provider_Name"
EVENT_FIELDS = (EVENT_ID_FIELD, PROVIDER_FIELD)


class EventFilter(NamedTuple):
    """Event IDs and providers a rule selects, each once, in the rule's order."""

    event_ids: tuple[int, ...] = ()
    providers: tuple[str, ...] = ()


def event_filter(indicators: Iterable[tuple[str, str, str]]) -> EventFilter:
    """The :class:`EventFilter` of a rule's indicators, given as ``(field, kind, value)``:
    only positive ``equals`` predicates narrow (``EventID: 4104``)."""
    event_ids: list[int] = []
    providers: list[str] = []
    for name, kind, value in indicators:
        if kind != "equals":
            continue
        if name == EVENT_ID_FIELD and value.strip().isdigit():
            event_ids.append(int(value))
        elif name == PROVIDER_FIELD and value.strip():
            providers.append(value.strip())
    return EventFilter(tuple(dict.fromkeys(event_ids)), tuple(dict.fromkeys(providers)))


class EventShape(NamedTuple):
    """What decides a rule's event sources: its logsource and its :class:`EventFilter`."""

    product: str
    category: str
    service: str
    selected: EventFilter

    def sources(self) -> list[taxonomy.EventSource]:
        return taxonomy.event_sources(
            self.product, self.category, self.service,
            event_ids=self.selected.event_ids, providers=self.selected.providers,
        )  # fmt: skip


def event_slug(source: taxonomy.EventSource) -> str:
    """``powershell-4104``, ``sysmon-1``, ``system-all``: the event page's URL key."""
    name = source.provider_display or (source.channels[0] if source.channels else "events")
    return slugify(f"{name}-{source.event_id if source.event_id is not None else 'all'}")


def event_selections(rules: QuerySet[Rule] | None = None) -> dict[int, list[tuple[str, str, str]]]:
    """rule pk -> its ``(field, kind, value)`` indicators that may narrow its events."""
    hints = RuleIndicator.objects.filter(
        indicator__field__in=EVENT_FIELDS, indicator__kind="equals"
    )
    selections: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for rule_pk, name, kind, value in (
        scoped(hints, rules, "rule_id")
        .order_by()
        .values_list("rule_id", "indicator__field", "indicator__kind", "value")
    ):
        selections[rule_pk].append((name, kind, value))
    return selections


class RuleEvents(NamedTuple):
    shapes: dict[EventShape, list[int]]  # rule pks, by title, per shape
    rank: dict[int, int]  # rule pk -> its place in title order


def rule_events(rules: QuerySet[Rule] | None = None, order: str = "title") -> RuleEvents:
    """The rules grouped by :class:`EventShape` (rules in ``order``, then by pk): many rules
    share one, so :func:`taxonomy.event_sources` then runs once per shape, not per rule."""
    selections = event_selections(rules)
    shapes: dict[EventShape, list[int]] = defaultdict(list)
    rank: dict[int, int] = {}
    for rule_pk, product, category, service in (
        scoped(Rule.objects.all(), rules, "pk")
        .order_by(*dict.fromkeys((order, "pk")))
        .values_list("pk", "product", "category", "service")
    ):
        selected = event_filter(selections.get(rule_pk, ()))
        shapes[EventShape(product, category, service, selected)].append(rule_pk)
        rank[rule_pk] = len(rank)
    return RuleEvents(shapes, rank)


def _event_entry(source: taxonomy.EventSource) -> dict[str, Any]:
    return {
        "slug": event_slug(source),
        "provider": source.provider_display or "—",
        "channel": " | ".join(source.channels),
        "event_id": source.event_id,
        "label": source.event_label,
        "title": source.display_title,
        "rules": set(),
        "logsources": set(),
    }


def events_data() -> dict[str, Any]:
    """Every event source feeding some catalog rule, with the rules it feeds (by title),
    and the logsources no event source feeds."""
    found = rule_events()
    events: dict[str, dict[str, Any]] = {}
    unmapped: Counter[tuple[str, str, str]] = Counter()
    for shape, pks in found.shapes.items():
        sources = shape.sources()
        logsource = (shape.product, shape.category, shape.service)
        if not sources:
            unmapped[logsource] += len(pks)
        for source in sources:
            entry = events.setdefault(event_slug(source), _event_entry(source))
            entry["rules"].update(pks)
            entry["logsources"].add(logsource_label(*logsource))
    rows = []
    for entry in events.values():
        entry["rule_count"] = len(entry["rules"])
        entry["rules"] = sorted(entry["rules"], key=found.rank.__getitem__)
        entry["logsources"] = sorted(entry["logsources"])
        rows.append(entry)
    rows.sort(key=lambda e: (-e["rule_count"], e["provider"], e["event_id"] or 0))
    return {
        "events": rows,
        "unmapped": [
            {"label": logsource_label(*key), "query": logsource_query(*key), "count": n}
            for key, n in unmapped.most_common()
        ],
    }


def _predicates_by_rule(
    link: type[RuleIndicator] | type[RuleExclusion], target: str
) -> dict[int, dict[str, set[int]]]:
    """rule pk -> field -> ids of the rule's indicators (or exclusions) on that field."""
    found: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for rule_pk, name, target_pk in link.objects.values_list(
        "rule_id", f"{target}__field", f"{target}_id"
    ).order_by():
        found[rule_pk][name].add(target_pk)
    return found


def _field_rows(
    rule_pks: Iterable[int],
    matched: dict[int, dict[str, set[int]]],
    excluded: dict[int, dict[str, set[int]]],
) -> list[dict[str, Any]]:
    """Per field of one event's rules: rules matching it, rules excluding it, values."""
    fields: dict[str, dict[str, Any]] = {}
    for rule_pk in rule_pks:
        for source, rules_key, values_key in (
            (matched, "matched", "values"),
            (excluded, "excluded", "excluded_values"),
        ):
            for name, ids in source.get(rule_pk, {}).items():
                entry = fields.setdefault(name, {
                    "field": name, "matched": 0, "excluded": 0,
                    "values": set(), "excluded_values": set(),
                })  # fmt: skip
                entry[rules_key] += 1
                entry[values_key] |= ids
    rows = []
    for entry in fields.values():
        entry["values"] = len(entry["values"])
        entry["excluded_values"] = len(entry["excluded_values"])
        rows.append(entry)
    rows.sort(key=lambda e: (-e["matched"], -e["excluded"], e["field"]))
    return rows


def field_usage(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per event slug, per field: rules matching it, rules excluding it, distinct values.

    Two scans of the link tables serve every event page, instead of one grouped
    ``COUNT(DISTINCT)`` over a long ``IN`` list per event.
    """
    matched = _predicates_by_rule(RuleIndicator, "indicator")
    excluded = _predicates_by_rule(RuleExclusion, "exclusion")
    return {event["slug"]: _field_rows(event["rules"], matched, excluded) for event in events}


class SourceCounts(NamedTuple):
    counts: Counter[tuple[str, str, int | None, str]]  # rules per displayed source
    examples: dict[tuple[str, str, int | None, str], taxonomy.EventSource]
    unmapped: int  # rules whose logsource has no known events


def source_counts(rules: QuerySet[Rule] | None = None) -> SourceCounts:
    """Event sources with the number of rules each feeds, narrowed by each rule's event IDs
    as on its own page."""
    result = SourceCounts(Counter(), {}, 0)
    unmapped = 0
    # By pk: the first rule showing a source picks its example (its provider spelling).
    for shape, pks in rule_events(rules, order="pk").shapes.items():
        sources = shape.sources()
        if not sources:
            unmapped += len(pks)
        for source in sources:
            shown = (source.provider_display, source.channel, source.event_id, source.display_title)
            result.counts[shown] += len(pks)
            result.examples.setdefault(shown, source)
    return result._replace(unmapped=unmapped)
