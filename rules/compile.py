"""Compile a parsed Sigma rule into matchers with exact Sigma semantics.

:func:`compile_rule` walks pySigma's parsed detection (``SigmaDetection`` /
``SigmaDetectionItem`` with their modifier-applied values) and the condition tree from
``parsed_condition[i].parse(postprocess=False)`` (which keeps identifier names), and builds:

* a tree the explaining evaluator walks (:class:`CondNode`, :class:`DetectionNode`,
  :class:`ItemNode`, value matchers), and
* closures for the fast yes/no path (``CompiledRule.match``), and
* the rule's required literals for the Aho-Corasick prefilter (``CompiledRule.literals``).

Semantics (see ``shared/reference/sigma-semantics.md``):

* String values match the whole value, case-insensitively with Unicode ``casefold()``; ``*``
  and ``?`` are wildcards (``?`` is one code point of the casefolded text), wildcards cross
  newlines. Plain shapes (``x``, ``x*``, ``*x``, ``*x*``, ``a*b*c``) run as ``str`` operations,
  patterns with ``?`` as anchored RE2 regexes.
* ``|cased`` matches the original text; ``|re`` is RE2 *search* on the original text, flags
  ``i``/``m``/``s``.
* Event values that are arrays match if any element matches. Numbers compare numerically with
  JSON numbers and as text with strings; ``true`` matches JSON true and "true"/"True".
* ``null`` matches an absent or JSON-null field; ``|exists`` tests presence only.
* Keywords are case-insensitive substring searches over every value of the event.

Rules using ``|expand`` placeholders (or that cannot be compiled) get ``unsupported`` reasons
and never match; they are reported, not ignored.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ahocorasick
import re2
from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.modifiers import reverse_modifier_mapping
from sigma.rule.detection import SigmaDetection, SigmaDetectionItem
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
    TimestampPart,
)

from rules.events import MISSING, SEPARATOR, Event, value_text
from rules.model import ParsedRule
from rules.parse import parse_rule

__all__ = [
    "CompiledRule",
    "CondNode",
    "DetectionNode",
    "ItemNode",
    "Matcher",
    "compile_rule",
    "field_elements",
    "keyword_elements",
    "keyword_values",
    "load_rule",
    "map_span",
    "regex_literals",
    "UnsupportedRuleError",
]

Elem = tuple[Any, str | None, str | None]  # (raw value, text, casefolded text)
Elems = tuple[Elem, ...] | None  # None: the field is absent
Span = tuple[int, int]
Literals = frozenset[str] | None  # None: no literal is required (always a candidate)


# --------------------------------------------------------------------------------------------
# Parsing adapter


def load_rule(text: str, source_path: str = "") -> ParsedRule:
    """Parse a Sigma rule document with the project's parser (the one adapter to change)."""
    return parse_rule(text, source_path)


# --------------------------------------------------------------------------------------------
# Event access


def _elem(value: Any) -> Elem:
    text = value_text(value)
    return (value, text, text.casefold() if text is not None else None)


def _flat_list(values: Iterable[Any]) -> Iterable[Any]:
    for v in values:
        if isinstance(v, list | tuple):
            yield from _flat_list(v)
        else:
            yield v


def field_elements(ev: Event, name: str) -> Elems:
    """The elements of field ``name`` (cached per event); ``None`` when absent."""
    cache = ev._values
    try:
        return cache[name]  # type: ignore[no-any-return]
    except KeyError:
        pass
    value = ev.lookup(name)
    if value is MISSING:
        result: Elems = None
    elif isinstance(value, list | tuple):
        result = tuple(_elem(v) for v in _flat_list(value))
    else:
        result = (_elem(value),)
    cache[name] = result
    return result


def keyword_elements(ev: Event) -> tuple[tuple[str, Elem], ...]:
    """Every leaf value of the event as ``(field path, element)``, cached per event."""
    cache = ev._values
    try:
        return cache[None]  # type: ignore[no-any-return]
    except KeyError:
        pass
    result = tuple((path, _elem(v)) for path, v in ev.leaves)
    cache[None] = result
    return result


def keyword_values(ev: Event) -> tuple[Elem, ...]:
    """The elements of :func:`keyword_elements` without their paths, cached per event."""
    cache = ev._values
    try:
        return cache[0]  # type: ignore[index,no-any-return]
    except KeyError:
        pass
    result = tuple(e for _, e in keyword_elements(ev))
    cache[0] = result  # type: ignore[index]
    return result


def map_span(text: str, folded: str, span: Span) -> Span:
    """Map a span in ``text.casefold()`` back to ``text`` (casefold may lengthen characters)."""
    if len(text) == len(folded):
        return span
    start, end = span
    acc = 0
    out_start: int | None = None
    out_end = len(text)
    for i, ch in enumerate(text):
        nxt = acc + len(ch.casefold())
        if out_start is None and start < nxt:
            out_start = i
        if end <= nxt:
            out_end = i + 1 if end > acc else i
            break
        acc = nxt
    if out_start is None:
        out_start = len(text)
    if start == end:
        out_end = out_start
    return (out_start, max(out_start, out_end))


# --------------------------------------------------------------------------------------------
# Value matchers


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _re2_escape(s: str) -> str:
    out: list[str] = []
    for ch in s:
        if ch.isalnum() or ord(ch) > 127 or ch == "_":
            out.append(ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append("\\" + ch)
    return "".join(out)


def _re2_compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsupportedRuleError(f"regex not supported by RE2: {pattern!r}: {msg}") from None


class UnsupportedRuleError(Exception):
    """A rule feature the sandbox cannot evaluate without configuration."""


class Matcher:
    """One rule value (after modifiers) tested against the elements of one field."""

    __slots__ = ()
    absent: bool = False  # result when the field is absent

    def test(self, ev: Event, elems: Elems) -> bool:
        raise NotImplementedError

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        """(index of the first matching element, span in its text) or None.

        Index -1 means the match is about the field itself (null, exists).
        """
        raise NotImplementedError

    def literals(self) -> Literals:
        return None


# String matching modes
EXACT, PREFIX, SUFFIX, CONTAINS, GLOB, REGEX, ANY = range(7)


class ElementMatcher(Matcher):
    """A matcher that decides one event value at a time with ``_ok``; the span is the value."""

    __slots__ = ()

    def _ok(self, e: Elem) -> bool:
        raise NotImplementedError

    def test(self, ev: Event, elems: Elems) -> bool:
        return bool(elems) and any(self._ok(e) for e in elems)  # type: ignore[union-attr]

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        for i, e in enumerate(elems or ()):
            if self._ok(e):
                return i, (0, len(e[1] or ""))
        return None


class StringMatcher(Matcher):
    """A SigmaString (or SigmaCasedString) with wildcards, anchored at both ends."""

    __slots__ = ("cased", "lit", "middles", "mode", "prefix", "regex", "suffix", "pattern")

    def __init__(self, parts: Sequence[str | SpecialChars], cased: bool) -> None:
        self.cased = cased
        norm: list[str | SpecialChars] = []
        for p in parts:
            if isinstance(p, str):
                if not p:
                    continue
                p = p if cased else p.casefold()
                if norm and isinstance(norm[-1], str):
                    norm[-1] = norm[-1] + p
                else:
                    norm.append(p)
            elif p is SpecialChars.WILDCARD_MULTI:
                if not (norm and norm[-1] is SpecialChars.WILDCARD_MULTI):
                    norm.append(p)
            else:
                norm.append(p)
        self.pattern = norm
        self.lit = ""
        self.prefix: str | None = None
        self.suffix: str | None = None
        self.middles: tuple[str, ...] = ()
        self.regex: Any = None
        star = SpecialChars.WILDCARD_MULTI
        strs = [p for p in norm if isinstance(p, str)]
        if SpecialChars.WILDCARD_SINGLE in norm:
            self.mode = REGEX
            body = "".join(
                _re2_escape(p) if isinstance(p, str) else (".*" if p is star else ".") for p in norm
            )
            self.regex = _re2_compile(f"(?s)\\A{body}\\z")
        elif not norm:
            self.mode = EXACT
        elif norm == [star]:
            self.mode = ANY
        elif len(norm) == 1:
            self.mode, self.lit = EXACT, strs[0]
        elif len(norm) == 2 and norm[1] is star:
            self.mode, self.lit = PREFIX, strs[0]
        elif len(norm) == 2 and norm[0] is star:
            self.mode, self.lit = SUFFIX, strs[0]
        elif len(norm) == 3 and norm[0] is star and norm[2] is star:
            self.mode, self.lit = CONTAINS, strs[0]
        else:
            self.mode = GLOB
            body_parts = list(norm)
            if isinstance(body_parts[0], str):
                self.prefix = body_parts.pop(0)  # type: ignore[assignment]
            if body_parts and isinstance(body_parts[-1], str):
                self.suffix = body_parts.pop()  # type: ignore[assignment]
            self.middles = tuple(p for p in body_parts if isinstance(p, str))

    def _span(self, s: str) -> Span | None:
        mode = self.mode
        if mode == EXACT:
            return (0, len(s)) if s == self.lit else None
        if mode == CONTAINS:
            i = s.find(self.lit)
            return (i, i + len(self.lit)) if i >= 0 else None
        if mode == SUFFIX:
            return (len(s) - len(self.lit), len(s)) if s.endswith(self.lit) else None
        if mode == PREFIX:
            return (0, len(self.lit)) if s.startswith(self.lit) else None
        if mode == ANY:
            return (0, len(s))
        if mode == GLOB:
            return _glob_span(s, self.prefix, self.middles, self.suffix)
        m = self.regex.search(s)
        return m.span() if m is not None else None

    def test(self, ev: Event, elems: Elems) -> bool:
        if not elems:
            return False
        idx = 1 if self.cased else 2
        mode = self.mode
        lit = self.lit
        for e in elems:
            s = e[idx]
            if s is None:
                continue
            if mode == CONTAINS:
                if lit in s:
                    return True
            elif mode == EXACT:
                if s == lit:
                    return True
            elif mode == SUFFIX:
                if s.endswith(lit):
                    return True
            elif mode == PREFIX:
                if s.startswith(lit):
                    return True
            elif self._span(s) is not None:
                return True
        return False

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        if not elems:
            return None
        for i, e in enumerate(elems):
            s = e[1] if self.cased else e[2]
            if s is None:
                continue
            span = self._span(s)
            if span is not None:
                if not self.cased:
                    span = map_span(e[1] or "", s, span)
                return i, span
        return None

    def literals(self) -> Literals:
        strs = [p for p in self.pattern if isinstance(p, str)]
        if not strs:
            return None
        best = max(strs, key=len)
        return frozenset([best if not self.cased else best.casefold()])


def _glob_span(
    s: str, prefix: str | None, middles: tuple[str, ...], suffix: str | None
) -> Span | None:
    pos = 0
    if prefix is not None:
        if not s.startswith(prefix):
            return None
        pos = len(prefix)
    limit = len(s)
    if suffix is not None:
        if not s.endswith(suffix) or len(s) - len(suffix) < pos:
            return None
        limit = len(s) - len(suffix)
    first = -1
    for m in middles:
        i = s.find(m, pos, limit)
        if i < 0:
            return None
        if first < 0:
            first = i
        pos = i + len(m)
    start = 0 if prefix is not None else (first if first >= 0 else pos)
    end = len(s) if suffix is not None else pos
    return (start, end)


class RegexMatcher(Matcher):
    """``|re`` with optional ``i``/``m``/``s`` flags: RE2 search on the original text."""

    __slots__ = ("regex", "required")

    def __init__(self, value: SigmaRegularExpression) -> None:
        pattern = str(value.regexp)
        flags = "".join(
            sorted(
                {
                    SigmaRegularExpressionFlag.IGNORECASE: "i",
                    SigmaRegularExpressionFlag.MULTILINE: "m",
                    SigmaRegularExpressionFlag.DOTALL: "s",
                }[f]
                for f in value.flags
            )
        )
        self.regex = _re2_compile(f"(?{flags}){pattern}" if flags else pattern)
        self.required = regex_literals(pattern)

    def test(self, ev: Event, elems: Elems) -> bool:
        if not elems:
            return False
        search = self.regex.search
        return any(e[1] is not None and search(e[1]) is not None for e in elems)

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        if not elems:
            return None
        for i, e in enumerate(elems):
            if e[1] is not None:
                m = self.regex.search(e[1])
                if m is not None:
                    return i, m.span()
        return None

    def literals(self) -> Literals:
        return self.required


def regex_literals(pattern: str) -> Literals:
    """Casefolded literals one of which every match of ``pattern`` contains, or None.

    Conservative: uses Python's regex parser on the RE2 pattern (anything it cannot parse
    gives None), keeps ASCII literal runs only, and treats every other construct as a break.
    """
    try:
        import re._parser as sre_parse  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse  # type: ignore[no-redef]
    if any(x in pattern for x in ("[:", "[=", "[.")):
        return None  # POSIX classes: Python would read a literal "]" that RE2 does not need
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = sre_parse.parse(pattern)
    except Exception:
        return None
    lits = _sre_required(tree, sre_parse)
    if lits is None or not all(lits):
        return None
    return frozenset(lit.casefold() for lit in lits)


def _sre_required(seq: Any, sp: Any) -> frozenset[str] | None:
    c = sp
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset(["".join(run)]))
            run.clear()

    for op, av in seq:
        if op is c.LITERAL and av < 128:
            run.append(chr(av))
            continue
        flush()
        if op is c.SUBPATTERN:
            sub = _sre_required(av[-1], sp)
            if sub is not None:
                options.append(sub)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) or op is getattr(c, "POSSESSIVE_REPEAT", None):
            lo, _hi, sub_seq = av
            if lo >= 1:
                sub = _sre_required(sub_seq, sp)
                if sub is not None:
                    options.append(sub)
        elif op is getattr(c, "ATOMIC_GROUP", None):
            sub = _sre_required(av, sp)
            if sub is not None:
                options.append(sub)
        elif op is c.BRANCH:
            alts: set[str] = set()
            for alt in av[1]:
                sub = _sre_required(alt, sp)
                if sub is None:
                    alts = set()
                    break
                alts |= sub
            else:
                if alts:
                    options.append(frozenset(alts))
    flush()
    return _best(options)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class NumberMatcher(ElementMatcher):
    """Numeric equality with JSON numbers; text equality with string values."""

    __slots__ = ("number", "text")

    def __init__(self, number: float) -> None:
        self.number = number
        self.text = str(number)

    def _ok(self, e: Elem) -> bool:
        raw = e[0]
        if isinstance(raw, str):
            return raw == self.text
        return _is_number(raw) and raw == self.number

    def literals(self) -> Literals:
        # An equal JSON number prints with this text inside it ("4104" in "4104.0") while
        # floats print positionally, i.e. for magnitudes in [1e-4, 1e15).
        n = self.number
        if n == 0 or 1e-4 <= abs(n) < 1e15:
            return frozenset([self.text])
        return None


class BoolMatcher(ElementMatcher):
    """``true``/``false``: JSON booleans and the strings "true"/"false" in any case."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def _ok(self, e: Elem) -> bool:
        raw = e[0]
        if isinstance(raw, bool):
            return raw is self.value
        return isinstance(raw, str) and e[2] == ("true" if self.value else "false")


class NullMatcher(Matcher):
    """``null``: the field is absent or JSON null."""

    __slots__ = ()
    absent = True

    def test(self, ev: Event, elems: Elems) -> bool:
        return elems is None or any(e[0] is None for e in elems)

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        if elems is None:
            return -1, None
        for i, e in enumerate(elems):
            if e[0] is None:
                return i, None
        return None


class ExistsMatcher(Matcher):
    """``|exists``: presence of the field (a present null exists)."""

    __slots__ = ("absent", "exists")

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.absent = not exists

    def test(self, ev: Event, elems: Elems) -> bool:
        return (elems is not None) is self.exists

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        return (-1, None) if self.test(ev, elems) else None


_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _as_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return raw
    if isinstance(raw, str):
        s = raw.strip()
        if _DECIMAL.fullmatch(s):
            return int(s) if s.lstrip("+-").isdigit() else float(s)
    return None


_COMPARE: dict[CompareOperators, Callable[[float, float], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


class CompareMatcher(ElementMatcher):
    """``gt/gte/lt/lte``: numbers and decimal strings; anything else never matches."""

    __slots__ = ("number", "op")

    def __init__(self, value: SigmaCompareExpression) -> None:
        self.op = _COMPARE[value.op]
        self.number = value.number.number

    def _ok(self, e: Elem) -> bool:
        n = _as_number(e[0])
        return n is not None and self.op(n, self.number)


class CIDRMatcher(ElementMatcher):
    """``|cidr``: IPv4/IPv6 networks; values that are not IP addresses never match."""

    __slots__ = ("network",)

    def __init__(self, value: SigmaCIDRExpression) -> None:
        self.network = value.network

    def _ok(self, e: Elem) -> bool:
        raw = e[0]
        if not isinstance(raw, str):
            return False
        try:
            addr = ipaddress.ip_address(raw.strip())
        except ValueError:
            return False
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        if mapped is not None and self.network.version == 4:
            return mapped in self.network
        return addr.version == self.network.version and addr in self.network


class FieldRefMatcher(Matcher):
    """``|fieldref``: compare with another field of the same event, case-insensitively."""

    __slots__ = ("ends", "other", "starts")

    def __init__(self, value: SigmaFieldReference) -> None:
        self.other = value.field
        self.starts = value.starts_with
        self.ends = value.ends_with

    def _span(self, s: str, ref: str) -> Span | None:
        if self.starts and self.ends:
            i = s.find(ref)
            return (i, i + len(ref)) if i >= 0 else None
        if self.starts:
            return (0, len(ref)) if s.startswith(ref) else None
        if self.ends:
            return (len(s) - len(ref), len(s)) if s.endswith(ref) else None
        return (0, len(s)) if s == ref else None

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        if not elems:
            return None
        refs = field_elements(ev, self.other)
        if not refs:
            return None
        for i, e in enumerate(elems):
            s = e[2]
            if s is None:
                continue
            for r in refs:
                if r[2] is None:
                    continue
                span = self._span(s, r[2])
                if span is not None:
                    return i, map_span(e[1] or "", s, span)
        return None

    def test(self, ev: Event, elems: Elems) -> bool:
        return self.find(ev, elems) is not None


_TIME_PARTS: dict[TimestampPart, Callable[[datetime], int]] = {
    TimestampPart.MINUTE: lambda d: d.minute,
    TimestampPart.HOUR: lambda d: d.hour,
    TimestampPart.DAY: lambda d: d.day,
    TimestampPart.WEEK: lambda d: d.isocalendar()[1],
    TimestampPart.MONTH: lambda d: d.month,
    TimestampPart.YEAR: lambda d: d.year,
}


class TimestampMatcher(ElementMatcher):
    """``|minute``, ``|hour``, ``|day``, ``|week``, ``|month``, ``|year`` of an ISO timestamp."""

    __slots__ = ("number", "part")

    def __init__(self, value: SigmaTimestampPart) -> None:
        self.part = _TIME_PARTS[value.timestamp_part]
        self.number = value.number

    def _ok(self, e: Elem) -> bool:
        raw = e[0]
        if not isinstance(raw, str):
            return False
        try:
            stamp = datetime.fromisoformat(raw.strip())
        except ValueError:
            return False
        return self.part(stamp) == self.number


class ExpansionMatcher(Matcher):
    """Values a modifier expanded (windash, base64offset): always OR-ed, even under ``|all``."""

    __slots__ = ("absent", "variants")

    def __init__(self, variants: list[Matcher]) -> None:
        self.variants = variants
        self.absent = any(v.absent for v in variants)

    def test(self, ev: Event, elems: Elems) -> bool:
        return any(v.test(ev, elems) for v in self.variants)

    def find(self, ev: Event, elems: Elems) -> tuple[int, Span | None] | None:
        for v in self.variants:
            found = v.find(ev, elems)
            if found is not None:
                return found
        return None

    def literals(self) -> Literals:
        out: set[str] = set()
        for v in self.variants:
            lits = v.literals()
            if lits is None:
                return None
            out |= lits
        return frozenset(out)


def _string_parts(value: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for p in value.s:
        if isinstance(p, Placeholder):
            raise UnsupportedRuleError(
                f"|expand placeholder %{p.name}% needs configuration to be evaluated"
            )
        parts.append(p)
    return parts


def _compile_value(value: SigmaType, keyword: bool, mods: frozenset[str]) -> Matcher:
    """One value after modifiers. Keyword strings are searched inside every event value
    (implicit leading/trailing ``*`` unless ``|startswith``/``|endswith`` anchor them)."""
    star = SpecialChars.WILDCARD_MULTI
    if isinstance(value, SigmaExpansion):
        return ExpansionMatcher([_compile_value(v, keyword, mods) for v in value.values])
    if isinstance(value, SigmaString):  # includes SigmaCasedString
        parts = _string_parts(value)
        if keyword:
            if "startswith" not in mods:
                parts = [star, *parts]
            if "endswith" not in mods:
                parts = [*parts, star]
        return StringMatcher(parts, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaRegularExpression):
        if value.regexp.contains_placeholder():
            raise UnsupportedRuleError(
                "|expand placeholder in a regular expression needs configuration"
            )
        return RegexMatcher(value)
    if isinstance(value, SigmaTimestampPart):
        return TimestampMatcher(value)
    if isinstance(value, SigmaNumber | SigmaBool) and keyword:
        text = str(value.number) if isinstance(value, SigmaNumber) else str(value.boolean)
        return StringMatcher([star, text, star], cased=False)
    if isinstance(value, SigmaNumber):
        return NumberMatcher(value.number)
    if isinstance(value, SigmaBool):
        return BoolMatcher(value.boolean)
    if isinstance(value, SigmaNull):
        if keyword:
            raise UnsupportedRuleError("null keyword value")
        return NullMatcher()
    if isinstance(value, SigmaExists):
        return ExistsMatcher(value.exists)
    if isinstance(value, SigmaCompareExpression):
        return CompareMatcher(value)
    if isinstance(value, SigmaCIDRExpression):
        return CIDRMatcher(value)
    if isinstance(value, SigmaFieldReference):
        return FieldRefMatcher(value)
    raise UnsupportedRuleError(f"unsupported value type {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Detection structure


def _display(value: SigmaType) -> Any:
    if isinstance(value, SigmaString):
        return value.original
    if isinstance(value, SigmaNumber):
        return value.number
    if isinstance(value, SigmaBool):
        return value.boolean
    if isinstance(value, SigmaNull):
        return None
    return str(value)


@dataclass(slots=True, eq=False)
class ItemNode:
    """One ``field|modifiers: values`` entry (or a keyword list) of a search identifier."""

    field: str | None
    kind: str
    matchers: list[Matcher]
    rule_values: list[Any]
    all: bool
    negated: bool
    fast: Callable[[Event], bool] = field(repr=False, default=lambda ev: False)
    #: Built by the explaining evaluator on first use (False: not built yet).
    locator: Any = field(repr=False, default=False, compare=False)

    @property
    def keyword(self) -> bool:
        return self.field is None

    def literals(self) -> Literals:
        if self.negated or not self.matchers:
            return None
        sets = [m.literals() for m in self.matchers]
        if self.all:
            return _best([s for s in sets if s is not None])
        return _union(sets)

    def required_fields(self) -> Literals:
        """{field} when the item can only hold if its field is present (an exact key)."""
        name = self.field
        if (
            name is None
            or self.negated
            or not self.matchers
            or any(m.absent for m in self.matchers)
            or "." in name
            or " " in name
        ):
            return None
        return frozenset([name])


@dataclass(slots=True, eq=False)
class DetectionNode:
    """A search identifier's definition: items AND-ed (a map) or alternatives OR-ed (a list)."""

    all: bool
    children: list[DetectionNode | ItemNode]
    fast: Callable[[Event], bool] = field(repr=False, default=lambda ev: False)

    def literals(self) -> Literals:
        sets = [c.literals() for c in self.children]
        if self.all:
            return _best([s for s in sets if s is not None])
        return _union(sets)

    def required_fields(self) -> Literals:
        sets = [c.required_fields() for c in self.children]
        if self.all:
            return _fewest([s for s in sets if s is not None])
        return _union(sets, literals=False)


@dataclass(slots=True, eq=False)
class CondNode:
    """Condition tree node: ``and``/``or``/``not``/``id``; selectors are and/or over ``id``s."""

    op: str
    children: list[CondNode]
    name: str = ""
    text: str = ""
    fn: Callable[[dict[str, bool]], bool] | None = field(default=None, repr=False)

    def identifiers(self) -> list[str]:
        if self.op == "id":
            return [self.name]
        out: list[str] = []
        for c in self.children:
            for n in c.identifiers():
                if n not in out:
                    out.append(n)
        return out

    def evaluate(self, values: dict[str, bool]) -> bool:
        """The condition's value given each identifier's value."""
        if self.fn is not None:
            return self.fn(values)
        op = self.op
        if op == "id":
            return values[self.name]
        if op == "not":
            return not self.children[0].evaluate(values)
        if op == "and":
            return all(c.evaluate(values) for c in self.children)
        return any(c.evaluate(values) for c in self.children)

    def conjuncts(self) -> list[CondNode]:
        """Top-level AND conjuncts (the condition's stages)."""
        if self.op == "and" and not self.name:
            return list(self.children)
        return [self]


_COMMON_CHARS = frozenset(" \t\r\n.,:;-_=/\\'\"()[]{}<>@#$%&*+!?")


def _weak(literal: str) -> bool:
    """Literals in nearly every event: a common character, or a number of up to 3 digits
    (timestamps, GUIDs and ids are full of them)."""
    if len(literal) == 1:
        return literal.isascii() and literal.isalnum() or literal in _COMMON_CHARS
    return len(literal) <= 3 and literal.isascii() and literal.isdigit()


def _cost(literals: frozenset[str]) -> float:
    return sum(1.0 / (1 + len(lit)) ** 2 for lit in literals)


def _best(sets: list[frozenset[str]]) -> Literals:
    """The most selective literal set (fewest, longest literals); sets containing a weak
    literal (see :func:`_weak`) never qualify."""
    strong = [s for s in sets if s and not any(_weak(lit) for lit in s)]
    if not strong:
        return None
    return min(strong, key=lambda s: (_cost(s), sorted(s)))


def _fewest(sets: list[frozenset[str]]) -> Literals:
    if not sets:
        return None
    return min(sets, key=lambda s: (len(s), sorted(s)))


def _union(sets: list[Literals], *, literals: bool = True) -> Literals:
    """Any of these sets (an OR): None when one of them is None or (for literal sets) holds a
    weak literal."""
    if not sets:
        return None
    out: set[str] = set()
    for s in sets:
        if s is None or (literals and any(_weak(lit) for lit in s)):
            return None
        out |= s
    return frozenset(out)


def _cond_literals(node: CondNode, idents: dict[str, DetectionNode]) -> Literals:
    if node.op == "id":
        return idents[node.name].literals()
    if node.op == "not":
        return None
    sets = [_cond_literals(c, idents) for c in node.children]
    if node.op == "and":
        return _best([s for s in sets if s is not None])
    return _union(sets)


def _cond_fields(node: CondNode, idents: dict[str, DetectionNode]) -> Literals:
    if node.op == "id":
        return idents[node.name].required_fields()
    if node.op == "not":
        return None
    sets = [_cond_fields(c, idents) for c in node.children]
    if node.op == "and":
        return _fewest([s for s in sets if s is not None])
    return _union(sets, literals=False)


# --------------------------------------------------------------------------------------------
# Fast closures


def _or_group_fast(
    name: str | None, matchers: list[Matcher], absent: bool
) -> Callable[[Event], bool]:
    """OR over a field's values with plain case-insensitive strings grouped into one pass."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    contains: list[str] = []
    numbers: list[NumberMatcher] = []
    others: list[Matcher] = []
    for m in matchers:
        if isinstance(m, NumberMatcher) and name is not None:
            numbers.append(m)
        elif (
            isinstance(m, StringMatcher)
            and not m.cased
            and m.mode
            in (
                EXACT,
                PREFIX,
                SUFFIX,
                CONTAINS,
            )
        ):
            {EXACT: exact.add, PREFIX: prefixes.append, SUFFIX: suffixes.append}.get(
                m.mode, contains.append
            )(m.lit)
        else:
            others.append(m)
    ex = frozenset(exact)
    pre = tuple(prefixes)
    suf = tuple(suffixes)
    con = tuple(contains)

    if name is None:  # keywords: substring search over every value
        hay_any = _contains_any(tuple(c for c in con if SEPARATOR not in c))
        elem_lits = tuple(c for c in con if SEPARATOR in c)

        def keyword_fast(ev: Event) -> bool:
            if hay_any is not None and hay_any(ev.haystack):
                return True
            if elem_lits or ex or pre or suf:
                for _, (_raw, _text, cf) in keyword_elements(ev):
                    if cf is None:
                        continue
                    if cf in ex or (pre and cf.startswith(pre)) or (suf and cf.endswith(suf)):
                        return True
                    for c in elem_lits:
                        if c in cf:
                            return True
            if others:
                elems = keyword_values(ev)
                for m in others:
                    if m.test(ev, elems):
                        return True
            return False

        return keyword_fast

    con_any = _contains_any(con)
    # Numbers: numeric equality with JSON numbers, text equality with strings (NumberMatcher).
    nums = frozenset(m.number for m in numbers)
    num_texts = frozenset(m.text for m in numbers)

    def fast(ev: Event) -> bool:
        cache = ev._values
        elems = cache[name] if name in cache else field_elements(ev, name)
        if elems is None:
            return absent
        for raw, _text, cf in elems:
            if nums:
                kind = type(raw)
                if kind is str:
                    if raw in num_texts:
                        return True
                elif kind is not bool and isinstance(raw, int | float) and raw in nums:
                    return True
            if cf is None:
                continue
            if ex and cf in ex:
                return True
            if pre and cf.startswith(pre):
                return True
            if suf and cf.endswith(suf):
                return True
            if con_any is not None and con_any(cf):
                return True
        for m in others:  # noqa: SIM110 (a loop is faster than any() here)
            if m.test(ev, elems):
                return True
        return False

    return fast


_AC_THRESHOLD = 64  # contains-lists this long are scanned with one Aho-Corasick automaton
# (pyahocorasick costs ~50 ns per character; str.__contains__ wins for shorter lists)


def _contains_any(lits: tuple[str, ...]) -> Callable[[str], bool] | None:
    """A test "any of ``lits`` is a substring of s" (None when there is nothing to test)."""
    if not lits:
        return None
    if len(lits) == 1:
        lit = lits[0]
        return lambda s: lit in s
    if len(lits) < _AC_THRESHOLD:

        def loop(s: str) -> bool:
            for c in lits:  # noqa: SIM110 (a loop is faster than any() here)
                if c in s:
                    return True
            return False

        return loop
    automaton = ahocorasick.Automaton()
    for i, lit in enumerate(lits):
        automaton.add_word(lit, i)
    automaton.make_automaton()

    def scan(s: str) -> bool:
        for _ in automaton.iter(s):
            return True
        return False

    return scan


def _item_fast(item: ItemNode) -> Callable[[Event], bool]:
    name = item.field
    matchers = item.matchers
    if not matchers:  # `field: []` reads as null
        matchers = [NullMatcher()]
    absent_or = any(m.absent for m in matchers)
    if not item.all or len(matchers) == 1:
        base = _or_group_fast(name, matchers, absent_or)
    else:
        absent_and = all(m.absent for m in matchers)
        singles = [_or_group_fast(name, [m], m.absent) for m in matchers]
        if name is None:

            def base(ev: Event) -> bool:
                for f in singles:  # noqa: SIM110 (a loop is faster than any() here)
                    if not f(ev):
                        return False
                return True

        else:

            def base(ev: Event) -> bool:
                if field_elements(ev, name) is None:
                    return absent_and
                for f in singles:  # noqa: SIM110 (a loop is faster than any() here)
                    if not f(ev):
                        return False
                return True

    if item.negated:
        inner = base

        def negated(ev: Event) -> bool:
            return not inner(ev)

        return negated
    return base


def _combine(fs: list[Callable[[Event], bool]], conj: bool) -> Callable[[Event], bool]:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs
        if conj:
            return lambda ev: a(ev) and b(ev)
        return lambda ev: a(ev) or b(ev)
    if len(fs) == 3:
        a, b, c = fs
        if conj:
            return lambda ev: a(ev) and b(ev) and c(ev)
        return lambda ev: a(ev) or b(ev) or c(ev)
    tup = tuple(fs)
    if conj:

        def conj_all(ev: Event) -> bool:
            for f in tup:  # noqa: SIM110 (a loop is faster than any() here)
                if not f(ev):
                    return False
            return True

        return conj_all

    def disj_any(ev: Event) -> bool:
        for f in tup:  # noqa: SIM110 (a loop is faster than any() here)
            if f(ev):
                return True
        return False

    return disj_any


def _detection_fast(node: DetectionNode) -> Callable[[Event], bool]:
    return _combine([c.fast for c in node.children], node.all)


def _cond_fast(node: CondNode, idents: dict[str, DetectionNode]) -> Callable[[Event], bool]:
    if node.op == "id":
        return idents[node.name].fast
    if node.op == "not":
        inner = _cond_fast(node.children[0], idents)
        return lambda ev: not inner(ev)
    return _combine([_cond_fast(c, idents) for c in node.children], node.op == "and")


# --------------------------------------------------------------------------------------------
# Compilation


_SHORT_MODIFIERS = {"ignorecase": "i", "multiline": "m", "dotall": "s"}


def _modifier_name(modifier: type) -> str:
    name = reverse_modifier_mapping.get(modifier.__name__, modifier.__name__)
    return _SHORT_MODIFIERS.get(name, name)


def _kind(item: SigmaDetectionItem) -> str:
    mods = [_modifier_name(m) for m in item.modifiers]
    if mods:
        return "|".join(mods)
    if item.field is None:
        return "keyword"
    if item.value and all(isinstance(v, SigmaNull) for v in item.value):
        return "null"
    return "equals"


def _compile_item(item: SigmaDetectionItem) -> ItemNode:
    keyword = item.field is None
    mods = frozenset(_modifier_name(m) for m in item.modifiers)
    if keyword and not item.value:
        raise UnsupportedRuleError("empty keyword list")
    matchers = [_compile_value(v, keyword, mods) for v in item.value]
    originals = item.original_value if item.original_value is not None else item.value
    if len(originals) == len(item.value):
        rule_values = [_display(v) for v in originals]
    else:  # pragma: no cover - modifiers map values one to one
        rule_values = [_display(v) for v in item.value]
    node = ItemNode(
        field=item.field,
        kind=_kind(item),
        matchers=matchers,
        rule_values=rule_values,
        all=item.value_linking is ConditionAND,
        negated=item.negated,
    )
    node.fast = _item_fast(node)
    return node


def _compile_detection(det: SigmaDetection) -> DetectionNode:
    children: list[DetectionNode | ItemNode] = []
    for child in det.detection_items:
        if isinstance(child, SigmaDetection):
            children.append(_compile_detection(child))
        else:
            children.append(_compile_item(child))
    node = DetectionNode(all=det.item_linking is ConditionAND, children=children)
    node.fast = _detection_fast(node)
    return node


def _condition_text(node: CondNode, parent: str = "") -> str:
    if node.op == "id" or node.name:
        return node.text
    if node.op == "not":
        return "not " + _condition_text(node.children[0], "not")
    joiner = f" {node.op} "
    text = joiner.join(_condition_text(c, node.op) for c in node.children)
    if parent == "not" or (parent == "and" and node.op == "or"):
        return f"({text})"
    return text


def _values_fn(node: CondNode) -> Callable[[dict[str, bool]], bool]:
    """A closure evaluating ``node`` over identifier values (sets ``fn`` on the subtree)."""
    if node.op == "id":
        name = node.name
        fn: Callable[[dict[str, bool]], bool] = lambda v: v[name]  # noqa: E731
    elif node.op == "not":
        inner = _values_fn(node.children[0])
        fn = lambda v: not inner(v)  # noqa: E731
    else:
        fs = tuple(_values_fn(c) for c in node.children)
        if node.op == "and":
            fn = lambda v: all(f(v) for f in fs)  # noqa: E731
        else:
            fn = lambda v: any(f(v) for f in fs)  # noqa: E731
    node.fn = fn
    return fn


def _compile_condition(item: Any, detections: Any) -> CondNode:
    if isinstance(item, ConditionIdentifier):
        return CondNode("id", [], name=item.identifier, text=item.identifier)
    if isinstance(item, ConditionSelector):
        ids = [ci.identifier for ci in item.resolve_referenced_detections(detections)]
        quant = str(item.args[0])
        text = f"{quant} of {item.pattern}"
        if not ids:
            raise UnsupportedRuleError(f"'{text}' matches no search identifier")
        op = "and" if item.cond_class is ConditionAND else "or"
        children = [CondNode("id", [], name=i, text=i) for i in ids]
        return CondNode(op, children, name=text, text=text)
    if isinstance(item, ConditionNOT):
        child = _compile_condition(item.args[0], detections)
        node = CondNode("not", [child])
    elif isinstance(item, ConditionAND | ConditionOR):
        op = "and" if isinstance(item, ConditionAND) else "or"
        children: list[CondNode] = []
        for arg in item.args:
            c = _compile_condition(arg, detections)
            if c.op == op and not c.name:  # flatten a and (b and c)
                children.extend(c.children)
            else:
                children.append(c)
        node = CondNode(op, children)
    elif isinstance(item, ConditionItem):  # pragma: no cover - no other node types exist
        raise UnsupportedRuleError(f"unsupported condition node {type(item).__name__}")
    else:
        raise UnsupportedRuleError(f"unsupported condition element {type(item).__name__}")
    node.text = _condition_text(node)
    return node


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule ready to evaluate. ``unsupported`` non-empty means it is never evaluated."""

    id: str
    title: str
    level: str
    logsource: tuple[str, str, str]
    conditions: list[CondNode]
    condition_texts: list[str]
    identifiers: dict[str, DetectionNode]
    unsupported: list[str]
    literals: Literals
    match: Callable[[Event], bool] = field(repr=False)
    #: Field names one of which must be present for the rule to match (None: no such set).
    fields: Literals = None
    rule: ParsedRule | None = field(default=None, repr=False)

    @property
    def evaluable(self) -> bool:
        return not self.unsupported

    @property
    def logsource_label(self) -> str:
        return "/".join(p for p in self.logsource if p)


def _never(ev: Event) -> bool:
    return False


def compile_rule(rule: ParsedRule) -> CompiledRule:
    """Compile a :class:`ParsedRule` (its ``sigma`` SigmaRule) into a :class:`CompiledRule`.

    Never raises for rule content: what cannot be evaluated is listed in ``unsupported``.
    """
    ls = rule.logsource
    logsource = (ls.product or "", ls.category or "", ls.service or "")
    unsupported = list(rule.unsupported)
    conditions: list[CondNode] = []
    identifiers: dict[str, DetectionNode] = {}
    texts: list[str] = []
    sigma = rule.sigma
    detection = getattr(sigma, "detection", None)
    if sigma is None or detection is None:
        unsupported.append("no parsed detection (correlation or unparsed rule)")
    else:
        try:
            for name, det in detection.detections.items():
                identifiers[name] = _compile_detection(det)
            for cond in detection.parsed_condition:
                texts.append(cond.condition)
                if "|" in cond.condition:
                    raise UnsupportedRuleError(
                        f"aggregation '{cond.condition}' needs a correlation engine"
                    )
                tree = cond.parse(postprocess=False)
                node = _compile_condition(tree, detection)
                _values_fn(node)
                conditions.append(node)
        except UnsupportedRuleError as exc:
            # The parser already reports |expand placeholders in its own words.
            if not (rule.unsupported and "placeholder" in str(exc)):
                unsupported.append(str(exc))
        except Exception as exc:  # pySigma errors surface here for malformed rules
            unsupported.append(f"cannot compile: {type(exc).__name__}: {exc}")
    for c in conditions:
        for n in c.identifiers():
            if n not in identifiers:
                unsupported.append(f"condition references undefined identifier '{n}'")
    # The same reason may come from the parser and from compilation: keep one.
    unsupported = list(dict.fromkeys(unsupported))
    if unsupported or not conditions:
        if not unsupported:
            unsupported.append("no condition")
        return CompiledRule(
            id=rule.id,
            title=rule.title,
            level=rule.level,
            logsource=logsource,
            conditions=conditions,
            condition_texts=texts,
            identifiers=identifiers,
            unsupported=unsupported,
            literals=None,
            match=_never,
            rule=rule,
        )
    fasts = [_cond_fast(c, identifiers) for c in conditions]
    match = _combine(fasts, conj=False)
    literals = _union([_cond_literals(c, identifiers) for c in conditions])
    # Weak literals (a common character, a short number) are in nearly every event: scanning
    # for them costs more than it saves, so such rules are always candidates (when their
    # fields are present). _best/_union already avoid them where another choice exists.
    if literals is not None and (not literals or any(_weak(lit) for lit in literals)):
        literals = None
    fields = _union([_cond_fields(c, identifiers) for c in conditions], literals=False)
    return CompiledRule(
        id=rule.id,
        title=rule.title,
        level=rule.level,
        logsource=logsource,
        conditions=conditions,
        condition_texts=texts,
        identifiers=identifiers,
        unsupported=[],
        literals=literals,
        fields=fields,
        match=match,
        rule=rule,
    )
