"""Sigma logsource taxonomy: which events a ``logsource`` means, and the reverse.

One table, ``rules/data/logsource_events.csv`` (product, category, service, provider, channel,
event_id, title, source), drives both directions so the rule page's "Event coverage" table and
the sandbox's logsource scoping can never disagree:

* :func:`event_sources` - logsource -> the provider/channel/event IDs that feed it;
* :func:`logsources_for_event` / :func:`logsource_matches` - an event -> the logsources it
  satisfies, for scoping evaluation (rules with ``condition: not x`` would otherwise match
  unrelated events).

How the CSV is keyed: *category* rows name the exact events (``process_creation`` -> Sysmon 1
and Security 4688); *service* rows name a whole channel (title ``(whole channel)``, no event
ID), plus one row per event ID SigmaHQ rules select in that channel (titles from message
tables, or empty for third-party providers). In System and Application an event ID is only
unique per provider, hence ``(provider, event_id)`` rows there. A few rows have a provider but
no channel (ETW providers, ``smbclient-connectivity``) and some non-Windows rows have neither.

The table is parsed once, on first use; the per-event path is one cached dict lookup.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from itertools import product as cartesian
from typing import Any

LogsourceKey = tuple[str, str, str]
"""``(product, category, service)``, lower-case, ``""`` for an absent part."""

WHOLE_CHANNEL_TITLE = "(whole channel)"

# Product of an event-log-shaped event (Channel + EventID) from a channel the table does not
# know: such events are only produced by Windows, so product-only ``windows`` rules still apply.
EVENTLOG_PRODUCT = "windows"

_CHANNEL_PREFIX = "WinEventLog:"  # Splunk-style channel names in a few taxonomy rows.
_PSEUDO_CHANNEL = "("  # "(ETW provider, no event log channel)": a note, not a channel.

# Short names for providers (and channel prefixes, for rows without a provider).
_PROVIDER_NAMES: Mapping[str, str] = {
    "microsoft-windows-powershell": "PowerShell",
    "powershellcore": "PowerShell Core",
    "powershell": "Windows PowerShell",
    "windows powershell": "Windows PowerShell",
    "microsoft-windows-sysmon": "Sysmon",
    "linux-sysmon": "Sysmon for Linux",
    "microsoft-windows-security-auditing": "Security",
    "microsoft-windows-eventlog": "Event Log",
    "microsoft-windows-windows defender": "Microsoft Defender",
    "microsoft-windows-windows firewall with advanced security": "Windows Firewall",
    "microsoft-windows-kernel-file": "Kernel-File (ETW)",
    "microsoft-windows-codeintegrity": "Code Integrity",
    "microsoft-windows-taskscheduler": "Task Scheduler",
    "microsoft-windows-wmi-activity": "WMI-Activity",
}

# Names of %n insertion strings, from the providers' event manifests, for titles whose
# placeholders read better named than elided. Key (provider, event_id); event_id None means
# "every event of the provider"; an empty mapping opts an event out of a provider default.
_PLACEHOLDER_NAMES: Mapping[tuple[str, int | None], Mapping[int, str]] = {
    ("microsoft-windows-powershell", 4104): {1: "MessageNumber", 2: "MessageTotal"},
    ("powershellcore", 4104): {1: "MessageNumber", 2: "MessageTotal"},
    ("powershell", 400): {1: "NewEngineState", 2: "PreviousEngineState"},
    ("powershell", 600): {1: "ProviderName", 2: "NewProviderState"},
    ("powershell", 800): {1: "CommandLine"},
    ("microsoft-windows-windows defender", None): {1: "Microsoft Defender Antivirus"},
    ("microsoft-windows-windows defender", 5013): {},
}

# Sentences of message templates that advise rather than describe; dropped from titles.
_ADVICE = re.compile(
    r"^(See |Check with |It is recommended |Please refer |No user action |This event occurs |"
    r"Use the |The service will continue )"
)
_SENTENCE_BREAK = re.compile(r"(?<=\.)\s+(?=[A-Z])")
_PLACEHOLDER = re.compile(r"%(\d+)")
_MAX_TITLE = 160

# Audit settings a Security-log event needs beyond the default policy, for requirement texts.
_SECURITY_AUDIT_NOTES: Mapping[int, str] = {
    4688: "command-line auditing",
    4657: "registry auditing (SACLs)",
}

_KERNEL_FILE_ETW = (
    "Microsoft-Windows-Kernel-File ETW provider (no event log channel: needs an ETW collector)"
)

_REQUIREMENTS: Mapping[LogsourceKey, str] = {
    ("windows", "ps_script", ""): "Script Block Logging must be enabled (Event ID 4104)",
    ("windows", "ps_module", ""): "Module Logging must be enabled (Event ID 4103)",
    ("windows", "ps_classic_script", ""): (
        "Module Logging must be enabled (Windows PowerShell Event ID 800)"
    ),
    ("windows", "ps_classic_start", ""): "Windows PowerShell log, Event ID 400 (on by default)",
    ("windows", "ps_classic_provider_start", ""): (
        "Windows PowerShell log, Event ID 600 (on by default)"
    ),
    ("windows", "file_access", ""): _KERNEL_FILE_ETW,
    ("windows", "file_rename", ""): _KERNEL_FILE_ETW,
    ("windows", "", "security"): (
        "Security log with the Advanced Audit Policy subcategory of the rule's events enabled"
    ),
    ("windows", "", "sysmon"): "Sysmon installed (Microsoft-Windows-Sysmon/Operational)",
    ("windows", "", "powershell"): (
        "Microsoft-Windows-PowerShell/Operational: Script Block Logging for 4104, Module "
        "Logging for 4103"
    ),
    ("windows", "", "dns-client"): (
        "Microsoft-Windows-DNS Client Events/Operational log must be enabled (off by default)"
    ),
    ("windows", "", "capi2"): (
        "Microsoft-Windows-CAPI2/Operational log must be enabled (off by default)"
    ),
    ("windows", "", "dns-server-analytic"): "DNS Server analytical log must be enabled",
    ("windows", "", "taskscheduler"): (
        "Task Scheduler history (Microsoft-Windows-TaskScheduler/Operational) must be enabled"
    ),
    ("windows", "", "ntlm"): (
        "NTLM auditing must be enabled (Network security: Restrict NTLM: Audit ... policies)"
    ),
    ("windows", "", "ldap_debug"): "LDAP client ETW debug tracing must be enabled",
    ("windows", "", "ldap"): "LDAP client ETW debug tracing must be enabled",
    ("linux", "", "auditd"): "auditd with rules for the syscalls and paths the rule inspects",
}


@dataclass(frozen=True, slots=True)
class EventSource:
    """One provider/channel/event a logsource is fed by; ``event_id`` None = whole channel."""

    provider: str
    channel: str
    event_id: int | None
    title: str
    source: str

    @property
    def whole_channel(self) -> bool:
        """True when every event of the channel (or provider) counts, not one event ID."""
        return self.event_id is None

    @property
    def channels(self) -> tuple[str, ...]:
        """Real channel names: ``a | b`` split, ``WinEventLog:`` and pseudo channels removed."""
        return _channels(self.channel)

    @property
    def provider_display(self) -> str:
        """``PowerShell``, ``Sysmon``, ``Security``...; from the channel if no provider."""
        return _provider_display(self.provider, self.channels)

    @property
    def event_label(self) -> str:
        """``Event ID 4104``, or ``All events`` for a whole channel or provider."""
        return "All events" if self.event_id is None else f"Event ID {self.event_id}"

    @property
    def display_title(self) -> str:
        """The title with %n placeholders named or elided and advice sentences dropped."""
        if self.title and self.title != WHOLE_CHANNEL_TITLE:
            return _display_title(self.provider, self.event_id, self.title)
        if self.event_id is not None:
            return ""  # Third-party providers: the table shows the ID alone.
        if self.channels:
            return f"Any event in {' or '.join(self.channels)}"
        return f"Any event from {self.provider}" if self.provider else ""


# --------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------


@cache
def _channels(channel: str) -> tuple[str, ...]:
    parts = (part.strip() for part in channel.split("|"))
    cleaned = (p.removeprefix(_CHANNEL_PREFIX) for p in parts)
    return tuple(p for p in cleaned if p and not p.startswith(_PSEUDO_CHANNEL))


def _short_name(name: str) -> str:
    known = _PROVIDER_NAMES.get(name.casefold())
    if known:
        return known
    return name.removeprefix("Microsoft-Windows-")


def _provider_display(provider: str, channels: tuple[str, ...]) -> str:
    if provider:
        return _short_name(provider)
    if channels:
        return _short_name(channels[0].split("/", 1)[0])
    return ""


def _placeholder_names(provider: str, event_id: int | None) -> Mapping[int, str]:
    key = provider.casefold()
    specific = _PLACEHOLDER_NAMES.get((key, event_id))
    if specific is not None:
        return specific
    return _PLACEHOLDER_NAMES.get((key, None), {})


@cache
def _display_title(provider: str, event_id: int | None, title: str) -> str:
    """Make a message template readable in one table cell.

    ``Creating Scriptblock text (%1 of %2):`` -> ``Creating Scriptblock text (MessageNumber
    of MessageTotal).``; unnamed placeholders become ``…``; the CSV's ``; message: "..."``
    annotation (the raw template of 4103) and advice sentences are dropped.
    """
    if not title:
        return ""
    names = _placeholder_names(provider, event_id)
    text = title.split("; message:", 1)[0]
    text = _PLACEHOLDER.sub(lambda m: names.get(int(m.group(1)), "…"), text)
    text = re.sub(r"\s+", " ", text).strip()
    sentences = [s for s in _SENTENCE_BREAK.split(text) if not _ADVICE.match(s)]
    text = " ".join(sentences) if len(" ".join(sentences)) <= _MAX_TITLE else sentences[0]
    if text.endswith(":"):
        # A template that introduces its details ("...(%1 of %2):") reads as a sentence.
        text = text.rstrip(" :") + "."
    return text


# --------------------------------------------------------------------------------------------
# Table loading and indexes (built once)
# --------------------------------------------------------------------------------------------


def normalise_logsource(
    product: str | None, category: str | None, service: str | None
) -> LogsourceKey:
    """Lower-case, stripped, ``None`` -> ``""``: the key every lookup here uses."""
    return (_part(product), _part(category), _part(service))


def _part(value: str | None) -> str:
    return (value or "").strip().lower()


def _parse_event_id(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


@cache
def _rows() -> tuple[tuple[LogsourceKey, EventSource], ...]:
    """Every CSV row as (logsource key, event source), in file order."""
    text = files(__package__).joinpath("data/logsource_events.csv").read_text(encoding="utf-8")
    rows = []
    for raw in csv.DictReader(io.StringIO(text, newline="")):
        key = normalise_logsource(raw["product"], raw["category"], raw["service"])
        source = EventSource(
            provider=raw["provider"].strip(),
            channel=raw["channel"].strip(),
            event_id=_parse_event_id(raw["event_id"]),
            title=raw["title"].strip(),
            source=raw["source"].strip(),
        )
        rows.append((key, source))
    return tuple(rows)


def _has_source(source: EventSource) -> bool:
    """False for rows that name a logsource but no provider, channel or event (macOS, etc.)."""
    return bool(source.provider or source.channels or source.event_id is not None)


@cache
def _sources_by_logsource() -> dict[LogsourceKey, tuple[EventSource, ...]]:
    grouped: dict[LogsourceKey, list[EventSource]] = defaultdict(list)
    for key, source in _rows():
        if _has_source(source) and source not in grouped[key]:
            grouped[key].append(source)
    return {key: tuple(sources) for key, sources in grouped.items()}


@dataclass(frozen=True, slots=True)
class _EventIndex:
    """Lookups from event identity to the CSV logsources (those with category or service)."""

    by_channel_event: dict[tuple[str, int], frozenset[LogsourceKey]]
    by_channel: dict[str, frozenset[LogsourceKey]]
    # Rows with a provider but no channel (ETW providers, smbclient-connectivity): these
    # apply whatever channel the event reports.
    by_bare_provider_event: dict[tuple[str, int], frozenset[LogsourceKey]]
    by_bare_provider: dict[str, frozenset[LogsourceKey]]
    # Rows with provider and channel, for events that carry no Channel field.
    by_provider_event: dict[tuple[str, int], frozenset[LogsourceKey]]
    by_provider: dict[str, frozenset[LogsourceKey]]
    products_by_channel: dict[str, frozenset[str]]


def _freeze(grouped: Mapping[Any, set[LogsourceKey]]) -> dict[Any, frozenset[LogsourceKey]]:
    return {key: frozenset(values) for key, values in grouped.items()}


@cache
def _event_index() -> _EventIndex:
    channel_event: dict[tuple[str, int], set[LogsourceKey]] = defaultdict(set)
    channel: dict[str, set[LogsourceKey]] = defaultdict(set)
    bare_event: dict[tuple[str, int], set[LogsourceKey]] = defaultdict(set)
    bare: dict[str, set[LogsourceKey]] = defaultdict(set)
    provider_event: dict[tuple[str, int], set[LogsourceKey]] = defaultdict(set)
    provider: dict[str, set[LogsourceKey]] = defaultdict(set)
    products: dict[str, set[str]] = defaultdict(set)
    for key, source in _rows():
        if not (key[1] or key[2]):
            continue
        prov, eid, chans = source.provider.casefold(), source.event_id, source.channels
        for name in (c.casefold() for c in chans):
            products[name].add(key[0])
            if eid is None:
                channel[name].add(key)
            else:
                channel_event[(name, eid)].add(key)
        if prov and eid is not None:
            (provider_event if chans else bare_event)[(prov, eid)].add(key)
        elif prov:
            (provider if chans else bare)[prov].add(key)
    return _EventIndex(
        _freeze(channel_event),
        _freeze(channel),
        _freeze(bare_event),
        _freeze(bare),
        _freeze(provider_event),
        _freeze(provider),
        {name: frozenset(values) for name, values in products.items()},
    )


def _expand(matched: Iterable[LogsourceKey], products: Iterable[str]) -> frozenset[LogsourceKey]:
    """Every logsource triple a rule may write that the matched rows satisfy.

    Sigma ANDs the parts a rule specifies, so an event that is ``windows/process_creation``
    and ``windows//sysmon`` also satisfies ``windows/process_creation/sysmon``, ``windows``
    alone, ``/process_creation/`` without a product, and the empty logsource.
    """
    categories: dict[str, set[str]] = defaultdict(lambda: {""})
    services: dict[str, set[str]] = defaultdict(lambda: {""})
    for prod, category, service in matched:
        categories[prod].add(category)
        services[prod].add(service)
    for prod in products:
        categories[prod].add("")
        services[prod].add("")
    keys: set[LogsourceKey] = {("", "", "")}
    for prod in categories:
        keys.update(cartesian((prod, ""), categories[prod], services[prod]))
    return frozenset(keys)


@lru_cache(maxsize=8192)
def _keys_for(channel: str, provider: str, event_id: int | None) -> frozenset[LogsourceKey]:
    """Logsources of one (casefolded channel, casefolded provider, event id) identity."""
    index = _event_index()
    matched: set[LogsourceKey] = set()
    if channel:
        matched |= index.by_channel.get(channel, frozenset())
        if event_id is not None:
            matched |= index.by_channel_event.get((channel, event_id), frozenset())
    if provider:
        matched |= index.by_bare_provider.get(provider, frozenset())
        if event_id is not None:
            matched |= index.by_bare_provider_event.get((provider, event_id), frozenset())
        if not channel:
            matched |= index.by_provider.get(provider, frozenset())
            if event_id is not None:
                matched |= index.by_provider_event.get((provider, event_id), frozenset())
    products = {key[0] for key in matched}
    if channel and not products:
        products = set(index.products_by_channel.get(channel, {EVENTLOG_PRODUCT}))
    return _expand(matched, products)


def _event_id(value: Any) -> int | None:
    """EventID as int, from an int, a digit string or evtx's ``{"#text": 7045, ...}``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        stripped = value.strip()
        return int(stripped) if stripped.isdigit() else None
    if isinstance(value, Mapping):
        return _event_id(value.get("#text"))
    return None


def _folded(value: Any) -> str:
    """A channel or provider name as compared: stripped and casefolded; non-strings empty."""
    return value.strip().casefold() if isinstance(value, str) else ""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def logsources_for_event(event: Mapping[str, Any]) -> frozenset[LogsourceKey]:
    """The ``(product, category, service)`` logsources a flattened event satisfies.

    Reads ``Channel``, ``Provider_Name`` (or a string ``Provider``) and ``EventID``. The result
    contains every triple a rule could write that matches, including partial ones
    (``("windows", "", "")``, ``("", "ps_script", "")``) and ``("", "", "")``, so
    :func:`logsource_matches` is a single set-membership test. Cached per event identity.
    """
    provider = event.get("Provider_Name", event.get("Provider"))
    channel = _folded(event.get("Channel")).removeprefix(_CHANNEL_PREFIX.casefold())
    return _keys_for(channel, _folded(provider), _event_id(event.get("EventID")))


def logsource_matches(
    rule_logsource: LogsourceKey | tuple[str | None, str | None, str | None],
    event_keys: AbstractSet[LogsourceKey],
) -> bool:
    """Whether a rule's logsource applies to an event (keys from :func:`logsources_for_event`).

    Sigma semantics: each part the rule specifies must hold, unspecified parts are free; so
    ``windows//security`` matches any Security-channel event and ``//`` matches everything.
    Rule logsources the table cannot recognise in events never match: check
    :func:`is_scopable` to decide what to do with those.
    """
    return normalise_logsource(*rule_logsource) in event_keys


@cache
def _scopable() -> frozenset[LogsourceKey]:
    index = _event_index()
    groups = (
        index.by_channel_event,
        index.by_channel,
        index.by_bare_provider_event,
        index.by_bare_provider,
    )
    matched = {key for group in groups for values in group.values() for key in values}
    keys: set[LogsourceKey] = set()
    for key in matched:
        keys |= _expand([key], [key[0]])
    keys |= {(prod, "", "") for prods in index.products_by_channel.values() for prod in prods}
    return frozenset(keys)


def is_scopable(rule_logsource: tuple[str | None, str | None, str | None]) -> bool:
    """Whether some event could satisfy this logsource according to the table.

    False for logsources with no event-log identity (``linux//auditd``, ``aws//cloudtrail``,
    ``windows//smbserver-connectivity`` which has an event ID but no provider or channel): a
    sandbox must evaluate such rules unscoped, or skip them, rather than trust a non-match.
    """
    return normalise_logsource(*rule_logsource) in _scopable()


def _service_channels(product: str, service: str) -> set[str]:
    sources = _sources_by_logsource().get((product, "", service), ())
    return {c.casefold() for s in sources for c in s.channels}


def _base_sources(key: LogsourceKey) -> list[EventSource]:
    """Sources for a logsource before narrowing by event ID: exact, combined or product-less."""
    index = _sources_by_logsource()
    if key in index:
        return list(index[key])
    product, category, service = key
    if not product and (category or service):
        return [s for (p, c, v), group in index.items() if (c, v) == key[1:] for s in group]
    if category and service:
        channels = _service_channels(product, service)
        return [
            s
            for s in index.get((product, category, ""), ())
            if {c.casefold() for c in s.channels} & channels
        ]
    return []


def _narrow(
    sources: list[EventSource], service_only: bool, event_ids: list[int], providers: set[str]
) -> list[EventSource]:
    """Keep the events the rule selects; a service rule lists its IDs even if untitled."""
    if providers:
        by_provider = [s for s in sources if s.provider.casefold() in providers]
        sources = by_provider or sources
    if not event_ids:
        whole = [s for s in sources if s.event_id is None]
        return whole if service_only and whole else sources
    picked = [s for s in sources if s.event_id in event_ids]
    if not service_only:
        return picked or sources
    channel = next((s.channel for s in sources if s.whole_channel and s.channels), "")
    provider = next(iter(providers)) if len(providers) == 1 else ""
    known = {s.event_id for s in picked}
    extra = [
        EventSource(provider, channel, eid, "", "rule") for eid in event_ids if eid not in known
    ]
    picked.sort(key=lambda s: event_ids.index(s.event_id) if s.event_id in event_ids else 0)
    return picked + extra


def event_sources(
    product: str | None,
    category: str | None,
    service: str | None,
    *,
    event_ids: Iterable[int] = (),
    providers: Iterable[str] = (),
) -> list[EventSource]:
    """The events a rule's logsource is fed by, for the rule page's "Event coverage" table.

    Category logsources list their events (``windows/process_creation`` -> Sysmon 1, Security
    4688); service logsources list their whole channel(s) unless ``event_ids`` (and optionally
    ``providers``, i.e. ``Provider_Name`` values) from the rule's detection narrow them to the
    specific events, titled where the table knows them. A logsource with category and
    service gets the category events in the service's channels; one without product gets the
    category's events for every product. Unknown logsources return ``[]``.
    """
    key = normalise_logsource(product, category, service)
    ids = list(dict.fromkeys(event_ids))
    wanted = {p.casefold() for p in providers}
    service_only = bool(key[2]) and not key[1]
    narrowed = _narrow(_base_sources(key), service_only, ids, wanted)
    # Provider spellings that display alike ("Kerberos-Key-Distribution-Center" with and
    # without "Microsoft-Windows-") would show as duplicate table rows.
    seen: set[tuple[str, str, int | None, str]] = set()
    unique = []
    for source in narrowed:
        shown = (source.provider_display, source.channel, source.event_id, source.display_title)
        if shown not in seen:
            seen.add(shown)
            unique.append(source)
    return unique


def requirement_for(product: str | None, category: str | None, service: str | None) -> str | None:
    """The logging a detection engineer must turn on for this logsource, if well known.

    Curated text for PowerShell, ETW and off-by-default channels; for Sysmon/Security-fed
    categories it is derived from the table (``Sysmon Event ID 1 or Security 4688 with
    command-line auditing``). ``None`` when there is nothing specific to say.
    """
    key = normalise_logsource(product, category, service)
    if key in _REQUIREMENTS:
        return _REQUIREMENTS[key]
    if key[1] and not key[2]:
        return _derived_requirement(_sources_by_logsource().get(key, ()))
    return None


def _derived_requirement(sources: Iterable[EventSource]) -> str | None:
    """``Sysmon Event ID 12, 13 or 14 or Security 4657 with registry auditing (SACLs)``."""
    sysmon: dict[str, list[int]] = defaultdict(list)
    security: list[str] = []
    for source in sources:
        if source.event_id is None:
            return None
        if source.provider_display in ("Sysmon", "Sysmon for Linux"):
            sysmon[source.provider_display].append(source.event_id)
        elif source.provider_display == "Security":
            note = _SECURITY_AUDIT_NOTES.get(source.event_id)
            security.append(f"Security {source.event_id}" + (f" with {note}" if note else ""))
        else:
            return None
    parts = [f"{name} Event ID {_join(ids)}" for name, ids in sysmon.items()] + security
    return " or ".join(parts) or None


def _join(ids: list[int]) -> str:
    words = [str(i) for i in dict.fromkeys(ids)]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
