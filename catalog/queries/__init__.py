"""Reads shared by the catalog pages and the API: each fact is computed here once.

``rules``: list rows, logsource labels, one rule with its children. ``attack``: tactic and
technique counts, the matrix. ``events``: the event sources feeding rules. ``predicates``:
indicator and exclusion facets. Writes live in :mod:`catalog.services`.
"""

from catalog.queries.attack import (
    TacticCount,
    TechniqueMembers,
    matrix_data,
    scoped,
    tactic_counts,
    tactic_rows,
    tactic_rule_ids,
    technique_counts,
    technique_members,
    technique_rules,
)
from catalog.queries.events import (
    EVENT_FIELDS,
    EVENT_ID_FIELD,
    PROVIDER_FIELD,
    EventFilter,
    EventShape,
    RuleEvents,
    SourceCounts,
    event_filter,
    event_selections,
    event_slug,
    events_data,
    field_usage,
    rule_events,
    source_counts,
)
from catalog.queries.predicates import KEYWORDS, predicate_facets
from catalog.queries.rules import (
    LIST_COLUMNS,
    NO_LOGSOURCE,
    PredicateLink,
    RuleChildren,
    RuleDetail,
    TagRow,
    load_rule_children,
    load_rule_detail,
    logsource_label,
    logsource_query,
    rule_rows,
)

__all__ = [
    "EVENT_FIELDS", "EVENT_ID_FIELD", "KEYWORDS", "LIST_COLUMNS", "NO_LOGSOURCE",
    "PROVIDER_FIELD", "EventFilter", "EventShape", "PredicateLink", "RuleChildren",
    "RuleDetail", "RuleEvents", "SourceCounts", "TacticCount", "TagRow", "TechniqueMembers",
    "event_filter", "event_selections", "event_slug", "events_data", "field_usage",
    "load_rule_children", "load_rule_detail", "logsource_label", "logsource_query",
    "matrix_data", "predicate_facets", "rule_events", "rule_rows", "scoped", "source_counts",
    "tactic_counts", "tactic_rows", "tactic_rule_ids", "technique_counts",
    "technique_members", "technique_rules",
]  # fmt: skip
