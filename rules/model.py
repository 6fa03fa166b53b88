"""Dataclasses the engine produces: a parsed rule and everything extracted from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rules.regression import Regression
    from rules.validate import Finding


@dataclass(frozen=True, slots=True)
class LogSource:
    product: str = ""
    category: str = ""
    service: str = ""
    definition: str = ""

    @property
    def label(self) -> str:
        """``product/category/service`` with empty parts dropped, e.g. ``windows/ps_script``."""
        return "/".join(p for p in (self.product, self.category, self.service) if p)


@dataclass(frozen=True, slots=True)
class Tag:
    """A rule tag split at its first dot: ``attack.t1571`` -> namespace ``attack``, ``t1571``."""

    name: str
    namespace: str
    value: str


@dataclass(frozen=True, slots=True)
class Related:
    id: str
    type: str


@dataclass(slots=True)
class Stage:
    """One stage of a condition.

    ``index`` 0 is the condition as written; 1..n are its top-level AND conjuncts.
    ``group`` numbers the condition when the rule has a list of conditions.
    """

    group: int
    index: int
    text: str
    identifiers: list[str]
    yaml: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Predicate:
    """One (field, kind, value) of a search identifier. ``field`` is "" for keyword searches.

    The base of :class:`Indicator` and :class:`Exclusion`, which differ only in where the
    identifier stands in the condition; the two never compare equal to each other.
    """

    field: str
    kind: str
    value: str
    identifier: str

    @property
    def value_key(self) -> str:
        return identity_value(self.kind, self.value)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.field, self.kind, self.value_key)


@dataclass(frozen=True, slots=True)
class Indicator(Predicate):
    """One (field, kind, value) a rule looks for."""


@dataclass(frozen=True, slots=True)
class Exclusion(Predicate):
    """A predicate a rule suppresses: a value of an identifier used only under top-level NOT."""


def identity_value(kind: str, value: str) -> str:
    """Values are compared casefolded, except for regex and ``cased`` kinds which keep case."""
    parts = kind.split("|")
    if parts[0] == "re" or "cased" in parts:
        return value
    return value.casefold()


@dataclass(slots=True)
class ParsedRule:
    """A Sigma rule document with its metadata and everything extracted from it."""

    id: str
    title: str
    status: str
    level: str
    description: str
    author: str
    date: str
    modified: str
    references: list[str]
    falsepositives: list[str]
    related: list[Related]
    tags: list[Tag]
    logsource: LogSource
    detection: dict[str, Any]
    conditions: list[str]
    stages: list[Stage]
    exclusions: list[Exclusion]
    indicators: list[Indicator]
    raw_yaml: str
    source_path: str = ""
    document: dict[str, Any] = field(default_factory=dict, repr=False)
    # The pySigma SigmaRule object, kept for conversion and evaluation; never persisted.
    sigma: Any = field(default=None, repr=False, compare=False)
    # Features the sandbox cannot evaluate without configuration (e.g. "expand placeholder").
    unsupported: list[str] = field(default_factory=list)
    # Evidence the importer's parse step adds (issue 14): validator findings and the replay of
    # the rule's regression samples (None: it declares none). Empty until then.
    findings: list[Finding] = field(default_factory=list, compare=False)
    regression: Regression | None = field(default=None, compare=False)

    @property
    def attack_tags(self) -> list[Tag]:
        return [t for t in self.tags if t.namespace == "attack"]
