"""ATT&CK counts over the catalog (or over a rule queryset: the API's rule filters), shared
by the home page, the matrix, the facets and the API's ATT&CK endpoints."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from django.db.models import Count, Q, QuerySet
from django.urls import NoReverseMatch, reverse

from catalog.models import Rule, Technique
from rules import attack


def scoped(queryset: QuerySet[Any], rules: QuerySet[Rule] | None, column: str) -> QuerySet[Any]:
    """Restrict ``queryset`` to ``rules`` (``None`` = every rule, no subquery needed)."""
    if rules is None:
        return queryset
    return queryset.filter(**{f"{column}__in": rules.order_by().values("pk")})


class TacticCount(NamedTuple):
    shortname: str
    name: str
    rules: int


def tactic_rows(rules: QuerySet[Rule] | None = None) -> list[TacticCount]:
    """Rules tagged with each tactic, as ``?tactic=`` counts them (in no particular order)."""
    rows = (
        scoped(Rule.tactics.through.objects.all(), rules, "rule_id")
        .values_list("tactic__shortname", "tactic__name")
        .annotate(n=Count("rule_id"))
        .order_by()
    )
    return [TacticCount(short, name, n) for short, name, n in rows]


def tactic_counts(rules: QuerySet[Rule] | None = None) -> dict[str, int]:
    """shortname -> number of rules tagged with the tactic."""
    return {row.shortname: row.rules for row in tactic_rows(rules)}


def technique_counts(rules: QuerySet[Rule] | None = None) -> dict[str, int]:
    """Rules tagged with exactly each technique id (as ``?tag=attack.t1059`` counts them).

    A parent technique does not count its sub-techniques' rules: ATT&CK Navigator scores
    sub-techniques separately and would count such rules twice.
    """
    rows = (
        scoped(Rule.techniques.through.objects.all(), rules, "rule_id")
        .values_list("technique__attack_id")
        .annotate(n=Count("rule_id"))
        .order_by()
    )
    return dict(rows)


class TechniqueMembers(NamedTuple):
    exact: dict[str, set[int]]  # rules per technique id
    rolled: dict[str, set[int]]  # rules per top-level id, its sub-techniques' rules included


def technique_members() -> TechniqueMembers:
    """The rule pks tagged with each technique, exactly and rolled up to the parent."""
    members = TechniqueMembers(defaultdict(set), defaultdict(set))
    for rule_pk, tid in Rule.techniques.through.objects.values_list(
        "rule_id", "technique__attack_id"
    ):
        members.exact[tid].add(rule_pk)
        members.rolled[tid.split(".", 1)[0]].add(rule_pk)
    return members


def _matrix_columns(
    members: TechniqueMembers, by_tactic: dict[str, int]
) -> tuple[list[dict[str, Any]], set[str]]:
    """One column per tactic of the matrix, and the technique ids it places."""
    subs: dict[str, int] = defaultdict(int)
    for tid in members.exact:
        if "." in tid:
            subs[tid.split(".", 1)[0]] += 1
    columns = []
    placed: set[str] = set()
    for tactic in attack.tactics_in_matrix_order():
        cells = []
        for tech in attack.techniques_for_tactic(tactic.shortname):
            placed.add(tech.id)
            count = len(members.rolled.get(tech.id, ()))
            cells.append({"id": tech.id, "name": tech.name, "count": count,
                          "subs": subs.get(tech.id, 0)})  # fmt: skip
        columns.append(
            {"tactic": tactic, "rule_count": by_tactic.get(tactic.shortname, 0),
             "covered": sum(1 for c in cells if c["count"]), "cells": cells}
        )  # fmt: skip
    return columns, placed


def matrix_data() -> dict[str, Any]:
    """The ATT&CK matrix page: covered techniques per tactic column, tactics outside the
    matrix (retired or misspelt tags) and techniques no column places."""
    members = technique_members()
    by_tactic = tactic_counts()
    columns, placed = _matrix_columns(members, by_tactic)
    matrix_names = {t.shortname for t in attack.tactics_in_matrix_order()}
    legacy = [
        {"shortname": s, "name": (attack.tactic(s).name if attack.tactic(s) else s), "count": n,
         "url": tactic_url(s)}
        for s, n in sorted(by_tactic.items())
        if s not in matrix_names
    ]  # fmt: skip
    outside = []
    for tid in sorted(members.rolled):
        if tid in placed:
            continue
        found = attack.technique(tid)
        outside.append(
            {"id": tid, "name": found.name if found else "", "known": found is not None,
             "status": found.status if found else "unknown", "count": len(members.rolled[tid])}
        )  # fmt: skip
    return {
        "columns": columns,
        "legacy": legacy,
        "outside": outside,
        "covered": sum(c["covered"] for c in columns),
        "total": sum(len(c["cells"]) for c in columns),
    }


def tactic_url(shortname: str) -> str | None:
    """The tactic page of a tag's tactic; ``None`` when there is none: an imported tag can
    hold any text (``attack.defense/evasion``), which no tactic page has and no URL pattern
    takes (finding 5: reversing it made /attack/ answer 500)."""
    if attack.tactic(shortname) is None:
        return None
    try:
        return reverse("catalog:tactic-detail", args=[shortname])
    except NoReverseMatch:
        return None


def tactic_rule_ids(shortname: str) -> list[int]:
    """Rules tagged with one tactic, by title."""
    return list(
        Rule.objects.filter(tactics__shortname=shortname)
        .order_by("title")
        .values_list("pk", flat=True)
    )


def technique_rules(tid: str) -> dict[str, Any]:
    """Rules tagged with a technique or its sub-techniques (by title), and per-sub counts."""
    rules = (
        Rule.objects.filter(Q(techniques__attack_id=tid)
                            | Q(techniques__attack_id__startswith=tid + "."))
        .order_by("title")
        .values_list("pk", flat=True)
    )  # fmt: skip
    subs = []
    if "." not in tid:
        subs = [
            {"id": sid, "name": sname, "count": n}
            for sid, sname, n in Technique.objects.filter(parent_id=tid)
            .values_list("attack_id", "name")
            .annotate(n=Count("rules"))
            .order_by("attack_id")
        ]
    return {"ids": list(dict.fromkeys(rules)), "subs": subs}
