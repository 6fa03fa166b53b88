"""One draft rule analysed in one pass: parse problems with line and column, indicators with
their corpus counts, the most similar catalog rules, the field check and the backtest.

The catalog side (:mod:`catalog.workbench`) adds what needs Django or other helpers' code:
lint findings, tests on pasted events (the sandbox's runner), ATT&CK and event coverage,
conversions. Everything here is dataclasses in, dataclasses out.
"""

from __future__ import annotations

import difflib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from sigma.modifiers import modifier_mapping

from rules.backtest import BacktestResult, RegressionSet, backtest
from rules.drafts import (
    DraftDocument,
    DraftMeta,
    FilterBacktest,
    is_multi_document,
    read_meta,
    split_draft,
)
from rules.errors import (
    ConditionError,
    DetectionError,
    ModifierError,
    NotASigmaRuleError,
    RuleError,
    YamlSyntaxError,
)
from rules.evaluate import Evaluator
from rules.events import Event
from rules.field_check import FieldCheck, FieldTaxonomy, check_fields
from rules.filters import MetaFilter
from rules.model import ParsedRule, Predicate
from rules.parse import MAX_NODES, parse_rule
from rules.similarity import Identity, Similar, SimilarityIndex, identities_of

SIMILAR_LIMIT = 10
Path = tuple[str | int, ...]
Position = tuple[int, int]
"""1-based (line, column)."""


# -------------------------------------------------------------------------- source positions


class SourceMap:
    """Where each key and value of a YAML document starts (1-based line and column).

    Built with ``yaml.compose`` (the C loader keeps marks), so any key path of the document,
    e.g. ``("detection", "selection", "Image|endswith")``, maps back to the text.
    """

    def __init__(self, text: str) -> None:
        self.keys: dict[Path, Position] = {}
        self.values: dict[Path, Position] = {}
        self._detection: list[tuple[Path, Position]] | None = None
        try:
            root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (yaml.YAMLError, RecursionError):
            root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path) -> None:
        # An alias makes one node appear under many keys (an alias bomb, exponentially
        # many): each node is walked once, and at most MAX_NODES of them.
        stack: list[tuple[yaml.Node, Path]] = [(node, path)]
        seen: set[int] = set()
        while stack and len(seen) < MAX_NODES:
            current, where = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            self.values.setdefault(where, _mark(current))
            if isinstance(current, yaml.MappingNode):
                for key, value in current.value:
                    name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                    self.keys.setdefault((*where, name), _mark(key))
                    stack.append((value, (*where, name)))
            elif isinstance(current, yaml.SequenceNode):
                for index, item in enumerate(current.value):
                    stack.append((item, (*where, index)))

    def key(self, *path: str | int) -> Position | None:
        return self.keys.get(path)

    def value(self, *path: str | int) -> Position | None:
        return self.values.get(path)

    def detection_keys(self) -> Iterator[tuple[Path, Position]]:
        """Every key under ``detection`` (identifiers and their field keys), in text order."""
        if self._detection is None:
            found = [(p, m) for p, m in self.keys.items() if len(p) >= 2 and p[0] == "detection"]
            self._detection = sorted(found, key=lambda item: item[1])
        yield from self._detection

    def field_key(self, identifier: str, field_name: str) -> Position | None:
        """The first ``field|modifiers`` key of ``identifier`` naming ``field_name``."""
        for path, mark in self.detection_keys():
            if len(path) >= 3 and path[1] == identifier:
                key = path[-1]
                if isinstance(key, str) and key.split("|", 1)[0] == field_name:
                    return mark
        return None


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


# ------------------------------------------------------------------------------ parse problems


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """Why a draft is not a rule, where (1-based line and column) and what to do about it."""

    code: str
    message: str
    line: int
    column: int
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


_QUOTED = re.compile(r"'([^']*)'")
_CONDITION_AT = re.compile(r"at (?:position|char) (\d+)")
_REQUIRED = ("title", "id", "logsource", "detection")


def _yaml_hint(problem: str) -> str:
    if problem == "tab" or "'\\t'" in problem:
        return "YAML does not allow tabs for indentation: indent with spaces"
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted, or the line is indented too far"
    if "could not find expected ':'" in problem or "expected <block end>" in problem:
        return "check the indentation: keys of one mapping must start in the same column"
    if "cannot start any token" in problem or "undefined alias" in problem:
        return "quote a value that starts with '*', '&', '!', '%', '@' or '`'"
    if "unclosed" in problem or "end of stream" in problem or "found unexpected end" in problem:
        return "a quote or bracket is not closed"
    return "check the indentation and quoting around this position"


def _yaml_problem(error: YamlSyntaxError, text: str) -> ParseProblem:
    cause = error.__cause__
    mark = getattr(cause, "problem_mark", None) or getattr(cause, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = str(getattr(cause, "problem", "") or error)
    lines = text.splitlines()
    written = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in written[: len(written) - len(written.lstrip())]:
        problem = "tab"
    message = str(error).replace(' in "<unicode string>"', "")
    return ParseProblem(error.code, message, line, column, _yaml_hint(problem))


def _find_text(text: str, needle: str, *, after_line: int = 0) -> Position | None:
    """The first occurrence of ``needle`` at or after ``after_line`` (1-based)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number < after_line:
            continue
        column = line.find(needle)
        if column >= 0:
            return (number, column + 1)
    return None


def _detection_start(source: SourceMap) -> Position:
    return source.key("detection") or (1, 1)


def _modifier_problem(error: ModifierError, text: str, source: SourceMap) -> ParseProblem:
    message = str(error)
    quoted = _QUOTED.findall(message)
    if message.startswith("Unknown modifier") and quoted:
        name = quoted[0]
        where = _find_text(text, f"|{name}", after_line=_detection_start(source)[0])
        close = difflib.get_close_matches(name, sorted(modifier_mapping), n=3)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else "known modifiers: " + ", ".join(sorted(modifier_mapping))
        )
        line, column = where if where else _detection_start(source)
        return ParseProblem(error.code, message, line, column + 1 if where else column, hint)
    if message.startswith("Regular expression") and quoted:
        where = _find_text(text, quoted[0], after_line=_detection_start(source)[0])
        line, column = where or _detection_start(source)
        return ParseProblem(
            error.code, message, line, column,
            "escape regex metacharacters ( [ { . * + ? with a backslash, or use |contains",
        )  # fmt: skip
    line, column = _detection_start(source)
    return ParseProblem(
        error.code, message, line, column,
        "a detection value must be a string, number, boolean or null (or a list of them)",
    )  # fmt: skip


def _condition_problem(
    error: ConditionError, text: str, source: SourceMap, document: dict[str, Any] | None
) -> ParseProblem:
    message = str(error)
    start = source.value("detection", "condition") or source.value("detection", "condition", 0)
    if start is None:
        line, column = _detection_start(source)
        return ParseProblem(error.code, message, line, column, "add 'condition: selection'")
    line, column = start
    condition_line = text.splitlines()[line - 1] if line - 1 < len(text.splitlines()) else ""
    offset = 1 if condition_line[column - 1 : column] in ("'", '"') else 0
    names = _identifier_names(document)
    hint = "conditions combine identifiers with and, or, not, '1 of x*', 'all of them'"
    match = re.search(r"references '([^']+)', which the detection does not define", message)
    at = _CONDITION_AT.search(message)
    if match:
        name = match.group(1)
        written = condition_line[column - 1 :]
        column_in = re.search(rf"(?<![\w*]){re.escape(name)}(?![\w*])", written)
        if column_in:
            column += column_in.start()
        close = difflib.get_close_matches(name, names, n=3)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else f"define '{name}:' under detection, or use one of: {', '.join(names) or 'none'}"
        )
    elif at:
        column += offset + int(at.group(1))
    elif "matches no search identifier" in message:
        hint = f"no identifier matches the pattern; defined: {', '.join(names) or 'none'}"
    return ParseProblem(error.code, message, line, column, hint)


def _identifier_names(document: dict[str, Any] | None) -> list[str]:
    detection = (document or {}).get("detection")
    if not isinstance(detection, dict):
        return []
    return [str(name) for name in detection if name != "condition"]


def _shape_problem(error: RuleError, source: SourceMap) -> ParseProblem:
    message = str(error)
    if "missing" in message:
        missing = [key for key in _REQUIRED if source.key(key) is None]
        example = {
            "title": "title: A short title",
            "id": f"id: {uuid.uuid4()}",
            "logsource": "logsource:\n    product: windows",
            "detection": "detection:\n    selection: ...\n    condition: selection",
        }
        hint = "add " + "; ".join(example[key] for key in missing) if missing else message
        return ParseProblem(error.code, message, 1, 1, hint)
    for key in ("logsource", "detection", "id", "tags", "references", "falsepositives"):
        if f"'{key}'" in message or f"rule {key}" in message:
            line, column = source.key(key) or (1, 1)
            return ParseProblem(error.code, message, line, column, _type_hint(key))
    quoted = _QUOTED.findall(message)
    if quoted and isinstance(error, DetectionError):
        position = source.key("detection", quoted[0])
        if position:
            return ParseProblem(error.code, message, *position, _type_hint("detection"))
    line, column = source.key("detection") or (1, 1)
    return ParseProblem(error.code, message, line, column, _type_hint("detection"))


def _type_hint(key: str) -> str:
    return {
        "logsource": "logsource is a mapping: product, category and/or service",
        "detection": "detection is a mapping of search identifiers plus 'condition'",
        "id": "the id is a UUID string, e.g. " + str(uuid.uuid4()),
        "tags": "tags is a list of strings such as attack.t1059.001",
        "references": "references is a list of URLs",
        "falsepositives": "falsepositives is a list of strings",
    }.get(key, "check the value's type")


def parse_problem(error: RuleError, text: str, source: SourceMap | None = None) -> ParseProblem:
    """A :class:`ParseProblem` for a parse error of ``text``: always a line and column."""
    if isinstance(error, YamlSyntaxError) and error.__cause__ is not None:
        return _yaml_problem(error, text)
    source = source or SourceMap(text)
    document: dict[str, Any] | None = None
    try:
        loaded = yaml.safe_load(text)
        document = loaded if isinstance(loaded, dict) else None
    except (yaml.YAMLError, RecursionError):
        document = None
    if isinstance(error, ModifierError):
        return _modifier_problem(error, text, source)
    if isinstance(error, ConditionError):
        return _condition_problem(error, text, source, document)
    if isinstance(error, NotASigmaRuleError | DetectionError):
        return _shape_problem(error, source)
    return ParseProblem(error.code, str(error), 1, 1, "the text must be one Sigma rule")


# ----------------------------------------------------------------------------------- analysis


@dataclass(frozen=True, slots=True)
class DraftPredicate:
    """An indicator or exclusion of the draft; ``corpus`` counts catalog rules sharing it
    (indicators only: exclusions are ``None``)."""

    field: str
    kind: str
    value: str
    identifier: str
    identity: Identity
    corpus: int | None
    line: int | None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "field": self.field,
            "kind": self.kind,
            "value": self.value,
            "identifier": self.identifier,
            "line": self.line,
        }
        if self.corpus is not None:
            body["corpus"] = self.corpus
        return body


@dataclass(slots=True)
class DraftAnalysis:
    """Everything the engine says about one draft (``rule`` is None when it did not parse).

    A draft of several documents (:mod:`rules.drafts`) has its first rule as ``rule``: the
    sections (indicators, overlap, lint...) describe that one. ``rules`` holds every rule of
    the draft, ``meta`` its correlations and filters."""

    text: str
    rule: ParsedRule | None
    errors: list[ParseProblem]
    source: SourceMap
    indicators: list[DraftPredicate] = field(default_factory=list)
    exclusions: list[DraftPredicate] = field(default_factory=list)
    similar: list[Similar] = field(default_factory=list)
    field_check: FieldCheck | None = None
    backtest: BacktestResult | None = None
    evaluator: Evaluator | None = field(default=None, repr=False)
    """The draft's rules compiled alone, for tests on pasted events."""
    elapsed_ms: float = 0.0
    documents: list[DraftDocument] = field(default_factory=list)
    """The draft's YAML documents (one for a plain rule)."""
    rules: list[ParsedRule] = field(default_factory=list)
    meta: DraftMeta | None = None
    filter_backtest: FilterBacktest | None = None
    """Set by the catalog side: draft filters over their rules' own regression samples."""

    @property
    def ok(self) -> bool:
        if self.errors:
            return False
        has_meta = self.meta is not None and bool(self.meta.correlations or self.meta.filters)
        return self.rule is not None or has_meta

    @property
    def multi(self) -> bool:
        return len(self.documents) > 1 or self.meta is not None

    @property
    def duplicate(self) -> Similar | None:
        """The catalog rule this draft (nearly) duplicates, if any."""
        return next((s for s in self.similar if s.duplicate), None)


def _predicates(
    items: list[Any], source: SourceMap, index: SimilarityIndex | None
) -> list[DraftPredicate]:
    rows = []
    for item in items:
        assert isinstance(item, Predicate)
        position = source.field_key(item.identifier, item.field) if item.field else None
        if position is None:
            position = source.key("detection", item.identifier)
        rows.append(
            DraftPredicate(
                field=item.field,
                kind=item.kind,
                value=item.value,
                identifier=item.identifier,
                identity=item.identity,
                corpus=index.corpus_count(item.identity) if index is not None else None,
                line=position[0] if position else None,
            )
        )
    return rows


def parse_draft(text: str) -> tuple[ParsedRule | None, list[ParseProblem], SourceMap]:
    """Parse a draft; on failure, the problem with its position."""
    try:
        rule = parse_rule(text, "workbench.yml")
    except RuleError as error:
        source = SourceMap(text)
        return None, [parse_problem(error, text, source)], source
    return rule, [], SourceMap(text)


def analyse_draft(
    text: str,
    index: SimilarityIndex,
    *,
    regression: RegressionSet | None = None,
    taxonomy: FieldTaxonomy | None = None,
    similar_limit: int = SIMILAR_LIMIT,
    resolve: Callable[[str], str | None] | None = None,
) -> DraftAnalysis:
    """Parse, extract, compare with the catalog, check fields and (with ``regression``)
    backtest one draft. A draft that does not parse returns its problem and nothing else.

    A draft of several documents (rules, correlations, filters) is split first; its
    correlations and filters name rules of the draft or, through ``resolve`` (reference ->
    id, or None), of the catalog."""
    started = time.perf_counter()
    if is_multi_document(text):
        analysis = _analyse_documents(text, resolve)
    else:
        rule, errors, source = parse_draft(text)
        analysis = DraftAnalysis(text, rule, errors, source)
        analysis.rules = [rule] if rule is not None else []
    rule = analysis.rule
    if rule is None or analysis.errors:
        analysis.elapsed_ms = (time.perf_counter() - started) * 1000
        return analysis
    source = analysis.source
    analysis.indicators = _predicates(list(rule.indicators), source, index)
    # An exclusion's identity is not an indicator's: the index counts indicators only.
    analysis.exclusions = _predicates(list(rule.exclusions), source, None)
    # A draft keeping a catalog rule's id is an edit of that rule, not a duplicate of it.
    analysis.similar = index.similar(
        identities_of(rule),
        logsource=rule.logsource.label,
        exclude=[rule.id],
        limit=similar_limit,
        title=rule.title,
    )
    analysis.field_check = check_fields(rule, taxonomy)
    analysis.evaluator = Evaluator(analysis.rules, prefilter=False)
    if regression is not None:
        evaluator = analysis.evaluator
        first = rule.id
        # The draft's own filters are part of what it would deploy: they apply here too.
        filters = _filters_for(analysis, rule)

        def fires(event: Event) -> bool:
            if first not in evaluator.match_ids(event):  # scoped to its logsource, as always
                return False
            return not any(f.suppresses(event) for f in filters)

        analysis.backtest = backtest(rule, regression, fires)
    analysis.elapsed_ms = (time.perf_counter() - started) * 1000
    return analysis


def _filters_for(analysis: DraftAnalysis, rule: ParsedRule) -> list[MetaFilter]:
    if analysis.meta is None:
        return []
    ls = rule.logsource
    key = (ls.product or "", ls.category or "", ls.service or "")
    return [f for f in analysis.meta.filters if f.applies_to(rule.id, key)]


def _analyse_documents(text: str, resolve: Callable[[str], str | None] | None) -> DraftAnalysis:
    """A draft of several documents: every rule parsed (problems at their draft lines), the
    first one described; correlations and filters validated and resolved."""
    try:
        documents = split_draft(text)
    except RuleError as error:
        problem = ParseProblem(error.code, str(error), 1, 1, "split the draft into smaller ones")
        return DraftAnalysis(text, None, [problem], SourceMap(""))
    if not documents:
        problem = ParseProblem(
            "not-a-rule", "the draft holds no YAML document", 1, 1, "write a rule under '---'"
        )
        return DraftAnalysis(text, None, [problem], SourceMap(""))
    errors: list[ParseProblem] = []
    rules: list[ParsedRule] = []
    first_source: SourceMap | None = None
    first_text = text
    for doc in documents:
        if doc.kind != "rule":
            continue
        parsed, problems, source = parse_draft(doc.text)
        errors.extend(problems)
        if parsed is None:
            continue
        if any(r.id == parsed.id for r in rules):
            errors.append(
                ParseProblem(
                    "duplicate-id",
                    f"two rules of the draft have the id {parsed.id}",
                    doc.line,
                    1,
                    "give each rule its own id",
                )
            )
            continue
        if first_source is None:
            first_source, first_text = source, doc.text
        rules.append(parsed)
    meta = read_meta(documents, rules, resolve)
    errors.extend(ParseProblem(p.code, p.message, p.line, 1, p.hint) for p in meta.problems)
    analysis = DraftAnalysis(
        first_text,
        rules[0] if rules else None,
        errors,
        first_source or SourceMap(""),
        documents=documents,
        rules=rules,
        meta=meta,
    )
    if analysis.rule is None and not errors:
        analysis.evaluator = Evaluator([], prefilter=False)
    return analysis


# ----------------------------------------------------------------------------------- tuning

TUNE_FILTER = "filter_optional_workbench"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_FILTER_PATTERN = re.compile(r"\bnot\s+(?:1|any)\s+of\s+filter_\*")


def _filter_name(detection: dict[str, Any]) -> str:
    name, number = TUNE_FILTER, 1
    while name in detection:
        number += 1
        name = f"{TUNE_FILTER}_{number}"
    return name


def _scalar(value: str) -> str:
    """``value`` as one YAML flow scalar, quoted when it needs to be."""
    return (
        yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
        .split("\n...", 1)[0]
        .strip()
    )


def sigma_literal(value: str) -> str:
    """``value`` as a Sigma string matching exactly itself: ``*`` and ``?`` are wildcards in
    Sigma, and a backslash before one of ``*?\\`` escapes it, so those are escaped."""
    out = []
    for index, char in enumerate(value):
        if char in "*?":
            out.append("\\" + char)
        elif char == "\\" and value[index + 1 : index + 2] in ("*", "?", "\\"):
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def tuned_condition(condition: str) -> str:
    """``condition`` with ``and not 1 of filter_*`` added, unless it already has it."""
    if _FILTER_PATTERN.search(condition):
        return condition
    body = f"({condition})" if re.search(r"\bor\b", condition) else condition
    return f"{body} and not 1 of filter_*"


def add_exclusion(text: str, field_name: str, value: str) -> str:
    """The rule with a ``filter_*`` identifier excluding ``field_name: value`` (the Sigma
    way: a filter selection and ``and not 1 of filter_*``), written into the text so that
    comments and layout stay. Raises :class:`RuleError` when ``text`` is not a rule."""
    rule = parse_rule(text)
    source = SourceMap(text)
    name = _filter_name(rule.detection)
    value = sigma_literal(value)
    key = (field_name or "").split("|", 1)[0]
    lines = text.splitlines()
    condition_at = source.key("detection", "condition")
    conditions = rule.detection["condition"]
    block_layout = (
        condition_at is not None and not lines[condition_at[0] - 1][: condition_at[1] - 1].strip()
    )
    if condition_at is None or not block_layout or not isinstance(conditions, str):
        return _redumped(text, name, key, value)
    row, column = condition_at
    indent = " " * (column - 1)
    step = _indent_step(source, column)
    # A field name from an event may hold anything (": ", newlines): quoted unless plain.
    written_key = key if _PLAIN_KEY.fullmatch(key) else _scalar(key)
    entry = (
        f"{indent}{step}{written_key}: {_scalar(value)}"
        if key
        else f"{indent}{step}- {_scalar(value)}"
    )
    block = [f"{indent}{name}:", entry]
    value_at = source.value("detection", "condition")
    same_line = value_at is not None and value_at[0] == row
    if same_line:
        lines[row - 1] = f"{indent}condition: {_scalar(tuned_condition(conditions))}"
    else:
        return _redumped(text, name, key, value)
    lines[row - 1 : row - 1] = block
    return "\n".join(lines) + "\n"


def _indent_step(source: SourceMap, column: int) -> str:
    """The document's indentation step: how far a detection identifier's items sit inside it."""
    for path, (_, item_column) in source.detection_keys():
        if len(path) == 3 and item_column > column:
            return " " * (item_column - column)
    return "    "


def _redumped(text: str, name: str, key: str, value: str) -> str:
    """Fallback for unusual layouts (flow style, condition lists): the document dumped again
    (plain types: the parser's numbers keep their text, which safe_dump cannot write)."""
    document = dict(yaml.safe_load(text))
    detection = dict(document["detection"])
    condition = detection.pop("condition")
    detection[name] = {key: value} if key else [value]
    if isinstance(condition, list):
        detection["condition"] = [tuned_condition(str(c)) for c in condition]
    else:
        detection["condition"] = tuned_condition(str(condition))
    document["detection"] = detection
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000))
