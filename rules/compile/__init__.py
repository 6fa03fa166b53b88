"""Compile a parsed Sigma rule into matchers with exact Sigma semantics.

One module per role:

* :mod:`~rules.compile.access`: an event's values as :class:`Element` tuples, cached per event;
* :mod:`~rules.compile.matchers`: one rule value (after modifiers) against a field's elements;
* :mod:`~rules.compile.tree`: the compiled detection (items, identifiers) and conditions;
* :mod:`~rules.compile.literals`: the required literals and fields for the prefilter;
* :mod:`~rules.compile.requirements`: what a matching event contains, as clauses (the prefilter);
* :mod:`~rules.compile.fastpath`: the closures of the yes/no path (``CompiledRule.match``);
* :mod:`~rules.compile.rule`: :func:`compile_rule`, tying them together.
"""

from rules.compile.access import (
    Element,
    Elements,
    KeywordElement,
    Span,
    field_elements,
    keyword_elements,
    keyword_values,
    map_span,
)
from rules.compile.literals import Literals, regex_literals
from rules.compile.matchers import (
    CONTAINS,
    BoolMatcher,
    CIDRMatcher,
    CompareMatcher,
    ElementMatcher,
    ExistsMatcher,
    ExpansionMatcher,
    FieldRefMatcher,
    Found,
    Matcher,
    NullMatcher,
    NumberMatcher,
    RegexMatcher,
    StringMatcher,
    TimestampMatcher,
    UnsupportedRuleError,
)
from rules.compile.rule import CompiledRule, compile_condition, compile_rule, compile_value
from rules.compile.tree import (
    Condition,
    ConditionStage,
    DetectionNode,
    IdentifierValues,
    ItemNode,
    ItemValues,
)

__all__ = [
    "CONTAINS",
    "BoolMatcher",
    "CIDRMatcher",
    "CompareMatcher",
    "CompiledRule",
    "Condition",
    "ConditionStage",
    "DetectionNode",
    "Element",
    "ElementMatcher",
    "Elements",
    "ExistsMatcher",
    "ExpansionMatcher",
    "FieldRefMatcher",
    "Found",
    "IdentifierValues",
    "ItemNode",
    "ItemValues",
    "KeywordElement",
    "Literals",
    "Matcher",
    "NullMatcher",
    "NumberMatcher",
    "RegexMatcher",
    "Span",
    "StringMatcher",
    "TimestampMatcher",
    "UnsupportedRuleError",
    "compile_condition",
    "compile_rule",
    "compile_value",
    "field_elements",
    "keyword_elements",
    "keyword_values",
    "map_span",
    "regex_literals",
]
