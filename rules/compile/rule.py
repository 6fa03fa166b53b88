"""Compile a parsed rule: detection items to matchers, conditions to closures.

:func:`compile_rule` walks pySigma's parsed detection (``SigmaDetection`` /
``SigmaDetectionItem`` with their modifier-applied values) and the rule's condition trees
(:func:`rules.conditions.parse_condition`, the tree the stored stages come from), and builds
the :class:`CompiledRule`: the trees explanations walk, the fast closure ``match`` and the
required literals and fields for the prefilter.

Rules using ``|expand`` placeholders (or that cannot be compiled) get ``unsupported`` reasons
and never match; they are reported, not ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.conditions import ConditionAND
from sigma.modifiers import reverse_modifier_mapping
from sigma.rule.detection import SigmaDetection, SigmaDetectionItem
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from rules.compile import matchers
from rules.compile.fastpath import EventTest, combine, condition_fast, detection_fast, item_fast
from rules.compile.literals import Literals, condition_fields, condition_literals, union, weak
from rules.compile.matchers import Matcher, UnsupportedRuleError
from rules.compile.requirements import Requirements, rule_requirements
from rules.compile.tree import Condition, ConditionStage, DetectionNode, IdentifierValues, ItemNode
from rules.conditions import (
    Node,
    boolean_op,
    canonical_text,
    flat_conjuncts,
    operands,
    parse_condition,
    referenced,
    resolve_selectors,
)
from rules.events import Event
from rules.model import ParsedRule
from rules.modifiers import CasedFieldReference

__all__ = ["CompiledRule", "compile_condition", "compile_rule", "compile_value"]


# --------------------------------------------------------------------------------------------
# Values and items


def _string_parts(value: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for p in value.s:
        if isinstance(p, Placeholder):
            raise UnsupportedRuleError(
                f"|expand placeholder %{p.name}% needs configuration to be evaluated"
            )
        parts.append(p)
    return parts


def compile_value(value: SigmaType, keyword: bool, mods: frozenset[str]) -> Matcher:
    """One value after modifiers. Keyword strings are searched inside every event value
    (implicit leading/trailing ``*`` unless ``|startswith``/``|endswith`` anchor them)."""
    star = SpecialChars.WILDCARD_MULTI
    if isinstance(value, SigmaExpansion):
        return matchers.ExpansionMatcher([compile_value(v, keyword, mods) for v in value.values])
    if isinstance(value, SigmaString):  # includes SigmaCasedString
        parts = _string_parts(value)
        if keyword:
            if "startswith" not in mods:
                parts = [star, *parts]
            if "endswith" not in mods:
                parts = [*parts, star]
        return matchers.StringMatcher(parts, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaRegularExpression):
        if value.regexp.contains_placeholder():
            raise UnsupportedRuleError(
                "|expand placeholder in a regular expression needs configuration"
            )
        return matchers.RegexMatcher(value)
    if isinstance(value, SigmaTimestampPart):
        return matchers.TimestampMatcher(value)
    if isinstance(value, SigmaNumber | SigmaBool) and keyword:
        text = str(value.number) if isinstance(value, SigmaNumber) else str(value.boolean)
        return matchers.StringMatcher([star, text, star], cased=False)
    if isinstance(value, SigmaNumber):
        return matchers.NumberMatcher(value.number)
    if isinstance(value, SigmaBool):
        return matchers.BoolMatcher(value.boolean)
    if isinstance(value, SigmaNull):
        if keyword:
            raise UnsupportedRuleError("null keyword value")
        return matchers.NullMatcher()
    if isinstance(value, SigmaExists):
        return matchers.ExistsMatcher(value.exists)
    if isinstance(value, SigmaCompareExpression):
        return matchers.CompareMatcher(value)
    if isinstance(value, SigmaCIDRExpression):
        return matchers.CIDRMatcher(value)
    if isinstance(value, SigmaFieldReference):
        return matchers.FieldRefMatcher(value, cased=isinstance(value, CasedFieldReference))
    raise UnsupportedRuleError(f"unsupported value type {type(value).__name__}")


def _display(value: SigmaType) -> Any:
    """A rule value as explanations show it (the text as written for strings)."""
    if isinstance(value, SigmaString):
        return value.original
    if isinstance(value, SigmaNumber):
        return value.number
    if isinstance(value, SigmaBool):
        return value.boolean
    if isinstance(value, SigmaNull):
        return None
    return str(value)


_SHORT_MODIFIERS = {"ignorecase": "i", "multiline": "m", "dotall": "s"}


def _modifier_name(modifier: type) -> str:
    name = reverse_modifier_mapping.get(modifier.__name__, modifier.__name__)
    return _SHORT_MODIFIERS.get(name, name)


def _label(item: SigmaDetectionItem) -> str:
    mods = [_modifier_name(m) for m in item.modifiers]
    if mods:
        return "|".join(mods)
    if item.field is None:
        return "keyword"
    if item.value and all(isinstance(v, SigmaNull) for v in item.value):
        return "null"
    return "equals"


def _compile_item(item: SigmaDetectionItem) -> ItemNode:
    keyword = item.field is None
    mods = frozenset(_modifier_name(m) for m in item.modifiers)
    if keyword and not item.value:
        raise UnsupportedRuleError("empty keyword list")
    compiled = [compile_value(v, keyword, mods) for v in item.value]
    originals = item.original_value if item.original_value is not None else item.value
    if len(originals) == len(item.value):
        rule_values = [_display(v) for v in originals]
    else:  # pragma: no cover - modifiers map values one to one
        rule_values = [_display(v) for v in item.value]
    node = ItemNode(
        field=item.field,
        label=_label(item),
        matchers=compiled,
        rule_values=rule_values,
        all=item.value_linking is ConditionAND,
        negated=item.negated,
    )
    node.fast = item_fast(node)
    return node


def _compile_detection(det: SigmaDetection) -> DetectionNode:
    children: list[DetectionNode | ItemNode] = []
    for child in det.detection_items:
        if isinstance(child, SigmaDetection):
            children.append(_compile_detection(child))
        else:
            children.append(_compile_item(child))
    node = DetectionNode(all=det.item_linking is ConditionAND, children=children)
    node.fast = detection_fast(node)
    return node


# --------------------------------------------------------------------------------------------
# Conditions


def _values_fn(node: Node) -> Callable[[IdentifierValues], bool]:
    """A closure evaluating a resolved condition tree over identifier values."""
    if node.op == "ref":
        name = node.name
        return lambda v: v[name]
    if node.op == "not":
        inner = _values_fn(node.args[0])
        return lambda v: not inner(v)
    fs = tuple(_values_fn(c) for c in operands(node))
    if boolean_op(node) == "and":
        return lambda v: all(f(v) for f in fs)
    return lambda v: any(f(v) for f in fs)


def _check_selectors(node: Node) -> None:
    """Refuse a selector that matches no search identifier (first one, left to right)."""
    if node.op == "of" and not node.args:
        raise UnsupportedRuleError(f"'{canonical_text(node)}' matches no search identifier")
    for arg in () if node.op == "of" else node.args:
        _check_selectors(arg)


def compile_condition(text: str, identifiers: Sequence[str]) -> Condition:
    """One condition over the rule's search identifiers (in definition order)."""
    if "|" in text:
        raise UnsupportedRuleError(f"aggregation '{text}' needs a correlation engine")
    tree = resolve_selectors(parse_condition(text), identifiers)
    _check_selectors(tree)
    stages = tuple(
        ConditionStage(
            node=node,
            text=canonical_text(node),
            negated=node.op == "not",
            identifiers=tuple(referenced(node, identifiers)),
            holds=_values_fn(node),
        )
        for node in flat_conjuncts(tree)
    )
    return Condition(
        text=text,
        tree=tree,
        identifiers=tuple(referenced(tree, identifiers)),
        stages=stages,
        holds=_values_fn(tree),
    )


# --------------------------------------------------------------------------------------------
# Rules


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule ready to evaluate. ``unsupported`` non-empty means it is never evaluated."""

    id: str
    title: str
    level: str
    logsource: tuple[str, str, str]
    conditions: list[Condition]
    identifiers: dict[str, DetectionNode]
    unsupported: list[str]
    literals: Literals
    match: EventTest = field(repr=False)
    #: Field names one of which must be present for the rule to match (None: no such set).
    fields: Literals = None
    rule: ParsedRule | None = field(default=None, repr=False)
    #: What a matching event must contain, as clauses (:mod:`rules.compile.requirements`).
    requirements: Requirements = field(default=(), repr=False)

    @property
    def evaluable(self) -> bool:
        return not self.unsupported

    @property
    def logsource_label(self) -> str:
        return "/".join(p for p in self.logsource if p)

    @property
    def condition_texts(self) -> list[str]:
        return [c.text for c in self.conditions]


def _never(ev: Event) -> bool:
    return False


def _compile_detection_and_conditions(
    rule: ParsedRule, identifiers: dict[str, DetectionNode], conditions: list[Condition]
) -> list[str]:
    """Fill ``identifiers`` and ``conditions``; the reasons the rule cannot be evaluated."""
    detection = getattr(rule.sigma, "detection", None)
    if rule.sigma is None or detection is None:
        return ["no parsed detection (correlation or unparsed rule)"]
    reasons: list[str] = []
    try:
        for name, det in detection.detections.items():
            identifiers[name] = _compile_detection(det)
        names = list(detection.detections)
        for text in rule.conditions:
            conditions.append(compile_condition(text, names))
    except UnsupportedRuleError as exc:
        # The parser already reports |expand placeholders in its own words.
        if not (rule.unsupported and "placeholder" in str(exc)):
            reasons.append(str(exc))
    except Exception as exc:  # pySigma errors surface here for malformed rules
        reasons.append(f"cannot compile: {type(exc).__name__}: {exc}")
    for c in conditions:
        for n in c.identifiers:
            if n not in identifiers:
                reasons.append(f"condition references undefined identifier '{n}'")
    return reasons


def _prefilter_sets(
    conditions: Iterable[Condition], identifiers: dict[str, DetectionNode]
) -> tuple[Literals, Literals]:
    """(required literals, required fields) of an evaluable rule's conditions."""
    literals = union([condition_literals(c.tree, identifiers) for c in conditions])
    # Weak literals (a common character, a short number) are in nearly every event: scanning
    # for them costs more than it saves, so such rules are always candidates (when their
    # fields are present). best/union already avoid them where another choice exists.
    if literals is not None and (not literals or any(weak(lit) for lit in literals)):
        literals = None
    fields = union([condition_fields(c.tree, identifiers) for c in conditions], literals=False)
    return literals, fields


def compile_rule(rule: ParsedRule) -> CompiledRule:
    """Compile a :class:`ParsedRule` (its ``sigma`` SigmaRule) into a :class:`CompiledRule`.

    Never raises for rule content: what cannot be evaluated is listed in ``unsupported``.
    """
    ls = rule.logsource
    identifiers: dict[str, DetectionNode] = {}
    conditions: list[Condition] = []
    reasons = _compile_detection_and_conditions(rule, identifiers, conditions)
    # The same reason may come from the parser and from compilation: keep one.
    unsupported = list(dict.fromkeys([*rule.unsupported, *reasons]))
    if not unsupported and not conditions:
        unsupported.append("no condition")
    compiled = CompiledRule(
        id=rule.id,
        title=rule.title,
        level=rule.level,
        logsource=(ls.product or "", ls.category or "", ls.service or ""),
        conditions=conditions,
        identifiers=identifiers,
        unsupported=unsupported,
        literals=None,
        match=_never,
        rule=rule,
    )
    if not unsupported:
        compiled.match = combine([condition_fast(c.tree, identifiers) for c in conditions], False)
        compiled.literals, compiled.fields = _prefilter_sets(conditions, identifiers)
        compiled.requirements = rule_requirements((c.tree for c in conditions), identifiers)
    return compiled
