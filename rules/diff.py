"""Semantic diff between two revisions of a rule (no Django).

A revision is kept as a :class:`RuleSnapshot`: what a rule said (metadata, logsource,
condition, detection) and what :mod:`rules.extract` found in it (stages, indicators,
exclusions). :func:`diff_rules` compares two snapshots and classifies the change:

- ``detection``: what the rule matches changed (logsource, the condition outside its top-level
  ``not`` conjuncts, or the identifiers those reference: indicators added or removed, a
  modifier changed, ...);
- ``tuning``: only the exclusions changed (the identifiers and conjuncts under top-level
  ``not``);
- ``metadata``: nothing that matches changed (title, status, level, tags, references, ...);
- ``none``: the two snapshots are equal in every compared field.

Indicators and exclusions are compared by identity as :class:`rules.model.Predicate`
defines it: (field, kind, value casefolded unless regex or ``cased``).
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rules.model import Exclusion, Indicator, LogSource, ParsedRule, Predicate, Stage

DETECTION = "detection"
TUNING = "tuning"
METADATA = "metadata"
UNCHANGED = "none"
CHANGE_CLASSES = (DETECTION, TUNING, METADATA)

# Compared in this order; the names are the ``fields`` of a change.
METADATA_FIELDS = (
    "title",
    "status",
    "level",
    "description",
    "author",
    "date",
    "modified",
    "references",
    "falsepositives",
    "tags",
    "related",
)
MATCHING_FIELDS = ("logsource", "condition", "detection")


@dataclass(slots=True)
class RuleSnapshot:
    """One revision of a rule, in plain values (JSON round trip: :meth:`to_dict`)."""

    rule_id: str
    title: str = ""
    status: str = ""
    level: str = ""
    description: str = ""
    author: str = ""
    date: str = ""
    modified: str = ""
    references: list[str] = field(default_factory=list)
    falsepositives: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    related: list[dict[str, str]] = field(default_factory=list)
    logsource: LogSource = field(default_factory=LogSource)
    conditions: list[str] = field(default_factory=list)
    detection: dict[str, Any] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    indicators: list[Indicator] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)

    def value_of(self, name: str) -> Any:
        """A compared field's value: ``condition`` is the condition list, ``detection`` the
        search identifiers (without ``condition``), ``logsource`` a mapping."""
        if name == "condition":
            return self.conditions
        if name == "detection":
            return {k: v for k, v in self.detection.items() if k != "condition"}
        if name == "logsource":
            return logsource_dict(self.logsource)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; :meth:`from_dict` reads them back."""
        return {
            "rule_id": self.rule_id,
            **{name: getattr(self, name) for name in METADATA_FIELDS},
            "logsource": logsource_dict(self.logsource),
            "conditions": list(self.conditions),
            "detection": self.detection,
            "stages": [stage_dict(s) for s in self.stages],
            "indicators": [predicate_dict(p) for p in self.indicators],
            "exclusions": [predicate_dict(p) for p in self.exclusions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleSnapshot:
        source = data.get("logsource") or {}
        return cls(
            rule_id=str(data.get("rule_id", "")),
            **{name: data.get(name, _EMPTY_LIST.get(name, "")) for name in METADATA_FIELDS},
            logsource=LogSource(**{k: str(source.get(k, "")) for k in _LOGSOURCE_KEYS}),
            conditions=list(data.get("conditions") or []),
            detection=dict(data.get("detection") or {}),
            stages=[Stage(**s) for s in data.get("stages") or []],
            indicators=[Indicator(**p) for p in data.get("indicators") or []],
            exclusions=[Exclusion(**p) for p in data.get("exclusions") or []],
        )


_LOGSOURCE_KEYS = ("product", "category", "service", "definition")
_EMPTY_LIST: dict[str, Any] = {
    "references": [],
    "falsepositives": [],
    "tags": [],
    "related": [],
}


def logsource_dict(source: LogSource) -> dict[str, str]:
    return {key: getattr(source, key) for key in _LOGSOURCE_KEYS}


def stage_dict(stage: Stage) -> dict[str, Any]:
    return {
        "group": stage.group,
        "index": stage.index,
        "text": stage.text,
        "identifiers": list(stage.identifiers),
        "yaml": stage.yaml,
        "negated": stage.negated,
    }


def predicate_dict(item: Predicate) -> dict[str, str]:
    return {
        "field": item.field,
        "kind": item.kind,
        "value": item.value,
        "identifier": item.identifier,
    }


def jsonable(value: Any) -> Any:
    """YAML values as JSON values: mapping keys as text, dates and other scalars as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # numbers loaded by rules.parse are int/float subclasses
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return str(value)


def snapshot_of(parsed: ParsedRule) -> RuleSnapshot:
    """The snapshot of a freshly parsed rule (its detection made JSON-safe)."""
    return RuleSnapshot(
        rule_id=parsed.id,
        title=parsed.title,
        status=parsed.status,
        level=parsed.level,
        description=parsed.description,
        author=parsed.author,
        date=parsed.date,
        modified=parsed.modified,
        references=list(parsed.references),
        falsepositives=list(parsed.falsepositives),
        tags=[t.name for t in parsed.tags],
        related=[{"id": r.id, "type": r.type} for r in parsed.related],
        logsource=parsed.logsource,
        conditions=list(parsed.conditions),
        detection=jsonable(parsed.detection),
        stages=list(parsed.stages),
        indicators=list(parsed.indicators),
        exclusions=list(parsed.exclusions),
    )


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One compared field whose value differs between the two revisions."""

    field: str
    old: Any
    new: Any


_P = TypeVar("_P", bound=Predicate)


@dataclass(slots=True)
class RuleDiff:
    """What changed from one revision to the next, and its class."""

    change_class: str
    fields: list[FieldChange] = field(default_factory=list)
    indicators_added: list[Indicator] = field(default_factory=list)
    indicators_removed: list[Indicator] = field(default_factory=list)
    exclusions_added: list[Exclusion] = field(default_factory=list)
    exclusions_removed: list[Exclusion] = field(default_factory=list)

    @property
    def field_names(self) -> list[str]:
        return [change.field for change in self.fields]

    @property
    def changed(self) -> bool:
        return self.change_class != UNCHANGED

    def to_dict(self) -> dict[str, Any]:
        """The shape of one entry of the changes API (without the rule id)."""
        return {
            "class": self.change_class,
            "fields": self.field_names,
            "indicators_added": [predicate_view(p) for p in self.indicators_added],
            "indicators_removed": [predicate_view(p) for p in self.indicators_removed],
            "exclusions_added": [predicate_view(p) for p in self.exclusions_added],
            "exclusions_removed": [predicate_view(p) for p in self.exclusions_removed],
        }


def predicate_view(item: Predicate) -> dict[str, str]:
    """A predicate as the changes API lists it: field, kind and the value as written."""
    return {"field": item.field, "kind": item.kind, "value": item.value}


def diff_rules(old: RuleSnapshot, new: RuleSnapshot) -> RuleDiff:
    """Compare two revisions of a rule: changed fields, predicates added/removed, class."""
    changes = [
        FieldChange(name, old.value_of(name), new.value_of(name))
        for name in (*METADATA_FIELDS, *MATCHING_FIELDS)
        if old.value_of(name) != new.value_of(name)
    ]
    diff = RuleDiff(
        change_class=UNCHANGED,
        fields=changes,
        indicators_added=_minus(new.indicators, old.indicators),
        indicators_removed=_minus(old.indicators, new.indicators),
        exclusions_added=_minus(new.exclusions, old.exclusions),
        exclusions_removed=_minus(old.exclusions, new.exclusions),
    )
    diff.change_class = classify(old, new, diff)
    return diff


def _minus(items: Iterable[_P], others: Iterable[_P]) -> list[_P]:
    """Items whose identity is not among ``others``'; first of each identity, in order."""
    known = {item.identity for item in others}
    found: dict[tuple[str, str, str], _P] = {}
    for item in items:
        if item.identity not in known:
            found.setdefault(item.identity, item)
    return list(found.values())


def classify(old: RuleSnapshot, new: RuleSnapshot, diff: RuleDiff) -> str:
    """``detection`` / ``tuning`` / ``metadata`` / ``none`` (see the module docstring)."""
    matching = {"logsource", "condition", "detection"}
    if not matching.intersection(diff.field_names):
        return METADATA if diff.fields else UNCHANGED
    if diff.indicators_added or diff.indicators_removed:
        return DETECTION
    if matching_part(old) == matching_part(new):
        return TUNING
    return DETECTION


def matching_part(snapshot: RuleSnapshot) -> tuple[Any, ...]:
    """Everything that decides what a rule matches, exclusions left out.

    The logsource, per condition the text of each conjunct that is not a top-level ``not``,
    and the definition of every identifier that is not an exclusion identifier (one used only
    under top-level ``not``).
    """
    negated: set[str] = set()
    positive: set[str] = set()
    conjuncts: list[tuple[int, str]] = []
    for stage in snapshot.stages:
        if stage.index == 0:
            continue
        (negated if stage.negated else positive).update(stage.identifiers)
        if not stage.negated:
            conjuncts.append((stage.group, stage.text))
    exclusion_names = negated - positive
    definitions = {
        name: value
        for name, value in snapshot.detection.items()
        if name != "condition" and name not in exclusion_names
    }
    groups = len([s for s in snapshot.stages if s.index == 0])
    return (logsource_dict(snapshot.logsource), groups, conjuncts, definitions)


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One row of a side-by-side text diff: line numbers (``None`` where absent) and text.

    ``tag`` is ``equal``, ``replace``, ``delete`` (only on the left) or ``insert`` (only on
    the right).
    """

    tag: str
    old_number: int | None
    old_text: str
    new_number: int | None
    new_text: str


def side_by_side(old: str, new: str) -> list[DiffLine]:
    """Two texts (a rule's YAML) as aligned rows for a side-by-side view."""
    left, right = old.splitlines(), new.splitlines()
    rows: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            in_left, in_right = i < i2, j < j2
            row_tag = tag
            if tag == "replace" and not in_right:
                row_tag = "delete"
            elif tag == "replace" and not in_left:
                row_tag = "insert"
            rows.append(
                DiffLine(
                    row_tag,
                    i + 1 if in_left else None,
                    left[i] if in_left else "",
                    j + 1 if in_right else None,
                    right[j] if in_right else "",
                )
            )
    return rows
