"""Stages, exclusions and indicators of inline rules, against the issue's definitions."""

from __future__ import annotations

import pytest
import yaml

from rules.errors import ConditionError, DetectionError, RuleError
from rules.model import Exclusion, Indicator, ParsedRule, Stage
from rules.parse import parse_rule
from tests.factories import SEED_DETECTION, WINDOWS_PROCESS_CREATION, rule_yaml

RULE_ID = "6a9d2d27-3f3e-4c1e-9d1a-0c6b7d2f1e55"


def make_rule(detection: str) -> str:
    """A minimal valid rule around ``detection`` (written at column 0, indented here)."""
    return rule_yaml(
        title="Inline test rule",
        id=RULE_ID,
        status="test",
        logsource=WINDOWS_PROCESS_CREATION,
        detection=detection,
        level="low",
    )


def parse(detection: str) -> ParsedRule:
    return parse_rule(make_rule(detection), "inline.yml")


def rows(items: list[Indicator] | list[Exclusion]) -> list[tuple[str, str, str]]:
    return [(i.field, i.kind, i.value) for i in items]


def stage_view(stages: list[Stage]) -> list[tuple[int, int, str, list[str], bool]]:
    return [(s.group, s.index, s.text, s.identifiers, s.negated) for s in stages]


def assert_stage_yaml_matches_detection(rule: ParsedRule) -> None:
    for stage in rule.stages:
        if stage.index == 0:
            assert stage.yaml == ""
            continue
        expected = {name: rule.detection[name] for name in stage.identifiers}
        assert yaml.safe_load(stage.yaml) == expected, stage.yaml


# --- stages ---------------------------------------------------------------------------------


def test_selection_and_not_filter_gives_the_seed_shape():
    rule = parse(SEED_DETECTION)
    assert stage_view(rule.stages) == [
        (0, 0, "selection and not filter", ["selection", "filter"], False),
        (0, 1, "selection", ["selection"], False),
        (0, 2, "not filter", ["filter"], True),
    ]
    assert rule.stages[1].yaml == (
        "selection:\n"
        "    ScriptBlockText|contains|all:\n"
        "        - Test-NetConnection\n"
        "        - '-ComputerName '\n"
        "        - '-port '\n"
    )
    assert rule.stages[2].yaml == (
        "filter:\n    ScriptBlockText|contains:\n        - ' 443 '\n        - ' 80 '\n"
    )
    assert rows(rule.indicators) == [
        ("ScriptBlockText", "contains", "Test-NetConnection"),
        ("ScriptBlockText", "contains", "-ComputerName "),
        ("ScriptBlockText", "contains", "-port "),
    ]
    assert rows(rule.exclusions) == [
        ("ScriptBlockText", "contains", " 443 "),
        ("ScriptBlockText", "contains", " 80 "),
    ]
    assert {i.identifier for i in rule.indicators} == {"selection"}
    assert {e.identifier for e in rule.exclusions} == {"filter"}


def test_a_condition_list_gives_one_stage_group_per_condition():
    rule = parse(
        """
        sel_a:
            A: 1
        sel_b:
            B: 2
        filter:
            C: 3
        condition:
            - sel_a and not filter
            - sel_b
        """
    )
    assert rule.conditions == ["sel_a and not filter", "sel_b"]
    assert stage_view(rule.stages) == [
        (0, 0, "sel_a and not filter", ["sel_a", "filter"], False),
        (0, 1, "sel_a", ["sel_a"], False),
        (0, 2, "not filter", ["filter"], True),
        (1, 0, "sel_b", ["sel_b"], False),
        (1, 1, "sel_b", ["sel_b"], False),
    ]
    assert rows(rule.indicators) == [("A", "equals", "1"), ("B", "equals", "2")]
    assert rows(rule.exclusions) == [("C", "equals", "3")]
    assert_stage_yaml_matches_detection(rule)


def test_an_identifier_negated_in_one_condition_and_positive_in_another_is_an_indicator():
    rule = parse(
        """
        sel:
            A: x
        filter:
            B: y
        condition:
            - sel and not filter
            - filter
        """
    )
    assert rows(rule.exclusions) == []
    assert set(rows(rule.indicators)) == {("A", "equals", "x"), ("B", "equals", "y")}


def test_not_one_of_pattern_excludes_every_matching_identifier():
    rule = parse(
        """
        selection:
            Image|endswith: '\\rundll32.exe'
        filter_main_system:
            ParentImage|startswith: 'C:\\Windows\\System32\\'
        filter_optional_edge:
            ParentImage|endswith: '\\msedge.exe'
        condition: selection and not 1 of filter_*
        """
    )
    assert stage_view(rule.stages) == [
        (
            0,
            0,
            "selection and not 1 of filter_*",
            ["selection", "filter_main_system", "filter_optional_edge"],
            False,
        ),
        (0, 1, "selection", ["selection"], False),
        (0, 2, "not 1 of filter_*", ["filter_main_system", "filter_optional_edge"], True),
    ]
    assert rows(rule.exclusions) == [
        ("ParentImage", "startswith", "C:\\Windows\\System32\\"),
        ("ParentImage", "endswith", "\\msedge.exe"),
    ]
    assert [e.identifier for e in rule.exclusions] == ["filter_main_system", "filter_optional_edge"]
    assert rows(rule.indicators) == [("Image", "endswith", "\\rundll32.exe")]
    assert_stage_yaml_matches_detection(rule)


def test_all_of_selection_pattern_and_not_filters_in_parentheses():
    rule = parse(
        """
        selection_img:
            Image|endswith: '\\cmd.exe'
        selection_cli:
            CommandLine|contains: '/c'
        filter_a:
            User: SYSTEM
        filter_b:
            User: LOCAL SERVICE
        condition: all of selection_* and not (filter_a or filter_b)
        """
    )
    assert [s.text for s in rule.stages] == [
        "all of selection_* and not (filter_a or filter_b)",
        "all of selection_*",
        "not (filter_a or filter_b)",
    ]
    assert rule.stages[1].identifiers == ["selection_img", "selection_cli"]
    assert rule.stages[2].negated
    assert rows(rule.exclusions) == [
        ("User", "equals", "SYSTEM"),
        ("User", "equals", "LOCAL SERVICE"),
    ]
    assert rows(rule.indicators) == [
        ("Image", "endswith", "\\cmd.exe"),
        ("CommandLine", "contains", "/c"),
    ]


def test_nested_parentheses_stay_one_stage_and_their_identifiers_are_indicators():
    rule = parse(
        """
        sel:
            A: a
        b1:
            B: b
        c1:
            C: c
        d1:
            D: d
        condition: sel and ((b1 or c1) and not d1)
        """
    )
    assert [s.text for s in rule.stages] == [
        "sel and ((b1 or c1) and not d1)",
        "sel",
        "((b1 or c1) and not d1)",
    ]
    assert rule.stages[2].identifiers == ["b1", "c1", "d1"]
    assert not rule.stages[2].negated
    # ``not d1`` is not a top-level conjunct, so d1 is looked for like any other value.
    assert rows(rule.exclusions) == []
    assert {r[0] for r in rows(rule.indicators)} == {"A", "B", "C", "D"}


def test_not_inside_an_or_conjunct_is_an_indicator_not_an_exclusion():
    rule = parse(
        """
        sel:
            A: a
        other:
            B: b
        neg:
            C: c
        condition: sel and (other or not neg)
        """
    )
    assert [s.text for s in rule.stages] == [
        "sel and (other or not neg)",
        "sel",
        "(other or not neg)",
    ]
    assert rows(rule.exclusions) == []
    assert rows(rule.indicators) == [
        ("A", "equals", "a"),
        ("B", "equals", "b"),
        ("C", "equals", "c"),
    ]


def test_an_identifier_both_negated_and_positive_in_one_condition_is_an_indicator():
    rule = parse(
        """
        sel:
            A: a
        f:
            B: b
        condition: (sel or f) and not f
        """
    )
    assert rows(rule.exclusions) == []
    assert set(rows(rule.indicators)) == {("A", "equals", "a"), ("B", "equals", "b")}


def test_a_whole_negated_condition_is_all_exclusions():
    rule = parse(
        """
        f:
            A: a
        condition: not f
        """
    )
    assert stage_view(rule.stages) == [(0, 0, "not f", ["f"], False), (0, 1, "not f", ["f"], True)]
    assert rows(rule.indicators) == []
    assert rows(rule.exclusions) == [("A", "equals", "a")]


def test_one_of_them_skips_underscore_identifiers_and_unreferenced_ones_give_nothing():
    rule = parse(
        """
        sel_a:
            A: a
        sel_b:
            B: b
        _helper:
            H: h
        condition: 1 of them
        """
    )
    assert rule.stages[0].identifiers == ["sel_a", "sel_b"]
    assert rows(rule.indicators) == [("A", "equals", "a"), ("B", "equals", "b")]


def test_unreferenced_identifiers_are_neither_indicators_nor_exclusions():
    rule = parse(
        """
        sel:
            A: a
        unused:
            U: u
        condition: sel
        """
    )
    assert rows(rule.indicators) == [("A", "equals", "a")]
    assert rows(rule.exclusions) == []


def test_an_explicitly_referenced_underscore_identifier_is_used():
    rule = parse(
        """
        sel:
            A: a
        _filter:
            B: b
        condition: sel and not _filter
        """
    )
    assert rows(rule.exclusions) == [("B", "equals", "b")]
    assert [e.identifier for e in rule.exclusions] == ["_filter"]


def test_an_underscore_pattern_selects_underscore_identifiers():
    """pySigma (the engine's reference) lets a pattern starting with ``_`` match ``_`` names."""
    rule = parse(
        """
        sel:
            A: a
        _filter_one:
            B: b
        _filter_two:
            C: c
        condition: sel and not 1 of _filter_*
        """
    )
    assert rule.stages[2].identifiers == ["_filter_one", "_filter_two"]
    assert rows(rule.exclusions) == [("B", "equals", "b"), ("C", "equals", "c")]


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(
            """
            sel:
                F:
                    - a
                    - b
            filter:
                G: c
            condition: sel and not filter
            """,
            id="block",
        ),
        pytest.param(
            """
            sel:
              F:
              - a
              - b
            # a comment between identifiers
            filter:
              G: c
            condition: sel and not filter
            """,
            id="compact-two-space-with-comment",
        ),
        pytest.param(
            """
            'sel':
                "F": [a, b]
            filter: {G: c}
            condition: 'sel and not filter'
            """,
            id="quoted-keys-and-flow",
        ),
        pytest.param(
            """
            sel:
            - F: a
            - F: b
            filter:
            - G: c
            condition: sel and not filter
            """,
            id="list-at-key-indentation",
        ),
    ],
)
def test_stage_yaml_is_exactly_the_referenced_identifiers(layout):
    rule = parse(layout)
    assert [s.text for s in rule.stages] == ["sel and not filter", "sel", "not filter"]
    assert_stage_yaml_matches_detection(rule)


def test_stage_yaml_falls_back_to_a_dump_for_flow_style_detection():
    text = (
        f"title: t\nid: {RULE_ID}\nlogsource: {{product: windows}}\n"
        "detection: {sel: {F: [a, b]}, filter: {G: c}, condition: sel and not filter}\n"
    )
    rule = parse_rule(text)
    assert_stage_yaml_matches_detection(rule)


# --- indicators: values, kinds, wildcards ---------------------------------------------------


def test_list_of_maps_gives_the_values_of_every_map():
    rule = parse(
        """
        sel:
            - Image|endswith: '\\powershell.exe'
            - OriginalFileName: PowerShell.EXE
              Product: Microsoft
        condition: sel
        """
    )
    assert rows(rule.indicators) == [
        ("Image", "endswith", "\\powershell.exe"),
        ("OriginalFileName", "equals", "PowerShell.EXE"),
        ("Product", "equals", "Microsoft"),
    ]


def test_keyword_list_values_have_an_empty_field():
    rule = parse(
        """
        keywords:
            - 'mimikatz'
            - '*sekurlsa::logonpasswords*'
            - 42
        condition: keywords
        """
    )
    assert rows(rule.indicators) == [
        ("", "equals", "mimikatz"),
        ("", "contains", "sekurlsa::logonpasswords"),
        ("", "equals", "42"),
    ]


def test_a_single_keyword_string_is_an_indicator():
    rule = parse(
        """
        keyword: 'evil*'
        condition: keyword
        """
    )
    assert rows(rule.indicators) == [("", "startswith", "evil")]


def test_list_mixing_maps_and_keywords():
    rule = parse(
        """
        sel:
            - F: x
            - 'kw'
        condition: sel
        """
    )
    assert rows(rule.indicators) == [("F", "equals", "x"), ("", "equals", "kw")]


def test_all_keyword_map_drops_the_all_modifier():
    rule = parse(
        """
        keywords:
            '|all':
                - 'Invoke-Mimikatz'
                - '*DumpCreds*'
        condition: keywords
        """
    )
    assert rows(rule.indicators) == [
        ("", "equals", "Invoke-Mimikatz"),
        ("", "contains", "DumpCreds"),
    ]


def test_contains_all_keyword_map():
    rule = parse(
        """
        keywords:
            '|contains|all':
                - 'a'
                - 'b'
        condition: keywords
        """
    )
    assert rows(rule.indicators) == [("", "contains", "a"), ("", "contains", "b")]


def test_null_booleans_and_numbers_become_text():
    rule = parse(
        """
        sel:
            NullField: null
            TildeField: ~
            TrueField: true
            FalseField: false
            EventID: 4104
            Negative: -7
            Ratio: 0.5
            Listed:
                - 1
                - true
                - null
                - '0042'
        condition: sel
        """
    )
    assert rows(rule.indicators) == [
        ("NullField", "equals", "null"),
        ("TildeField", "equals", "null"),
        ("TrueField", "equals", "true"),
        ("FalseField", "equals", "false"),
        ("EventID", "equals", "4104"),
        ("Negative", "equals", "-7"),
        ("Ratio", "equals", "0.5"),
        ("Listed", "equals", "1"),
        ("Listed", "equals", "true"),
        ("Listed", "equals", "null"),
        ("Listed", "equals", "0042"),
    ]


def test_numbers_keep_the_text_they_were_written_as():
    """The definition: "value as written, as text (... numbers as written)"."""
    rule = parse(
        """
        sel:
            Status: 0xC0000022
            Version: 1.50
            Mode: 0o17
        condition: sel
        """
    )
    assert rows(rule.indicators) == [
        ("Status", "equals", "0xC0000022"),
        ("Version", "equals", "1.50"),
        ("Mode", "equals", "0o17"),
    ]


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("F", "'x'", "equals"),
        ("F|contains", "'x'", "contains"),
        ("F|startswith", "'x'", "startswith"),
        ("F|endswith", "'x'", "endswith"),
        ("F|re", "'^x$'", "re"),
        ("F|cidr", "'10.0.0.0/8'", "cidr"),
        ("F|gt", "5", "gt"),
        ("F|gte", "5", "gte"),
        ("F|lt", "5", "lt"),
        ("F|lte", "5", "lte"),
        ("F|exists", "true", "exists"),
        ("F|fieldref", "'G'", "fieldref"),
        ("F|contains|windash", "'-x'", "contains|windash"),
        ("F|windash|contains", "'-x'", "contains|windash"),
        ("F|contains|all|windash", "'-x'", "contains|windash"),
        ("F|all|contains", "'x'", "contains"),
        ("F|base64offset|contains", "'x'", "contains|base64offset"),
        ("F|wide|base64offset|contains", "'x'", "contains|wide|base64offset"),
        ("F|base64", "'x'", "equals|base64"),
        ("F|re|i", "'x'", "re|i"),
        ("F|re|i|m|s", "'x'", "re|i|m|s"),
        ("F|cased", "'x'", "equals|cased"),
        ("F|contains|cased", "'x'", "contains|cased"),
        ("F|expand", "'%x%'", "equals|expand"),
    ],
)
def test_kind_is_the_operator_then_the_other_modifiers_in_written_order(key, value, kind):
    rule = parse(f"sel:\n    {key}: {value}\ncondition: sel")
    assert len(rule.indicators) == 1
    assert rule.indicators[0].kind == kind
    assert rule.indicators[0].field == "F"


def test_operator_modifier_values_stay_as_written():
    rule = parse(
        """
        sel:
            F|exists: true
            G|fieldref: OtherField
            H|cidr: 192.168.0.0/16
            I|gte: 65535
            J|re: '(?i)^[a-z]{3}\\d+$'
        condition: sel
        """
    )
    assert rows(rule.indicators) == [
        ("F", "exists", "true"),
        ("G", "fieldref", "OtherField"),
        ("H", "cidr", "192.168.0.0/16"),
        ("I", "gte", "65535"),
        ("J", "re", "(?i)^[a-z]{3}\\d+$"),
    ]


@pytest.mark.parametrize(
    ("written", "kind", "value"),
    [
        ("abc", "equals", "abc"),
        ("*abc*", "contains", "abc"),
        ("*abc", "endswith", "abc"),
        ("abc*", "startswith", "abc"),
        ("*a b c*", "contains", "a b c"),
        ("*\\cmd.exe", "endswith", "\\cmd.exe"),
        ("C:\\Windows\\*", "equals", "C:\\Windows\\*"),
        ("C:\\Windows\\\\*", "startswith", "C:\\Windows\\\\"),
        ("*", "equals", "*"),
        ("**", "equals", "**"),
        ("***", "equals", "***"),
        ("*a*b*", "equals", "*a*b*"),
        ("a*b", "equals", "a*b"),
        ("*a*b", "equals", "*a*b"),
        ("*ab?", "equals", "*ab?"),
        ("?ab*", "equals", "?ab*"),
        ("*a?b*", "equals", "*a?b*"),
        ("?", "equals", "?"),
        ("\\*abc", "equals", "\\*abc"),
        ("abc\\*", "equals", "abc\\*"),
        ("\\*abc\\*", "equals", "\\*abc\\*"),
        ("*abc\\*", "endswith", "abc\\*"),
        ("\\*abc*", "startswith", "\\*abc"),
        ("*a\\*b*", "contains", "a\\*b"),
        ("*a\\?b*", "contains", "a\\?b"),
        ("abc\\\\*", "startswith", "abc\\\\"),
        ("*x", "endswith", "x"),
        ("x*", "startswith", "x"),
        ("*x*", "contains", "x"),
    ],
)
def test_equals_wildcard_strings_simplify_to_contains_endswith_startswith(written, kind, value):
    rule = parse(f"sel:\n    F: '{written}'\ncondition: sel")
    assert rows(rule.indicators) == [("F", kind, value)]


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("F|contains", "contains"),
        ("F|startswith", "startswith"),
        ("F|endswith", "endswith"),
        ("F|cased", "equals|cased"),
        ("F|windash", "equals|windash"),
    ],
)
def test_wildcards_are_not_simplified_when_another_modifier_is_present(key, kind):
    rule = parse(f"sel:\n    {key}: '*x*'\ncondition: sel")
    assert rows(rule.indicators) == [("F", kind, "*x*")]


def test_wildcard_simplification_applies_to_exclusions_too():
    rule = parse(
        """
        sel:
            A: a
        filter:
            ParentImage: '*\\explorer.exe'
        condition: sel and not filter
        """
    )
    assert rows(rule.exclusions) == [("ParentImage", "endswith", "\\explorer.exe")]


def test_duplicate_rows_across_identifiers_are_listed_once_with_the_first_identifier():
    rule = parse(
        """
        sel_a:
            F|contains: x
        sel_b:
            F: '*x*'
            G: y
        condition: all of sel_*
        """
    )
    assert rows(rule.indicators) == [("F", "contains", "x"), ("G", "equals", "y")]
    assert rule.indicators[0].identifier == "sel_a"


# --- identity ---------------------------------------------------------------------------------


def test_identity_casefolds_values_for_ordinary_kinds():
    rule = parse(
        """
        sel:
            F:
                - 'ABC'
                - 'abc'
                - 'STRASSE'
                - 'straße'
        condition: sel
        """
    )
    assert rows(rule.indicators) == [
        ("F", "equals", "ABC"),
        ("F", "equals", "abc"),
        ("F", "equals", "STRASSE"),
        ("F", "equals", "straße"),
    ]
    assert [i.identity for i in rule.indicators] == [
        ("F", "equals", "abc"),
        ("F", "equals", "abc"),
        ("F", "equals", "strasse"),
        ("F", "equals", "strasse"),
    ]


@pytest.mark.parametrize("key", ["F|re", "F|re|i", "F|cased", "F|contains|cased", "F|re|m"])
def test_identity_keeps_case_for_re_and_cased_kinds(key):
    rule = parse(f"sel:\n    {key}:\n        - 'ABC'\n        - 'abc'\ncondition: sel")
    assert [i.identity[2] for i in rule.indicators] == ["ABC", "abc"]
    assert len({i.identity for i in rule.indicators}) == 2


def test_identity_includes_field_and_kind():
    rule = parse(
        """
        sel:
            F|contains: x
            G|contains: x
            F|endswith: x
        condition: sel
        """
    )
    assert len({i.identity for i in rule.indicators}) == 3


def test_exclusion_identity_casefolds_too():
    rule = parse(
        """
        sel:
            A: a
        filter:
            User|contains: 'AUTHORI'
        condition: sel and not filter
        """
    )
    assert rule.exclusions[0].identity == ("User", "contains", "authori")


# --- detection errors -------------------------------------------------------------------------


def test_an_undefined_identifier_names_it_and_the_defined_ones():
    with pytest.raises(ConditionError) as caught:
        parse("sel:\n    A: a\ncondition: sel and not fliter")
    assert "fliter" in str(caught.value)
    assert "sel" in str(caught.value)


def test_an_undefined_identifier_in_a_second_condition_is_reported():
    with pytest.raises(ConditionError, match="missing"):
        parse("sel:\n    A: a\ncondition:\n    - sel\n    - missing")


def test_an_empty_identifier_is_a_detection_error():
    with pytest.raises(DetectionError):
        parse("sel:\nother:\n    A: a\ncondition: sel or other")


@pytest.mark.parametrize(
    "detection",
    [
        "sel:\n    F:\n        G: x\ncondition: sel",
        "sel:\n    F:\n        - [a, b]\ncondition: sel",
        "sel:\n    - [a, b]\ncondition: sel",
        "sel:\n    F: x\ncondition: {a: b}",
        "sel:\n    F: x\ncondition: [sel, [sel]]",
    ],
)
def test_malformed_detection_values_raise_a_rule_error(detection):
    with pytest.raises(RuleError):
        parse(detection)


def test_flow_style_stage_yaml_writes_numbers_that_keep_their_text() -> None:
    """Flow-style detections fall back to dumping YAML; numbers loaded as written must dump."""
    from rules.parse import parse_rule

    rule = parse_rule(
        "{title: t, id: 6b1f0e6e-2f55-4a43-9a0e-1d6f3f7c2b11, logsource: {product: w}, "
        "detection: {sel: {A: 0x10, B: 1.50, C: true}, condition: sel}}"
    )
    assert rule.stages[1].yaml == "sel:\n  A: 16\n  B: 1.5\n  C: true\n"
    assert [i.value for i in rule.indicators] == ["0x10", "1.50", "true"]
