"""The importer's writes: parsed rules (:mod:`rules.model`) become catalog rows.

:func:`write_plan` runs inside the importer's transaction (see :mod:`catalog.importer`). Rows
go in as plain tuples (COPY on PostgreSQL) rather than through ``bulk_create``: a full corpus
has ~120,000 child rows and building a model instance for each costs more than parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from django.db import connection
from django.db.models import F, Model
from django.utils import timezone

from catalog.models import (
    Exclusion,
    Indicator,
    Rule,
    RuleExclusion,
    RuleIndicator,
    Stage,
    Tactic,
    Tag,
    Technique,
    identity_hash,
)
from rules import attack
from rules.model import ParsedRule

if TYPE_CHECKING:
    from catalog.importer import ImportReport

_BATCH = 2000
# ATT&CK groups, software, mitigations, campaigns, data sources, assets: no Tactic row.
_NOT_A_TACTIC = re.compile(r"^[gsmc]\d{4}$|^ds\d{4}$|^a\d{4}$")
_RULE_SET = re.compile(r"^(rules(-[a-z0-9-]+)?|deprecated|unsupported|examples)$")
_JSON_FIELDS = frozenset(
    {"references", "falsepositives", "related", "detection", "conditions", "unsupported"}
)


class NewRule(NamedTuple):
    """A rule id the catalog does not have yet, and its file's digest."""

    parsed: ParsedRule
    digest: str


class ChangedRule(NamedTuple):
    """A stored rule (``pk``) whose file changed: its rows are rewritten in place."""

    parsed: ParsedRule
    digest: str
    pk: int


@dataclass(slots=True)
class ImportPlan:
    """What one import writes: new rules, changed rules (with their pk), every id seen."""

    new: list[NewRule] = field(default_factory=list)
    changed: list[ChangedRule] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    # Files present but failed (no longer parse, unstorable): ``--prune`` keeps the rules they
    # held, found by stored path and by the id the text still declares (finding 8).
    failed_paths: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)

    def keep_failed(self, catalog_path: str, data: bytes) -> None:
        """Remember a present file that failed, so pruning never deletes its rule."""
        self.failed_paths.add(catalog_path)
        self.failed_ids.update(declared_ids(data))


_DECLARED_ID = re.compile(rb"^id:[ \t]*['\"]?([^'\"\s#]+)", re.MULTILINE)


def declared_ids(data: bytes) -> set[str]:
    """The top-level ``id:`` values a rule file's text declares, even when it does not parse."""
    return {m.group(1).decode("utf-8", "replace") for m in _DECLARED_ID.finditer(data[: 1 << 20])}


def rule_set_for(path: str) -> str:
    """``rules-emerging-threats/2025/x.yml`` -> ``rules-emerging-threats``; else ``custom``."""
    parts = PurePosixPath(path.split("!")[-1]).parts
    for part in parts:
        if part == "examples":
            return "examples"
    for part in parts:
        if _RULE_SET.match(part):
            return part
    return "custom"


def write_plan(
    plan: ImportPlan, report: ImportReport, *, prune: bool, rule_set: str | None
) -> None:
    """All database writes of one import; runs inside a transaction.

    ``report.pruned`` is set as soon as it is known (a failed run records it), ``created``
    and ``updated`` only once everything is written.
    """
    now = timezone.now()
    if plan.changed:
        _update_changed(plan.changed, now, rule_set)
    if plan.new:
        _insert_new(plan.new, now, rule_set)
    pk_by_id = _new_rule_pks([item.parsed.id for item in plan.new])
    for item in plan.changed:
        pk_by_id[item.parsed.id] = item.pk
    written = [item.parsed for item in plan.new] + [item.parsed for item in plan.changed]
    if written:
        _write_children(written, pk_by_id)
    if prune:
        stale = Rule.objects.exclude(rule_id__in=plan.seen_ids | plan.failed_ids).exclude(
            source_path__in=plan.failed_paths
        )
        report.pruned = stale.count()
        if report.pruned:
            _delete_children(list(stale.values_list("pk", flat=True)))
            stale.delete()
    if written or report.pruned:
        _refresh_counts()
        _refresh_search(pk_by_id.values() if not report.pruned else None)
    report.created = len(plan.new)
    report.updated = len(plan.changed)


def _update_changed(changed: list[ChangedRule], now: Any, rule_set: str | None) -> None:
    changed_pks = [item.pk for item in changed]
    _delete_children(changed_pks)
    updates = [
        Rule(pk=item.pk, updated_at=now, **_rule_fields(item.parsed, item.digest, rule_set))
        for item in changed
    ]
    Rule.objects.bulk_update(
        updates,
        [f for f in _rule_fields(changed[0].parsed, "") if f != "rule_id"] + ["updated_at"],
        batch_size=500,
    )
    for start in range(0, len(changed_pks), _BATCH):
        chunk = changed_pks[start : start + _BATCH]
        Rule.objects.filter(pk__in=chunk).update(revision=F("revision") + 1)


def _insert_new(new: list[NewRule], now: Any, rule_set: str | None) -> None:
    columns = [*_rule_fields(new[0].parsed, ""), "revision", "created_at", "updated_at"]
    rows = []
    for parsed, digest in new:
        values = _rule_fields(parsed, digest, rule_set)
        rows.append(
            tuple(json.dumps(v) if k in _JSON_FIELDS else v for k, v in values.items())
            + (1, now, now)
        )
    insert_rows(Rule, columns, rows)


def _new_rule_pks(rule_ids: list[str]) -> dict[str, int]:
    pk_by_id: dict[str, int] = {}
    for start in range(0, len(rule_ids), 900):
        chunk = rule_ids[start : start + 900]
        pk_by_id.update(Rule.objects.filter(rule_id__in=chunk).values_list("rule_id", "pk"))
    return pk_by_id


def _rule_fields(parsed: ParsedRule, digest: str, rule_set: str | None = None) -> dict[str, Any]:
    indicator_text = " ".join(i.value for i in parsed.indicators)
    return {
        "rule_id": parsed.id,
        "title": parsed.title[:500],
        "status": parsed.status[:30],
        "level": parsed.level[:30],
        "description": parsed.description,
        "author": parsed.author,
        "date": parsed.date[:30],
        "modified": parsed.modified[:30],
        "references": parsed.references,
        "falsepositives": parsed.falsepositives,
        "related": [{"id": r.id, "type": r.type} for r in parsed.related],
        "product": parsed.logsource.product[:100],
        "category": parsed.logsource.category[:100],
        "service": parsed.logsource.service[:100],
        "definition": parsed.logsource.definition,
        "detection": _jsonable(parsed.detection),
        "conditions": parsed.conditions,
        "unsupported": parsed.unsupported,
        "raw_yaml": parsed.raw_yaml,
        "source_path": parsed.source_path[:1000],
        "rule_set": rule_set or rule_set_for(parsed.source_path),
        "content_hash": digest,
        "search_text": " ".join(
            [parsed.title, parsed.description, " ".join(t.name for t in parsed.tags),
             indicator_text]
        ),
    }  # fmt: skip


def _jsonable(value: Any) -> Any:
    """YAML gives dates and other non-JSON scalars; store them as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def insert_rows(model: type[Model], columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert plain tuples: COPY on PostgreSQL, executemany elsewhere.

    The ORM's bulk_create builds a model instance and a parameter list per row; for the
    ~120,000 child rows of a full corpus that alone costs more than parsing every rule.
    """
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            for start in range(0, len(rows), _BATCH):
                cursor.executemany(
                    f"INSERT INTO {table} ({names}) VALUES ({marks})", rows[start : start + _BATCH]
                )


def _delete_children(rule_pks: list[int]) -> None:
    """Explicit deletes in chunks: fewer queries than the ORM's cascade collector."""
    for start in range(0, len(rule_pks), _BATCH):
        chunk = rule_pks[start : start + _BATCH]
        for model in (Stage, RuleIndicator, RuleExclusion):
            model.objects.filter(rule_id__in=chunk).delete()
        for through in (Rule.tags.through, Rule.tactics.through, Rule.techniques.through):
            through.objects.filter(rule_id__in=chunk).delete()


def _write_children(rules: list[ParsedRule], pk_by_id: dict[str, int]) -> None:
    insert_rows(
        Stage,
        ["rule_id", "group", "index", "text", "identifiers", "yaml", "negated"],
        [
            (pk_by_id[r.id], s.group, s.index, s.text, json.dumps(s.identifiers), s.yaml,
             s.negated)
            for r in rules
            for s in r.stages
        ],
    )  # fmt: skip
    _write_predicates(rules, pk_by_id, Indicator, RuleIndicator, "indicator", "indicators")
    _write_predicates(rules, pk_by_id, Exclusion, RuleExclusion, "exclusion", "exclusions")
    _write_tags(rules, pk_by_id)


def _write_predicates(
    rules: list[ParsedRule],
    pk_by_id: dict[str, int],
    model: type[Indicator] | type[Exclusion],
    link: type[RuleIndicator] | type[RuleExclusion],
    link_field: str,
    attribute: str,
) -> None:
    wanted: dict[str, Any] = {}
    for rule in rules:
        for item in getattr(rule, attribute):
            key = identity_hash(item.field, item.kind, item.value_key)
            if key not in wanted:
                wanted[key] = item
    known = _existing_ids(model, list(wanted))
    missing = [key for key in wanted if key not in known]
    # The import holds the write transaction, so no other writer can add these meanwhile.
    insert_rows(
        model,
        ["field", "kind", "value", "value_key", "identity", "rule_count"],
        [
            (wanted[key].field, wanted[key].kind, wanted[key].value, wanted[key].value_key,
             key, 0)
            for key in missing
        ],
    )  # fmt: skip
    if missing:
        known.update(_existing_ids(model, missing))
    rows = []
    for rule in rules:
        rule_pk = pk_by_id[rule.id]
        for position, item in enumerate(getattr(rule, attribute)):
            key = identity_hash(item.field, item.kind, item.value_key)
            rows.append((rule_pk, known[key], item.value, item.identifier[:200], position))
    insert_rows(link, ["rule_id", f"{link_field}_id", "value", "identifier", "position"], rows)


def _existing_ids(model: type[Indicator] | type[Exclusion], keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    # Below this size a full scan of the identity index beats many IN (...) queries.
    if len(keys) > 5000:
        wanted = set(keys)
        for identity, pk in model.objects.values_list("identity", "pk").iterator(chunk_size=5000):
            if identity in wanted:
                found[identity] = pk
        return found
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        found.update(model.objects.filter(identity__in=chunk).values_list("identity", "pk"))
    return found


def _write_tags(rules: list[ParsedRule], pk_by_id: dict[str, int]) -> None:
    """Tag rows and every rule's tag, tactic and technique links."""
    tags = {t.name: t for r in rules for t in r.tags}
    Tag.objects.bulk_create(
        [Tag(name=t.name[:200], namespace=t.namespace[:50], value=t.value[:200])
         for t in tags.values()],
        ignore_conflicts=True,
        batch_size=_BATCH,
    )  # fmt: skip
    tag_pk = dict(Tag.objects.values_list("name", "pk"))
    _ensure_attack(*_attack_names(rules))
    tactic_pk = dict(Tactic.objects.values_list("shortname", "pk"))
    technique_pk = dict(Technique.objects.values_list("attack_id", "pk"))
    tag_links: list[tuple[int, int]] = []
    tactic_links: list[tuple[int, int]] = []
    technique_links: list[tuple[int, int]] = []
    for rule in rules:
        rule_pk = pk_by_id[rule.id]
        # dict.fromkeys: each link once per rule, in the order the rule's tags name them.
        names = dict.fromkeys(tag.name for tag in rule.tags)
        tag_links.extend((rule_pk, tag_pk[name[:200]]) for name in names)
        tactics: dict[int, None] = {}
        techniques: dict[int, None] = {}
        for tag in rule.attack_tags:
            value = tag.value.lower()
            if attack.is_technique_id(value, ignore_case=True):
                pk = technique_pk.get(value.upper())
                if pk:
                    techniques.setdefault(pk, None)
            else:
                pk = tactic_pk.get(value.replace("_", "-"))
                if pk:
                    tactics.setdefault(pk, None)
        tactic_links.extend((rule_pk, pk) for pk in tactics)
        technique_links.extend((rule_pk, pk) for pk in techniques)
    insert_rows(Rule.tags.through, ["rule_id", "tag_id"], tag_links)
    insert_rows(Rule.tactics.through, ["rule_id", "tactic_id"], tactic_links)
    insert_rows(Rule.techniques.through, ["rule_id", "technique_id"], technique_links)


def _attack_names(rules: list[ParsedRule]) -> tuple[list[str], list[str]]:
    """Tactic shortnames and technique ids the rules' ``attack.*`` tags name, first seen first."""
    tactic_names: dict[str, None] = {}
    technique_ids: dict[str, None] = {}
    for rule in rules:
        for tag in rule.attack_tags:
            value = tag.value.lower()
            if attack.is_technique_id(value, ignore_case=True):
                technique_ids.setdefault(value.upper(), None)
            elif not _NOT_A_TACTIC.match(value):
                tactic_names.setdefault(value.replace("_", "-"), None)
    return list(tactic_names), list(technique_ids)


def _ensure_attack(tactic_names: Iterable[str], technique_ids: Iterable[str]) -> None:
    """Create Tactic/Technique rows for tags seen for the first time, names resolved offline."""
    _create_missing(Tactic, "shortname", tactic_names, _tactic_row)
    _create_missing(Technique, "attack_id", technique_ids, _technique_row)


_M = TypeVar("_M", bound=Model)


def _create_missing(
    model: type[_M], key: str, wanted: Iterable[str], build: Callable[[str], _M]
) -> None:
    have = set(model._default_manager.values_list(key, flat=True))
    rows = [build(value) for value in wanted if value not in have]
    model._default_manager.bulk_create(rows, ignore_conflicts=True)


def _tactic_row(shortname: str) -> Tactic:
    found = attack.tactic(shortname)
    if found is None:
        return Tactic(shortname=shortname[:100], attack_id="", name="", known=False)
    return Tactic(shortname=shortname[:100], attack_id=found.id, name=found.name, known=True)


def _technique_row(attack_id: str) -> Technique:
    found = attack.technique(attack_id)
    if found is None:
        return Technique(attack_id=attack_id, name="", parent_id="", parent_name="",
                         tactics=[], known=False)  # fmt: skip
    return Technique(
        attack_id=attack_id,
        name=found.name,
        parent_id=found.parent_id or "",
        parent_name=found.parent_name or "",
        tactics=list(found.tactics),
        known=True,
    )


def _refresh_counts() -> None:
    """Recount distinct rules per indicator/exclusion with one grouped UPDATE; drop orphans."""
    with connection.cursor() as cursor:
        for table, link, column in (
            (Indicator._meta.db_table, RuleIndicator._meta.db_table, "indicator_id"),
            (Exclusion._meta.db_table, RuleExclusion._meta.db_table, "exclusion_id"),
        ):
            cursor.execute(
                f"UPDATE {table} SET rule_count = counts.n FROM (SELECT {column} AS target, "
                f"COUNT(DISTINCT rule_id) AS n FROM {link} GROUP BY {column}) AS counts "
                f"WHERE {table}.id = counts.target AND {table}.rule_count <> counts.n"
            )
            cursor.execute(
                f"DELETE FROM {table} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {link} WHERE {link}.{column} = {table}.id)"
            )


def _refresh_search(rule_pks: Iterable[int] | None) -> None:
    """PostgreSQL only: weighted full-text vectors (title A, tags B, description C, values D)."""
    if connection.vendor != "postgresql":
        return
    sql = (
        f"UPDATE {Rule._meta.db_table} SET search_vector = "
        "setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
        "setweight(to_tsvector('english', coalesce(description, '')), 'C') || "
        "setweight(to_tsvector('simple', coalesce(search_text, '')), 'D')"
    )
    with connection.cursor() as cursor:
        if rule_pks is None:
            cursor.execute(sql)
        else:
            pks = list(rule_pks)
            for start in range(0, len(pks), _BATCH):
                cursor.execute(sql + " WHERE id = ANY(%s)", [pks[start : start + _BATCH]])


def vacuum() -> None:
    """Refresh planner statistics and the visibility map after bulk COPY (PostgreSQL only).

    Without it, fresh rows make COUNT(*) scan the heap and plans use stale estimates.
    VACUUM cannot run inside a transaction, so it is skipped within one (tests).
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Rule._meta.db_table}")  # the fingerprint's table
        for model in (Indicator, RuleIndicator, Exclusion):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
