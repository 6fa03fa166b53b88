"""Sigma meta filters (``filter:`` documents): which rules they apply to, and which events
they suppress.

pySigma (``sigma.filters.SigmaFilter``) validates the document and, at conversion, rewrites
each named rule's condition to ``(condition) and (filter condition)``. The engine does the
same without rewriting the rule: the filter's selections and condition are compiled as a
detection of their own, and a match of a rule the filter applies to is **suppressed** when
that detection is false for the event (the usual ``condition: not selection`` is false exactly
when the event fits the selection).

A filter applies to a rule when the rule is named in ``rules`` (by id or name; ``any`` or an
empty list: every rule) and the filter's logsource covers the rule's (each part the filter
gives is equal), as pySigma decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sigma.exceptions import SigmaError
from sigma.filters import SigmaFilter

from rules.compile import CompiledRule, compile_rule
from rules.correlate.model import CorrelationError, UnresolvedReferenceError
from rules.errors import RuleError
from rules.events import Event
from rules.parse import parse_document

__all__ = [
    "FilterIndex",
    "MetaFilter",
    "is_filter",
    "logsource_covers",
    "parse_filter",
    "resolve_filter",
]

LogsourceKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class MetaFilter:
    """A validated filter; ``rules`` are resolved ids (empty with ``any_rule``)."""

    id: str
    title: str
    logsource: LogsourceKey
    detection: Mapping[str, Any]  # selections and the condition, as written
    condition: str
    references: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    any_rule: bool = False
    name: str = ""
    description: str = ""
    compiled: CompiledRule | None = field(default=None, compare=False, repr=False)

    def covers(self, logsource: Sequence[str]) -> bool:
        """Whether the filter's logsource covers a rule's (product, category, service)."""
        return logsource_covers(self.logsource, logsource)

    def applies_to(self, rule_id: str, logsource: Sequence[str]) -> bool:
        return (self.any_rule or rule_id in self.rules) and self.covers(logsource)

    def suppresses(self, event: Event) -> bool:
        """Whether the filter removes a match on this event (its condition is false)."""
        assert self.compiled is not None
        return not self.compiled.match(event)


def logsource_covers(mine: Sequence[str], theirs: Sequence[str]) -> bool:
    """Whether logsource ``mine`` covers ``theirs`` (product, category, service): each part
    ``mine`` gives is equal (pySigma's ``rule.logsource in filter.logsource``)."""
    return all(not a or a == b for a, b in zip(mine, theirs, strict=True))


def is_filter(document: Mapping[str, Any]) -> bool:
    return isinstance(document, Mapping) and "filter" in document and "detection" not in document


def parse_filter(document: Mapping[str, Any], *, path: str = "") -> MetaFilter:
    """Validate a filter document with pySigma and compile its detection."""
    try:
        sigma = SigmaFilter.from_dict(dict(document))
    except SigmaError as exc:
        raise CorrelationError(f"invalid filter: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise CorrelationError(f"invalid filter: {type(exc).__name__}: {exc}") from exc
    section = document["filter"]
    detection = {k: v for k, v in section.items() if k not in ("rules", "condition")}
    condition = str(section["condition"])
    refs = section.get("rules")
    any_rule = refs in (None, [], "any") or (isinstance(refs, str) and refs.lower() == "any")
    references = () if any_rule else tuple([refs] if isinstance(refs, str) else map(str, refs))
    logsource = document.get("logsource") or {}
    key = tuple(str(logsource.get(p) or "") for p in ("product", "category", "service"))
    rule_id = str(sigma.id) if sigma.id else ""
    if not rule_id:
        raise CorrelationError("a filter needs an id")
    return MetaFilter(
        id=rule_id,
        title=str(document.get("title") or ""),
        logsource=(key[0], key[1], key[2]),
        detection={**detection, "condition": condition},
        condition=condition,
        references=references,
        any_rule=any_rule,
        name=str(document.get("name") or ""),
        description=str(document.get("description") or ""),
        compiled=_compile(document, detection, condition, rule_id),
    )


def _compile(
    document: Mapping[str, Any], detection: Mapping[str, Any], condition: str, rule_id: str
) -> CompiledRule:
    """The filter's selections and condition as a rule of their own (same grammar, same
    modifiers, same matcher as every rule)."""
    synthetic = {
        "title": f"filter {document.get('title') or rule_id}",
        "id": rule_id,
        "logsource": dict(document.get("logsource") or {}),
        "detection": {**detection, "condition": condition},
    }
    try:
        parsed = parse_document(synthetic, "")
    except RuleError as exc:
        raise CorrelationError(f"invalid filter detection: {exc}") from exc
    return compile_rule(parsed)


def resolve_filter(flt: MetaFilter, resolve: Callable[[str], str | None]) -> MetaFilter:
    """Map the filter's rule references to ids; unresolved references are one error."""
    ids = {ref: resolve(ref) for ref in flt.references}
    missing = [ref for ref, found in ids.items() if found is None]
    if missing:
        raise UnresolvedReferenceError(
            f"filter {flt.title or flt.id!r} names rules that are not in the catalog: "
            f"{', '.join(missing)} (a rule is named by its id or its 'name')",
            missing,
        )
    return replace(flt, rules=tuple(found for found in ids.values() if found is not None))


class FilterIndex:
    """Filters by the rules they apply to, for the sandbox's per-match check."""

    def __init__(self, filters: Iterable[MetaFilter]) -> None:
        self.filters = list(filters)
        self._named: dict[str, list[MetaFilter]] = {}
        self._any = [f for f in self.filters if f.any_rule]
        for flt in self.filters:
            for rid in flt.rules:
                self._named.setdefault(rid, []).append(flt)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def for_rule(self, rule_id: str, logsource: Sequence[str]) -> list[MetaFilter]:
        candidates = [*self._named.get(rule_id, ()), *self._any]
        return [f for f in candidates if f.applies_to(rule_id, logsource)]

    def suppressing(self, rule_id: str, logsource: Sequence[str], event: Event) -> list[MetaFilter]:
        """The filters that suppress this rule's match on ``event`` (empty: it stands)."""
        return [f for f in self.for_rule(rule_id, logsource) if f.suppresses(event)]
