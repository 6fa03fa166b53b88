"""Input shapes: Windows events as the tools that collect them write them, normalised to one form.

A Windows event reaches the sandbox as ``evtx_dump`` JSON, as XML (Event Viewer, ``wevtutil qe
/f:xml``, Splunk's ``XmlWinEventLog``), as Winlogbeat / Elastic Common Schema JSON, or as the
detections Hayabusa and Chainsaw write. Every one of them is normalised to the flattening of
:func:`rules.events.flatten_evtx` (``EventID``, ``Channel``, ``Provider_Name``, ``Computer``,
``TimeCreated_SystemTime``, ... plus the EventData / UserData fields), so one event gives the
same fields, hence the same matches and explanations, whatever wrote it. What the shipping tool
added (an agent, Hayabusa's rule title, ECS copies of fields) is not part of the event.

Shapes (``SHAPES``): ``evtx-json``, ``evtx-json-attributes`` (evtx ``--separate-json-attributes``,
the ``Event_attributes`` / ``*_attributes`` keys ``chainsaw search --json`` prints), ``event-xml``,
``winlogbeat``, ``hayabusa`` (``json-timeline``; EventData from ``AllFieldInfo``), ``chainsaw``
(``hunt --json`` detections; the event is ``document.data``), ``json`` (any other object, kept
as it is), plus ``evtx`` and ``scriptblock`` from :mod:`rules.events`. JSON comes as an object,
an array, JSON lines or concatenated objects; all records of one input must have one shape.

Text-only shapes (XML, Winlogbeat) carry no types: a value written as a canonical decimal
integer becomes a number, as evtx_dump types its integer values; matching is the same either
way (numbers compare as text with strings), this keeps explanations identical.

XML is parsed with ``defusedxml`` (no DTD, no entity declarations, no external references),
within :data:`MAX_XML_CHARS` and :data:`MAX_XML_DEPTH`; :func:`iter_xml_events` reads a file
of any size incrementally, holding one event at a time (:data:`MAX_XML_EVENT_CHARS`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, BinaryIO, Final
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from rules.errors import EmptyInputError, EventInputError, EventShapeError, InputEncodingError
from rules.events import Event, flatten_evtx, is_evtx_shape

__all__ = [
    "MAX_XML_CHARS",
    "MAX_XML_DEPTH",
    "MAX_XML_EVENT_CHARS",
    "SHAPES",
    "SHAPE_LABELS",
    "ShapeReading",
    "canonical_time",
    "detect_time_field",
    "event_time",
    "events_from_mappings",
    "iter_xml_events",
    "looks_like_xml",
    "looks_like_xml_bytes",
    "normalise_records",
    "parse_xml_events",
]

SHAPE_LABELS: Final = {
    "evtx-json": "evtx_dump JSON",
    "evtx-json-attributes": "evtx JSON with separate attributes",
    "event-xml": "Windows event XML",
    "winlogbeat": "Winlogbeat (ECS) JSON",
    "hayabusa": "Hayabusa JSON",
    "chainsaw": "Chainsaw JSON",
    "json": "JSON events",
    "evtx": "EVTX",
    "scriptblock": "scriptblock",
}
SHAPES: Final = tuple(SHAPE_LABELS)
MAX_XML_CHARS: Final = 64 * 1024 * 1024
MAX_XML_DEPTH: Final = 32
"""An event is about six elements deep; deeper XML is not an event log."""
MAX_XML_EVENT_CHARS: Final = 2 * 1024 * 1024
"""Longest event (or text between two events) :func:`iter_xml_events` reads from a file."""
TIME_FIELD: Final = "TimeCreated_SystemTime"

# Hayabusa abbreviates channels (rules/config/channel_abbreviations.txt); the common ones back.
HAYABUSA_CHANNELS: Final = {
    "Sec": "Security",
    "Sys": "System",
    "App": "Application",
    "Sysmon": "Microsoft-Windows-Sysmon/Operational",
    "PwSh": "Microsoft-Windows-PowerShell/Operational",
    "PwShClassic": "Windows PowerShell",
    "Defender": "Microsoft-Windows-Windows Defender/Operational",
    "TaskSch": "Microsoft-Windows-TaskScheduler/Operational",
    "WMI": "Microsoft-Windows-WMI-Activity/Operational",
    "BitsCli": "Microsoft-Windows-Bits-Client/Operational",
    "RDP-Sess": "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "CodeInteg": "Microsoft-Windows-CodeIntegrity/Operational",
    "Firewall": "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
}

_CANONICAL_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(Z|[+-]\d{2}:?\d{2})?"
)


# --------------------------------------------------------------------------------------------
# Values and times


def _typed(text: str | None) -> Any:
    """A text-only value as evtx_dump would type it: canonical decimal integers are numbers."""
    if text is not None and _CANONICAL_INT.fullmatch(text):
        return int(text)
    return text


def canonical_time(value: Any) -> str | None:
    """A timestamp as evtx_dump writes ``SystemTime``: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC
    (extra digits cut, an offset applied); None when ``value`` is not a timestamp."""
    stamp = parse_time(value)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if stamp is not None else None


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO-like text (``T`` or space, any fraction, ``Z`` or an
    offset, none meaning UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    found = _TIME.fullmatch(value.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        stamp = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None
    return stamp.astimezone(UTC)


def event_time(event: Event, field: str | None = None) -> datetime | None:
    """When ``event`` happened (aware UTC): ``field``, else ``TimeCreated_SystemTime``, else
    the first of the usual timestamp fields it has."""
    names = (field,) if field else (TIME_FIELD, *_TIME_FIELDS)
    for name in names:
        stamp = parse_time(event.lookup(name))
        if stamp is not None:
            return stamp
    return None


_TIME_FIELDS: Final = (
    "@timestamp",
    "timestamp",
    "Timestamp",
    "UtcTime",
    "TimeCreated",
    "EventTime",
    "time",
    "date",
)


def detect_time_field(events: Iterable[Event]) -> str | None:
    """The first timestamp field every event has a parseable time in (None: no such field)."""
    listed = list(events)
    for name in (TIME_FIELD, *_TIME_FIELDS):
        if listed and all(parse_time(e.lookup(name)) is not None for e in listed):
            return name
    return None


def _with_time(fields: dict[str, Any]) -> dict[str, Any]:
    stamp = canonical_time(fields.get(TIME_FIELD))
    if stamp is not None:
        fields[TIME_FIELD] = stamp
    return fields


# --------------------------------------------------------------------------------------------
# JSON shapes


def _attributes_merged(node: Any) -> Any:
    """``{"X": v, "X_attributes": {...}}`` (evtx ``--separate-json-attributes``) as evtx_dump's
    ``{"X": {"#text": v, "#attributes": {...}}}``."""
    if isinstance(node, list):
        return [_attributes_merged(v) for v in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, str) and key.endswith("_attributes") and isinstance(value, Mapping):
            name = key[: -len("_attributes")]
            base = out.get(name, node.get(name))
            merged = dict(_attributes_merged(base)) if isinstance(base, Mapping) else {}
            if base is not None and not isinstance(base, Mapping):
                merged["#text"] = base
            merged["#attributes"] = dict(value)
            out[name] = merged
        elif f"{key}_attributes" not in node:
            out[key] = _attributes_merged(value)
    return out


def _is_attributes_shape(obj: Mapping[str, Any]) -> bool:
    event = obj.get("Event")
    if not isinstance(event, Mapping) or not isinstance(event.get("System"), Mapping):
        return False
    return set(obj) <= {"Event", "Event_attributes"} and (
        "Event_attributes" in obj or any(str(k).endswith("_attributes") for k in event["System"])
    )


def _from_attributes(obj: Mapping[str, Any]) -> dict[str, Any]:
    return flatten_evtx({"Event": _attributes_merged(obj["Event"])})


def _is_hayabusa(obj: Mapping[str, Any]) -> bool:
    return "RuleTitle" in obj and "Timestamp" in obj and "EventID" in obj


def _from_hayabusa(obj: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    event_id = obj.get("EventID")
    fields["EventID"] = _typed(event_id) if isinstance(event_id, str) else event_id
    channel = obj.get("Channel")
    if channel is not None:
        fields["Channel"] = HAYABUSA_CHANNELS.get(str(channel), channel)
    for source, target in (("Provider", "Provider_Name"), ("Computer", "Computer")):
        if source in obj:
            fields[target] = obj[source]
    if "RecordID" in obj:
        fields["EventRecordID"] = obj["RecordID"]
    stamp = canonical_time(obj.get("Timestamp"))
    if stamp is not None:
        fields[TIME_FIELD] = stamp
    data = obj.get("AllFieldInfo")
    if isinstance(data, Mapping):
        for key, value in data.items():
            fields.setdefault(str(key).replace(" ", ""), value)
    return fields


def _is_chainsaw(obj: Mapping[str, Any]) -> bool:
    return ("document" in obj or "documents" in obj) and "kind" in obj and "name" in obj


def _chainsaw_documents(obj: Mapping[str, Any]) -> list[Any]:
    if isinstance(obj.get("documents"), list):
        return [d.get("data") for d in obj["documents"] if isinstance(d, Mapping)]
    document = obj.get("document")
    return [document.get("data")] if isinstance(document, Mapping) else []


def _undotted(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``{"winlog.channel": x}`` (a flattened Elasticsearch document) as nested objects."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _is_winlogbeat(obj: Mapping[str, Any]) -> bool:
    winlog = obj.get("winlog")
    if isinstance(winlog, Mapping):
        return any(k in winlog for k in ("channel", "event_data", "provider_name", "event_id"))
    return any(str(k).startswith("winlog.") for k in obj)


_WINLOG_SYSTEM: Final = (
    (("winlog", "channel"), "Channel"),
    (("winlog", "provider_name"), "Provider_Name"),
    (("winlog", "provider_guid"), "Provider_Guid"),
    (("winlog", "computer_name"), "Computer"),
    (("winlog", "record_id"), "EventRecordID"),
    (("winlog", "version"), "Version"),
    (("winlog", "process", "pid"), "Execution_ProcessID"),
    (("winlog", "process", "thread", "id"), "Execution_ThreadID"),
    (("winlog", "user", "identifier"), "Security_UserID"),
    (("winlog", "activity_id"), "Correlation_ActivityID"),
)


def _path(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _from_winlogbeat(obj: Mapping[str, Any]) -> dict[str, Any]:
    if "winlog" not in obj or any(str(k).startswith("winlog.") for k in obj):
        obj = _undotted(obj)
    fields: dict[str, Any] = {}
    event_id = _path(obj, ("winlog", "event_id"))
    if event_id is None:
        event_id = _path(obj, ("event", "code"))
    if event_id is not None:
        fields["EventID"] = _typed(event_id) if isinstance(event_id, str) else event_id
    for path, name in _WINLOG_SYSTEM:
        value = _path(obj, path)
        if value is not None:
            fields[name] = _typed(value) if isinstance(value, str) else value
    stamp = canonical_time(obj.get("@timestamp"))
    if stamp is not None:
        fields[TIME_FIELD] = stamp
    for section in ("event_data", "user_data"):
        data = _path(obj, ("winlog", section))
        if isinstance(data, Mapping):
            for key, value in data.items():
                if section == "user_data" and key == "xml_name":
                    continue
                name = str(key).replace(" ", "")
                fields.setdefault(name, _typed(value) if isinstance(value, str) else value)
    return fields


def normalise_records(obj: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(shape, normalised field mappings) of one decoded JSON object. A Chainsaw aggregate
    detection holds several events; every other shape one."""
    if is_evtx_shape(obj) and not _is_attributes_shape(obj):
        return "evtx-json", [_with_time(flatten_evtx(obj))]
    if _is_attributes_shape(obj):
        return "evtx-json-attributes", [_with_time(_from_attributes(obj))]
    if _is_chainsaw(obj):
        events: list[dict[str, Any]] = []
        for data in _chainsaw_documents(obj):
            if isinstance(data, Mapping):
                events.extend(normalise_records(data)[1])
        return "chainsaw", events
    if _is_hayabusa(obj):
        return "hayabusa", [_from_hayabusa(obj)]
    if _is_winlogbeat(obj):
        return "winlogbeat", [_with_time(_from_winlogbeat(obj))]
    return "json", [dict(obj)]


@dataclass(slots=True)
class ShapeReading:
    """Events read from one input, the shape they came in and the text's encoding."""

    events: list[Event]
    shape: str
    encoding: str | None = None
    records: int = 0  # records read (Hayabusa/Chainsaw write one per detection)
    notes: tuple[str, ...] = ()  # what the input lacks, for the person who pasted it

    @property
    def label(self) -> str:
        """``Windows event XML, 3 events (UTF-8)``: what the sandbox says it read."""
        n = len(self.events)
        text = f"{SHAPE_LABELS.get(self.shape, self.shape)}, {n:,} event{'s' if n != 1 else ''}"
        if self.records > n:
            text += f" from {self.records:,} detections"
        if self.encoding:
            text += f" ({self.encoding})"
        return "; ".join([text, *self.notes])


def _identity(fields: Mapping[str, Any]) -> tuple[Any, ...] | None:
    keys = ("Computer", "Channel", "EventRecordID")
    if all(k in fields for k in keys):
        return tuple(str(fields[k]) for k in keys)
    return None


def events_from_mappings(
    items: Iterable[Mapping[str, Any]], *, max_events: int | None = None
) -> ShapeReading:
    """Normalise the decoded JSON objects of one input.

    Records of different shapes are an :class:`EventShapeError` naming both. Hayabusa and
    Chainsaw write one record per detection: the same event detected twice is kept once."""
    events: list[Event] = []
    shape: str | None = None
    seen: set[tuple[Any, ...]] = set()
    records = missing_data = 0
    for record, obj in enumerate(items):
        found, normalised = normalise_records(obj)
        if found == "hayabusa" and not isinstance(obj.get("AllFieldInfo"), Mapping):
            missing_data += 1
        if shape is None:
            shape = found
        elif found != shape:
            raise EventShapeError(
                f"mixed input shapes: record {record} is {SHAPE_LABELS[found]}, the records "
                f"before it are {SHAPE_LABELS[shape]}; send one shape per input",
                record=record,
            )
        records += 1
        for fields in normalised:
            if found in ("hayabusa", "chainsaw"):
                key = _identity(fields)
                if key is not None:
                    if key in seen:
                        continue
                    seen.add(key)
            events.append(Event(fields, index=len(events), kind=found))
            if max_events is not None and len(events) > max_events:
                raise EventInputError(f"more than {max_events} events", record=len(events) - 1)
    notes: tuple[str, ...] = ()
    if missing_data:
        notes = (
            f"{missing_data:,} Hayabusa record{'s' if missing_data != 1 else ''} without "
            "AllFieldInfo: only System fields were read (write them with --profile "
            "all-field-info or super-verbose)",
        )
    return ShapeReading(events, shape or "json", records=records, notes=notes)


# --------------------------------------------------------------------------------------------
# XML


_XML_START: Final = re.compile(r"\s*(?:<\?xml|<!|<Events?[\s>/]|<(?:\w+:)?Event[\s>/])")
_DECLARATION: Final = re.compile(r"<\?xml[^>]*\?>")
_DTD: Final = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def looks_like_xml(text: str) -> bool:
    """Whether ``text`` starts like event XML (``<?xml``, ``<!``, ``<Event``, ``<Events``); a
    PowerShell block comment (``<#``) does not."""
    return _XML_START.match(text.lstrip("\ufeff")) is not None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: Element) -> str | None:
    text = element.text
    if text is None or (not text.strip() and "\n" in text) or text == "":
        return None
    return text


def _element_value(element: Element) -> Any:
    """One element as evtx_dump writes it: text, ``{"#attributes", "#text"}``, or children."""
    attributes = {_local(k): _typed(v) for k, v in element.attrib.items()}
    children = list(element)
    text = _text(element)
    if not children:
        value: Any = _typed(text)
        if not attributes:
            return value
        out: dict[str, Any] = {"#attributes": attributes}
        if value is not None:
            out["#text"] = value
        return out
    mapping: dict[str, Any] = {"#attributes": attributes} if attributes else {}
    for child in children:
        name = _local(child.tag)
        item = _element_value(child)
        if name in mapping:
            previous = mapping[name]
            mapping[name] = [*previous, item] if isinstance(previous, list) else [previous, item]
        else:
            mapping[name] = item
    return mapping


def _event_data(element: Element) -> Any:
    """EventData: named ``<Data Name="X">`` items become fields (an empty one is null)."""
    out: dict[str, Any] = {}
    unnamed: list[Any] = []
    for child in element:
        name = _local(child.tag)
        if name == "Data" and "Name" in child.attrib:
            out.setdefault(child.attrib["Name"], _typed(_text(child)))
        elif name == "Data":
            unnamed.append(_typed(_text(child)))
        else:
            out.setdefault(name, _element_value(child))
    if unnamed:
        out.setdefault("Data", unnamed[0] if len(unnamed) == 1 else unnamed)
    if not out and _text(element) is not None:
        return _typed(_text(element))
    return out or None


def xml_event_fields(element: Element) -> dict[str, Any]:
    """One ``<Event>`` element as the flattened fields of its evtx_dump record."""
    record: dict[str, Any] = {}
    for child in element:
        name = _local(child.tag)
        if name == "System":
            record["System"] = _element_value(child) or {}
        elif name == "EventData":
            record["EventData"] = _event_data(child)
        elif name == "UserData":
            record["UserData"] = _element_value(child)
        # RenderingInfo (Event Viewer, Splunk) is the message text, not event data.
    record.setdefault("System", {})
    if not isinstance(record["System"], dict):
        record["System"] = {}
    return _with_time(flatten_evtx({"Event": record}))


def parse_xml_events(text: str, *, max_events: int | None = None) -> list[Event]:
    """Events from Windows event XML: one ``<Event>``, several concatenated (``wevtutil``), or
    wrapped in ``<Events>`` (Event Viewer's "Save as XML"). Refuses DTDs and entity
    declarations, more than :data:`MAX_XML_CHARS` characters and nesting past
    :data:`MAX_XML_DEPTH`; syntax errors name the line and column."""
    if len(text) > MAX_XML_CHARS:
        raise EventInputError(
            f"XML input is {len(text):,} characters; the limit is {MAX_XML_CHARS:,}"
        )
    if _DTD.search(text):
        raise EventShapeError(_DTD_REFUSED)
    events: list[Event] = []
    for event in _xml_events(_XmlSource(iter([text.lstrip("\ufeff")]))):
        events.append(event)
        if max_events is not None and len(events) > max_events:
            raise EventInputError(f"more than {max_events} events", record=len(events) - 1)
    if not events:
        raise EmptyInputError("no <Event> element in the XML", line=1, column=1)
    return events


def iter_xml_events(
    stream: BinaryIO, *, max_event_chars: int = MAX_XML_EVENT_CHARS
) -> Iterator[Event]:
    """Events from a Windows event XML file of any size, read incrementally: the shapes and
    refusals of :func:`parse_xml_events` (DTDs, entity declarations, nesting), with memory
    bounded by the largest event instead of the file. Each ``<Event>`` is dropped from the
    tree once read; one event, or the text between two events, over ``max_event_chars``
    characters is refused. Bytes are UTF-8, UTF-16 or UTF-32 (BOM or not, as
    :func:`rules.text_input.decode_text`). Errors carry ``record``: the index of the event
    being read (as many were read before it)."""
    head = stream.read(_SNIFF_BYTES)
    codec, label, skip = _byte_encoding(head)
    source = _XmlSource(_decoded(stream, head[skip:], codec, label, skip), max_event_chars)
    count = 0
    try:
        for event in _xml_events(source):
            yield event
            count += 1
    except EventInputError as exc:
        if exc.record is not None:
            raise
        raise type(exc)(
            exc.reason, line=exc.line, column=exc.column, record=count,
            byte_offset=exc.byte_offset,
        ) from None  # fmt: skip
    if not count:
        raise EmptyInputError("no <Event> element in the XML", line=1, column=1)


def looks_like_xml_bytes(head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` starts like event XML (any encoding
    :func:`iter_xml_events` reads)."""
    codec, _, skip = _byte_encoding(head)
    return looks_like_xml(head[skip : skip + 1024].decode(codec, errors="ignore"))


_SNIFF_BYTES: Final = 4096
_XML_CHUNK: Final = 64 * 1024
_HELD_CHARS: Final = 256
"""A trailing ``<`` this close to a chunk's end, not yet closed by ``>``, waits for the next
chunk: an XML declaration or ``<!DOCTYPE`` split between two chunks is seen whole."""
_DTD_REFUSED: Final = "XML with a DTD or entity declarations (<!DOCTYPE>) is refused"


def _byte_encoding(head: bytes) -> tuple[str, str, int]:
    """(codec, label, BOM length) of a file starting with ``head``."""
    from rules.text_input import _BOMS, _sniff

    for bom, codec, label in _BOMS:
        if head.startswith(bom):
            return codec, label, len(bom)
    codec, label = _sniff(head)
    return codec, label, 0


def _decoded(stream: BinaryIO, first: bytes, codec: str, label: str, offset: int) -> Iterator[str]:
    """The stream's text, chunk by chunk (``first``: bytes already read, after any BOM);
    invalid bytes raise :class:`InputEncodingError` with their byte offset."""
    decoder = codecs.getincrementaldecoder(codec)()
    data = first
    while True:
        final = not data
        held = len(decoder.getstate()[0])
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            raise InputEncodingError(
                f"invalid {label} text: {exc.reason}", byte_offset=offset - held + exc.start
            ) from None
        offset += len(data)
        if text:
            yield text
        if final:
            return
        data = stream.read(_XML_CHUNK)


class _XmlSource:
    """What the parser reads: ``<Events>`` + the text with its XML declarations removed (a
    ``wevtutil`` file has no root; the extra line is taken off error positions) + ``</Events>``.
    A DTD or entity declaration is refused as soon as it is read. ``mark`` is set by the
    reader where an event starts or ends; reading more than ``limit`` characters past it is
    refused (one event, or the text between two, too long)."""

    def __init__(self, chunks: Iterator[str], limit: int | None = None) -> None:
        self._chunks = chunks
        self._out = "<Events>\n"
        self._at = 0
        self._held = ""
        self._ended = False
        self._refused: EventShapeError | None = None
        self.limit = limit
        self.delivered = 0
        self.mark = 0

    def read(self, size: int = -1) -> str:
        # The parser asks for more only once it has handled what it was given: the text since
        # the last event boundary it reported, hence what one event holds in memory.
        if self.limit is not None and self.delivered - self.mark > self.limit:
            raise EventShapeError(
                f"an event, or the text between two events, is longer than {self.limit:,} "
                "characters"
            )
        while self._at >= len(self._out):
            if self._refused is not None:
                raise self._refused  # once the parser has read all that came before it
            if self._ended:
                return ""
            self._out, self._at = self._refill(), 0
        end = len(self._out) if size < 0 else self._at + size
        piece = self._out[self._at : end]
        self._at += len(piece)
        self.delivered += len(piece)
        return piece

    def _refill(self) -> str:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._ended = True
            rest = self._cleaned(self._held)
            return rest if self._refused is not None else rest + "\n</Events>"
        data = self._held + chunk
        cut = data.rfind("<", max(0, len(data) - _HELD_CHARS))
        if cut < 0 or ">" in data[cut:]:
            cut = len(data)
        self._held = data[cut:]
        return self._cleaned(data[:cut])

    def _cleaned(self, text: str) -> str:
        dtd = _DTD.search(text)
        if dtd is not None:
            self._refused = EventShapeError(_DTD_REFUSED)
            self._ended = True
            text = text[: dtd.start()]
        return _DECLARATION.sub("", text)


def _xml_events(source: _XmlSource) -> Iterator[Event]:
    """The events of the wrapped XML ``source`` (see :func:`parse_xml_events`); each
    ``<Event>`` (and anything else at list level) leaves the tree once read."""
    depth = 0
    item_depth = 0  # the depth of the list-level element being read; 0 between them
    lists: list[Element] = []  # the <Events> elements around it
    count = 0
    try:
        for action, element in iterparse(source, events=("start", "end"), forbid_dtd=True):
            if action == "start":
                depth += 1
                if depth > MAX_XML_DEPTH:
                    raise EventShapeError(f"XML nested deeper than {MAX_XML_DEPTH} elements")
                if item_depth:
                    continue
                name = _local(element.tag)
                if depth == 2 and name not in ("Event", "Events"):
                    raise EventShapeError(
                        f"unknown XML shape: <{name}>; expected Windows events "
                        "(<Event xmlns=...> or <Events>)"
                    )
                if name == "Events":
                    lists.append(element)
                else:
                    item_depth = depth
                source.mark = source.delivered  # an event (or a list of them) starts
                continue
            depth -= 1
            if item_depth:
                if depth >= item_depth:
                    continue  # inside the event
                item_depth = 0
                if _local(element.tag) == "Event":
                    yield Event(xml_event_fields(element), index=count, kind="event-xml")
                    count += 1
            else:
                lists.pop()
            element.clear()
            if lists:
                lists[-1].remove(element)  # read: the tree keeps no event
            source.mark = source.delivered
    except ParseError as exc:
        line, column = exc.position
        raise EventShapeError(
            f"invalid XML: {str(exc).split(':')[0]}", line=max(1, line - 1), column=column
        ) from None
    except DefusedXmlException as exc:
        raise EventShapeError(f"XML refused: {type(exc).__name__}") from None
