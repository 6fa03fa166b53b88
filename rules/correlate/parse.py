"""Correlation documents -> :class:`CorrelationRule`, validated by pySigma.

pySigma 1.5.1 (``sigma.correlations.SigmaCorrelationRule``) checks the type, timespan,
group-by, aliases, generate and the condition. Where it is narrower than the specification it
is widened here, and said so:

* **Ranges.** The spec allows ``condition: {gt: 100, lte: 200}``; pySigma takes exactly one
  operator. pySigma validates the first criterion, this module reads them all.
* **Timespans** ``M`` (month) and ``y`` (year) are pySigma's lengths (30.44 d, 365.24 d).

References stay as written until :func:`resolve_references` maps each to a rule id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionItem,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.exceptions import SigmaError

from rules.correlate.model import (
    OPERATORS,
    VALUE_TYPES,
    Bound,
    CorrelationError,
    CorrelationRule,
    UnresolvedReferenceError,
)

__all__ = ["is_correlation", "parse_correlation", "resolve_references"]

Expr = CorrelationConditionItem | SigmaRuleReference
MAX_REFERENCES = 100
MAX_GROUP_BY = 20


def is_correlation(document: Mapping[str, Any]) -> bool:
    return isinstance(document, Mapping) and "correlation" in document


def parse_correlation(document: Mapping[str, Any], *, path: str = "") -> CorrelationRule:
    """Validate one correlation document; references are left as written."""
    section = document.get("correlation")
    if not isinstance(section, Mapping):
        raise CorrelationError("'correlation' must be a mapping")
    bounds, reduced = _bounds(section.get("condition"))
    checked = dict(document)
    checked["correlation"] = {**section, "condition": reduced} if reduced is not None else section
    try:
        sigma = SigmaCorrelationRule.from_dict(checked)
    except SigmaError as exc:
        raise CorrelationError(f"invalid correlation: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise CorrelationError(f"invalid correlation: {type(exc).__name__}: {exc}") from exc
    kind = str(sigma.type.name).lower()
    condition = sigma.condition
    fields: tuple[str, ...] = ()
    percentile = None
    expression = ""
    if isinstance(condition, SigmaExtendedCorrelationCondition):
        expression = condition.expression
        references = tuple(condition.get_referenced_rules()) if sigma.rules is None else ()
        bounds = ()
    else:
        assert isinstance(condition, SigmaCorrelationCondition)
        if reduced is None:  # temporal default: all rules (pySigma's gte len(rules))
            bounds = (Bound(condition.op.name.lower(), float(condition.count)),)
        ref = condition.fieldref
        fields = tuple([ref] if isinstance(ref, str) else ref or ())
        percentile = condition.percentile
        references = ()
    if sigma.rules is not None:
        references = tuple(r.reference for r in sigma.rules)
    _check_shape(kind, references, fields, percentile, sigma.group_by or [])
    title = str(document.get("title") or "")
    return CorrelationRule(
        id=str(sigma.id) if sigma.id else _path_id(path, title),
        title=title,
        type=kind,
        rules=references,
        references=references,
        timespan=sigma.timespan.spec,
        seconds=float(sigma.timespan.seconds),
        bounds=bounds,
        group_by=tuple(sigma.group_by or ()),
        name=str(sigma.name or ""),
        level=str(sigma.level.name).lower() if sigma.level else "",
        description=str(document.get("description") or ""),
        fields=fields,
        percentile=50 if kind == "value_median" else percentile,
        aliases={
            alias.alias: {ref.reference: name for ref, name in alias.mapping.items()}
            for alias in sigma.aliases
        },
        expression=expression,
        generate=bool(sigma.generate),
    )


def _bounds(condition: Any) -> tuple[tuple[Bound, ...], dict[str, Any] | None]:
    """All criteria of a mapping condition, and the one-operator mapping pySigma checks."""
    if not isinstance(condition, Mapping):
        return (), None
    bounds = []
    for op, value in condition.items():
        if op not in OPERATORS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CorrelationError(f"condition '{op}' must be a number, not {value!r}")
        bounds.append(Bound(str(op), float(value)))
    if not bounds:
        return (), dict(condition)
    first = bounds[0]
    reduced = {k: v for k, v in condition.items() if k not in OPERATORS}
    reduced[first.op] = int(first.value) if first.value.is_integer() else first.value
    return tuple(bounds), reduced


def _check_shape(
    kind: str, refs: tuple[str, ...], fields: tuple[str, ...], percentile: int | None, group: Any
) -> None:
    if not refs:
        raise CorrelationError("a correlation must reference at least one rule")
    if len(refs) > MAX_REFERENCES:
        raise CorrelationError(f"a correlation may reference at most {MAX_REFERENCES} rules")
    if len(group) > MAX_GROUP_BY:
        raise CorrelationError(f"group-by may list at most {MAX_GROUP_BY} fields")
    if kind in VALUE_TYPES and not fields:
        raise CorrelationError(f"a {kind} correlation needs a condition 'field'")
    if kind == "value_percentile":
        if percentile is None:
            raise CorrelationError("a value_percentile correlation needs a condition 'percentile'")
        if not 0 <= percentile <= 100:
            raise CorrelationError("the percentile must be between 0 and 100")


def _path_id(path: str, title: str) -> str:
    """Correlations without an id (the spec makes it optional) get a stable one."""
    import hashlib

    return "corr-" + hashlib.sha1(f"{path}\x1f{title}".encode()).hexdigest()[:16]


def resolve_references(
    rule: CorrelationRule,
    resolve: Callable[[str], str | None],
    *,
    document: Mapping[str, Any] | None = None,
) -> CorrelationRule:
    """Map every reference (rules, aliases, the extended condition) to a rule id with
    ``resolve`` (id or name -> id); all unresolved references are reported at once."""
    ids: dict[str, str] = {}
    missing: list[str] = []
    alias_refs = [r for mapping in rule.aliases.values() for r in mapping]
    for ref in dict.fromkeys([*rule.references, *alias_refs]):
        found = resolve(ref)
        if found is None:
            missing.append(ref)
        else:
            ids[ref] = found
    if missing:
        raise UnresolvedReferenceError(
            f"correlation {rule.title or rule.id!r} references rules that are not in the "
            f"catalog: {', '.join(missing)} (a rule is referenced by its id or its 'name')",
            missing,
        )
    aliases = {
        alias: {ids[ref]: name for ref, name in mapping.items()}
        for alias, mapping in rule.aliases.items()
    }
    test = None
    if rule.expression:
        tree = SigmaExtendedCorrelationCondition(rule.expression).parsed
        test = _compile_expression(tree, ids)
    return replace(
        rule,
        rules=tuple(ids[r] for r in rule.references),
        aliases=aliases,
        expression_test=test,
    )


def _compile_expression(node: Expr, ids: Mapping[str, str]) -> Callable[[frozenset[str]], bool]:
    """The extended condition as a predicate over the rule ids present in a window."""
    if isinstance(node, SigmaRuleReference):
        target = ids[node.reference]
        return lambda present: target in present
    parts = [_compile_expression(arg, ids) for arg in node.args]
    if isinstance(node, CorrelationConditionNOT):
        inner = parts[0]
        return lambda present: not inner(present)
    if isinstance(node, CorrelationConditionAND):
        return lambda present: all(p(present) for p in parts)
    if isinstance(node, CorrelationConditionOR):
        return lambda present: any(p(present) for p in parts)
    raise CorrelationError(f"unsupported correlation condition node {type(node).__name__}")
