"""Value matchers: one rule value (after modifiers) tested against the elements of a field.

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
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import re2  # type: ignore[import-untyped]
from sigma.types import (
    CompareOperators,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaFieldReference,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaTimestampPart,
    SpecialChars,
    TimestampPart,
)

from rules.compile.access import Element, Elements, Span, field_elements, map_span
from rules.compile.literals import Literals, regex_literals, union
from rules.events import Event

__all__ = [
    "ANY",
    "BoolMatcher",
    "CIDRMatcher",
    "CONTAINS",
    "CompareMatcher",
    "EXACT",
    "ElementMatcher",
    "ExistsMatcher",
    "ExpansionMatcher",
    "FieldRefMatcher",
    "Found",
    "GLOB",
    "Matcher",
    "NullMatcher",
    "NumberMatcher",
    "PREFIX",
    "REGEX",
    "RegexMatcher",
    "SUFFIX",
    "StringMatcher",
    "TimestampMatcher",
    "UnsupportedRuleError",
]


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


class Found(NamedTuple):
    """Where a matcher matched: the element's index (-1: the field itself, for null and
    exists) and the span in its text (None when there is no text to point at)."""

    element: int  # index into the elements
    span: Span | None


class Matcher:
    """One rule value (after modifiers) tested against the elements of one field."""

    __slots__ = ()
    absent: bool = False  # result when the field is absent

    def test(self, ev: Event, elems: Elements) -> bool:
        raise NotImplementedError

    def find(self, ev: Event, elems: Elements) -> Found | None:
        """Where the first matching element is, or None (the explaining path)."""
        raise NotImplementedError

    def literals(self) -> Literals:
        """Casefolded strings one of which an event contains whenever this matcher holds."""
        return None

    def contains_literal(self) -> str | None:
        """The casefolded substring searched for when this is a plain case-insensitive
        ``contains`` (``*x*``), else None: such values can be located all at once."""
        return None


# String matching modes (StringMatcher.mode)
EXACT, PREFIX, SUFFIX, CONTAINS, GLOB, REGEX, ANY = range(7)
_TEXT, _FOLDED = 1, 2  # Element indices: the hot loops index instead of naming


class ElementMatcher(Matcher):
    """A matcher that decides one event value at a time with ``_ok``; the span is the value."""

    __slots__ = ()

    def _ok(self, e: Element) -> bool:
        raise NotImplementedError

    def test(self, ev: Event, elems: Elements) -> bool:
        return elems is not None and any(self._ok(e) for e in elems)

    def find(self, ev: Event, elems: Elements) -> Found | None:
        for i, e in enumerate(elems or ()):
            if self._ok(e):
                return Found(i, (0, len(e.text or "")))
        return None


class StringMatcher(Matcher):
    """A SigmaString (or SigmaCasedString) with wildcards, anchored at both ends.

    Public for the fast path and the explainer: ``mode`` (EXACT, PREFIX, SUFFIX, CONTAINS,
    GLOB, REGEX or ANY), ``literal`` (the text EXACT/PREFIX/SUFFIX/CONTAINS compare with,
    casefolded unless ``cased``) and ``pattern`` (the normalised parts).
    """

    __slots__ = ("cased", "literal", "middles", "mode", "prefix", "regex", "suffix", "pattern")

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
        self.literal = ""
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
            self.mode, self.literal = EXACT, strs[0]
        elif len(norm) == 2 and norm[1] is star:
            self.mode, self.literal = PREFIX, strs[0]
        elif len(norm) == 2 and norm[0] is star:
            self.mode, self.literal = SUFFIX, strs[0]
        elif len(norm) == 3 and norm[0] is star and norm[2] is star:
            self.mode, self.literal = CONTAINS, strs[0]
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
        lit = self.literal
        if mode == EXACT:
            return (0, len(s)) if s == lit else None
        if mode == CONTAINS:
            i = s.find(lit)
            return (i, i + len(lit)) if i >= 0 else None
        if mode == SUFFIX:
            return (len(s) - len(lit), len(s)) if s.endswith(lit) else None
        if mode == PREFIX:
            return (0, len(lit)) if s.startswith(lit) else None
        if mode == ANY:
            return (0, len(s))
        if mode == GLOB:
            return _glob_span(s, self.prefix, self.middles, self.suffix)
        m = self.regex.search(s)
        return m.span() if m is not None else None

    def test(self, ev: Event, elems: Elements) -> bool:
        if not elems:
            return False
        idx = _TEXT if self.cased else _FOLDED
        mode = self.mode
        lit = self.literal
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

    def find(self, ev: Event, elems: Elements) -> Found | None:
        if not elems:
            return None
        for i, e in enumerate(elems):
            s = e.text if self.cased else e.folded
            if s is None:
                continue
            span = self._span(s)
            if span is not None:
                if not self.cased:
                    span = map_span(e.text or "", s, span)
                return Found(i, span)
        return None

    def literals(self) -> Literals:
        strs = [p for p in self.pattern if isinstance(p, str)]
        if not strs:
            return None
        longest = max(strs, key=len)
        return frozenset([longest if not self.cased else longest.casefold()])

    def contains_literal(self) -> str | None:
        if self.mode == CONTAINS and not self.cased:
            return self.literal
        return None


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

    def test(self, ev: Event, elems: Elements) -> bool:
        if not elems:
            return False
        search = self.regex.search
        return any(e.text is not None and search(e.text) is not None for e in elems)

    def find(self, ev: Event, elems: Elements) -> Found | None:
        if not elems:
            return None
        for i, e in enumerate(elems):
            if e.text is not None:
                m = self.regex.search(e.text)
                if m is not None:
                    return Found(i, m.span())
        return None

    def literals(self) -> Literals:
        return self.required


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class NumberMatcher(ElementMatcher):
    """Numeric equality with JSON numbers; text equality with string values."""

    __slots__ = ("number", "text")

    def __init__(self, number: float) -> None:
        self.number = number
        self.text = str(number)

    def _ok(self, e: Element) -> bool:
        raw = e.raw
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

    def _ok(self, e: Element) -> bool:
        raw = e.raw
        if isinstance(raw, bool):
            return raw is self.value
        return isinstance(raw, str) and e.folded == ("true" if self.value else "false")


class NullMatcher(Matcher):
    """``null``: the field is absent or JSON null."""

    __slots__ = ()
    absent = True

    def test(self, ev: Event, elems: Elements) -> bool:
        return elems is None or any(e.raw is None for e in elems)

    def find(self, ev: Event, elems: Elements) -> Found | None:
        if elems is None:
            return Found(-1, None)
        for i, e in enumerate(elems):
            if e.raw is None:
                return Found(i, None)
        return None


class ExistsMatcher(Matcher):
    """``|exists``: presence of the field (a present null exists)."""

    __slots__ = ("absent", "exists")

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.absent = not exists

    def test(self, ev: Event, elems: Elements) -> bool:
        return (elems is not None) is self.exists

    def find(self, ev: Event, elems: Elements) -> Found | None:
        return Found(-1, None) if self.test(ev, elems) else None


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

    def _ok(self, e: Element) -> bool:
        n = _as_number(e.raw)
        return n is not None and self.op(n, self.number)


_Parsed = TypeVar("_Parsed")


def _parse_text(raw: Any, parse: Callable[[str], _Parsed]) -> _Parsed | None:
    """``parse`` of a string event value (surrounding blanks ignored); None when the value
    is not a string or does not parse: such values never match."""
    if not isinstance(raw, str):
        return None
    try:
        return parse(raw.strip())
    except ValueError:
        return None


class CIDRMatcher(ElementMatcher):
    """``|cidr``: IPv4/IPv6 networks; values that are not IP addresses never match."""

    __slots__ = ("network",)

    def __init__(self, value: SigmaCIDRExpression) -> None:
        self.network = value.network

    def _ok(self, e: Element) -> bool:
        addr = _parse_text(e.raw, ipaddress.ip_address)
        if addr is None:
            return False
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        if mapped is not None and self.network.version == 4:
            return mapped in self.network
        return addr.version == self.network.version and addr in self.network


class FieldRefMatcher(Matcher):
    """``|fieldref``: compare with another field of the same event, case-insensitively unless
    ``cased`` (then on the original text)."""

    __slots__ = ("cased", "ends", "other", "starts")

    def __init__(self, value: SigmaFieldReference, cased: bool = False) -> None:
        self.other = value.field
        self.starts = value.starts_with
        self.ends = value.ends_with
        self.cased = cased

    def _span(self, s: str, ref: str) -> Span | None:
        if self.starts and self.ends:
            i = s.find(ref)
            return (i, i + len(ref)) if i >= 0 else None
        if self.starts:
            return (0, len(ref)) if s.startswith(ref) else None
        if self.ends:
            return (len(s) - len(ref), len(s)) if s.endswith(ref) else None
        return (0, len(s)) if s == ref else None

    def find(self, ev: Event, elems: Elements) -> Found | None:
        if not elems:
            return None
        refs = field_elements(ev, self.other)
        if not refs:
            return None
        idx = _TEXT if self.cased else _FOLDED
        for i, e in enumerate(elems):
            s = e[idx]
            if s is None:
                continue
            for r in refs:
                ref = r[idx]
                if ref is None:
                    continue
                span = self._span(s, ref)
                if span is not None:
                    if not self.cased:
                        span = map_span(e.text or "", s, span)
                    return Found(i, span)
        return None

    def test(self, ev: Event, elems: Elements) -> bool:
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

    def _ok(self, e: Element) -> bool:
        stamp = _parse_text(e.raw, datetime.fromisoformat)
        return stamp is not None and self.part(stamp) == self.number


class ExpansionMatcher(Matcher):
    """Values a modifier expanded (windash, base64offset): always OR-ed, even under ``|all``."""

    __slots__ = ("absent", "variants")

    def __init__(self, variants: list[Matcher]) -> None:
        self.variants = variants
        self.absent = any(v.absent for v in variants)

    def test(self, ev: Event, elems: Elements) -> bool:
        return any(v.test(ev, elems) for v in self.variants)

    def find(self, ev: Event, elems: Elements) -> Found | None:
        for v in self.variants:
            found = v.find(ev, elems)
            if found is not None:
                return found
        return None

    def literals(self) -> Literals:
        return union([v.literals() for v in self.variants], literals=False)
