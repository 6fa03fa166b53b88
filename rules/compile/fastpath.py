"""The fast yes/no path: closures compiled from the detection and condition trees.

``CompiledRule.match`` runs only these. They are the hot loop of the sandbox (every candidate
rule per event), so they bind everything they need as locals and use loops instead of
``any()``; the explaining path (:mod:`rules.evaluate.explain`) re-derives the same verdicts
with spans and must agree with them (pinned by the "fast path == explanation" tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ahocorasick  # type: ignore[import-not-found]
import re2  # type: ignore[import-untyped]

from rules.compile.access import field_elements, keyword_values
from rules.compile.matchers import (
    CONTAINS,
    EXACT,
    PREFIX,
    REGEX,
    SUFFIX,
    Matcher,
    NullMatcher,
    NumberMatcher,
    RegexMatcher,
    StringMatcher,
)
from rules.compile.tree import DetectionNode, ItemNode
from rules.conditions import Node, boolean_op, operands
from rules.events import SEPARATOR, Event

__all__ = [
    "EventTest",
    "combine",
    "condition_fast",
    "detection_fast",
    "item_fast",
    "regex_found",
]

EventTest = Callable[[Event], bool]

_GROUPED_MODES = (EXACT, PREFIX, SUFFIX, CONTAINS)  # string modes tested by str operations


def _or_group_fast(name: str | None, matchers: list[Matcher], absent: bool) -> EventTest:
    """OR over a field's values with plain case-insensitive strings grouped into one pass.

    Long on purpose: one closure per field with every group bound as a local is the
    fastest shape for CPython (a helper call per element costs more than the test).
    """
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    contains: list[str] = []
    numbers: list[NumberMatcher] = []
    on_text: list[Callable[[str], bool]] = []  # regex searches on the original text
    on_folded: list[Callable[[str], bool]] = []  # `?` patterns on the casefolded text
    others: list[Matcher] = []
    for m in matchers:
        if isinstance(m, NumberMatcher) and name is not None:
            numbers.append(m)
        elif name is not None and type(m) is RegexMatcher:
            on_text.append(regex_found(m.regex))
        elif name is not None and type(m) is StringMatcher and m.mode == REGEX:
            (on_text if m.cased else on_folded).append(regex_found(m.regex))
        elif isinstance(m, StringMatcher) and not m.cased and m.mode in _GROUPED_MODES:
            if m.mode == EXACT:
                exact.add(m.literal)
            elif m.mode == PREFIX:
                prefixes.append(m.literal)
            elif m.mode == SUFFIX:
                suffixes.append(m.literal)
            else:
                contains.append(m.literal)
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
                for e in keyword_values(ev):
                    cf = e.folded
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
    text_tests = tuple(on_text)
    folded_tests = tuple(on_folded)
    # Numbers: numeric equality with JSON numbers, text equality with strings (NumberMatcher).
    nums = frozenset(m.number for m in numbers)
    num_texts = frozenset(m.text for m in numbers)

    def fast(ev: Event) -> bool:
        cache = ev.match_cache
        elems = cache[name] if name in cache else field_elements(ev, name)
        if elems is None:
            return absent
        for e in elems:  # attributes, not unpacking: unpacking a NamedTuple is slower
            if nums:
                raw = e.raw
                raw_type = type(raw)
                if raw_type is str:
                    if raw in num_texts:
                        return True
                elif raw_type is not bool and isinstance(raw, int | float) and raw in nums:
                    return True
            cf = e.folded
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
        if folded_tests and _any_passes(folded_tests, [e.folded for e in elems]):
            return True
        if text_tests and _any_passes(text_tests, [e.text for e in elems]):
            return True
        for m in others:  # noqa: SIM110 (a loop is faster than any() here)
            if m.test(ev, elems):
                return True
        return False

    return fast


def _any_passes(tests: tuple[Callable[[str], bool], ...], texts: list[str | None]) -> bool:
    """Whether one of the tests holds for one of the texts (None: a value without text)."""
    for text in texts:
        if text is not None:
            for test in tests:
                if test(text):
                    return True
    return False


_UNANCHORED = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
_NO_SPAN = (-1, -1)


def regex_found(regex: Any) -> Callable[[str], bool]:
    """Whether ``regex`` (a compiled ``re2`` pattern) is found in a text: the yes/no of
    ``regex.search(text) is not None``.

    google-re2's ``search`` is a Python generator that maps every span back from UTF-8 bytes
    to characters and builds a match object; the yes/no needs none of it, so this calls the
    compiled program on the UTF-8 text directly (what ``search`` does first), and falls back
    to ``search`` where the wrapper's internals are not as expected.
    """
    program = getattr(regex, "_regexp", None)
    if _UNANCHORED is None or program is None or not hasattr(program, "Match"):
        search = regex.search
        return lambda text: search(text) is not None
    unanchored = _UNANCHORED.UNANCHORED
    match = program.Match

    def found(text: str) -> bool:
        data = text.encode()  # as the wrapper encodes (and fails on lone surrogates)
        return match(unanchored, data, 0, len(data))[0] != _NO_SPAN  # type: ignore[no-any-return]

    return found


_AC_THRESHOLD = 64  # contains-lists this long are scanned with one Aho-Corasick automaton
# (pyahocorasick costs ~50 ns per character; str.__contains__ wins for shorter lists)


def _contains_any(lits: tuple[str, ...]) -> Callable[[str], bool] | None:
    """A test "any of ``lits`` is a substring of s" (None when there is nothing to test).

    Literals with a non-ASCII character cannot occur in an ASCII text (``str.isascii`` is a
    flag check), so they are tested apart: most event values are ASCII, and a list of emoji
    made pyahocorasick walk a root node with a thousand children for every character.
    """
    narrow_any = _contains_test(tuple(lit for lit in lits if lit.isascii()))
    wide_any = _contains_test(tuple(lit for lit in lits if not lit.isascii()))
    if wide_any is None:
        return narrow_any
    if narrow_any is None:
        return lambda s: not s.isascii() and wide_any(s)
    return lambda s: narrow_any(s) or (not s.isascii() and wide_any(s))


def _contains_test(lits: tuple[str, ...]) -> Callable[[str], bool] | None:
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


def item_fast(item: ItemNode) -> EventTest:
    """The closure of one detection item (values OR-ed, or AND-ed under ``|all``)."""
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


def combine(fs: list[EventTest], conj: bool) -> EventTest:
    """AND (``conj``) or OR of closures; up to three are inlined into one lambda."""
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


def detection_fast(node: DetectionNode) -> EventTest:
    """The closure of a search identifier over its children's closures."""
    return combine([c.fast for c in node.children], node.all)


def condition_fast(node: Node, identifiers: Mapping[str, DetectionNode]) -> EventTest:
    """The closure of a resolved condition tree over the identifiers' closures."""
    if node.op == "ref":
        return identifiers[node.name].fast
    if node.op == "not":
        inner = condition_fast(node.args[0], identifiers)
        return lambda ev: not inner(ev)
    children = [condition_fast(c, identifiers) for c in operands(node)]
    return combine(children, boolean_op(node) == "and")
