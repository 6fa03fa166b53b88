"""Coverage for a telemetry profile: which rules can fire with the logs an organisation keeps.

A :class:`Profile` says what is collected: event sources (provider + event ID, or a whole
provider/channel), logsources (``product``/``category``/``service``, any part left out
matching anything) and, when it was built from sample events, the field names those events
carry. :func:`coverage` sorts every rule (:class:`RuleNeeds`, what a rule reads) into firable
and blocked, with the reasons:

* ``missing event source``: none of the events that feed the rule's logsource (the logsource
  taxonomy, narrowed by the rule's own ``EventID``/``Provider_Name`` values, as the rule page's
  "Event coverage" table shows them) is collected, and no collected logsource covers it;
* ``fields never seen``: the profile came with sample events, and the rule's indicators read
  fields none of those events carries (conservative: a rule whose alternatives read other
  fields is reported too, with the fields named so a reader can judge).

Pure: dataclasses in, dataclasses out; the catalog builds :class:`RuleNeeds` from its rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules import taxonomy
from rules.events import Event

__all__ = [
    "MAX_PROFILE_ITEMS",
    "Blocked",
    "CoverageResult",
    "EventSourcePick",
    "Profile",
    "ProfileError",
    "RuleNeeds",
    "SourceRef",
    "coverage",
    "profile_from_events",
    "rule_needs",
]

MAX_PROFILE_ITEMS = 2000  # event sources + logsources + fields of one profile
MAX_TEXT = 200  # characters of one provider, logsource part or field name
REASON_SOURCE = "missing event source"
REASON_FIELDS = "fields never seen"
LogsourceKey = tuple[str, str, str]


class ProfileError(ValueError):
    """A profile document that cannot be read; ``parameter`` names the offending key."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One event a rule can be fed by (a row of its "Event coverage" table)."""

    names: frozenset[str]  # casefolded provider, its short name and its channels
    label: str  # "Sysmon 1", "PowerShell 4104", "Security (all events)"
    event_id: int | None  # None: any event of the provider or channel


@dataclass(frozen=True, slots=True)
class RuleNeeds:
    """What one rule needs from the telemetry."""

    id: str
    title: str
    logsource: LogsourceKey
    sources: tuple[SourceRef, ...]
    fields: frozenset[str]  # field names its indicators read, as written
    techniques: tuple[str, ...] = ()  # ATT&CK technique ids it is tagged with

    @property
    def label(self) -> str:
        """``windows/process_creation``: the logsource with empty parts dropped."""
        return "/".join(part for part in self.logsource if part)


@dataclass(frozen=True, slots=True)
class EventSourcePick:
    """A collected event source: a provider (or channel, or short name) and an event ID
    (None: every event of it)."""

    provider: str
    event_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "event_id": self.event_id}


@dataclass(frozen=True, slots=True)
class Profile:
    """What an organisation collects. The file format is :meth:`to_dict`'s JSON or YAML."""

    event_sources: tuple[EventSourcePick, ...] = ()
    logsources: tuple[LogsourceKey, ...] = ()
    fields: frozenset[str] | None = None  # None: unknown (no sample events given)

    @property
    def empty(self) -> bool:
        return not self.event_sources and not self.logsources

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_sources": [pick.to_dict() for pick in self.event_sources],
            "logsources": [
                {k: v for k, v in zip(("product", "category", "service"), key, strict=True) if v}
                for key in self.logsources
            ],
        }
        if self.fields is not None:
            data["fields"] = sorted(self.fields)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Read a profile document, refusing anything malformed or oversized."""
        if not isinstance(data, Mapping):
            raise ProfileError("the profile must be an object", "profile")
        unknown = sorted(set(map(str, data)) - {"event_sources", "logsources", "fields"})
        if unknown:
            raise ProfileError(f"unknown profile key {unknown[0]!r}", unknown[0])
        picks = tuple(_pick(item) for item in _items(data, "event_sources"))
        logsources = tuple(_logsource(item) for item in _items(data, "logsources"))
        fields = None
        if data.get("fields") is not None:
            fields = frozenset(_text(v, "fields") for v in _items(data, "fields"))
        if len(picks) + len(logsources) + len(fields or ()) > MAX_PROFILE_ITEMS:
            raise ProfileError(f"a profile holds at most {MAX_PROFILE_ITEMS} items", "profile")
        return cls(tuple(dict.fromkeys(picks)), tuple(dict.fromkeys(logsources)), fields)


def _items(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ProfileError(f"{key} must be a list", key)
    if len(value) > MAX_PROFILE_ITEMS:
        raise ProfileError(f"{key} holds at most {MAX_PROFILE_ITEMS} items", key)
    return value


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProfileError(f"{key} values must be strings", key)
    text = str(value).strip()
    if "\x00" in text:
        raise ProfileError(f"{key} values cannot hold NUL characters", key)
    if len(text) > MAX_TEXT:
        raise ProfileError(f"{key} values are at most {MAX_TEXT} characters", key)
    return text


def _pick(item: Any) -> EventSourcePick:
    if not isinstance(item, Mapping) or not _text(item.get("provider"), "event_sources"):
        raise ProfileError("each event source needs a provider", "event_sources")
    raw = item.get("event_id")
    if raw in (None, "", "all", "*"):
        return EventSourcePick(_text(item["provider"], "event_sources"), None)
    if isinstance(raw, bool) or not str(raw).strip().isdigit() or int(raw) > 2**31:
        raise ProfileError("event_id must be a number, or null for every event", "event_sources")
    return EventSourcePick(_text(item["provider"], "event_sources"), int(raw))


def _logsource(item: Any) -> LogsourceKey:
    if not isinstance(item, Mapping):
        raise ProfileError("each logsource must be an object", "logsources")
    key = taxonomy.normalise_logsource(
        *(_text(item.get(part), "logsources") for part in ("product", "category", "service"))
    )
    if not any(key):
        raise ProfileError("a logsource needs a product, category or service", "logsources")
    return key


# --------------------------------------------------------------------------------------------
# What a rule needs
# --------------------------------------------------------------------------------------------


def rule_needs(
    rule_id: str,
    title: str,
    logsource: LogsourceKey,
    indicators: Iterable[tuple[str, str, str]],
    techniques: Sequence[str] = (),
) -> RuleNeeds:
    """A rule's needs from its logsource and its indicators ``(field, kind, value)``.

    The ``EventID`` and ``Provider_Name`` values a rule selects with ``equals`` narrow its
    event sources, exactly as on the rule page (``catalog.queries.events.event_filter``).
    """
    rows = list(indicators)
    event_ids = [int(v) for f, k, v in rows if f == "EventID" and k == "equals" and v.isdigit()]
    providers = [v for f, k, v in rows if f == "Provider_Name" and k == "equals" and v.strip()]
    sources = taxonomy.event_sources(
        *logsource, event_ids=list(dict.fromkeys(event_ids)), providers=providers
    )
    refs = tuple(dict.fromkeys(_ref(source) for source in sources))
    fields = frozenset(name for name, _, _ in rows if name)
    return RuleNeeds(rule_id, title, logsource, refs, fields, tuple(techniques))


def _ref(source: taxonomy.EventSource) -> SourceRef:
    names = {source.provider, source.provider_display, *source.channels}
    label = source.provider_display or (source.channels[0] if source.channels else "events")
    shown = f"{label} {source.event_id}" if source.event_id is not None else f"{label} (all events)"
    return SourceRef(frozenset(n.casefold() for n in names if n), shown, source.event_id)


# --------------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blocked:
    id: str
    reasons: tuple[str, ...]  # "missing event source: Sysmon 1 or Security 4688", ...

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class CoverageResult:
    firable: tuple[str, ...]
    blocked: tuple[Blocked, ...]
    by_reason: dict[str, int] = field(default_factory=dict)
    techniques_all: dict[str, int] = field(default_factory=dict)  # rules per technique id
    techniques_firable: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> list[str]:
        """Techniques some rule detects but no firable rule does."""
        return sorted(t for t in self.techniques_all if not self.techniques_firable.get(t))

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rules": len(self.firable) + len(self.blocked),
            "firable": len(self.firable),
            "blocked": len(self.blocked),
            "missing_source": self.by_reason.get(REASON_SOURCE, 0),
            "missing_fields": self.by_reason.get(REASON_FIELDS, 0),
            "techniques": len(self.techniques_all),
            "techniques_firable": sum(1 for n in self.techniques_firable.values() if n),
            "techniques_lost": len(self.lost),
        }


def coverage(profile: Profile, rules: Sequence[RuleNeeds]) -> CoverageResult:
    """Sort ``rules`` into firable and blocked for ``profile``."""
    picks = _pick_index(profile.event_sources)
    seen_fields = {f.casefold() for f in profile.fields} if profile.fields is not None else None
    firable: list[str] = []
    blocked: list[Blocked] = []
    reasons: Counter[str] = Counter()
    techniques_all: Counter[str] = Counter()
    techniques_firable: Counter[str] = Counter()
    # Rules of one logsource mostly share their event sources: decide each pair once.
    by_source: dict[tuple[LogsourceKey, tuple[SourceRef, ...]], tuple[str, ...]] = {}
    for rule in rules:
        techniques_all.update(rule.techniques)
        key = (rule.logsource, rule.sources)
        missing = by_source.get(key)
        if missing is None:
            missing = by_source[key] = _missing_source(rule, profile, picks)
        why = missing or _missing_fields(rule, seen_fields)
        if why:
            blocked.append(Blocked(rule.id, why))
            reasons.update(reason.split(":", 1)[0] for reason in why)
        else:
            firable.append(rule.id)
            techniques_firable.update(rule.techniques)
    return CoverageResult(
        tuple(firable), tuple(blocked), dict(reasons), dict(techniques_all),
        dict(techniques_firable),
    )  # fmt: skip


def _pick_index(picks: Iterable[EventSourcePick]) -> dict[str, set[int | None]]:
    """casefolded provider/channel name -> the event IDs collected (None: all of them)."""
    index: dict[str, set[int | None]] = {}
    for pick in picks:
        index.setdefault(pick.provider.casefold(), set()).add(pick.event_id)
    return index


def _missing_source(
    rule: RuleNeeds, profile: Profile, picks: Mapping[str, set[int | None]]
) -> tuple[str, ...]:
    if _logsource_collected(rule.logsource, profile.logsources) or _source_collected(
        rule.sources, picks
    ):
        return ()
    wanted = " or ".join(ref.label for ref in rule.sources[:6])
    return (f"{REASON_SOURCE}: {wanted or rule.label or 'no logsource'}",)


def _missing_fields(rule: RuleNeeds, seen_fields: set[str] | None) -> tuple[str, ...]:
    if seen_fields is None:
        return ()
    missing = sorted(f for f in rule.fields if f.casefold() not in seen_fields)
    return (f"{REASON_FIELDS}: {', '.join(missing[:10])}",) if missing else ()


def _logsource_collected(rule: LogsourceKey, collected: Iterable[LogsourceKey]) -> bool:
    """A collected logsource covers the rule when each part it names equals the rule's."""
    return any(
        all(not want or want == have for want, have in zip(key, rule, strict=True))
        for key in collected
    )


def _source_collected(sources: Iterable[SourceRef], picks: Mapping[str, set[int | None]]) -> bool:
    for ref in sources:
        for name in ref.names:
            ids = picks.get(name)
            if ids is None:
                continue
            # Everything collected, the rule reads any event of it, or the exact event.
            if None in ids or ref.event_id is None or ref.event_id in ids:
                return True
    return False


# --------------------------------------------------------------------------------------------
# A profile from sample events
# --------------------------------------------------------------------------------------------

_EVENT_KEYS = ("Provider_Name", "Channel")


def profile_from_events(events: Sequence[Event]) -> Profile:
    """The event sources, logsources and field names a set of sample events shows.

    Windows events (an ``EventID`` with a provider or channel) become event sources; other
    events become the logsources the taxonomy maps them to (Linux, cloud, proxy...).
    """
    picks: dict[EventSourcePick, None] = {}
    logsources: dict[LogsourceKey, None] = {}
    seen: set[str] = set()
    for event in events:
        values = event.fields
        seen.update(str(name) for name in values)
        event_id = _event_id(values.get("EventID"))
        named = [str(values[k]) for k in _EVENT_KEYS if isinstance(values.get(k), str)]
        if event_id is not None and named:
            picks.setdefault(EventSourcePick(named[0][:MAX_TEXT], event_id), None)
            continue
        for key in sorted(taxonomy.logsources_for_event(values)):
            if any(key):
                logsources.setdefault(key, None)
    return Profile(tuple(picks), tuple(logsources), frozenset(seen))


def _event_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
