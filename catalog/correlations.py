"""Correlation and meta filter documents in the catalog: import, the sandbox's compiled copy,
and what rule pages show.

**Import.** :func:`split_sources` runs before the importer plans: files holding a
``correlation:`` or ``filter:`` document are split. The rule documents of such a
multi-document file become their own source (``path#2``: the second document) and go
through the ordinary rule import; correlation and filter documents are kept aside and written
by :func:`write_meta_documents` in the import's transaction, after the rules, so references
resolve against the catalog as it will be (by Sigma ``id`` or ``name``, correlations of the
same import included). A document whose references do not resolve is refused
(``unresolved-reference``) and the rest of the import goes on.

**Sandbox.** :func:`catalog_meta` compiles the stored documents once per catalog
fingerprint; :func:`apply_meta` suppresses filtered matches and correlates a sandbox run.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import yaml
from django.db.models import Count, Max
from django.utils import timezone

from catalog.models import Correlation, CorrelationReference, MetaFilter, Rule
from catalog.sources import SourceFile
from rules.correlate import (
    CorrelationRule,
    correlate,
    is_correlation,
    parse_correlation,
    resolve_references,
)
from rules.correlate.model import CorrelationError
from rules.errors import RuleError
from rules.filters import FilterIndex, is_filter, logsource_covers, parse_filter, resolve_filter
from rules.filters import MetaFilter as EngineFilter
from rules.parse import decode_text, load_document

if TYPE_CHECKING:
    from catalog.importer import ImportReport
    from catalog.sandbox import SandboxRun
    from rules.evaluate import Evaluator

__all__ = [
    "CommandMeta",
    "MetaDocument",
    "correlation_context",
    "filter_context",
    "apply_meta",
    "catalog_meta",
    "meta_fingerprint",
    "rule_meta",
    "split_sources",
    "write_meta_documents",
]

# CRLF too: files written on Windows end lines with "\r\n" ("$" does not match before "\r").
_DOCUMENT_SEPARATOR = re.compile(r"(?m)^---[ \t]*(?:#[^\r\n]*)?\r?$")
_META_HINT = re.compile(rb"(?m)^(correlation|filter):|^---")
_DECLARES_META = re.compile(rb"(?m)^(correlation|filter):")
MAX_DOCUMENTS = 100
MAX_SANDBOX_MATCHES = 1000
"""Correlation matches one sandbox answer lists (the notes say when more were found)."""


@dataclass(slots=True)
class MetaDocument:
    """A correlation or filter document found in a source file."""

    kind: str  # "correlation" or "filter"
    document: dict[str, Any]
    text: str  # the whole file: pySigma converts the collection from it
    path: str
    catalog_path: str


# --------------------------------------------------------------------------------------------
# Import


def split_sources(
    files: Sequence[SourceFile],
) -> tuple[list[SourceFile], list[MetaDocument], list[tuple[str, str, str]]]:
    """Rule sources (multi-document files split), meta documents, and (path, error, code)
    for files that could not be split."""
    rules: list[SourceFile] = []
    meta: list[MetaDocument] = []
    errors: list[tuple[str, str, str]] = []
    for source in files:
        if not _META_HINT.search(source.data):
            rules.append(source)  # the fast path: an ordinary one-document rule file
            continue
        try:
            parts = _documents(source.data)
        except RuleError as exc:
            if _DECLARES_META.search(source.data):
                errors.append((source.path, str(exc), exc.code))  # a broken correlation file
            else:
                rules.append(source)  # the rule parser reports it as it always has
            continue
        if len(parts) > MAX_DOCUMENTS:
            errors.append((source.path, f"more than {MAX_DOCUMENTS} YAML documents", "too-many"))
            continue
        if any("action" in doc for doc, _ in parts) or not any(_is_meta(d) for d, _ in parts):
            # Files without a correlation or filter (a plain rule, several rules, legacy
            # "action: global" collections) go to the rule parser, which says what it says.
            rules.append(source)
            continue
        text = decode_text(source.data)
        for number, (doc, chunk) in enumerate(parts, start=1):
            if is_correlation(doc):
                meta.append(
                    MetaDocument("correlation", doc, text, source.path, source.catalog_path)
                )
            elif is_filter(doc):
                meta.append(MetaDocument("filter", doc, text, source.path, source.catalog_path))
            else:
                rules.append(
                    SourceFile(
                        f"{source.path}#{number}",
                        chunk.encode("utf-8"),
                        f"{source.catalog_path}#{number}",
                    )
                )
    return rules, meta, errors


def _is_meta(document: Any) -> bool:
    return is_correlation(document) or is_filter(document)


def _documents(data: bytes) -> list[tuple[dict[str, Any], str]]:
    """Each YAML document with its own text; every one is loaded by the rule loader's safe
    path (size limit, alias-bomb budget)."""
    text = decode_text(data)
    out = []
    for chunk in _DOCUMENT_SEPARATOR.split(text):
        if not chunk.strip() or all(
            not line.strip() or line.lstrip().startswith("#") for line in chunk.splitlines()
        ):
            continue
        out.append((load_document(chunk), chunk))
    return out


def write_meta_documents(
    documents: Sequence[MetaDocument], report: ImportReport, *, prune: bool = False
) -> None:
    """Upsert correlations and filters (inside the import's transaction); refused documents
    become ``report.errors``."""
    from catalog.importer import FileError

    resolver = _Resolver(documents)
    seen_correlations: set[str] = set()
    seen_filters: set[str] = set()
    before = (report.created, report.updated)
    for item in documents:
        try:
            if item.kind == "correlation":
                seen_correlations.add(_write_correlation(item, resolver, report))
            else:
                seen_filters.add(_write_filter(item, resolver, report))
        except RuleError as exc:
            report.errors.append(FileError(item.path, str(exc), exc.code))
    _link_chains()
    changed = before != (report.created, report.updated)
    if prune:
        stale = Correlation.objects.exclude(correlation_id__in=seen_correlations)
        stale_filters = MetaFilter.objects.exclude(filter_id__in=seen_filters)
        if stale.exists() or stale_filters.exists():
            _touch_rules(stale, stale_filters)
            stale.delete()
            stale_filters.delete()
    if changed:
        _touch_rules(
            Correlation.objects.filter(correlation_id__in=seen_correlations),
            MetaFilter.objects.filter(filter_id__in=seen_filters),
        )


def _touch_rules(correlations: Any, filters: Any) -> None:
    """Mark the rules these documents name as changed: their pages show the correlations and
    filters, and the catalog fingerprint (which caches and the sandbox follow) moves."""
    pks = set(
        CorrelationReference.objects.filter(
            correlation__in=correlations, rule__isnull=False
        ).values_list("rule_id", flat=True)
    )
    pks.update(filters.filter(rules__isnull=False).values_list("rules", flat=True))
    if not pks:  # e.g. a filter for any rule: move the fingerprint with one rule
        first = Rule.objects.order_by("pk").values_list("pk", flat=True).first()
        pks = {first} if first is not None else set()
    Rule.objects.filter(pk__in=pks).update(updated_at=timezone.now())


class _Resolver:
    """References by id or ``name``: correlations of this import first, then the catalog."""

    def __init__(self, documents: Sequence[MetaDocument]) -> None:
        self.local: dict[str, str] = {}
        for item in documents:
            if item.kind != "correlation":
                continue
            ident = str(item.document.get("id") or "")
            if ident:
                self.local[ident] = ident
                name = item.document.get("name")
                if isinstance(name, str) and name:
                    self.local.setdefault(name, ident)
        self._names: dict[str, str | None] = {}

    def __call__(self, reference: str) -> str | None:
        if reference in self.local:
            return self.local[reference]
        if Rule.objects.filter(rule_id=reference).exists():
            return reference
        stored = (
            Correlation.objects.filter(correlation_id=reference).values_list("correlation_id")
            or Correlation.objects.filter(name=reference).values_list("correlation_id")
        ).first()
        if stored:
            return str(stored[0])
        return self._rule_named(reference)

    def _rule_named(self, name: str) -> str | None:
        """A rule whose document says ``name: <name>``. Names are not a column: rows whose
        text holds the name are narrowed by a line pattern, then their YAML is read to be sure."""
        if name not in self._names:
            line = re.compile(
                rf"(?m)^name:[ \t]*['\"]?{re.escape(name)}['\"]?[ \t]*(#[^\r\n]*)?\r?$"
            )
            found = None
            rows = Rule.objects.filter(raw_yaml__contains=name).values_list("rule_id", "raw_yaml")
            for rule_id, raw in rows.iterator():
                if not line.search(raw):
                    continue
                try:
                    document = yaml.safe_load(raw)
                except yaml.YAMLError:
                    continue
                if isinstance(document, dict) and document.get("name") == name:
                    found = str(rule_id)
                    break
            self._names[name] = found
        return self._names[name]


def _write_correlation(item: MetaDocument, resolve: _Resolver, report: ImportReport) -> str:
    rule = resolve_references(parse_correlation(item.document, path=item.path), resolve)
    section = item.document["correlation"]
    values = {
        "name": rule.name,
        "title": rule.title[:500],
        "description": rule.description,
        "level": rule.level,
        "status": str(item.document.get("status") or "")[:20],
        "type": rule.type,
        "timespan": rule.timespan,
        "seconds": rule.seconds,
        "group_by": list(rule.group_by),
        "condition": _jsonable(section.get("condition") or {}),
        "condition_text": rule.condition_text[:500],
        "aliases": _jsonable(section.get("aliases") or {}),
        "generate": rule.generate,
        "document": _jsonable(item.document),
        "raw_yaml": item.text,
        "source_path": item.catalog_path,
    }
    row = _upsert(Correlation, {"correlation_id": rule.id}, values, report)
    row.refs.all().delete()
    pks = dict(Rule.objects.filter(rule_id__in=rule.rules).values_list("rule_id", "pk"))
    CorrelationReference.objects.bulk_create(
        CorrelationReference(
            correlation=row, position=n, reference=ref[:200], rule_id=pks.get(resolved)
        )
        for n, (ref, resolved) in enumerate(zip(rule.references, rule.rules, strict=True))
    )
    return rule.id


def _link_chains() -> None:
    """References to correlations point at their rows (after every row of the import exists)."""
    ids = dict(Correlation.objects.values_list("correlation_id", "pk"))
    for ref in CorrelationReference.objects.filter(rule__isnull=True):
        target = _chain_target(ref.reference, ids)
        if ref.target_id != target:
            ref.target_id = target
            ref.save(update_fields=["target"])


def _chain_target(reference: str, ids: dict[str, int]) -> int | None:
    if reference in ids:
        return ids[reference]
    found = Correlation.objects.filter(name=reference).values_list("pk", flat=True).first()
    return int(found) if found is not None else None


def _write_filter(item: MetaDocument, resolve: _Resolver, report: ImportReport) -> str:
    flt = resolve_filter(parse_filter(item.document, path=item.path), resolve)
    values = {
        "name": flt.name,
        "title": flt.title[:500],
        "description": flt.description,
        "product": flt.logsource[0][:100],
        "category": flt.logsource[1][:100],
        "service": flt.logsource[2][:100],
        "any_rule": flt.any_rule,
        "references": list(flt.references),
        "detection": _jsonable(dict(flt.detection)),
        "condition": flt.condition[:1000],
        "raw_yaml": item.text,
        "source_path": item.catalog_path,
    }
    row = _upsert(MetaFilter, {"filter_id": flt.id}, values, report)
    row.rules.set(Rule.objects.filter(rule_id__in=flt.rules))
    return flt.id


def _upsert(model: Any, key: dict[str, str], values: dict[str, Any], report: ImportReport) -> Any:
    """Create or update one row by its Sigma id, counting it as new, updated or unchanged."""
    row = model.objects.filter(**key).first()
    if row is None:
        report.created += 1
        return model.objects.create(**key, **values)
    if any(getattr(row, k) != v for k, v in values.items()):
        for name, value in values.items():
            setattr(row, name, value)
        row.save()
        report.updated += 1
    else:
        report.unchanged += 1
    return row


def _jsonable(value: Any) -> Any:
    """YAML values (dates, numbers that remember their text) as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# The sandbox's compiled copy


@dataclass(slots=True)
class CatalogMeta:
    correlations: list[CorrelationRule] = field(default_factory=list)
    filters: FilterIndex = field(default_factory=lambda: FilterIndex([]))
    broken: list[str] = field(default_factory=list)  # stored documents that no longer compile


_lock = threading.Lock()
_cached: tuple[str, CatalogMeta] | None = None
_fingerprint: tuple[float, str, str] | None = None  # (when, rule fingerprint, key)


def meta_fingerprint() -> str:
    """Changes whenever a correlation or filter is added, changed or removed."""
    parts = []
    for model in (Correlation, MetaFilter):
        stats = model.objects.aggregate(n=Count("*"), latest=Max("updated_at"))
        parts.append(f"{stats['n']}:{stats['latest'].isoformat() if stats['latest'] else ''}")
    return "|".join(parts)


def catalog_meta(fingerprint: str | None = None) -> CatalogMeta:
    """The stored correlations and filters, compiled once per fingerprint."""
    global _cached, _fingerprint
    if fingerprint is not None:
        key = fingerprint
    else:
        from catalog import services  # services imports the importer, which imports this

        # Reused like the rule fingerprint (same TTL); a changed rule fingerprint (every
        # import that writes a correlation or filter touches the rules it names) is seen at once.
        now = time.monotonic()
        rules = services.current_fingerprint()
        held = _fingerprint
        if held is None or held[1] != rules or now - held[0] >= services.FINGERPRINT_TTL:
            held = (now, rules, f"{rules}|{meta_fingerprint()}")
            _fingerprint = held
        key = held[2]
    cached = _cached
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        meta = _build_meta()
        _cached = (key, meta)
    return meta


def _build_meta() -> CatalogMeta:
    meta = CatalogMeta()
    rows = Correlation.objects.prefetch_related("refs__rule", "refs__target")
    for row in rows:
        table = {}
        for ref in row.refs.all():
            if ref.rule is not None:
                table[ref.reference] = ref.rule.rule_id
            elif ref.target is not None:
                table[ref.reference] = ref.target.correlation_id
        try:
            parsed = parse_correlation(row.document, path=row.source_path)
            meta.correlations.append(resolve_references(parsed, table.get))
        except (RuleError, CorrelationError):
            meta.broken.append(row.correlation_id)
    filters: list[EngineFilter] = []
    for flt in MetaFilter.objects.prefetch_related("rules"):
        document = {
            "title": flt.title,
            "id": flt.filter_id,
            "logsource": {
                k: v
                for k, v in (
                    ("product", flt.product),
                    ("category", flt.category),
                    ("service", flt.service),
                )
                if v
            },
            "filter": {"rules": flt.references or "any", **flt.detection},
        }
        try:
            parsed_filter = parse_filter(document)
        except RuleError:
            meta.broken.append(flt.filter_id)
            continue
        # References were resolved at import (the rows); rules pruned since drop out.
        ids = tuple(sorted(r.rule_id for r in flt.rules.all()))
        filters.append(replace(parsed_filter, rules=ids))
    meta.filters = FilterIndex(filters)
    _drop_unavailable(meta)
    return meta


def _drop_unavailable(meta: CatalogMeta) -> None:
    """Correlations chained on a correlation that did not compile cannot run either."""
    ids = {c.id for c in meta.correlations}
    rule_ids = set(Rule.objects.values_list("rule_id", flat=True))
    kept = []
    for corr in meta.correlations:
        if all(r in ids or r in rule_ids for r in corr.rules):
            kept.append(corr)
        else:
            meta.broken.append(corr.id)
    meta.correlations = kept


def apply_meta(
    run: SandboxRun,
    evaluator: Evaluator,
    *,
    timestamp_field: str | None = None,
    meta: CatalogMeta | None = None,
) -> None:
    """Suppress matches that a meta filter removes, then correlate the run's matches."""
    meta = meta or catalog_meta()
    matched: list[list[str]] = []
    for event, result in zip(run.events, run.results, strict=False):
        if meta.filters:
            _filter_matches(run, event, result, evaluator, meta.filters)
        matched.append([m.rule_id for m in result.matches])
    if not meta.correlations:
        return
    outcome = correlate(
        meta.correlations,
        run.events[: len(matched)],
        matched,
        timestamp_field=timestamp_field,
        indices=[e.index for e in run.events[: len(matched)]],
        max_matches=MAX_SANDBOX_MATCHES,
    )
    run.correlations = outcome.to_list()
    run.correlation_notes = correlation_notes(outcome.untimed, outcome.stats, timestamp_field)


class CommandMeta:
    """Filters and correlations for ``manage.py evaluate``: matches stream through
    :meth:`keep`, then :meth:`correlate` runs over what was kept."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.meta = catalog_meta()
        self.kept: list[list[str]] = []

    def _logsource(self, rule_id: str) -> tuple[str, str, str]:
        rule = self.evaluator.rule(rule_id)
        return rule.logsource if rule else ("", "", "")

    def suppressed_by(self, event: Any, rule_id: str) -> list[str]:
        found = self.meta.filters.suppressing(rule_id, self._logsource(rule_id), event)
        return [f.title or f.id for f in found]

    def keep(self, event: Any, rule_ids: Sequence[str]) -> list[str]:
        """The rule ids no filter suppresses on ``event`` (events must come in order)."""
        kept = [r for r in rule_ids if not self.meta.filters or not self.suppressed_by(event, r)]
        self.kept.append(kept)
        return kept

    def correlate(self, events: Sequence[Any], timestamp_field: str | None) -> list[dict[str, Any]]:
        if not self.meta.correlations:
            return []
        run = correlate(
            self.meta.correlations, events[: len(self.kept)], self.kept,
            timestamp_field=timestamp_field,
        )  # fmt: skip
        return run.to_list()


def _filter_matches(
    run: SandboxRun, event: Any, result: Any, evaluator: Evaluator, filters: FilterIndex
) -> None:
    kept = []
    for match in result.matches:
        rule = evaluator.rule(match.rule_id)
        applying = filters.suppressing(
            match.rule_id, rule.logsource if rule else ("", "", ""), event
        )
        if not applying:
            kept.append(match)
            continue
        run.filtered.setdefault(event.index, []).append(
            {
                "rule_id": match.rule_id,
                "title": match.title,
                "filters": [{"id": f.id, "title": f.title} for f in applying],
                "reason": "suppressed by filter " + ", ".join(f.title or f.id for f in applying),
            }
        )
    result.matches = kept


def correlation_notes(untimed: Sequence[int], stats: Any, timestamp_field: str | None) -> list[str]:
    """What a person reads about a correlation run: matched events without a time (first ten
    listed) and the bounds that left something out. The sandbox and jobs say it alike."""
    notes = []
    if untimed:
        shown = ", ".join(f"#{i}" for i in untimed[:10])
        where = f"field {timestamp_field!r}" if timestamp_field else "a timestamp field"
        notes.append(
            f"{len(untimed)} matched event(s) without {where} took no part in "
            f"correlations ({shown}{', ...' if len(untimed) > 10 else ''})"
        )
    if stats.limited:
        notes.append(f"correlation limits reached: {stats.to_dict()}")
    return notes


# --------------------------------------------------------------------------------------------
# Pages


@dataclass(slots=True)
class RuleMeta:
    """What a rule page shows about correlations and filters."""

    used_by: list[Correlation]
    filters: list[MetaFilter]


def rule_meta(rule: Rule) -> RuleMeta:
    """The correlations that reference ``rule`` and the filters that apply to it."""
    used_by = list(
        Correlation.objects.filter(refs__rule=rule)
        .distinct()
        .only("correlation_id", "title", "type")
    )
    logsource = (rule.product, rule.category, rule.service)
    candidates = [
        *MetaFilter.objects.filter(rules=rule),
        *MetaFilter.objects.filter(any_rule=True),
    ]
    applying = [
        f for f in candidates if logsource_covers((f.product, f.category, f.service), logsource)
    ]
    return RuleMeta(used_by, _unique(applying))


def _unique(rows: Iterable[MetaFilter]) -> list[MetaFilter]:
    seen: dict[int, MetaFilter] = {}
    for row in rows:
        seen.setdefault(row.pk, row)
    return list(seen.values())


def _documents_for(row: Correlation, seen: set[str] | None = None) -> list[str]:
    """The texts pySigma needs to convert ``row``: its file, the rules it references that the
    file does not hold, chained correlations (recursively) and the filters that apply."""
    seen = seen if seen is not None else set()
    if row.correlation_id in seen:
        return []
    seen.add(row.correlation_id)
    texts = [row.raw_yaml]
    held = _declared(row.raw_yaml)
    for ref in row.refs.select_related("rule", "target"):
        if ref.rule is not None and ref.rule.rule_id not in held:
            texts.append(ref.rule.raw_yaml)
            held.add(ref.rule.rule_id)
        elif ref.target is not None and ref.target.correlation_id not in held:
            texts.extend(_documents_for(ref.target, seen))
    return texts


def _declared(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"(?m)^id:[ \t]*['\"]?([^'\"\s#]+)", text)}


def _with_filters(texts: list[str], rule_pks: Iterable[int]) -> list[str]:
    held: set[str] = set()
    for text in texts:
        held |= _declared(text)
    for flt in MetaFilter.objects.filter(rules__in=list(rule_pks)).distinct():
        if flt.filter_id not in held:
            texts.append(flt.raw_yaml)
            held |= _declared(flt.raw_yaml)
    return texts


def _cached_conversions(texts: list[str]) -> list[Any]:
    """pySigma conversions of these documents, cached by their text (pages ask often; the
    backends take tens of milliseconds per collection)."""
    from django.core.cache import cache

    from rules.correlate.convert import convert_documents

    key = "corr-convert:" + hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        found = convert_documents(texts)
        cache.set(key, found, 24 * 3600)
    return list(found)


def correlation_context(row: Correlation) -> dict[str, Any]:
    """What the correlation page shows (conversion through pySigma, see rules.correlate.convert)."""
    refs = list(row.refs.select_related("rule", "target").order_by("position"))
    texts = _with_filters(_documents_for(row), [r.rule_id for r in refs if r.rule_id])
    conversions = _cached_conversions(texts)
    aliases = [
        {"alias": alias, "fields": sorted(mapping.items())}
        for alias, mapping in (row.aliases or {}).items()
        if isinstance(mapping, dict)
    ]
    return {
        "correlation": row,
        "refs": refs,
        "aliases": aliases,
        "used_by": Correlation.objects.filter(refs__target=row).distinct(),
        "conversions": conversions,
        "document_count": len(texts),
    }


def filter_context(row: MetaFilter) -> dict[str, Any]:
    """A filter, the rules it applies to, and each rule converted with the filter applied."""
    rules = list(row.rules.all()[:20])
    return {
        "filter": row,
        "rules": rules,
        "detection_yaml": yaml.safe_dump(row.detection, sort_keys=False, allow_unicode=True),
        "conversions": [
            {"rule": rule, "results": _cached_conversions([rule.raw_yaml, row.raw_yaml])}
            for rule in rules[:5]
        ],
    }


def filtered_rule_conversion(
    rule: Rule, target: str, filters: list[MetaFilter] | None = None
) -> dict[str, Any]:
    """The rule page's Convert section and its meta filters: the filters that apply to
    ``rule`` and, for a target that converts Sigma collections here (``CORRELATION_TARGETS``),
    the rule converted with them applied (pySigma, as ``sigma convert -t <target>
    --without-pipeline rule.yml filter.yml`` prints it); ``{}`` when no filter applies.
    ``filters``: the page's :func:`rule_meta` filters, when it has them (no second query)."""
    from rules.correlate.convert import CORRELATION_TARGETS

    if filters is None:
        filters = rule_meta(rule).filters
    if not filters:
        return {}
    result = None
    if target in CORRELATION_TARGETS:
        texts = [rule.raw_yaml, *(f.raw_yaml for f in filters)]
        result = next(c for c in _cached_conversions(texts) if c.target == target)
    return {
        "filters": filters,
        "result": result,
        "targets": [label for _, _, label in CORRELATION_TARGETS.values()],
    }
