"""Does a converted query parse? The target's real grammar where a maintained parser exists.

Upstream backends hand out queries their engines refuse (EQL field names with ``-``, escapes
EQL does not know, strings that never close). After conversion each query is checked:

* Lucene family (``lucene``, ``opensearch_lucene``, the filter of ``elastalert``): luqum's own
  lexer rules and LALR tables, without building luqum's tree (:func:`lucene_problem`);
* EQL: Elastic's ``eql`` parser with Elasticsearch syntax (:func:`eql_problem`), with the
  certain fixes of :func:`fix_eql` (backticked field names with ``-``, ``\\/`` -> ``/``);
* Panther's Python rules: :func:`ast.parse` (parsed, never run); JSON outputs: :func:`json.loads`;
* everything else: a lexical check (balanced quotes and brackets, no ``|expand`` placeholder
  left in the query, no PPL wildcard outside quotes), :func:`lexical_problem`;
* OpenSearch PPL also: the rule's string values that hold a backslash against the query
  (:func:`backslash_problem`): its backend filters every ``\\`` out of string values, so
  ``C:\\Users\\`` becomes ``"%C:Users%"``, a query that parses but matches other text;
  SPL2, SentinelOne and NetWitness also: a value ending in a backslash must not escape its
  closing quote (:func:`trailing_backslash_problem`).

A check gives a :class:`Verdict`: ``problem`` is the parser's message when the query does not
parse (after any fix), ``fixes`` names the fixes applied (the query then differs from what
``sigma convert`` prints, on purpose). Checks are pure functions of the query text (and of
the rule's placeholder names and backslash values), cached.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from sigma.types import SigmaString

VERIFIED = "verified"
FIXED = "fixed"
INVALID = "invalid"
UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check of one rule's queries found.

    ``verifier`` names the check ("luqum", "eql", "python", "json", "lexical"; "" when the
    output format is not checked), ``problem`` the first parser message (None: it parses),
    ``fixes`` the post-processing applied to make it parse.
    """

    verifier: str = ""
    problem: str | None = None
    fixes: tuple[str, ...] = ()

    @property
    def valid(self) -> bool | None:
        """True: it parses; False: it does not; None: not checked."""
        if not self.verifier:
            return None
        return self.problem is None

    @property
    def status(self) -> str:
        if not self.verifier:
            return UNCHECKED
        if self.problem is not None:
            return INVALID
        return FIXED if self.fixes else VERIFIED


UNVERIFIED = Verdict()


# --------------------------------------------------------------------------- Lucene (luqum)


class _Token:
    """What ply's parser reads from a token (luqum's error message uses value and lexpos)."""

    __slots__ = ("lexer", "lexpos", "lineno", "type", "value")

    def __init__(self, type_: str, value: str, lexpos: int) -> None:
        self.type, self.value, self.lexpos, self.lineno = type_, value, lexpos, 1
        self.lexer: Any = None


@functools.lru_cache(maxsize=1)
def _lucene_machine() -> tuple[Any, list[tuple[Any, list[Any]]], dict[str, str]]:
    """luqum's parser with no-op actions, its lexer's master regexes and reserved words.

    luqum builds a tree with position tracking on every reduction, which costs more than the
    conversion itself; acceptance depends only on the LALR tables and the token types, so the
    same tables with actions that build nothing accept exactly the same queries.
    """
    import copy

    from luqum import parser as luqum_parser  # type: ignore[import-untyped]
    from ply.yacc import LRParser  # type: ignore[import-untyped]

    lean = copy.copy(luqum_parser.parser)
    lean.parse = functools.partial(LRParser.parse, lean, lexer=luqum_parser.lexer)
    productions = []
    for production in luqum_parser.parser.productions:
        clone = copy.copy(production)
        clone.callable = _no_action
        productions.append(clone)
    lean.productions = productions
    return lean, luqum_parser.lexer.lexre, luqum_parser.reserved


def _no_action(p: Any) -> None:
    p[0] = None


def _lucene_tokens(text: str) -> Iterator[_Token]:
    """luqum's tokens, matched with its lexer's own master regexes in ply's order, lazily
    as ply's parser asks for them (so the first error is the one luqum reports)."""
    from luqum.exceptions import IllegalCharacterError  # type: ignore[import-untyped]

    _, lexre, reserved = _lucene_machine()
    pos, end = 0, len(text)
    while pos < end:
        for regex, index in lexre:
            match = regex.match(text, pos)
            if match is None:
                continue
            name = index[match.lastindex][1]
            value = match.group()
            if name == "SEPARATOR":
                pass
            elif name == "TERM":
                yield _Token(reserved.get(value, "TERM"), value, pos)
            else:
                yield _Token(name, value, pos)
            pos = match.end()
            break
        else:
            raise IllegalCharacterError(f"Illegal character '{text[pos]}' at position {pos}")


@functools.lru_cache(maxsize=4096)
def lucene_problem(query: str) -> str | None:
    """luqum's message if ``query`` is not a Lucene query luqum parses, else None."""
    from luqum.exceptions import ParseError

    parser = _lucene_machine()[0]
    try:
        tokens = _lucene_tokens(query)
        parser.parse(input=None, tokenfunc=lambda: next(tokens, None))
    except ParseError as exc:
        # Rare: luqum itself words the message (its token values print differently).
        return _luqum_message(query) or str(exc)
    return None


def _luqum_message(query: str) -> str | None:
    from luqum import parser as luqum_parser
    from luqum.exceptions import ParseError

    try:
        luqum_parser.parser.parse(query, lexer=luqum_parser.lexer.clone())
    except ParseError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply for luqum"
    return None


# --------------------------------------------------------------------------- EQL


def _eql_message(exc: Exception) -> str:
    """'line 1, column 11: Expected string not number' from eql's multi-line message."""
    lines = str(exc).splitlines()
    where = re.match(r"Error at line:(\d+),column:(\d+)", lines[0]) if lines else None
    if where and len(lines) > 1:
        return f"line {where[1]}, column {where[2]}: {lines[1].strip()}"
    return " ".join(line.strip() for line in lines[:2]) or type(exc).__name__


@functools.lru_cache(maxsize=8192)
def _eql_parse(query: str) -> str | None:
    import eql  # type: ignore[import-untyped]

    try:
        # skip_optimizations: the optimizer only rewrites a parsed query, it never refuses one.
        with (
            eql.parser.elasticsearch_syntax,
            eql.parser.ignore_missing_functions,
            eql.parser.skip_optimizations,
        ):
            eql.parse_query(query)
    except eql.EqlError as exc:
        return _eql_message(exc)
    except RecursionError:
        return "nested too deeply for the EQL parser"
    return None


# The shape of a query: eql's parser costs more than the conversion, but most queries are
# the same few comparisons joined by and/or/not. Each distinct comparison is parsed once (as
# `any where <comparison>`); a query whose comparisons all parse is then parsed in a canonical
# form that keeps its structure (same operators, same nesting) with every comparison replaced
# by one known-good comparison. Strings are canonicalised only when plain (no escape but
# `\\`), so escapes, regexes and function arguments are still parsed as written.
_EQL_STRING = re.compile(r'"(?:[^"\\\n]|\\\\)*"')
_EQL_FIELD = r"(?<![\w.`@-])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_EQL_VALUE = r'(?:"x"|-?\d+(?:\.\d+)?|true|false|null)'
_EQL_OPERAND = rf"(?:{_EQL_VALUE}|\({_EQL_VALUE}(?:, {_EQL_VALUE})*\))"
_EQL_ATOM = re.compile(
    rf"{_EQL_FIELD}(?::| (?:like~?|in~?|:|==|!=|<=|>=|<|>) ){_EQL_OPERAND}(?![\w.`(-])"
)
_EQL_FIELD_RE = re.compile(_EQL_FIELD)
_EQL_KEYWORDS = frozenset(
    ("and", "or", "not", "in", "like", "regex", "where", "any", "sequence", "sample", "by")
    + ("join", "until", "with", "maxspan", "of", "true", "false", "null", "runs", "fork")
)
_EQL_NUMBER = re.compile(r"(?<![\w.\"])\d+(?![\w.\"])")
_EQL_LIST = re.compile(r'\(("x"|1)(?:, \1)+\)')
_MARK = "\x00"  # stands for one comparison in a shape; never in a query (checked)
_GOOD_ATOM = 'f:"x"'
_EQL_COLLAPSE = (
    (re.compile(rf"\({_MARK}\)"), _MARK),
    (re.compile(rf"(?<![\w.`@-])not {_MARK}"), _MARK),
    (re.compile(rf"{_MARK}(?: (?:and|or) {_MARK})+"), _MARK),
)


def _eql_shape(query: str) -> str | None:
    """The canonical form of ``query``, or None when one of its comparisons does not parse."""
    text = _EQL_STRING.sub('"x"', query)
    for atom in set(_EQL_ATOM.findall(text)):
        # A plain field name does not change whether a comparison parses; keywords would.
        field = _EQL_FIELD_RE.match(atom)
        name = field.group() if field else ""
        key = atom if name.split(".")[0] in _EQL_KEYWORDS else "f" + atom[len(name) :]
        key = _EQL_LIST.sub(r"(\1)", _EQL_NUMBER.sub("1", key))
        if _eql_parse(f"any where {key}") is not None:
            return None
    shape = _EQL_ATOM.sub(_MARK, text)
    while True:
        collapsed = shape
        for pattern, replacement in _EQL_COLLAPSE:
            collapsed = pattern.sub(replacement, collapsed)
        if collapsed == shape:
            return shape.replace(_MARK, _GOOD_ATOM)
        shape = collapsed


def _eql_fast_ok(query: str) -> bool:
    """True when the query's shape parses (then the query does); False: ask eql itself."""
    if "regex" in query or _MARK in query:
        return False
    shape = _eql_shape(query)
    return shape is not None and _eql_parse(shape) is None


def eql_problem(query: str) -> str | None:
    """eql's message if ``query`` does not parse as Elasticsearch EQL, else None."""
    if _eql_fast_ok(query):
        return None
    return _eql_parse(query)


# Field names the backend leaves bare although EQL needs backticks: any name with a `-`
# directly before a comparison operator.
_EQL_DASHED_FIELD = re.compile(
    r"(?<![\w.`@-])([A-Za-z_@][\w.@]*-[\w.@-]*)(?=:|\s+(?:like~?|in~?|regex~?|==|!=|<=|>=|<|>)\s)"
)
_EQL_STRING_ANY = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def _outside_strings(query: str, fix: Callable[[str], str]) -> str:
    parts, last = [], 0
    for match in _EQL_STRING_ANY.finditer(query):
        parts += [fix(query[last : match.start()]), match.group()]
        last = match.end()
    parts.append(fix(query[last:]))
    return "".join(parts)


def _backtick_fields(query: str) -> str:
    return _outside_strings(query, lambda part: _EQL_DASHED_FIELD.sub(r"`\1`", part))


def _unescape_slashes(query: str) -> str:
    """``\\/`` in a string means ``/`` to the backend; EQL knows no such escape."""
    return _EQL_STRING_ANY.sub(
        lambda m: re.sub(r"\\(\\|/)", lambda e: "\\\\" if e[1] == "\\" else "/", m.group()),
        query,
    )


EQL_FIXES: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("field names with '-' in backticks", _backtick_fields),
    ("'\\/' in strings written as '/'", _unescape_slashes),
)
"""Fixes that change how a query is written, never what it matches; applied only when the
fixed query parses."""


def fix_eql(query: str) -> tuple[str, tuple[str, ...], str | None]:
    """``(query, fixes applied, problem)``: the query as written if it parses or no fix
    makes it parse (then ``problem`` is eql's message for the original)."""
    if _eql_fast_ok(query):
        return query, (), None
    # Try the fixes before asking eql why the original fails: most fixed queries then pass
    # the fast path and the original's full parse is never needed.
    fixed, applied = query, []
    for name, fix in EQL_FIXES:
        candidate = fix(fixed)
        if candidate != fixed:
            fixed = candidate
            applied.append(name)
    # A fix only rewrites what EQL always refuses (a bare `-` in a field name, the `\/`
    # escape), so when it applied the original cannot parse: no need to ask eql why.
    if applied and eql_problem(fixed) is None:
        return fixed, tuple(applied), None
    problem = _eql_parse(query)
    if problem is None:
        return query, (), None
    return query, (), problem


# --------------------------------------------------------------------------- lexical


@dataclass(frozen=True, slots=True)
class Dialect:
    """How strings are written in a query language, for the lexical check.

    ``quotes`` open and close strings; inside, ``\\`` escapes the next character unless the
    quote is in ``doubled`` (SQL: ``''``). ``raw`` quotes take no escapes (LogQL's backtick);
    ``verbatim_prefix`` before a quote makes it raw with doubling (KQL's ``@"..."``).
    ``bare_wildcard``: a character that must not appear outside strings (PPL's ``%``).
    ``regex``: delimiters of regex literals (SPL2's ``/.../``), skipped like strings.
    """

    quotes: str = '"'
    doubled: str = ""
    raw: str = ""
    verbatim_prefix: str = ""
    bare_wildcard: str = ""
    regex: str = ""


DIALECTS: dict[str, Dialect] = {
    "spl2": Dialect(quotes="\"'", regex="/"),
    "logscale": Dialect(regex="/"),
    "udm": Dialect(regex="/"),
    "kql": Dialect(quotes="\"'", verbatim_prefix="@"),
    "logql": Dialect(quotes='"`', raw="`"),
    "ppl": Dialect(quotes="\"'", bare_wildcard="%"),
    "sql": Dialect(quotes="'\"", doubled="'\""),
    "netwitness": Dialect(quotes="\"'"),
    "s1ql": Dialect(quotes="\"'"),
    "powerquery": Dialect(quotes="\"'"),
    "expr": Dialect(quotes="\"'`", raw="`"),
}
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _scan_string(query: str, start: int, dialect: Dialect) -> int:
    """Index just after the string opening at ``start``, or -1 if it never closes."""
    quote = query[start]
    verbatim = (
        start > 0 and query[start - 1] in dialect.verbatim_prefix
        if dialect.verbatim_prefix
        else False
    )
    escapes = quote not in dialect.raw and quote not in dialect.doubled and not verbatim
    doubling = quote in dialect.doubled or verbatim
    index, end = start + 1, len(query)
    while index < end:
        char = query[index]
        if escapes and char == "\\":
            index += 2
            continue
        if char == quote:
            if doubling and index + 1 < end and query[index + 1] == quote:
                index += 2
                continue
            return index + 1
        index += 1
    return -1


def lexical_problem(query: str, dialect: Dialect) -> str | None:
    """The first unclosed string, unbalanced bracket or bare wildcard, or None."""
    stack: list[tuple[str, int]] = []
    index, end = 0, len(query)
    while index < end:
        char = query[index]
        if char in dialect.quotes or char in dialect.regex:
            after = _scan_string(query, index, dialect)
            if after < 0:
                opening = query[index : index + 20]
                return f"the string opened at position {index} ({opening!r}...) never closes"
            index = after
            continue
        if char == "\\":
            index += 2
            continue
        if char in "([{":
            stack.append((char, index))
        elif char in _PAIRS:
            if not stack or stack[-1][0] != _PAIRS[char]:
                return f"unbalanced {char!r} at position {index}"
            stack.pop()
        elif char in dialect.bare_wildcard:
            return f"wildcard {char!r} outside a quoted string at position {index}"
        index += 1
    if stack:
        char, position = stack[-1]
        return f"{char!r} opened at position {position} is never closed"
    return None


# --------------------------------------------------------------------------- lost backslashes


def checks_backslashes(verifier: str, language: str) -> bool:
    """Whether the query is compared with the rule's backslash values for this target."""
    return backslash_check(verifier, language) is not None


def backslash_parts(values: Iterable[SigmaString]) -> tuple[str, ...]:
    """The plain (non-wildcard) parts of ``values`` that contain a backslash, each once."""
    parts: dict[str, None] = {}
    for value in values:
        for part in value.s:
            if isinstance(part, str) and "\\" in part:
                parts[part] = None
    return tuple(parts)


_SNIPPET_REACH = 120  # how far from a value its enclosing quotes are looked for


def _enclosing_literal(query: str, start: int, end: int) -> str:
    """The quoted string of ``query`` around ``query[start:end]`` (or that text alone)."""
    opening = query.rfind('"', max(0, start - _SNIPPET_REACH), start)
    closing = query.find('"', end, end + _SNIPPET_REACH)
    if opening < 0 or closing < 0:
        return query[start:end]
    return query[opening : closing + 1]


def backslash_problem(query: str, parts: Iterable[str]) -> str | None:
    """The first value part whose backslashes the query lost, or None.

    OpenSearch PPL's backend declares ``filter_chars = "\\"``: every backslash of a string
    value is dropped. A part is lost when it is nowhere in the query while its text without
    backslashes is: an escaped form (``\\\\``) contains the part itself, so a correctly escaped
    query passes. A part found neither way (a pipeline rewrote it) says nothing and passes.

    Not fixed, only marked invalid: a literal backslash in a PPL ``LIKE`` pattern goes through
    two unescaping layers (the string literal, then ``LIKE``'s own ``\\`` escape), and
    OpenSearch's ``LIKE`` treated ``\\\\`` wrongly until opensearch-project/sql#5653
    (2026-07), so which re-escaped form matches depends on the server version.
    """
    for part in parts:
        if part in query:
            continue
        stripped = part.replace("\\", "")
        if not stripped:  # only backslashes: lost when the query has none at all
            if "\\" not in query:
                return f"backslashes lost: {part} appears as nothing (the query has no backslash)"
            continue
        start = query.find(stripped)
        if start >= 0:
            shown = _enclosing_literal(query, start, start + len(stripped))
            return f"backslashes lost: {part} appears as {shown}"
    return None


_AFTER_CLOSING_QUOTE = frozenset(" ),|")


def trailing_backslash_problem(query: str, parts: Iterable[str], quote: str = '"') -> str | None:
    """A value ending in a backslash written unescaped before its closing quote, or None.

    SPL2's backend writes backslashes as they are, so ``C:\\Windows\\`` becomes
    ``"C:\\Windows\\"``, whose last backslash escapes the quote: the string runs on. The
    lexical check says "never closes" unless a second such string pairs the quotes up again
    (``IN ("c:\\a\\", "c:\\b\\")`` balances), so each value ending in a backslash is
    looked up: an odd run of backslashes right before the quote means it is escaped. Only a
    quote that ends a value counts (end, space, ``)``, ``,`` or ``|`` after it), and a part made
    only of backslashes is skipped: both could be a quote the backend escaped (``-C \\"``).
    """
    for part in parts:
        if not part.endswith("\\") or not part.strip("\\"):
            continue
        start = query.find(part + quote)
        if start < 0:
            continue
        at = start + len(part)
        run = at - len(query[:at].rstrip("\\"))
        closing = at + 1 == len(query) or query[at + 1] in _AFTER_CLOSING_QUOTE
        if run % 2 and closing:
            return (
                f"the string ending in {part} never closes: its last backslash escapes the "
                "closing quote"
            )
    return None


def backslash_check(
    verifier: str, language: str
) -> Callable[[str, Iterable[str]], str | None] | None:
    """How a target's queries are compared with the rule's backslash values, if they are.

    Lexically checked languages only (a real parser sees a string run on by itself): PPL for
    lost backslashes, :data:`TRAILING_BACKSLASH_QUOTES` for values ending in a backslash.
    """
    if verifier != "lexical":
        return None
    if language in BACKSLASH_LANGUAGES:
        return backslash_problem
    quote = TRAILING_BACKSLASH_QUOTES.get(language)
    if quote is None:
        return None
    return functools.partial(trailing_backslash_problem, quote=quote)


TRAILING_BACKSLASH_QUOTES = {"spl2": '"', "s1ql": '"', "netwitness": "'"}
"""Languages whose backend declares ``\\`` its escape character (``escape_char``) yet writes a
value's trailing backslash as it is, with the backend's string quote. Other backends (Cortex
XDR, LogPoint) declare no escape character, so whether ``\\"`` ends their strings is not known
here; their lexical dialect still assumes ``\\`` escapes."""

BACKSLASH_LANGUAGES = frozenset({"ppl"})
"""Languages whose backend drops every backslash of a string value (:func:`backslash_problem`)."""


# --------------------------------------------------------------------------- per target


def clear_caches() -> None:
    """Forget every cached verdict (benchmarks time verification from cold)."""
    lucene_problem.cache_clear()
    _eql_parse.cache_clear()


def placeholder_problem(query: str, placeholders: Iterable[str]) -> str | None:
    """A ``|expand`` placeholder the backend left in the query as literal text."""
    for name in sorted(placeholders):
        if f"%{name}%" in query:
            return (
                f"the |expand placeholder %{name}% is left in the query as literal text "
                "(no pipeline defined its values)"
            )
    return None


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when built


def _elastalert_query(text: str) -> str | None:
    """The Lucene filter inside an ElastAlert rule (YAML), if it has exactly one."""
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return None
    try:
        query = document["filter"][0]["query"]["query_string"]["query"]
    except (KeyError, IndexError, TypeError):
        return None
    return query if isinstance(query, str) else None


def _python_problem(source: str) -> str | None:
    try:
        ast.parse(source)  # parsed only: a catalog never runs converted rules
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    return None


def _json_problem(text: str) -> str | None:
    try:
        json.loads(text)
    except ValueError as exc:
        return str(exc)
    return None


class _Check:
    """One output's check: ``(output, fixes, problem)``."""

    def __init__(
        self, verifier: str, run: Callable[[Any], tuple[Any, tuple[str, ...], str | None]]
    ):
        self.verifier, self.run = verifier, run


def _text_check(verifier: str, problem: Callable[[str], str | None]) -> _Check:
    def run(output: Any) -> tuple[Any, tuple[str, ...], str | None]:
        return output, (), problem(output) if isinstance(output, str) else None

    return _Check(verifier, run)


def _eql_output(output: Any) -> tuple[Any, tuple[str, ...], str | None]:
    """Checks (and fixes) a query string, or the ``query`` of a rule/API document."""
    if isinstance(output, str):
        return fix_eql(output)
    if isinstance(output, dict) and isinstance(output.get("query"), str):
        query, fixes, problem = fix_eql(output["query"])
        return ({**output, "query": query} if fixes else output), fixes, problem
    return output, (), None


def _lucene_output(output: Any) -> tuple[Any, tuple[str, ...], str | None]:
    if isinstance(output, str):
        return output, (), lucene_problem(output)
    if isinstance(output, dict) and isinstance(output.get("query"), str):
        return output, (), lucene_problem(output["query"])
    return output, (), None


def _elastalert_output(output: Any) -> tuple[Any, tuple[str, ...], str | None]:
    query = _elastalert_query(output) if isinstance(output, str) else None
    if query is None:
        return output, (), "the ElastAlert rule has no query_string filter"
    return output, (), lucene_problem(query)


_LUCENE_FORMATS = {"default", "siem_rule", "siem_rule_ndjson", "kibana_ndjson"}


def _check_for(verifier: str, language: str, output_format: str) -> _Check | None:
    """The check of a (target verifier, language, format); None: that format is not checked."""
    if verifier == "eql" and output_format in {
        "default",
        "eqlapi",
        "siem_rule",
        "siem_rule_ndjson",
    }:
        return _Check("eql", _eql_output)
    if verifier == "lucene" and output_format in _LUCENE_FORMATS:
        return _Check("luqum", _lucene_output)
    if verifier == "elastalert" and output_format == "default":
        return _Check("luqum", _elastalert_output)
    if output_format != "default":
        return None
    if verifier == "python":
        return _text_check("python", _python_problem)
    if verifier == "json":
        return _text_check("json", _json_problem)
    dialect = DIALECTS.get(language, Dialect())
    return _text_check("lexical", lambda text: lexical_problem(text, dialect))


def verify_outputs(
    verifier: str,
    language: str,
    output_format: str,
    outputs: Iterable[Any],
    placeholders: Iterable[str] = (),
    backslashes: Iterable[str] = (),
) -> tuple[tuple[Any, ...], Verdict]:
    """Check (and where certain, fix) one rule's outputs; ``(outputs, verdict)``.

    ``placeholders`` are the names of the rule's ``|expand`` placeholders: a query that still
    holds one literally is invalid whatever the grammar says. ``backslashes`` are the rule's
    value parts with a backslash (:func:`backslash_parts`, for :func:`checks_backslashes`
    targets): a query that lost them (PPL) or whose strings they break is invalid too.
    """
    outputs = tuple(outputs)
    check = _check_for(verifier, language, output_format)
    if check is None:
        return outputs, UNVERIFIED
    names = tuple(placeholders)
    compare = backslash_check(check.verifier, language)
    parts = tuple(backslashes) if compare is not None else ()
    checked: list[Any] = []
    fixes: list[str] = []
    problem: str | None = None
    for output in outputs:
        fixed, applied, found = check.run(output)
        checked.append(fixed)
        fixes += [f for f in applied if f not in fixes]
        if found is None and (names or parts):
            text = json.dumps(fixed) if not isinstance(fixed, str) else fixed
            found = placeholder_problem(text, names)
            if found is None and compare is not None and parts:
                found = compare(text, parts)
        if problem is None and found is not None:
            problem = found
    return tuple(checked), Verdict(check.verifier, problem, tuple(fixes))
