"""Loading one rule with everything its API detail shows, in two queries.

``prefetch_related`` would take five (rule, tags, stages, indicators, exclusions). Each is a
sub-millisecond index probe, so the round trips, not the work, make up the cost; on a busy
server every round trip also waits for the database process to be scheduled. Here the four
child sets come back from one ``UNION ALL`` as plain tuples (no model instances either).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import connection

from catalog.models import (
    Exclusion,
    Indicator,
    Rule,
    RuleExclusion,
    RuleIndicator,
    Stage,
    Tag,
)

# Parts of the children query, in output order. REVISION is the rule's own revision, read in
# the same statement as the children, so a reader racing an import can tell whether the row
# it read first and the children belong together.
TAGS, STAGES, INDICATORS, EXCLUSIONS, REVISION = range(5)


@dataclass(frozen=True, slots=True)
class PredicateLink:
    """An indicator or exclusion as one rule wrote it, with its catalog-wide identity."""

    id: int
    field: str
    kind: str
    value: str
    identifier: str
    corpus: int


@dataclass(slots=True)
class RuleDetail:
    rule: Rule
    tags: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    indicators: list[PredicateLink] = field(default_factory=list)
    exclusions: list[PredicateLink] = field(default_factory=list)


@cache
def _children_sql(vendor: str) -> str:
    """One statement for all four child sets; columns shared as (a, b, c, d, n1, n2, n3,
    flag, extra) and sorted so that each set comes out in its display order."""
    q = connection.ops.quote_name
    rule_tags = q(Rule.tags.through._meta.db_table)
    tag, stage = q(Tag._meta.db_table), q(Stage._meta.db_table)

    def predicates(part: int, link: type[Any], target: type[Any], column: str) -> str:
        links, targets = q(link._meta.db_table), q(target._meta.db_table)
        return (
            f"SELECT {part}, t.{q('field')}, t.kind, l.value, l.identifier, l.position, t.id, "
            f"t.rule_count, FALSE, '' FROM {links} l JOIN {targets} t ON t.id = l.{column} "
            "WHERE l.rule_id = %s"
        )

    return " UNION ALL ".join(
        [
            f"SELECT {TAGS} AS part, t.name AS a, '' AS b, '' AS c, '' AS d, 0 AS n1, 0 AS n2, "
            f"0 AS n3, FALSE AS flag, '' AS extra FROM {rule_tags} rt JOIN {tag} t "
            "ON t.id = rt.tag_id WHERE rt.rule_id = %s",
            f"SELECT {STAGES}, s.text, s.yaml, '', '', s.{q('group')}, s.{q('index')}, 0, "
            f"s.negated, CAST(s.identifiers AS TEXT) FROM {stage} s WHERE s.rule_id = %s",
            predicates(INDICATORS, RuleIndicator, Indicator, "indicator_id"),
            predicates(EXCLUSIONS, RuleExclusion, Exclusion, "exclusion_id"),
            f"SELECT {REVISION}, '', '', '', '', r.revision, 0, 0, FALSE, '' "
            f"FROM {q(Rule._meta.db_table)} r WHERE r.id = %s",
        ]
    ) + " ORDER BY part, n1, n2, a"


def load_rule_detail(rule_id: str) -> RuleDetail | None:
    """The rule with Sigma id ``rule_id`` and its children, or None if there is none."""
    if "\x00" in rule_id:
        return None  # PostgreSQL text cannot hold NUL: no rule has such an id
    # Under READ COMMITTED each statement sees its own snapshot: if an import committed
    # between the two statements, the children belong to a newer revision. Read again then.
    for _ in range(5):
        rule = Rule.objects.defer("search_text", "search_vector").filter(rule_id=rule_id).first()
        if rule is None:
            return None
        detail = RuleDetail(rule)
        with connection.cursor() as cursor:
            cursor.execute(_children_sql(connection.vendor), [rule.pk] * 5)
            rows = cursor.fetchall()
        revision = next((r[5] for r in rows if r[0] == REVISION), None)
        if revision == rule.revision:
            break
    for part, a, b, c, d, n1, n2, n3, flag, extra in rows:
        if part == TAGS:
            detail.tags.append(a)
        elif part == STAGES:
            detail.stages.append(
                {"group": n1, "index": n2, "text": a, "identifiers": json.loads(extra or "[]"),
                 "yaml": b, "negated": bool(flag)}
            )
        elif part in (INDICATORS, EXCLUSIONS):
            link = PredicateLink(id=n2, field=a, kind=b, value=c, identifier=d, corpus=n3)
            (detail.indicators if part == INDICATORS else detail.exclusions).append(link)
    return detail
