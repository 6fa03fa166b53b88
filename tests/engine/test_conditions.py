"""The span-keeping condition parser (rules.conditions): trees, conjuncts, patterns, errors."""

from __future__ import annotations

import pytest

from rules.conditions import Node, conjuncts, parse_condition, referenced, resolve_pattern
from rules.errors import ConditionError, RuleError


def text_of(condition: str, node: Node) -> str:
    return condition[node.start : node.end]


def conjunct_texts(condition: str) -> list[str]:
    return [text_of(condition, node) for node in conjuncts(parse_condition(condition))]


def test_single_identifier_is_a_ref_spanning_the_name():
    node = parse_condition("selection")
    assert (node.op, node.name, node.start, node.end) == ("ref", "selection", 0, 9)
    assert conjuncts(node) == [node]


def test_selection_and_not_filter_has_two_conjuncts_the_second_negated():
    condition = "selection and not filter"
    tree = parse_condition(condition)
    assert tree.op == "and"
    first, second = conjuncts(tree)
    assert (first.op, first.name) == ("ref", "selection")
    assert second.op == "not"
    assert (second.args[0].op, second.args[0].name) == ("ref", "filter")
    assert conjunct_texts(condition) == ["selection", "not filter"]


def test_and_binds_tighter_than_or_so_an_or_root_is_one_conjunct():
    condition = "a or b and c"
    tree = parse_condition(condition)
    assert tree.op == "or"
    assert [arg.op for arg in tree.args] == ["ref", "and"]
    assert conjunct_texts(condition) == [condition]


def test_not_binds_tighter_than_and():
    tree = parse_condition("not a and b")
    assert tree.op == "and"
    assert [arg.op for arg in tree.args] == ["not", "ref"]


def test_three_conjuncts_keep_their_text_as_written():
    condition = "selection_img and  selection_cli   and not filter_main"
    assert conjunct_texts(condition) == ["selection_img", "selection_cli", "not filter_main"]


def test_parenthesised_conjuncts_keep_their_parentheses():
    condition = "selection and (a or not b) and not (filter_1 or filter_2)"
    assert conjunct_texts(condition) == [
        "selection",
        "(a or not b)",
        "not (filter_1 or filter_2)",
    ]


def test_nested_parentheses_stay_one_conjunct():
    condition = "sel and ((a or b) and not (c or (d and e)))"
    assert conjunct_texts(condition) == ["sel", "((a or b) and not (c or (d and e)))"]


def test_redundant_parentheses_around_the_whole_condition_still_split_on_and():
    condition = "((sel and not filter))"
    tree = parse_condition(condition)
    assert tree.op == "and"
    assert conjunct_texts(condition) == ["sel", "not filter"]


def test_spans_index_the_original_text_with_surrounding_whitespace_and_newlines():
    condition = "  sel_a\n    and not\tfilter  "
    assert conjunct_texts(condition) == ["sel_a", "not\tfilter"]


@pytest.mark.parametrize(
    ("condition", "quantifier", "pattern"),
    [
        ("1 of selection_*", "1", "selection_*"),
        ("any of selection_*", "1", "selection_*"),
        ("all of selection_*", "all", "selection_*"),
        ("1 of them", "1", "them"),
        ("all of them", "all", "them"),
    ],
)
def test_quantified_selectors_parse_into_of_nodes(condition, quantifier, pattern):
    node = parse_condition(condition)
    assert (node.op, node.quantifier, node.name) == ("of", quantifier, pattern)
    assert text_of(condition, node) == condition


def test_not_one_of_pattern_is_a_negated_selector_conjunct():
    condition = "selection and not 1 of filter_*"
    first, second = conjuncts(parse_condition(condition))
    assert second.op == "not"
    assert (second.args[0].op, second.args[0].name) == ("of", "filter_*")
    assert text_of(condition, second) == "not 1 of filter_*"


def test_a_number_not_followed_by_of_is_an_identifier():
    node = parse_condition("1")
    assert (node.op, node.name) == ("ref", "1")


NAMES = ["selection_img", "selection_cli", "filter_main", "filter_optional", "_helper", "kw"]


def test_them_resolves_to_every_identifier_except_underscore_ones_and_condition():
    assert resolve_pattern("them", [*NAMES, "condition"]) == [
        "selection_img",
        "selection_cli",
        "filter_main",
        "filter_optional",
        "kw",
    ]


def test_patterns_match_with_star_wildcards_in_definition_order():
    assert resolve_pattern("selection_*", NAMES) == ["selection_img", "selection_cli"]
    assert resolve_pattern("filter_*", NAMES) == ["filter_main", "filter_optional"]
    assert resolve_pattern("*_main", NAMES) == ["filter_main"]
    assert resolve_pattern("kw", NAMES) == ["kw"]
    assert resolve_pattern("nothing_*", NAMES) == []


def test_a_non_underscore_pattern_never_picks_up_underscore_identifiers():
    assert resolve_pattern("*", NAMES) == [n for n in NAMES if not n.startswith("_")]


def test_referenced_lists_identifiers_in_order_of_first_appearance_without_duplicates():
    tree = parse_condition("(filter_main or kw) and 1 of selection_* and not filter_main")
    assert referenced(tree, NAMES) == ["filter_main", "kw", "selection_img", "selection_cli"]


def test_referenced_of_them_skips_underscore_identifiers():
    assert referenced(parse_condition("1 of them"), NAMES) == [
        "selection_img",
        "selection_cli",
        "filter_main",
        "filter_optional",
        "kw",
    ]


def test_referenced_explicit_underscore_identifier_is_kept():
    assert referenced(parse_condition("kw and not _helper"), NAMES) == ["kw", "_helper"]


@pytest.mark.parametrize(
    "condition",
    [
        "",
        "   ",
        "sel and",
        "and sel",
        "sel or or b",
        "(sel",
        "sel)",
        "()",
        "sel b",
        "not",
        "1 of",
        "1 of (",
        "all of and",
        "sel and (not)",
    ],
)
def test_malformed_conditions_raise_condition_error(condition):
    with pytest.raises(ConditionError) as caught:
        parse_condition(condition)
    assert isinstance(caught.value, RuleError)
    assert str(caught.value)


def test_deprecated_aggregation_pipe_is_refused_with_an_explanation():
    with pytest.raises(ConditionError, match="count"):
        parse_condition("selection | count() by SourceIp > 10")


def test_canonical_text_and_flat_conjuncts_spell_stages_as_pysigma_does():
    from rules.conditions import canonical_text, flat_conjuncts

    tree = parse_condition("sel  and (a and (b or c)) and not (f1 or (f2 or f3)) and any of x*")
    assert [canonical_text(node) for node in flat_conjuncts(tree)] == [
        "sel",
        "a",
        "b or c",
        "not (f1 or f2 or f3)",
        "any of x*",
    ]
    assert canonical_text(tree) == "sel and a and (b or c) and not (f1 or f2 or f3) and any of x*"


def test_parse_condition_returns_the_same_frozen_tree_for_the_same_text():
    assert parse_condition("sel and not filter") is parse_condition("sel and not filter")
