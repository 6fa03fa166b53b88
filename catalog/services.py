"""The importer: the only place where engine dataclasses become catalog rows.

``import_rules`` reads files (see :mod:`catalog.sources`), skips files whose bytes are
unchanged since the last import without parsing them, parses the rest with the engine, and
writes everything in one transaction: a failure (or a kill) mid-import leaves the previous
catalog intact, and readers see either the old or the new catalog.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from catalog.models import (
    Exclusion,
    ImportRun,
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
from catalog.sources import Refusal, SourceFile, collect
from rules import attack
from rules.errors import RuleError
from rules.model import ParsedRule
from rules.parse import parse_rule

Progress = Callable[[int, int], None]
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$", re.IGNORECASE)
_RULE_SET = re.compile(r"^(rules(-[a-z0-9-]+)?|deprecated|unsupported|examples)$")
_BATCH = 2000
_UNREADABLE_ROOT = frozenset({"not-found", "bad-archive"})
_JSON_FIELDS = frozenset(
    {"references", "falsepositives", "related", "detection", "conditions", "unsupported"}
)


@dataclass(slots=True)
class FileError:
    path: str
    error: str
    code: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "error": self.error, "code": self.code}


@dataclass(slots=True)
class ImportReport:
    """What an import did; mirrors the :class:`ImportRun` row it is saved as."""

    run_id: int | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    errors: list[FileError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        return (
            f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed, {self.pruned} pruned in {self.seconds:.2f} s"
        )


class ImportAborted(Exception):
    """The write transaction failed; nothing was changed. Carries the saved report."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


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


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_rules(
    paths: Sequence[str],
    *,
    prune: bool = False,
    trigger: str = "command",
    progress: Progress | None = None,
    rule_set: str | None = None,
) -> ImportReport:
    """Import rule files from ``paths`` (directories, files, archives); upsert by rule id.

    ``rule_set`` names the set the rules belong to; by default it is derived from each path
    (``rules-emerging-threats/...`` -> ``rules-emerging-threats``).
    """
    started = time.perf_counter()
    _close_interrupted_runs()
    run = ImportRun.objects.create(trigger=trigger, sources=[str(p) for p in paths])
    report = ImportReport(run_id=run.pk)
    try:
        files, refusals = _read_sources(paths)
        report.errors.extend(FileError(r.path, r.reason, r.code) for r in refusals)
        if prune and (not files or any(r.code in _UNREADABLE_ROOT for r in refusals)):
            # A typo in a path must not empty the catalog.
            raise ValueError("refusing to prune: a path was missing, unreadable or empty")
        plan = _plan(files, report, progress)
        with transaction.atomic():
            _write(plan, report, prune=prune, rule_set=rule_set)
    except Exception as exc:
        report.seconds = time.perf_counter() - started
        _finish(run, report, ImportRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise ImportAborted(f"import failed, catalog unchanged: {exc}", report) from exc
    report.seconds = time.perf_counter() - started
    _finish(run, report, ImportRun.Status.SUCCEEDED, report.summary())
    if report.created or report.updated or report.pruned:
        _vacuum()
    return report


def _vacuum() -> None:
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


# An import takes seconds; a run still "running" after this long was killed with its process.
INTERRUPTED_AFTER = datetime.timedelta(hours=1)


def _close_interrupted_runs() -> None:
    """Mark runs whose process died mid-import (their transaction rolled back) as failed."""
    cutoff = timezone.now() - INTERRUPTED_AFTER
    ImportRun.objects.filter(status=ImportRun.Status.RUNNING, started_at__lt=cutoff).update(
        status=ImportRun.Status.FAILED,
        finished_at=timezone.now(),
        message="interrupted: the import process ended before finishing; nothing was changed",
    )


def _finish(run: ImportRun, report: ImportReport, status: str, message: str) -> None:
    run.status = status
    run.finished_at = timezone.now()
    run.created, run.updated, run.unchanged = report.created, report.updated, report.unchanged
    run.failed, run.pruned, run.seconds = report.failed, report.pruned, report.seconds
    run.errors = [e.to_dict() for e in report.errors]
    run.message = message
    run.save()


def _read_sources(paths: Sequence[str]) -> tuple[list[SourceFile], list[Refusal]]:
    files: list[SourceFile] = []
    refusals: list[Refusal] = []
    for item in collect(list(paths)):
        (files if isinstance(item, SourceFile) else refusals).append(item)
    return files, refusals


@dataclass(slots=True)
class _Plan:
    new: list[tuple[ParsedRule, str]] = field(default_factory=list)  # (rule, hash)
    changed: list[tuple[ParsedRule, str, int]] = field(default_factory=list)  # + pk
    seen_ids: set[str] = field(default_factory=set)


def _plan(files: list[SourceFile], report: ImportReport, progress: Progress | None) -> _Plan:
    """Decide per file, in path order: unchanged, new, changed, duplicate or failed.

    Files whose bytes equal a stored rule's are not parsed at all (that is what makes an
    unchanged re-import cheap); the rest are parsed, possibly in parallel. Duplicate ids are
    resolved afterwards in path order, so the first file always wins whatever was stored.
    """
    existing: dict[str, tuple[int, str]] = {
        rule_id: (pk, digest)
        for pk, rule_id, digest in Rule.objects.values_list("pk", "rule_id", "content_hash")
    }
    by_hash = {digest: rule_id for rule_id, (_, digest) in existing.items()}
    digests = [content_hash(source.data) for source in files]
    to_parse = [i for i, digest in enumerate(digests) if digest not in by_hash]
    parsed_at: dict[int, ParsedRule | RuleError] = {}
    total = len(files)
    for done, (index, outcome) in enumerate(
        zip(to_parse, _parse_all([files[i] for i in to_parse]), strict=True), start=1
    ):
        parsed_at[index] = outcome
        if progress:
            progress(total - len(to_parse) + done, total)
    if progress and not to_parse:
        progress(total, total)

    plan = _Plan()
    first_path: dict[str, str] = {}
    for index, source in enumerate(files):
        digest = digests[index]
        outcome = parsed_at.get(index)
        if isinstance(outcome, RuleError):
            report.errors.append(FileError(source.path, str(outcome), outcome.code))
            continue
        rule_id = by_hash[digest] if outcome is None else outcome.id
        if rule_id in plan.seen_ids:
            report.errors.append(
                FileError(
                    source.path,
                    f"duplicate rule id {rule_id}: already imported from "
                    f"{first_path[rule_id]}; this file was skipped",
                    "duplicate-id",
                )
            )
            continue
        if outcome is not None:
            problem = unstorable(outcome)
            if problem:
                report.errors.append(FileError(source.path, problem, "unstorable"))
                continue
        plan.seen_ids.add(rule_id)
        first_path[rule_id] = source.path
        if outcome is None or existing.get(rule_id, (0, ""))[1] == digest:
            report.unchanged += 1
        elif rule_id in existing:
            plan.changed.append((outcome, digest, existing[rule_id][0]))
        else:
            plan.new.append((outcome, digest))
    return plan


_MAX_KIND = Indicator._meta.get_field("kind").max_length or 100


def unstorable(parsed: ParsedRule) -> str | None:
    """Why a parsed rule cannot be stored (checked per file so one never aborts an import)."""
    texts = [parsed.id, parsed.title, parsed.description, parsed.author, parsed.raw_yaml]
    texts += _strings(parsed.detection)
    texts += [item.value for item in (*parsed.indicators, *parsed.exclusions)]
    # PostgreSQL text (and jsonb) columns cannot hold NUL at all.
    if any("\x00" in text for text in texts):
        return "the rule contains a NUL character, which the catalog cannot store"
    for item in (*parsed.indicators, *parsed.exclusions):
        if len(item.kind) > _MAX_KIND:
            return f"modifier chain {item.kind[:60]!r}... is longer than {_MAX_KIND} characters"
    if len(parsed.id) > 100:
        return "the rule id is longer than 100 characters"
    return None


# Below this many files a worker pool costs more to start than it saves.
_PARALLEL_MIN_FILES = 400


def _strings(value: Any) -> list[str]:
    """Every key and string value inside a YAML structure."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.append(item)
    return found


def _parse_all(items: list[SourceFile]) -> Iterator[ParsedRule | RuleError]:
    """Parse files in order; on several cores, in a pool of forked worker processes."""
    jobs = [(source.data, source.catalog_path) for source in items]
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or len(jobs) < _PARALLEL_MIN_FILES or "fork" not in mp.get_all_start_methods():
        yield from (_parse_job(job) for job in jobs)
        return
    # Fork: workers inherit the loaded engine and never touch the database connection.
    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_parse_job, jobs, chunksize=64)


def _parse_job(job: tuple[bytes, str]) -> ParsedRule | RuleError:
    data, path = job
    try:
        parsed = parse_rule(data, path)
    except RuleError as exc:
        return exc
    # The pySigma object and the raw mapping are not needed for writing and cost pickling.
    parsed.sigma = None
    parsed.document = {}
    return parsed


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
    }


def _jsonable(value: Any) -> Any:
    """YAML gives dates and other non-JSON scalars; store them as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _write(plan: _Plan, report: ImportReport, *, prune: bool, rule_set: str | None) -> None:
    """All database writes of one import; runs inside a transaction."""
    now = timezone.now()
    changed_pks = [pk for _, _, pk in plan.changed]
    if changed_pks:
        _delete_children(changed_pks)
        updates = []
        for parsed, digest, pk in plan.changed:
            rule = Rule(pk=pk, updated_at=now, **_rule_fields(parsed, digest, rule_set))
            updates.append(rule)
        Rule.objects.bulk_update(
            updates,
            [f for f in _rule_fields(plan.changed[0][0], "") if f != "rule_id"]
            + ["updated_at"],
            batch_size=500,
        )
        for start in range(0, len(changed_pks), _BATCH):
            chunk = changed_pks[start : start + _BATCH]
            Rule.objects.filter(pk__in=chunk).update(revision=F("revision") + 1)
    if plan.new:
        columns = [*_rule_fields(plan.new[0][0], ""), "revision", "created_at", "updated_at"]
        rows = []
        for parsed, digest in plan.new:
            values = _rule_fields(parsed, digest, rule_set)
            rows.append(
                tuple(json.dumps(v) if k in _JSON_FIELDS else v for k, v in values.items())
                + (1, now, now)
            )
        _insert_rows(Rule, columns, rows)
    new_ids = [parsed.id for parsed, _ in plan.new]
    pk_by_id: dict[str, int] = {}
    for start in range(0, len(new_ids), 900):
        chunk = new_ids[start : start + 900]
        pk_by_id.update(Rule.objects.filter(rule_id__in=chunk).values_list("rule_id", "pk"))
    for parsed, _, pk in plan.changed:
        pk_by_id[parsed.id] = pk
    written = [parsed for parsed, _ in plan.new] + [parsed for parsed, _, _ in plan.changed]
    if written:
        _write_children(written, pk_by_id)
    if prune:
        stale = Rule.objects.exclude(rule_id__in=plan.seen_ids)
        report.pruned = stale.count()
        if report.pruned:
            _delete_children(list(stale.values_list("pk", flat=True)))
            stale.delete()
    if written or report.pruned:
        _refresh_counts()
        _refresh_search(pk_by_id.values() if not report.pruned else None)
    report.created = len(plan.new)
    report.updated = len(plan.changed)


def _insert_rows(model: type[Any], columns: list[str], rows: list[tuple[Any, ...]]) -> None:
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
    _insert_rows(
        Stage,
        ["rule_id", "group", "index", "text", "identifiers", "yaml", "negated"],
        [
            (pk_by_id[r.id], s.group, s.index, s.text, json.dumps(s.identifiers), s.yaml,
             s.negated)
            for r in rules
            for s in r.stages
        ],
    )
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
    _insert_rows(
        model,
        ["field", "kind", "value", "value_key", "identity", "rule_count"],
        [
            (wanted[key].field, wanted[key].kind, wanted[key].value, wanted[key].value_key,
             key, 0)
            for key in missing
        ],
    )
    if missing:
        known.update(_existing_ids(model, missing))
    rows = []
    for rule in rules:
        rule_pk = pk_by_id[rule.id]
        for position, item in enumerate(getattr(rule, attribute)):
            key = identity_hash(item.field, item.kind, item.value_key)
            rows.append((rule_pk, known[key], item.value, item.identifier[:200], position))
    _insert_rows(link, ["rule_id", f"{link_field}_id", "value", "identifier", "position"], rows)


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
    tags = {t.name: t for r in rules for t in r.tags}
    Tag.objects.bulk_create(
        [Tag(name=t.name[:200], namespace=t.namespace[:50], value=t.value[:200])
         for t in tags.values()],
        ignore_conflicts=True,
        batch_size=_BATCH,
    )
    tag_pk = dict(Tag.objects.values_list("name", "pk"))
    tactic_names: dict[str, None] = {}
    technique_ids: dict[str, None] = {}
    for rule in rules:
        for tag in rule.attack_tags:
            value = tag.value.lower()
            if _TECHNIQUE.match(value):
                technique_ids.setdefault(value.upper(), None)
            elif not re.match(r"^[gsmc]\d{4}$|^ds\d{4}$|^a\d{4}$", value):
                tactic_names.setdefault(value.replace("_", "-"), None)
    _ensure_attack(tactic_names, technique_ids)
    tactic_pk = dict(Tactic.objects.values_list("shortname", "pk"))
    technique_pk = dict(Technique.objects.values_list("attack_id", "pk"))
    tag_links: list[tuple[int, int]] = []
    tactic_links: list[tuple[int, int]] = []
    technique_links: list[tuple[int, int]] = []
    for rule in rules:
        rule_pk = pk_by_id[rule.id]
        seen: set[str] = set()
        for tag in rule.tags:
            if tag.name in seen:
                continue
            seen.add(tag.name)
            tag_links.append((rule_pk, tag_pk[tag.name[:200]]))
        tactics_done: set[int] = set()
        techniques_done: set[int] = set()
        for tag in rule.attack_tags:
            value = tag.value.lower()
            if _TECHNIQUE.match(value):
                pk = technique_pk.get(value.upper())
                if pk and pk not in techniques_done:
                    techniques_done.add(pk)
                    technique_links.append((rule_pk, pk))
            else:
                pk = tactic_pk.get(value.replace("_", "-"))
                if pk and pk not in tactics_done:
                    tactics_done.add(pk)
                    tactic_links.append((rule_pk, pk))
    _insert_rows(Rule.tags.through, ["rule_id", "tag_id"], tag_links)
    _insert_rows(Rule.tactics.through, ["rule_id", "tactic_id"], tactic_links)
    _insert_rows(Rule.techniques.through, ["rule_id", "technique_id"], technique_links)


def _ensure_attack(tactic_names: Iterable[str], technique_ids: Iterable[str]) -> None:
    """Create Tactic/Technique rows for tags seen for the first time, names resolved offline."""
    have_tactics = set(Tactic.objects.values_list("shortname", flat=True))
    new_tactics = []
    for shortname in tactic_names:
        if shortname in have_tactics:
            continue
        found = attack.tactic(shortname)
        new_tactics.append(
            Tactic(
                shortname=shortname[:100],
                attack_id=found.id if found else "",
                name=found.name if found else "",
                known=found is not None,
            )
        )
    Tactic.objects.bulk_create(new_tactics, ignore_conflicts=True)
    have_techniques = set(Technique.objects.values_list("attack_id", flat=True))
    new_techniques = []
    for attack_id in technique_ids:
        if attack_id in have_techniques:
            continue
        found_technique = attack.technique(attack_id)
        new_techniques.append(
            Technique(
                attack_id=attack_id,
                name=found_technique.name if found_technique else "",
                parent_id=(found_technique.parent_id or "") if found_technique else "",
                parent_name=(found_technique.parent_name or "") if found_technique else "",
                tactics=list(found_technique.tactics) if found_technique else [],
                known=found_technique is not None,
            )
        )
    Technique.objects.bulk_create(new_techniques, ignore_conflicts=True)


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


def catalog_fingerprint() -> str:
    """Changes whenever the catalog changes; lets per-process caches (sandbox) rebuild."""
    from django.db.models import Count, Max

    # COUNT(*) (not COUNT(id)) lets PostgreSQL answer from the index after VACUUM.
    stats = Rule.objects.aggregate(n=Count("*"), latest=Max("updated_at"))
    return f"{stats['n']}:{stats['latest'].isoformat() if stats['latest'] else ''}"


# How long a process reuses the catalog fingerprint. The query costs a round trip (more than a
# cached page or an indicator lookup); reusing it for a moment makes caches and validators
# nearly free under load. An import or a rule deletion in this process forgets it at once;
# other processes catch up within the TTL.
FINGERPRINT_TTL = 2.0
_fingerprint: tuple[float, str] | None = None


def current_fingerprint() -> str:
    """:func:`catalog_fingerprint`, reused for up to ``FINGERPRINT_TTL`` seconds."""
    global _fingerprint
    now = time.monotonic()
    cached = _fingerprint
    if cached is not None and now - cached[0] < FINGERPRINT_TTL:
        return cached[1]
    value = catalog_fingerprint()
    _fingerprint = (now, value)
    return value


def forget_fingerprint(**kwargs: Any) -> None:
    global _fingerprint
    _fingerprint = None


# Every import saves its ImportRun when it starts and when it ends (after its transaction).
post_save.connect(forget_fingerprint, sender=ImportRun, dispatch_uid="forget-fingerprint")
post_delete.connect(forget_fingerprint, sender=Rule, dispatch_uid="forget-fingerprint")
