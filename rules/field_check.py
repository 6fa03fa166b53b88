"""Fields a rule uses that its logsource's SigmaHQ taxonomy does not know, with the nearest
known names.

The taxonomy is SigmaHQ's ``sigmahq_taxonomy.json`` (shipped in ``rules/data/sigmahq``, the
offline copy of the file ``pysigma-validators-sigmahq`` downloads): per logsource, its
``native`` and ``custom`` field names. A field is known when it is one of them, exactly as
``SigmahqInvalidFieldnameValidator`` decides; a logsource absent from the taxonomy (or listed
with no fields) is reported as not covered rather than every field being flagged.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.model import LogSource, ParsedRule, Predicate

TAXONOMY_FILE = Path(__file__).with_name("data") / "sigmahq" / "sigmahq_taxonomy.json"
SUGGESTIONS = 3
_CUTOFF = 0.6  # difflib's default: "CommandLin" -> CommandLine, "Foo" -> nothing


@dataclass(frozen=True, slots=True)
class FieldTaxonomy:
    """Known field names per logsource key ``product_category_service`` (``none`` for empty)."""

    version: str
    fields: Mapping[str, tuple[str, ...]]

    def known(self, logsource: LogSource) -> tuple[str, ...] | None:
        """The logsource's known fields; None when the taxonomy does not describe it."""
        names = self.fields.get(logsource_key(logsource))
        return names or None


@dataclass(frozen=True, slots=True)
class UnknownField:
    """A field the logsource's taxonomy does not list."""

    field: str
    identifiers: tuple[str, ...]
    """The search identifiers that use it, in written order."""
    suggestions: tuple[str, ...]
    """The nearest known names, best first (a different case comes first)."""
    case_only: bool
    """A known field differs only in case (``commandline`` for ``CommandLine``)."""


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """The outcome for one rule."""

    logsource: str
    covered: bool
    """Whether the taxonomy describes the rule's logsource (else nothing is checked)."""
    checked: tuple[str, ...]
    unknown: tuple[UnknownField, ...]
    taxonomy_version: str

    @property
    def ok(self) -> bool:
        return not self.unknown


def logsource_key(logsource: LogSource) -> str:
    """``windows_process_creation_none``: how the taxonomy file keys its logsources."""
    parts = (logsource.product, logsource.category, logsource.service)
    return "_".join(part.strip().lower() or "none" for part in parts)


def _taxonomy_key(raw: Mapping[str, Any]) -> str:
    return logsource_key(
        LogSource(
            product=str(raw.get("product") or ""),
            category=str(raw.get("category") or ""),
            service=str(raw.get("service") or ""),
        )
    )


def taxonomy_from_json(data: Mapping[str, Any]) -> FieldTaxonomy:
    """A :class:`FieldTaxonomy` from the parsed JSON document."""
    fields: dict[str, tuple[str, ...]] = {}
    for info in (data.get("taxonomy") or {}).values():
        if not isinstance(info, Mapping) or not isinstance(info.get("logsource"), Mapping):
            continue
        names = info.get("field") or {}
        known = [*names.get("native", []), *names.get("custom", [])]
        fields[_taxonomy_key(info["logsource"])] = tuple(sorted(set(known), key=str.casefold))
    return FieldTaxonomy(str(data.get("version", "unknown")), fields)


@functools.cache
def default_taxonomy() -> FieldTaxonomy:
    """The shipped taxonomy, read once per process."""
    return taxonomy_from_json(json.loads(TAXONOMY_FILE.read_text(encoding="utf-8")))


def rule_fields(predicates: Iterable[Predicate]) -> dict[str, tuple[str, ...]]:
    """field -> the identifiers using it, in written order (keyword searches have no field)."""
    found: dict[str, dict[str, None]] = {}
    for predicate in predicates:
        if predicate.field:
            found.setdefault(predicate.field, {})[predicate.identifier] = None
    return {name: tuple(idents) for name, idents in found.items()}


def suggest(name: str, known: Iterable[str], limit: int = SUGGESTIONS) -> tuple[str, ...]:
    """The known names nearest to ``name``: a case-only difference first, then difflib."""
    names = list(known)
    same_case = [k for k in names if k.casefold() == name.casefold()]
    folded = {k.casefold(): k for k in names}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=limit, cutoff=_CUTOFF)
    ordered = dict.fromkeys([*same_case, *(folded[c] for c in close)])
    return tuple(ordered)[:limit]


def check_fields(rule: ParsedRule, taxonomy: FieldTaxonomy | None = None) -> FieldCheck:
    """The rule's detection fields (indicators and exclusions) against its logsource."""
    taxonomy = taxonomy or default_taxonomy()
    used = rule_fields([*rule.indicators, *rule.exclusions])
    known = taxonomy.known(rule.logsource)
    if known is None:
        return FieldCheck(rule.logsource.label, False, tuple(used), (), taxonomy.version)
    known_set = frozenset(known)
    unknown = []
    for name, identifiers in used.items():
        if name in known_set:
            continue
        suggestions = suggest(name, known)
        case_only = bool(suggestions) and suggestions[0].casefold() == name.casefold()
        unknown.append(UnknownField(name, identifiers, suggestions, case_only))
    return FieldCheck(rule.logsource.label, True, tuple(used), tuple(unknown), taxonomy.version)
