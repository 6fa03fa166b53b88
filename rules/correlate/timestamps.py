"""An event's time: the field it is in (detected or chosen) and its value as epoch seconds.

The order of the fields agrees with :func:`rules.shapes.event_time` (the input-shape
normalisation writes ``TimeCreated_SystemTime`` for every Windows shape); this module returns
epoch seconds (the correlation stage compares numbers) and also reads epoch numbers.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["TIMESTAMP_FIELDS", "Lookup", "event_time", "parse_time"]

TIMESTAMP_FIELDS = (
    # First, as rules.shapes.event_time: every Windows input shape is normalised to it.
    "TimeCreated_SystemTime",
    "@timestamp",
    "timestamp",
    "Event.System.TimeCreated.#attributes.SystemTime",
    "TimeCreated.#attributes.SystemTime",
    "TimeCreated",
    "SystemTime",
    "UtcTime",
    "_time",
    "Timestamp",
    "time",
    "EventTime",
    "event.created",
    "ts",
    "datetime",
)
"""Fields tried in order when no timestamp field is chosen; the first one present wins."""

# Windows writes 7 fractional digits (100 ns); datetime takes at most 6.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
_MISSING = object()


class Lookup(Protocol):
    def lookup(self, name: str) -> Any: ...


def event_time(event: Lookup, field: str | None = None) -> float | None:
    """The event's time in epoch seconds, or None when it has no readable timestamp."""
    if field:
        return parse_time(event.lookup(field))
    # Exact keys first, straight from the mapping (the hot path: no lookup cache grows);
    # then the same names through lookup (space-less aliases, dotted paths).
    fields = getattr(event, "fields", None)
    if isinstance(fields, dict):
        found = _first_time(fields.get)
        if found is not None:
            return found
    return _first_time(event.lookup)


def _first_time(get: Callable[[str], Any]) -> float | None:
    for name in TIMESTAMP_FIELDS:
        value = get(name)
        if value:
            parsed = parse_time(value)
            if parsed is not None:
                return parsed
    return None


def parse_time(value: Any) -> float | None:
    """ISO 8601 text (``Z``, offsets, up to 9 fractional digits; naive means UTC), epoch
    seconds or milliseconds (numbers or digit strings), or a datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):  # noqa: UP038 (a union is rebuilt per call)
        return _epoch(float(value))
    if isinstance(value, datetime.datetime):
        return _aware(value).timestamp()
    if isinstance(value, dict) and "#text" in value:
        return parse_time(value["#text"])
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return _epoch(float(text))
    if len(text) > 27:  # only a fraction longer than 6 digits (or an offset) gets here
        text = _LONG_FRACTION.sub(r"\1", text)
    if text.endswith("z"):
        text = text[:-1] + "Z"  # fromisoformat (3.11) reads Z
    try:
        return _aware(datetime.datetime.fromisoformat(text)).timestamp()
    except ValueError:
        return None


def _epoch(number: float) -> float | None:
    if number != number or number < 0:  # NaN or before 1970
        return None
    if number > 1e14:  # microseconds
        return number / 1e6
    if number > 1e11:  # milliseconds (1e11 s is the year 5138)
        return number / 1e3
    return number


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
