"""Workbench drafts of several YAML documents: rules, correlations and meta filters together.

A draft is usually one rule. It may also be what a Sigma file can be: rules, correlation
documents and filter documents separated by ``---``. :func:`split_draft` cuts the text into
documents and keeps, for each, its text *padded with the blank lines before it*, so that every
line number a parser, validator or source map gives for one document is its line in the whole
draft (the editor highlights that line).

:func:`read_meta` validates the correlations and filters, and resolves the rules they name:
first among the draft's own rules and correlations (by id, then by ``name``), then with the
catalog's resolver. What resolves outside the draft is listed in ``external``: the catalog side
supplies those rules to the evaluation.

:func:`filter_backtest` replays, for each rule a draft filter applies to, that rule's own
regression samples with and without the filter: a good filter suppresses the false positive it
was written for and none of the attacks the rule's samples record.
:func:`filter_from_event` writes a new filter document that suppresses one matched value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from rules.backtest import RegressionSet, Sample, normalise_path, regression_path
from rules.compile import CompiledRule
from rules.correlate.model import CorrelationError, CorrelationRule
from rules.correlate.parse import is_correlation, parse_correlation, resolve_references
from rules.errors import RuleError
from rules.filters import MetaFilter, is_filter, parse_filter, resolve_filter
from rules.model import ParsedRule
from rules.parse import load_document

__all__ = [
    "MAX_DRAFT_DOCUMENTS",
    "DraftDocument",
    "DraftMeta",
    "FilterBacktest",
    "FilterSampleCheck",
    "MetaProblem",
    "filter_backtest",
    "filter_from_event",
    "read_meta",
    "split_draft",
]

MAX_DRAFT_DOCUMENTS = 20
"""Documents one draft may hold: a correlation chain with its rules and filters fits easily."""
MAX_EXTERNAL = 100
"""Catalog rules and correlations one draft may name: each is parsed and compiled for its
tests, and converted with it (a correlation names at most 100 rules itself)."""
# CRLF too: a browser's textarea and Windows editors end lines with "\r\n".
_SEPARATOR = re.compile(r"(?m)^---[ \t]*(?:#[^\r\n]*)?\r?$")
_META_KEY = re.compile(r"(?m)^(?:correlation|filter)[ \t]*:")


@dataclass(frozen=True, slots=True)
class DraftDocument:
    """One YAML document of a draft."""

    kind: str
    """``rule``, ``correlation`` or ``filter`` (``rule`` also for what failed to load: the
    rule parser then says why)."""
    text: str
    """The document's text after as many newlines as lines precede it in the draft."""
    line: int
    """The draft line (1-based) the document starts on."""
    document: Mapping[str, Any] | None = None
    """The loaded YAML, for correlations and filters."""

    @property
    def title(self) -> str:
        value = self.document.get("title") if self.document else None
        return str(value) if value else ""


@dataclass(frozen=True, slots=True)
class MetaProblem:
    """Why a correlation or filter of the draft cannot be used (the draft line it starts on)."""

    code: str
    message: str
    line: int
    hint: str


def is_multi_document(text: str) -> bool:
    """Whether the draft needs :func:`split_draft` (a separator line, or a document that is a
    correlation or a filter): one plain rule keeps the single-rule path it always had."""
    return bool(_SEPARATOR.search(text) or _META_KEY.search(text))


def _blank(chunk: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in chunk.splitlines())


def split_draft(text: str) -> list[DraftDocument]:
    """The draft's documents in order. A document that does not load as YAML is kept as a
    ``rule`` so that the rule parser reports its problem with its position.

    Raises :class:`RuleError` when the draft holds more than :data:`MAX_DRAFT_DOCUMENTS`."""
    documents: list[DraftDocument] = []
    start = 0
    for separator in [*_SEPARATOR.finditer(text), None]:
        end = separator.start() if separator is not None else len(text)
        chunk = text[start:end]
        if not _blank(chunk):
            if len(documents) >= MAX_DRAFT_DOCUMENTS:
                raise RuleError(
                    f"the draft holds more than {MAX_DRAFT_DOCUMENTS} YAML documents; "
                    "test a few at a time"
                )
            # As many newlines as precede the chunk: its lines keep their draft numbers.
            documents.append(_document("\n" * text.count("\n", 0, start) + chunk))
        if separator is not None:
            start = separator.end()
    return documents


def _document(padded: str) -> DraftDocument:
    line = padded[: len(padded) - len(padded.lstrip())].count("\n") + 1
    try:
        loaded = load_document(padded)
    except RuleError:
        return DraftDocument("rule", padded, line)
    if is_correlation(loaded):
        return DraftDocument("correlation", padded, line, loaded)
    if is_filter(loaded):
        return DraftDocument("filter", padded, line, loaded)
    return DraftDocument("rule", padded, line, loaded)


# --------------------------------------------------------------------- correlations, filters


@dataclass(slots=True)
class DraftMeta:
    """The draft's correlations and filters, resolved, and the problems of those that are not."""

    correlations: list[CorrelationRule] = field(default_factory=list)
    filters: list[MetaFilter] = field(default_factory=list)
    problems: list[MetaProblem] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    """Ids the draft references that are not in it (catalog rules or correlations)."""
    lines: dict[str, int] = field(default_factory=dict)
    """Correlation or filter id -> the draft line its document starts on."""


_HINTS = {
    "unresolved-reference": (
        "name a rule of this draft or of the catalog by its id or its 'name' field"
    ),
    "bad-correlation": (
        "a correlation needs title, id, and correlation: {type, rules, timespan, condition}"
        " (group-by optional); see the Sigma specification v2.1"
    ),
}


def _problem(error: RuleError, line: int, kind: str) -> MetaProblem:
    hint = _HINTS.get(error.code, "check the document against the Sigma specification")
    if kind == "filter" and error.code == "bad-correlation":
        hint = "a filter needs title, id, logsource and filter: {rules, <selections>, condition}"
    return MetaProblem(error.code, str(error), line, hint)


def _local_names(rules: Sequence[ParsedRule], documents: Sequence[DraftDocument]) -> dict[str, str]:
    """Reference -> id for the draft's rules and correlations: ids first, then names."""
    table: dict[str, str] = {}
    names: dict[str, str] = {}
    for rule in rules:
        table[rule.id] = rule.id
        name = rule.document.get("name")
        if isinstance(name, str) and name:
            names.setdefault(name, rule.id)
    for doc in documents:
        if doc.kind != "correlation" or doc.document is None:
            continue
        doc_id, name = doc.document.get("id"), doc.document.get("name")
        if isinstance(doc_id, str) and doc_id:
            table[doc_id] = doc_id
            if isinstance(name, str) and name:
                names.setdefault(name, doc_id)
    for name, found in names.items():
        table.setdefault(name, found)
    return table


def read_meta(
    documents: Sequence[DraftDocument],
    rules: Sequence[ParsedRule],
    resolve: Callable[[str], str | None] | None = None,
) -> DraftMeta:
    """Validate the draft's correlations and filters and resolve what they name (the draft's
    own rules and correlations first, then ``resolve``, the catalog's)."""
    local = _local_names(rules, documents)
    meta = DraftMeta()
    external: dict[str, None] = {}

    def lookup(reference: str) -> str | None:
        found = local.get(reference)
        if found is not None:
            return found
        found = resolve(reference) if resolve is not None else None
        if found is not None:
            external[found] = None
        return found

    for doc in documents:
        if doc.kind == "rule" or doc.document is None:
            continue
        try:
            if doc.kind == "correlation":
                parsed = parse_correlation(doc.document, path=f"workbench.yml:{doc.line}")
                correlation = resolve_references(parsed, lookup, document=doc.document)
                meta.correlations.append(correlation)
                meta.lines[correlation.id] = doc.line
            else:
                flt = resolve_filter(parse_filter(doc.document), lookup)
                meta.filters.append(flt)
                meta.lines[flt.id] = doc.line
        except RuleError as error:
            meta.problems.append(_problem(error, doc.line, doc.kind))
    own = {c.id for c in meta.correlations}
    meta.external = [i for i in external if i not in own]
    if len(meta.external) > MAX_EXTERNAL:
        first = next((d.line for d in documents if d.kind != "rule"), 1)
        meta.problems.append(
            MetaProblem(
                "too-many-references",
                f"the draft names {len(meta.external)} catalog rules and correlations; at "
                f"most {MAX_EXTERNAL} are tested with it",
                first,
                "split the draft, or test a filter on fewer rules at a time",
            )
        )
        meta.correlations, meta.filters, meta.external = [], [], []
    _check_chains(meta)
    return meta


def _check_chains(meta: DraftMeta) -> None:
    """A correlation chained on itself (directly or through others) can never be fed."""
    by_id = {c.id: c for c in meta.correlations}

    def cycle(start: str) -> bool:
        seen: set[str] = set()
        stack = [start]
        while stack:
            current = by_id.get(stack.pop())
            if current is None:
                continue
            for ref in current.rules:
                if ref == start:
                    return True
                if ref not in seen:
                    seen.add(ref)
                    stack.append(ref)
        return False

    kept = []
    for correlation in meta.correlations:
        if cycle(correlation.id):
            meta.problems.append(
                MetaProblem(
                    CorrelationError.code,
                    f"correlation {correlation.title or correlation.id!r} is chained on itself",
                    meta.lines.get(correlation.id, 1),
                    "a correlation may count another correlation's matches, not its own",
                )
            )
        else:
            kept.append(correlation)
    meta.correlations = kept


# ----------------------------------------------------------------------- filter backtest


@dataclass(frozen=True, slots=True)
class FilterSampleCheck:
    """One regression sample of a rule a draft filter applies to."""

    filter_id: str
    rule_id: str
    sample: Sample
    matched: int
    """Events of the sample the rule matches without the filter."""
    kept: int
    """Of those, the events the filter lets through (the rest it suppresses)."""

    @property
    def suppressed(self) -> int:
        return self.matched - self.kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "filter": self.filter_id,
            "rule_id": self.rule_id,
            "path": self.sample.path,
            "events": len(self.sample.events),
            "matched": self.matched,
            "kept": self.kept,
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True, slots=True)
class FilterBacktest:
    """A draft filter over its rules' own samples."""

    checks: tuple[FilterSampleCheck, ...]
    rules_without_samples: tuple[str, ...]

    @property
    def suppressed(self) -> int:
        """Sample events the rules match that the filters suppress (0 for a safe filter)."""
        return sum(c.matched - c.kept for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": [c.to_dict() for c in self.checks],
            "suppressed": self.suppressed,
            "rules_without_samples": list(self.rules_without_samples),
        }


def _own_samples(rule: ParsedRule, regression: RegressionSet) -> list[Sample]:
    path = regression_path(rule)
    return [
        s
        for s in regression.samples
        if (path and s.path == normalise_path(path)) or rule.id in s.rule_ids
    ]


def filter_backtest(
    filters: Sequence[MetaFilter],
    rules: Mapping[str, tuple[ParsedRule, CompiledRule]],
    regression: RegressionSet,
) -> FilterBacktest:
    """Each filter over the own samples of each rule it applies to (``rules``: the rules of
    the draft and the catalog rules it names, parsed and compiled)."""
    checks: list[FilterSampleCheck] = []
    without: dict[str, None] = {}
    for flt in filters:
        named = list(rules) if flt.any_rule else list(flt.rules)
        for rule_id in named:
            pair = rules.get(rule_id)
            if pair is None:
                continue
            parsed, compiled = pair
            if not flt.covers(compiled.logsource):
                continue
            samples = _own_samples(parsed, regression)
            if not samples:
                without[rule_id] = None
            for sample in samples:
                hits = [event for event in sample.events if compiled.match(event)]
                kept = sum(1 for event in hits if not flt.suppresses(event))
                checks.append(FilterSampleCheck(flt.id, rule_id, sample, len(hits), kept))
    return FilterBacktest(tuple(checks), tuple(without))


# ----------------------------------------------------------------------- a filter from an event


def _slug(text: str, limit: int = 60) -> str:
    """``text`` as a lower-case identifier, cut at a word boundary within ``limit``."""
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    out = ""
    for word in words:
        longer = f"{out}_{word}" if out else word
        if len(longer) > limit:
            break
        out = longer
    return out or (words[0][:limit] if words else "rule")


class _SigmaDumper(yaml.SafeDumper):
    """SigmaHQ's layout: four-space indents, list items indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def filter_from_event(rule: ParsedRule, field_name: str, value: str) -> str:
    """A new meta filter document suppressing ``rule``'s matches where ``field_name`` equals
    ``value`` (written as a literal: Sigma wildcards in it are escaped), for the rule's
    logsource. The rule itself is left as it is: that is what a meta filter is for."""
    from rules.workbench import sigma_literal  # the workbench's tune flow writes literals too

    key = (field_name or "").split("|", 1)[0]
    selection: Any = {key: sigma_literal(value)} if key else [sigma_literal(value)]
    shown = value if len(value) <= 60 else value[:57] + "..."
    logsource = {
        part: getattr(rule.logsource, part)
        for part in ("product", "category", "service")
        if getattr(rule.logsource, part)
    }
    document = {
        "title": f"Suppress {rule.title} where {key or 'the keyword'} is {shown}",
        "id": str(uuid.uuid4()),
        "name": f"filter_{_slug(rule.title)}",
        "description": (
            f"Suppresses matches of '{rule.title}' on events whose {key or 'text'} is this "
            "value. Written from a sandbox match in the workbench: say why the value is benign."
        ),
        "logsource": logsource,
        "filter": {
            "rules": [rule.id],
            "selection": selection,
            "condition": "not selection",
        },
    }
    text = yaml.dump(
        document, Dumper=_SigmaDumper, sort_keys=False, allow_unicode=True, width=1000, indent=4
    )
    return str(text)
