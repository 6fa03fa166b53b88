"""The workbench service: one draft rule analysed against the whole catalog.

:func:`run_workbench` is the one call behind ``POST /api/workbench/`` and the ``/workbench/``
page. The engine (:func:`rules.workbench.analyse_draft`) parses the draft and compares it with
the catalog; this module adds what needs the catalog or other services: the similarity index
and regression samples (process-wide, rebuilt when :func:`catalog.services.current_fingerprint`
changes, like the sandbox's evaluator), lint (:mod:`rules.validate`), tests on pasted events
(:func:`catalog.sandbox.run_sandbox`), ATT&CK and event coverage, and conversions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from catalog.correlations import CatalogMeta, catalog_meta
from catalog.models import Correlation, ImportRun, Rule, RuleIndicator
from catalog.queries.events import EventShape, event_filter, event_slug
from catalog.sandbox import API_LIMITS, TIME_BUDGET_SECONDS, SandboxRun, run_sandbox
from catalog.services import current_fingerprint
from catalog.templatetags.catalog_tags import rarity
from rules import attack, taxonomy
from rules.backtest import REGRESSION_DIR, RegressionSet, load_regression_set
from rules.compile import CompiledRule
from rules.convert import TARGETS, ConversionResult, Converter
from rules.correlate import CorrelationRule
from rules.correlate.convert import ConvertedCollection, convert_documents
from rules.drafts import filter_backtest
from rules.errors import RuleError
from rules.evaluate import Evaluator
from rules.evaluate.bounds import ResponseLimits
from rules.events import Event
from rules.filters import FilterIndex
from rules.model import ParsedRule
from rules.parse import parse_rule
from rules.similarity import SimilarityIndex
from rules.validate import Finding, validate_rule
from rules.workbench import DraftAnalysis, analyse_draft

_LOCK = threading.Lock()
_STATE: dict[str, tuple[str, Any]] = {}
_CONVERTERS = threading.local()
ALL_TARGETS = "all"
MAX_TARGETS = len(TARGETS) + 8
MAX_RULE_CHARS = 512 * 1024
"""The largest draft the workbench reads (the biggest SigmaHQ rule is ~290 KB)."""
PAGE_CONVERT_SECONDS = 3.0
"""The page converts for every target until this is spent; the rest convert on demand."""
LARGE_DRAFT_INDICATORS = 200
"""With a time budget, a draft with more indicators converts for its first target only."""


# ------------------------------------------------------------------------ process-wide state


def _cached(name: str, fingerprint: str, build: Any) -> Any:
    with _LOCK:
        cached = _STATE.get(name)
        if cached is None or cached[0] != fingerprint:
            cached = (fingerprint, build())
            _STATE[name] = cached
        return cached[1]


Identity = tuple[str, str, str]


def _build_index() -> tuple[SimilarityIndex, dict[Identity, int]]:
    rules = {
        rule_id: (title, "/".join(p for p in (product, category, service) if p))
        for rule_id, title, product, category, service in Rule.objects.values_list(
            "rule_id", "title", "product", "category", "service"
        )
    }
    pks: dict[Identity, int] = {}
    links = []
    for rule_id, pk, *identity in RuleIndicator.objects.values_list(
        "rule__rule_id", "indicator_id", "indicator__field", "indicator__kind",
        "indicator__value_key",
    ).iterator(chunk_size=5000):  # fmt: skip
        key = (identity[0], identity[1], identity[2])
        pks[key] = pk
        links.append((rule_id, *key))
    return SimilarityIndex.from_rows(rules, links), pks


def _index_state(fingerprint: str) -> tuple[SimilarityIndex, dict[Identity, int]]:
    state: tuple[SimilarityIndex, dict[Identity, int]] = _cached("index", fingerprint, _build_index)
    return state


def similarity_index() -> SimilarityIndex:
    """The process-wide similarity index of the current catalog (built on first use).

    Its ``corpus_count(identity)`` equals ``Indicator.rule_count`` for that identity: both
    count distinct rules linked to the identity by ``RuleIndicator`` rows.
    """
    return _index_state(current_fingerprint())[0]


def regression_root() -> Path | None:
    """The corpus folder holding ``regression_data``: the ``REGRESSION_DATA_ROOT`` setting,
    else the folder (or a parent of it, up to two levels) of the last successful import's
    sources."""
    configured = getattr(settings, "REGRESSION_DATA_ROOT", None)
    if configured:
        return Path(configured) if (Path(configured) / REGRESSION_DIR).is_dir() else None
    run = (
        ImportRun.objects.filter(status=ImportRun.Status.SUCCEEDED)
        .order_by("-started_at")
        .only("sources")
        .first()
    )
    for source in run.sources if run else []:
        path = Path(str(source))
        for folder in (path, *list(path.parents)[:2]):
            if (folder / REGRESSION_DIR).is_dir():
                return folder
    return None


def _regression_set() -> RegressionSet | None:
    root = regression_root()
    return load_regression_set(root) if root is not None else None


def regression_set(fingerprint: str | None = None) -> RegressionSet | None:
    """Every regression sample of the catalog's corpus, once per catalog state (None when
    the corpus has no ``regression_data``)."""
    state = fingerprint or current_fingerprint()
    found: RegressionSet | None = _cached("regression", state, _regression_set)
    return found


def clear_workbench_cache() -> None:
    """Forget the process-wide index and samples (tests, and after a catalog reset)."""
    with _LOCK:
        _STATE.clear()


# ------------------------------------------------------------------------------- conversions


@dataclass(frozen=True, slots=True)
class TargetChoice:
    target: str
    pipeline: str | None = None


def _converter(choice: TargetChoice) -> Converter:
    """One Converter per thread and (target, pipeline): building a backend is the cost."""
    cache: dict[TargetChoice, Converter] | None = getattr(_CONVERTERS, "cache", None)
    if cache is None:
        cache = _CONVERTERS.cache = {}
    converter = cache.get(choice)
    if converter is None:
        converter = cache[choice] = Converter(choice.target, choice.pipeline)
    return converter


def every_target() -> list[TargetChoice]:
    """Each target with its default pipeline."""
    return [TargetChoice(target) for target in TARGETS]


def convert_draft(
    text: str, choices: Sequence[TargetChoice], budget: float | None = None
) -> tuple[list[ConversionResult], list[TargetChoice]]:
    """The draft converted for each choice, in order (failures are results with ``error``),
    until ``budget`` seconds are spent; then the choices left unconverted. A typical rule
    converts for every target in ~0.2 s, a thousand-value IOC rule in ~15 s."""
    started = time.perf_counter()
    results: list[ConversionResult] = []
    for position, choice in enumerate(choices):
        if budget is not None and results and time.perf_counter() - started > budget:
            return results, list(choices[position:])
        results.append(_converter(choice).convert(text, "workbench.yml"))
    return results, []


# -------------------------------------------------------------------------------- the report


@dataclass(slots=True)
class WorkbenchReport:
    """The engine's analysis plus lint, tests, coverage and conversions, for page and API."""

    analysis: DraftAnalysis
    findings: list[Finding] = field(default_factory=list)
    tests: SandboxRun | None = None
    conversions: list[ConversionResult] = field(default_factory=list)
    conversions_skipped: list[TargetChoice] = field(default_factory=list)
    """Targets left unconverted when the conversion time budget ran out."""
    coverage: attack.CoverageTable | None = None
    events: list[taxonomy.EventSource] = field(default_factory=list)
    indicator_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)
    catalog_rule: tuple[str, str] | None = None
    """(id, title) of the catalog rule with the draft's id: the draft edits that rule."""
    backtest_unavailable: bool = False
    """A backtest was asked for but the catalog's corpus has no ``regression_data``."""
    elapsed_ms: float = 0.0
    catalog_refs: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, id, title) of the catalog rules and correlations the draft's documents name."""
    collection_conversions: list[ConvertedCollection] = field(default_factory=list)
    """The whole draft (with the catalog rules it names) for the backends that convert
    correlations and meta filters (``sigma convert`` of the same files)."""
    collection_skipped: list[str] = field(default_factory=list)
    """Targets the whole-draft conversion left out when the time budget ran out."""

    @property
    def ok(self) -> bool:
        return self.analysis.ok

    def to_dict(self) -> dict[str, Any]:
        analysis, rule = self.analysis, self.analysis.rule
        meta = analysis.meta is not None
        return {
            "parse": {
                "ok": analysis.ok,
                "errors": [e.to_dict() for e in analysis.errors],
                "id": rule.id if rule else None,
                "title": rule.title if rule else None,
                "logsource": rule.logsource.label if rule else None,
                "catalog_rule": _catalog_rule(self.catalog_rule),
            },
            "findings": [f.to_dict() for f in self.findings],
            "stages": [_stage(s) for s in rule.stages] if rule else [],
            "exclusions": [p.to_dict() for p in analysis.exclusions],
            "indicators": [
                {**p.to_dict(), "rarity": draft_rarity(p.corpus)} for p in analysis.indicators
            ],
            "attack": _coverage(self.coverage),
            "events": [_event_source(s) for s in self.events],
            "duplicate": _similar(analysis.duplicate) if analysis.duplicate else None,
            "similar": [_similar(s) for s in analysis.similar],
            "field_check": _field_check(analysis),
            "tests": self.tests.to_dict() if self.tests is not None else None,
            "backtest": analysis.backtest.to_dict() if analysis.backtest else None,
            "backtest_unavailable": self.backtest_unavailable,
            "conversions": [_conversion(c) for c in self.conversions],
            "conversions_skipped": [
                {"target": c.target, "pipeline": c.pipeline} for c in self.conversions_skipped
            ],
            "documents": [_document(d) for d in analysis.documents],
            "correlation_rules": [
                _correlation(c, analysis) for c in (analysis.meta.correlations if meta else [])
            ],
            "filters": [_filter(f, analysis) for f in (analysis.meta.filters if meta else [])],
            "references": [
                {"kind": kind, "id": ref_id, "title": title}
                for kind, ref_id, title in self.catalog_refs
            ],
            "correlations": self.tests.correlations if self.tests is not None else [],
            "filter_backtest": analysis.filter_backtest.to_dict()
            if analysis.filter_backtest
            else None,
            "collection_conversions": [
                {"target": c.target, "label": c.label, "queries": c.queries, "error": c.error}
                for c in self.collection_conversions
            ],
            "collection_skipped": self.collection_skipped,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


def draft_rarity(corpus: int | None) -> str:
    """The rule page's rarity, counting the draft among the rules that use an indicator:
    ``unique`` when no catalog rule does."""
    return rarity((corpus or 0) + 1)


def _document(doc: Any) -> dict[str, Any]:
    return {"kind": doc.kind, "line": doc.line, "title": doc.title}


def _correlation(corr: CorrelationRule, analysis: Any) -> dict[str, Any]:
    own = {r.id for r in analysis.rules} | {c.id for c in analysis.meta.correlations}
    return {
        "id": corr.id,
        "title": corr.title,
        "type": corr.type,
        "timespan": corr.timespan,
        "group_by": list(corr.group_by),
        "condition": corr.condition_text,
        "rules": [{"id": r, "in_draft": r in own} for r in corr.rules],
        "line": analysis.meta.lines.get(corr.id),
    }


def _filter(flt: Any, analysis: Any) -> dict[str, Any]:
    own = {r.id for r in analysis.rules}
    return {
        "id": flt.id,
        "title": flt.title,
        "logsource": "/".join(p for p in flt.logsource if p),
        "condition": flt.condition,
        "any_rule": flt.any_rule,
        "rules": [{"id": r, "in_draft": r in own} for r in flt.rules],
        "line": analysis.meta.lines.get(flt.id),
    }


def _catalog_rule(found: tuple[str, str] | None) -> dict[str, str] | None:
    return {"id": found[0], "title": found[1]} if found else None


def _stage(stage: Any) -> dict[str, Any]:
    return {
        "group": stage.group,
        "index": stage.index,
        "text": stage.text,
        "identifiers": list(stage.identifiers),
        "negated": stage.negated,
    }


def _similar(similar: Any) -> dict[str, Any]:
    return {
        "id": similar.id,
        "title": similar.title,
        "logsource": similar.logsource,
        "score": round(similar.score, 4),
        "shared": [{"field": f, "kind": k, "value": v} for f, k, v in similar.shared],
        "contains_all": similar.contains_all,
        "contained_in": similar.contained_in,
        "same_logsource": similar.same_logsource,
        "duplicate": similar.duplicate,
    }


def _field_check(analysis: DraftAnalysis) -> dict[str, Any] | None:
    check = analysis.field_check
    if check is None:
        return None
    return {
        "logsource": check.logsource,
        "covered": check.covered,
        "fields": list(check.checked),
        "unknown": [
            {
                "field": u.field,
                "identifiers": list(u.identifiers),
                "suggestions": list(u.suggestions),
                "case_only": u.case_only,
                "line": _field_line(analysis, u.field, u.identifiers),
            }
            for u in check.unknown
        ],
        "taxonomy_version": check.taxonomy_version,
    }


def _field_line(analysis: DraftAnalysis, name: str, identifiers: Sequence[str]) -> int | None:
    for identifier in identifiers:
        position = analysis.source.field_key(identifier, name)
        if position:
            return position[0]
    return None


def _coverage(table: attack.CoverageTable | None) -> list[dict[str, Any]]:
    if table is None:
        return []
    return [
        {
            "tactic": row.tactic.shortname,
            "tactic_name": row.tactic.name,
            "techniques": [{"id": t.id, "name": t.name} for t in row.techniques],
        }
        for row in table.rows
    ]


def _event_source(source: taxonomy.EventSource) -> dict[str, Any]:
    return {
        "provider": source.provider_display,
        "channels": list(source.channels),
        "event_id": source.event_id,
        "title": source.display_title,
        "slug": event_slug(source),
    }


def _conversion(result: ConversionResult) -> dict[str, Any]:
    return {
        "target": result.target,
        "pipeline": result.pipeline,
        "ok": result.ok,
        "query": result.query,
        "error": result.error,
        "sigma_cli_command": result.sigma_cli_command,
    }


def _indicator_ids(analysis: DraftAnalysis, pks: dict[Identity, int]) -> dict[Identity, int]:
    """Catalog Indicator pks of the draft's indicators (links to their pages), from the
    process-wide index: no query per request."""
    return {p.identity: pks[p.identity] for p in analysis.indicators if p.identity in pks}


def run_workbench(
    text: str,
    *,
    events: Sequence[Event] = (),
    backtest: bool = False,
    targets: Sequence[TargetChoice] = (),
    lint: bool = True,
    limits: ResponseLimits = API_LIMITS,
    convert_budget: float | None = TIME_BUDGET_SECONDS,
    timestamp_field: str | None = None,
) -> WorkbenchReport:
    """Analyse one draft: everything the page and the API show, in one pass."""
    started = time.perf_counter()
    fingerprint = current_fingerprint()  # once: every process-wide state is of this catalog
    index, pks = _index_state(fingerprint)
    samples = regression_set(fingerprint) if backtest else None
    analysis = analyse_draft(text, index, regression=samples, resolve=_resolver(index, fingerprint))
    report = WorkbenchReport(analysis, backtest_unavailable=backtest and samples is None)
    rule = analysis.rule
    if rule is not None and analysis.ok:
        if lint:
            # A later document's line numbers are the draft's: its text is padded to them.
            report.findings = validate_rule(rule.sigma, analysis.text, "")
        report.coverage = attack.coverage_table(t.value for t in rule.attack_tags)
        selected = event_filter((p.field, p.kind, p.value) for p in analysis.indicators)
        ls = rule.logsource
        report.events = EventShape(ls.product, ls.category, ls.service, selected).sources()
        report.indicator_ids = _indicator_ids(analysis, pks)
        same_id = index.rules.get(rule.id)  # the index holds every catalog rule
        report.catalog_rule = (same_id.id, same_id.title) if same_id else None
    if analysis.ok:
        _meta_and_tests(report, events, samples, limits, timestamp_field)
        if targets and rule is not None:
            chosen, later = list(targets), []
            if convert_budget is not None and len(analysis.indicators) > LARGE_DRAFT_INDICATORS:
                # One IOC-list rule takes seconds per backend (Loki: 4 s for 1,000 values).
                chosen, later = chosen[:1], chosen[1:]
            report.conversions, skipped = convert_draft(analysis.text, chosen, convert_budget)
            report.conversions_skipped = skipped + later
        if targets and analysis.meta is not None:
            spent = time.perf_counter() - started
            left = None if convert_budget is None else max(0.0, convert_budget - spent)
            report.collection_conversions, report.collection_skipped = convert_documents(
                _collection(report), budget=left
            )
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    return report


_NAME_LINE = re.compile(r"(?m)^name:[ \t]*['\"]?([^'\"\r\n#]+?)['\"]?[ \t]*(?:#[^\r\n]*)?\r?$")


def _build_names() -> dict[str, str]:
    """Reference -> id for what a draft may name besides a rule id: rule ``name``s (a
    top-level ``name:`` line; not a column), correlation ids and names. Once per catalog
    state, so that resolving a draft's references costs no query each."""
    names: dict[str, str] = {}
    rows = Rule.objects.filter(raw_yaml__contains="name:").values_list("rule_id", "raw_yaml")
    for rule_id, raw in rows.iterator(chunk_size=500):
        found = _NAME_LINE.search(raw)
        if found:
            names.setdefault(found.group(1).strip(), rule_id)
    for corr_id, name in Correlation.objects.values_list("correlation_id", "name"):
        names[corr_id] = corr_id
        if name:
            names.setdefault(name, corr_id)
    return names


def _resolver(index: SimilarityIndex, fingerprint: str) -> Callable[[str], str | None]:
    """A draft's reference (id or name) -> a catalog rule or correlation id, or None: rule ids
    from the process-wide index, the rest from the names built once per catalog state."""
    names: dict[str, str] = _cached("names", fingerprint, _build_names)

    def resolve(reference: str) -> str | None:
        return reference if reference in index.rules else names.get(reference)

    return resolve


@dataclass(slots=True)
class _EvaluationSet:
    """What a draft's tests run: its rules plus the catalog rules and correlations it names."""

    rules: list[ParsedRule]
    correlations: list[CorrelationRule]
    refs: list[tuple[str, str, str]]


def _evaluation_set(analysis: DraftAnalysis) -> _EvaluationSet:
    meta = analysis.meta
    assert meta is not None
    stored = {c.id: c for c in catalog_meta().correlations}
    wanted_rules: dict[str, None] = {}
    correlations: list[CorrelationRule] = []
    refs: list[tuple[str, str, str]] = []
    pending = list(meta.external)
    # A catalog correlation chained on one the draft rewrites (same id) counts the draft's.
    seen: set[str] = {c.id for c in meta.correlations}
    while pending:  # catalog correlations count their own rules (and chains) too
        ref = pending.pop(0)
        if ref in seen:
            continue
        seen.add(ref)
        corr = stored.get(ref)
        if corr is None:
            wanted_rules[ref] = None
            continue
        correlations.append(corr)
        refs.append(("correlation", corr.id, corr.title))
        pending.extend(corr.rules)
    own = {r.id for r in analysis.rules}
    rules = []
    rows = Rule.objects.filter(rule_id__in=[r for r in wanted_rules if r not in own])
    for rule_id, title, raw in rows.values_list("rule_id", "title", "raw_yaml"):
        try:
            rules.append(parse_rule(raw, rule_id))
        except RuleError:
            continue  # it no longer parses: not evaluable, as in the sandbox
        refs.append(("rule", rule_id, title))
    return _EvaluationSet([*analysis.rules, *rules], correlations, refs)


def _meta_and_tests(
    report: WorkbenchReport,
    events: Sequence[Event],
    samples: RegressionSet | None,
    limits: ResponseLimits,
    timestamp_field: str | None,
) -> None:
    """Tests on pasted events: the draft's rules alone, whatever the event's logsource (a test
    asks about its logic); with correlations and filters in the draft, the catalog rules they
    name join the evaluation, filters suppress and correlations run over the matches."""
    analysis = report.analysis
    evaluator = analysis.evaluator
    meta: CatalogMeta | None = None
    if analysis.meta is not None:
        chosen = _evaluation_set(analysis)
        report.catalog_refs = chosen.refs
        if len(chosen.rules) != len(analysis.rules):
            evaluator = Evaluator(chosen.rules, prefilter=False)
        # As deployed into the catalog: the catalog's filters apply too, except those the
        # draft rewrites (same id); a filter only touches the rules it names.
        rewritten = {f.id for f in analysis.meta.filters}
        stored = [f for f in catalog_meta().filters.filters if f.id not in rewritten]
        meta = CatalogMeta(
            correlations=[*analysis.meta.correlations, *chosen.correlations],
            filters=FilterIndex([*analysis.meta.filters, *stored]),
        )
        if samples is not None and analysis.meta.filters and evaluator is not None:
            compiled: dict[str, tuple[ParsedRule, CompiledRule]] = {}
            for parsed in chosen.rules:
                found = evaluator.rule(parsed.id)
                if found is not None:
                    compiled[parsed.id] = (parsed, found)
            analysis.filter_backtest = filter_backtest(analysis.meta.filters, compiled, samples)
    if events and evaluator is not None:
        report.tests = run_sandbox(
            events,
            all_rules=True,
            evaluator=evaluator,
            limits=limits,
            meta=meta,
            timestamp_field=timestamp_field,
        )
        if meta is not None:
            _mark_draft_items(report)


def _mark_draft_items(report: WorkbenchReport) -> None:
    """Correlation matches and filter suppressions say whether the draft wrote them: the
    pages link only what the catalog has."""
    tests, meta = report.tests, report.analysis.meta
    assert tests is not None and meta is not None
    own = {c.id for c in meta.correlations} | {f.id for f in meta.filters}
    drafted = {r.id for r in report.analysis.rules}
    for match in tests.correlations:
        match["in_draft"] = match.get("id") in own
    for entries in tests.filtered.values():
        for entry in entries:
            entry["in_draft"] = entry.get("rule_id") in drafted
            for flt in entry.get("filters", []):
                flt["in_draft"] = flt.get("id") in own


def _collection(report: WorkbenchReport) -> list[str]:
    """The draft's documents and the catalog rules it names, as one collection for pySigma."""
    texts = [doc.text.strip() for doc in report.analysis.documents]
    named = [ref_id for kind, ref_id, _ in report.catalog_refs if kind == "rule"]
    texts.extend(Rule.objects.filter(rule_id__in=named).values_list("raw_yaml", flat=True))
    stored = [ref_id for kind, ref_id, _ in report.catalog_refs if kind == "correlation"]
    if stored:
        texts.extend(
            Correlation.objects.filter(correlation_id__in=stored).values_list("raw_yaml", flat=True)
        )
    return texts


# ------------------------------------------------------------------------------------ tuning

MAX_EXCLUDE_CHARS = 4096
MAX_EVENT_JSON_CHARS = 64 * 1024


def exclusion_value(event: Event, name: str) -> str | None:
    """The event's whole value of field ``name`` as text for an "Exclude this…" filter, or
    None when there is no single short scalar to exclude (lists, nested objects, huge text)."""
    value = event.lookup(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_EXCLUDE_CHARS else None


def event_json(event: Event) -> str | None:
    """The event as JSON for the tune form (the workbench re-tests it), None when too large."""
    text = json.dumps(event.fields, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_EVENT_JSON_CHARS else None
