"""Event input for the sandbox: JSON, JSON lines, evtx_dump JSON, ``.evtx`` files, scriptblocks.

Other input shapes (Windows event XML, Winlogbeat/ECS, Hayabusa, Chainsaw, evtx JSON with
separate attributes) are detected and normalised by :mod:`rules.shapes`, which
:func:`read_events` and :func:`event_from_mapping` call.

Everything the evaluator reads from an event goes through :class:`Event`:

* ``fields`` is a flat mapping. Windows events in evtx_dump shape
  (``{"Event": {"System": ..., "EventData": ...}}``) are flattened to their EventData /
  UserData fields plus the System fields (``EventID``, ``Channel``, ``Computer``,
  ``Provider_Name`` from ``Provider.#attributes.Name``, ``TimeCreated_SystemTime``...).
  Field names with spaces lose the spaces.
* :meth:`Event.lookup` resolves a rule's field name: the exact key first, then the key without
  spaces, then a dotted path into nested objects (lists along the path fan out).
* :attr:`Event.haystack` is the casefolded concatenation of every leaf value, the text the
  literal prefilter scans.

Bad input raises a subclass of :class:`EventInputError` (a ``ValueError``) whose message and
attributes name the position: line/column and character offset for JSON, record index for
records of the wrong shape, record index or byte offset for ``.evtx`` files.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from rules.errors import (
    EmptyInputError,
    EventInputError,
    EventShapeError,
    EvtxInputError,
    InputEncodingError,
    JsonInputError,
)
from rules.text_input import (
    MAX_FILE_BYTES,
    decode_text,
    find_lone_surrogate,
    lone_surrogate_error,
    read_file_bytes,
)

__all__ = [
    "EVTX_MAGIC",
    "MISSING",
    "POWERSHELL_CHANNEL",
    "POWERSHELL_PROVIDER",
    "READ_KINDS",
    "EmptyInputError",
    "Event",
    "EventInputError",
    "EventReading",
    "EventShapeError",
    "EvtxInputError",
    "InputEncodingError",
    "JsonInputError",
    "event_from_mapping",
    "find_lone_surrogate",
    "flatten_evtx",
    "load_events_file",
    "parse_events",
    "parse_evtx",
    "parse_json_events",
    "read_events",
    "scriptblock_event",
    "value_text",
]

EVTX_MAGIC: Final = b"ElfFile\x00"
EVTX_HEADER_SIZE: Final = 4096
EVTX_CHUNK_SIZE: Final = 65536
POWERSHELL_CHANNEL: Final = "Microsoft-Windows-PowerShell/Operational"
POWERSHELL_PROVIDER: Final = "Microsoft-Windows-PowerShell"
SEPARATOR: Final = "\x00"


class _Missing:
    """Sentinel for an absent field (distinct from a present JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


# --------------------------------------------------------------------------------------------
# Values


def value_text(value: Any) -> str | None:
    """The text a scalar event value is matched as; ``None`` for null and for objects.

    Booleans read as ``true``/``false`` (as in JSON), numbers as Python prints them.
    """
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _iter_leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _iter_leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _iter_leaves(v, path)
    else:
        yield path, value


def _resolve_path(node: Any, parts: list[str]) -> list[Any]:
    """All values reachable from ``node`` by the dotted path ``parts``.

    Keys containing dots are found too (every split of the remaining path is tried), and lists
    along the path fan out.
    """
    if not parts:
        return [node]
    if isinstance(node, list | tuple):
        found: list[Any] = []
        for item in node:
            found.extend(_resolve_path(item, parts))
        return found
    if not isinstance(node, Mapping):
        return []
    found = []
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in node:
            found.extend(_resolve_path(node[key], parts[i:]))
    return found


@dataclass(slots=True, repr=False, eq=False)
class Event:
    """One event as the evaluator sees it: a flat field mapping plus lazily built caches."""

    fields: dict[str, Any]
    index: int = 0
    kind: str = "json"
    _lookup: dict[str, Any] = field(default_factory=dict, init=False)
    # Keys with spaces are also reachable without them ("New Process Name" ->
    # "NewProcessName"); the exact key always wins.
    _aliases: dict[str, str] | None = field(default=None, init=False)
    #: Matching cache owned by rules.compile (field name -> its elements, or None when the
    #: field is absent); public so the hot matching closures can read it without a call.
    match_cache: dict[Any, Any] = field(default_factory=dict, init=False)
    _leaves: list[tuple[str, Any]] | None = field(default=None, init=False)
    _haystack: str | None = field(default=None, init=False)
    _names: frozenset[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for key in self.fields:
            if isinstance(key, str) and " " in key:
                if self._aliases is None:
                    self._aliases = {}
                self._aliases.setdefault(key.replace(" ", ""), key)

    def __repr__(self) -> str:
        return f"Event(kind={self.kind!r}, index={self.index}, fields={len(self.fields)})"

    def lookup(self, name: str) -> Any:
        """The value of field ``name`` or :data:`MISSING`.

        Exact key first, then the key without spaces, then a dotted path (``a.b.c``) into
        nested objects; a path through lists returns the list of values found.
        """
        cache = self._lookup
        if name in cache:
            return cache[name]
        fields = self.fields
        if name in fields:
            value = fields[name]
        else:
            value = MISSING
            if self._aliases is not None and name in self._aliases:
                value = fields[self._aliases[name]]
            elif " " in name:
                squeezed = name.replace(" ", "")
                if squeezed in fields:
                    value = fields[squeezed]
            if value is MISSING and "." in name:
                found = _resolve_path(fields, name.split("."))
                if len(found) == 1:
                    value = found[0]
                elif found:
                    value = found
        cache[name] = value
        return value

    @property
    def names(self) -> frozenset[str]:
        """Field names an exact (or space-less) lookup finds."""
        if self._names is None:
            names = set(self.fields)
            if self._aliases is not None:
                names.update(self._aliases)
            self._names = frozenset(names)
        return self._names

    @property
    def leaves(self) -> list[tuple[str, Any]]:
        """Every scalar value with its dotted field path (list elements share the path)."""
        if self._leaves is None:
            self._leaves = list(_iter_leaves(self.fields, ""))
        return self._leaves

    @property
    def haystack(self) -> str:
        """Casefolded text of every leaf value joined by NUL: what the prefilter scans."""
        if self._haystack is None:
            parts: list[str] = []
            for value in self.fields.values():
                if isinstance(value, str):
                    parts.append(value)
                elif isinstance(value, Mapping | list | tuple):
                    for _, leaf in _iter_leaves(value, ""):
                        text = value_text(leaf)
                        if text is not None:
                            parts.append(text)
                else:
                    text = value_text(value)
                    if text is not None:
                        parts.append(text)
            # casefold() maps character by character, so folding the joined text equals
            # joining the folded values (and NUL folds to itself).
            self._haystack = SEPARATOR.join(parts).casefold()
        return self._haystack

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)


# --------------------------------------------------------------------------------------------
# Flattening


def _squeeze(name: str) -> str:
    return name.replace(" ", "") if " " in name else name


def _scalar_of(value: Any) -> Any:
    """``{"#text": x, "#attributes": {...}}`` -> ``x``; other values unchanged."""
    if isinstance(value, Mapping) and "#text" in value:
        return value["#text"]
    return value


def _flatten_system(out: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        if "#text" in value:
            out.setdefault(name, value["#text"])
        attrs = value.get("#attributes")
        if isinstance(attrs, Mapping):
            for k, v in attrs.items():
                out.setdefault(f"{name}_{_squeeze(str(k))}", v)
        for k, v in value.items():
            if k not in ("#text", "#attributes"):
                _flatten_system(out, f"{name}_{_squeeze(str(k))}", v)
    else:
        out.setdefault(name, value)


def _flatten_data(out: dict[str, Any], data: Any) -> None:
    """EventData / UserData payload fields into ``out`` (existing keys win)."""
    if not isinstance(data, Mapping):
        if data is not None:
            out.setdefault("EventData", data)
        return
    for key, value in data.items():
        if key == "#attributes":
            continue
        if key == "Data":
            items = value if isinstance(value, list) else [value]
            unnamed: list[Any] = []
            for item in items:
                name = None
                if isinstance(item, Mapping):
                    attrs = item.get("#attributes")
                    if isinstance(attrs, Mapping) and "Name" in attrs:
                        name = str(attrs["Name"])
                if name is not None:
                    out.setdefault(_squeeze(name), _scalar_of(item))
                else:
                    unnamed.append(_scalar_of(item))
            if unnamed:
                out.setdefault("Data", unnamed[0] if len(unnamed) == 1 else unnamed)
            continue
        name = _squeeze(str(key))
        if key == "#text":
            out.setdefault("EventData", value)
        elif isinstance(value, Mapping) and "#text" not in value:
            nested: dict[str, Any] = {}
            _flatten_data(nested, value)
            for k, v in nested.items():
                out.setdefault(f"{name}_{k}", v)
        else:
            out.setdefault(name, _scalar_of(value))


def _flatten_userdata(out: dict[str, Any], data: Any) -> None:
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        if key == "#attributes":
            continue
        if isinstance(value, Mapping):
            _flatten_data(out, value)
        else:
            out.setdefault(_squeeze(str(key)), value)


def is_evtx_shape(obj: Mapping[str, Any]) -> bool:
    event = obj.get("Event")
    return len(obj) == 1 and isinstance(event, Mapping) and isinstance(event.get("System"), Mapping)


def flatten_evtx(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one evtx_dump record ``{"Event": {"System": ..., "EventData": ...}}``."""
    event = obj["Event"]
    out: dict[str, Any] = {}
    for key, value in event["System"].items():
        _flatten_system(out, _squeeze(str(key)), value)
    if "EventData" in event:
        _flatten_data(out, event["EventData"])
    if "UserData" in event:
        _flatten_userdata(out, event["UserData"])
    return out


def event_from_mapping(obj: Mapping[str, Any], *, index: int = 0, kind: str = "json") -> Event:
    """Wrap one decoded JSON object as an :class:`Event`, normalised from its input shape
    (:mod:`rules.shapes`: evtx_dump, Winlogbeat, Hayabusa, Chainsaw...); ``kind`` is the
    shape unless the caller names one (``evtx``). A Chainsaw aggregate gives its first event."""
    from rules.shapes import normalise_records  # rules.shapes builds on this module

    shape, normalised = normalise_records(obj)
    fields = normalised[0] if normalised else {}
    return Event(fields, index=index, kind=shape if kind == "json" else kind)


def scriptblock_event(text: str) -> Event:
    """A plain PowerShell scriptblock as the 4104 event that logs it."""
    return Event(
        {
            "ScriptBlockText": text,
            "EventID": 4104,
            "Channel": POWERSHELL_CHANNEL,
            "Provider_Name": POWERSHELL_PROVIDER,
        },
        kind="scriptblock",
    )


# --------------------------------------------------------------------------------------------
# Parsing


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


_WS = " \t\r\n\ufeff"


def parse_json_events(text: str, *, max_events: int | None = None) -> list[Event]:
    """Events from a JSON object, a JSON array of objects, JSON lines, or concatenated objects.

    Arrays nested at top level are unrolled; any other value is an :class:`EventShapeError`.
    """
    from rules.shapes import events_from_mappings  # rules.shapes builds on this module

    return events_from_mappings(_json_objects(text, max_events), max_events=max_events).events


def _json_objects(text: str, max_events: int | None) -> Iterator[dict[str, Any]]:
    """The objects of JSON text (see :func:`parse_json_events`), checked one by one."""
    decoder = json.JSONDecoder()
    count = 0
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            break
        start = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise JsonInputError(
                f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno, offset=exc.pos
            ) from None
        except ValueError:  # a number past Python's int-string limit (4,300 digits)
            line, col = _line_col(text, start)
            raise JsonInputError(
                f"invalid JSON: a number has more than {sys.get_int_max_str_digits():,} digits",
                line=line,
                column=col,
                offset=start,
            ) from None
        except RecursionError:
            line, col = _line_col(text, start)
            raise JsonInputError(
                "invalid JSON: nested too deeply", line=line, column=col, offset=start
            ) from None
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                line, col = _line_col(text, start)
                raise EventShapeError(
                    f"expected an event object, got {type(item).__name__}",
                    record=count,
                    line=line,
                    column=col,
                    offset=start,
                )
            bad_text = lone_surrogate_error(item, record=count)
            if bad_text is not None:
                raise bad_text
            count += 1
            if max_events is not None and count > max_events:
                line, col = _line_col(text, start)
                raise EventInputError(
                    f"more than {max_events} events", record=count - 1, line=line, column=col
                )
            yield item


def parse_evtx(data: bytes | str, *, max_events: int | None = None) -> list[Event]:
    """Events from an ``.evtx`` file (bytes, or a path) via the ``evtx`` package."""
    try:
        import evtx
    except ImportError as exc:  # pragma: no cover - evtx is a pinned requirement
        raise EvtxInputError(f"evtx support is not installed: {exc}") from None
    if isinstance(data, str):
        with open(data, "rb") as fh:
            data = fh.read()
    _check_evtx_layout(data)
    events: list[Event] = []
    try:
        parser = evtx.PyEvtxParser(io.BytesIO(data))
        for record in parser.records_json():
            events.append(_evtx_record_event(record, len(events)))
            if max_events is not None and len(events) > max_events:
                raise EvtxInputError(f"more than {max_events} events", record=len(events) - 1)
    except EvtxInputError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise EvtxInputError(f"corrupt EVTX data: {exc}", record=len(events)) from None
    return events


def _check_evtx_layout(data: bytes) -> None:
    """Refuse what the evtx parser would misread: a foreign file, a cut header or chunk."""
    if not data.startswith(EVTX_MAGIC):
        raise EvtxInputError("not an EVTX file: bad file signature", byte_offset=0)
    if len(data) < EVTX_HEADER_SIZE:
        raise EvtxInputError("truncated EVTX file header", byte_offset=len(data))
    body = len(data) - EVTX_HEADER_SIZE
    if body % EVTX_CHUNK_SIZE:
        chunk_start = EVTX_HEADER_SIZE + (body // EVTX_CHUNK_SIZE) * EVTX_CHUNK_SIZE
        raise EvtxInputError(
            f"truncated EVTX chunk: {body % EVTX_CHUNK_SIZE} of {EVTX_CHUNK_SIZE} bytes",
            byte_offset=chunk_start,
        )


def _evtx_record_event(record: Any, index: int) -> Event:
    """One evtx parser record (``{"event_record_id": ..., "data": "<JSON>"}``) as an Event.

    ``record`` is typed ``Any`` because the evtx stubs type records as ``Optional[Any]``.
    """
    try:
        obj = json.loads(record["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EvtxInputError(
            f"record {record.get('event_record_id')} is not valid JSON: {exc}", record=index
        ) from None
    if not isinstance(obj, dict):
        raise EvtxInputError("record is not an object", record=index)
    return event_from_mapping(obj, index=index, kind="evtx")


def _looks_like_json(text: str) -> bool:
    stripped = text.lstrip(_WS)
    if not stripped or stripped[0] not in "{[":
        return False
    rest = stripped[1:].lstrip(_WS)
    if not rest or rest[0] in '"{[]}':
        return True
    # ``[1, 2, 3]`` is JSON, not PowerShell: read it as JSON so it is refused with a message
    # instead of silently matching nothing as a scriptblock.
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        return False
    return True


class EventReading(NamedTuple):
    """The events, and how the input was read (``kind`` after detection, the shape, the
    encoding)."""

    events: list[Event]
    kind: str  # json, xml, evtx or scriptblock
    encoding: str | None  # UTF-8, UTF-16LE, ...; None for str input and EVTX
    shape: str = ""  # rules.shapes.SHAPES: evtx-json, event-xml, winlogbeat, ...
    records: int = 0  # records read, when more than events (Hayabusa/Chainsaw detections)
    notes: tuple[str, ...] = ()  # what the input lacks (rules.shapes.ShapeReading.notes)

    @property
    def label(self) -> str:
        """``scriptblock (UTF-16LE)``, ``Winlogbeat (ECS) JSON, 3 events (UTF-8)``, ``EVTX``:
        what the sandbox says it read."""
        from rules.shapes import ShapeReading  # rules.shapes builds on this module

        if self.kind in ("json", "xml"):
            shaped = ShapeReading(self.events, self.shape, self.encoding, self.records, self.notes)
            return shaped.label
        name = {"evtx": "EVTX", "scriptblock": "scriptblock"}[self.kind]
        return f"{name} ({self.encoding})" if self.encoding else name


READ_KINDS = ("auto", "json", "xml", "evtx", "scriptblock")


def read_events(
    data: str | bytes,
    *,
    kind: str = "auto",
    max_events: int | None = None,
) -> EventReading:
    """Read events from text or bytes, and say how they were read.

    ``kind``: ``auto`` (default), ``json`` (object, array, JSON lines or concatenated
    objects, in any JSON shape of :mod:`rules.shapes`), ``xml`` (Windows event XML),
    ``evtx`` (bytes of an ``.evtx`` file) or ``scriptblock`` (PowerShell text that becomes
    one 4104 event). ``auto`` picks ``evtx`` by file signature, ``json`` when the text starts
    like a JSON object or array (``{"``, ``[{``, ``[]``, or is an array/object as a whole),
    ``xml`` when it starts like event XML (``<?xml``, ``<Event``, ``<Events``), otherwise
    ``scriptblock``. Bytes are UTF-8, UTF-16 or UTF-32, with or without a BOM
    (:func:`rules.text_input.decode_text`).
    """
    from rules.shapes import events_from_mappings, looks_like_xml, parse_xml_events

    if kind not in READ_KINDS:
        raise ValueError(f"unknown event input kind {kind!r}; choose one of {READ_KINDS}")
    encoding = None
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if kind == "evtx" or (kind == "auto" and raw.startswith(EVTX_MAGIC)):
            return EventReading(parse_evtx(raw, max_events=max_events), "evtx", None, "evtx")
        text, encoding = decode_text(raw)
    else:
        if kind == "evtx":
            raise EvtxInputError("EVTX input must be bytes", byte_offset=0)
        text = data
    if kind == "auto":
        if _looks_like_json(text):
            kind = "json"
        else:
            kind = "xml" if looks_like_xml(text) else "scriptblock"
    if kind == "scriptblock":
        if not text.strip():
            raise EmptyInputError("empty scriptblock", line=1, column=1)
        bad_text = lone_surrogate_error(text)
        if bad_text is not None:
            raise bad_text
        return EventReading([scriptblock_event(text)], "scriptblock", encoding, "scriptblock")
    if kind == "xml":
        bad_text = lone_surrogate_error(text)
        if bad_text is not None:
            raise bad_text
        events = parse_xml_events(text, max_events=max_events)
        return EventReading(events, "xml", encoding, "event-xml", len(events))
    shaped = events_from_mappings(_json_objects(text, max_events), max_events=max_events)
    if not shaped.events:
        raise EmptyInputError("no event in input", line=1, column=1)
    return EventReading(shaped.events, "json", encoding, shaped.shape, shaped.records, shaped.notes)


def parse_events(
    data: str | bytes,
    *,
    kind: str = "auto",
    max_events: int | None = None,
) -> list[Event]:
    """The events of :func:`read_events`."""
    return read_events(data, kind=kind, max_events=max_events).events


def load_events_file(
    path: str, *, max_events: int | None = None, max_bytes: int = MAX_FILE_BYTES
) -> list[Event]:
    """Events from a file: ``.evtx`` by signature, ``.json``/``.jsonl`` as JSON, ``.xml`` as
    event XML, ``.ps1`` as a scriptblock, anything else detected."""
    data = read_file_bytes(path, max_bytes=max_bytes)
    lower = path.lower()
    if data.startswith(EVTX_MAGIC) or lower.endswith(".evtx"):
        return parse_evtx(data, max_events=max_events)
    kind = "auto"
    if lower.endswith((".ps1", ".psm1")):
        kind = "scriptblock"
    elif lower.endswith((".json", ".jsonl", ".ndjson")):
        kind = "json"
    elif lower.endswith(".xml"):
        kind = "xml"
    return parse_events(data, kind=kind, max_events=max_events)
