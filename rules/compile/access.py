"""Event access for matchers: an event's values as :class:`Element` tuples, cached per event.

Matchers compare rule values with *elements*: each scalar value of a field (array values are
flattened) with its text and casefolded text computed once. The cache lives on the event
(:attr:`rules.events.Event.match_cache`) so every rule evaluated against one event shares it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from rules.events import MISSING, Event, value_text

__all__ = [
    "Element",
    "Elements",
    "KeywordElement",
    "Span",
    "field_elements",
    "keyword_elements",
    "keyword_values",
    "map_span",
]

Span = tuple[int, int]  # [start, end) in an element's text


class Element(NamedTuple):
    """One scalar event value as matchers see it."""

    raw: Any  # the JSON value
    text: str | None  # its text (None for null and containers)
    folded: str | None  # ``text.casefold()``


Elements = tuple[Element, ...] | None  # None: the field is absent


class KeywordElement(NamedTuple):
    """A leaf value of the event with its dotted field path (keyword searches)."""

    path: str
    element: Element


# tuple.__new__ skips the Python-level NamedTuple constructor: elements are built per field
# per event on the hot path.
_new_tuple = tuple.__new__
_KEYWORDS_KEY = None  # match_cache key of keyword_elements (field names are strings)
_KEYWORD_VALUES_KEY = 0  # match_cache key of keyword_values


def _element(value: Any) -> Element:
    text = value_text(value)
    return _new_tuple(Element, (value, text, text.casefold() if text is not None else None))


def _flat_list(values: Iterable[Any]) -> Iterable[Any]:
    for v in values:
        if isinstance(v, list | tuple):
            yield from _flat_list(v)
        else:
            yield v


def field_elements(ev: Event, name: str) -> Elements:
    """The elements of field ``name`` (cached per event); ``None`` when absent."""
    cache = ev.match_cache
    try:
        return cache[name]  # type: ignore[no-any-return]
    except KeyError:
        pass
    value = ev.lookup(name)
    if value is MISSING:
        result: Elements = None
    elif isinstance(value, list | tuple):
        result = tuple(_element(v) for v in _flat_list(value))
    else:
        result = (_element(value),)
    cache[name] = result
    return result


def keyword_values(ev: Event) -> tuple[Element, ...]:
    """Every leaf value of the event as an element (keyword searches), cached per event."""
    cache = ev.match_cache
    if _KEYWORD_VALUES_KEY not in cache:
        cache[_KEYWORD_VALUES_KEY] = tuple(_element(v) for _, v in ev.leaves)
    return cache[_KEYWORD_VALUES_KEY]  # type: ignore[no-any-return]


def keyword_elements(ev: Event) -> tuple[KeywordElement, ...]:
    """:func:`keyword_values` with each value's field path (explanations), cached per event."""
    cache = ev.match_cache
    if _KEYWORDS_KEY not in cache:
        paths = (path for path, _ in ev.leaves)
        cache[_KEYWORDS_KEY] = tuple(map(KeywordElement, paths, keyword_values(ev)))
    return cache[_KEYWORDS_KEY]  # type: ignore[no-any-return]


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
