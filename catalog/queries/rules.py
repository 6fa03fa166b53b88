"""Reads of rules shared by the pages and the API: list rows, logsource labels and one rule
with its children (tags, stages, indicators, exclusions) in one statement."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import urlencode

from django.db import connection
from django.db.models import Prefetch, QuerySet

from catalog import models
from catalog.models import Rule
from rules.model import LogSource

# Columns a rule row in a list needs; the YAML, detection JSON and search columns stay behind.
LIST_COLUMNS = (
    "rule_id", "title", "status", "level", "description", "author", "date", "modified",
    "product", "category", "service", "rule_set",
)  # fmt: skip
NO_LOGSOURCE = "(no logsource)"


def rule_rows(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Rules as list rows: light columns plus tactics and techniques in two extra queries."""
    return queryset.only(*LIST_COLUMNS).prefetch_related(
        Prefetch("tactics", queryset=models.Tactic.objects.only("shortname", "name")),
        Prefetch("techniques", queryset=models.Technique.objects.only("attack_id", "name")),
    )


def logsource_label(product: str, category: str, service: str) -> str:
    """``windows/ps_script`` (the engine's :attr:`LogSource.label`), or ``(no logsource)``."""
    return LogSource(product, category, service).label or NO_LOGSOURCE


def logsource_query(product: str, category: str, service: str) -> str:
    """``?product=windows&category=ps_script``: the rule list of one logsource."""
    pairs = [(k, v) for k, v in (("product", product), ("category", category),
                                  ("service", service)) if v]  # fmt: skip
    return "?" + urlencode(pairs)


# --------------------------------------------------------------------------------------------
# One rule and its children
# --------------------------------------------------------------------------------------------

# Parts of the children query, in output order. REVISION is the rule's own revision, read in
# the same statement as the children, so a reader racing an import can tell whether the row
# it read first and the children belong together.
TAGS, STAGES, INDICATORS, EXCLUSIONS, REVISION = range(5)


class TagRow(NamedTuple):
    """A rule's tag: ``attack.t1571`` is namespace ``attack``, value ``t1571``."""

    name: str
    namespace: str
    value: str


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
class RuleChildren:
    """What hangs off one rule, each set in display order."""

    tag_rows: list[TagRow]
    stages: list[dict[str, Any]]
    indicators: list[PredicateLink]
    exclusions: list[PredicateLink]
    revision: int | None

    @property
    def tags(self) -> list[str]:
        return [tag.name for tag in self.tag_rows]


@dataclass(slots=True)
class RuleDetail:
    """A rule with its children, as the API detail shows it."""

    rule: Rule
    children: RuleChildren

    @property
    def tags(self) -> list[str]:
        return self.children.tags

    @property
    def stages(self) -> list[dict[str, Any]]:
        return self.children.stages

    @property
    def indicators(self) -> list[PredicateLink]:
        return self.children.indicators

    @property
    def exclusions(self) -> list[PredicateLink]:
        return self.children.exclusions


@cache
def _children_sql(vendor: str) -> str:
    """One statement for all four child sets; columns shared as (a, b, c, d, n1, n2, n3,
    flag, extra) and sorted so that each set comes out in its display order.

    ``prefetch_related`` would take four queries; each is a sub-millisecond index probe, so
    the round trips, not the work, make up the cost (on a busy server every round trip also
    waits for the database process to be scheduled). Rows come back as plain tuples.
    """
    q = connection.ops.quote_name
    rule_tags = q(Rule.tags.through._meta.db_table)
    tag, stage = q(models.Tag._meta.db_table), q(models.Stage._meta.db_table)

    def predicates(part: int, link: type[Any], target: type[Any], column: str) -> str:
        links, targets = q(link._meta.db_table), q(target._meta.db_table)
        return (
            f"SELECT {part}, t.{q('field')}, t.kind, l.value, l.identifier, l.position, t.id, "
            f"t.rule_count, FALSE, '' FROM {links} l JOIN {targets} t ON t.id = l.{column} "
            "WHERE l.rule_id = %s"
        )

    return (
        " UNION ALL ".join(
            [
                f"SELECT {TAGS} AS part, t.name AS a, t.{q('namespace')} AS b, "
                f"t.{q('value')} AS c, '' AS d, 0 AS n1, 0 AS n2, 0 AS n3, FALSE AS flag, "
                "'' AS extra "
                f"FROM {rule_tags} rt JOIN {tag} t ON t.id = rt.tag_id WHERE rt.rule_id = %s",
                f"SELECT {STAGES}, s.text, s.yaml, '', '', s.{q('group')}, s.{q('index')}, 0, "
                f"s.negated, CAST(s.identifiers AS TEXT) FROM {stage} s WHERE s.rule_id = %s",
                predicates(INDICATORS, models.RuleIndicator, models.Indicator, "indicator_id"),
                predicates(EXCLUSIONS, models.RuleExclusion, models.Exclusion, "exclusion_id"),
                f"SELECT {REVISION}, '', '', '', '', r.revision, 0, 0, FALSE, '' "
                f"FROM {q(Rule._meta.db_table)} r WHERE r.id = %s",
            ]
        )
        + " ORDER BY part, n1, n2, a"
    )


def load_rule_children(rule_pk: int) -> RuleChildren:
    """The children of one rule in one query (the rule page and the API detail share it)."""
    with connection.cursor() as cursor:
        cursor.execute(_children_sql(connection.vendor), [rule_pk] * 5)
        rows = cursor.fetchall()
    children = RuleChildren([], [], [], [], None)
    for part, a, b, c, d, n1, n2, n3, flag, extra in rows:
        if part == TAGS:
            children.tag_rows.append(TagRow(a, b, c))
        elif part == STAGES:
            children.stages.append(
                {"group": n1, "index": n2, "text": a, "identifiers": json.loads(extra or "[]"),
                 "yaml": b, "negated": bool(flag)}
            )  # fmt: skip
        elif part in (INDICATORS, EXCLUSIONS):
            link = PredicateLink(id=n2, field=a, kind=b, value=c, identifier=d, corpus=n3)
            (children.indicators if part == INDICATORS else children.exclusions).append(link)
        elif part == REVISION:
            children.revision = n1
    return children


def load_rule_detail(rule_id: str) -> RuleDetail | None:
    """The rule with Sigma id ``rule_id`` and its children (two queries), or None."""
    if "\x00" in rule_id:
        return None  # PostgreSQL text cannot hold NUL: no rule has such an id
    # Under READ COMMITTED each statement sees its own snapshot: if an import committed
    # between the two statements, the children belong to a newer revision. Read again then.
    for _ in range(5):
        rule = Rule.objects.defer("search_text", "search_vector").filter(rule_id=rule_id).first()
        if rule is None:
            return None
        children = load_rule_children(rule.pk)
        if children.revision == rule.revision:
            break
    return RuleDetail(rule, children)
