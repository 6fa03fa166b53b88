"""Sigma matching semantics: one or more cases per line of shared/reference/sigma-semantics.md.

Rules are written inline; every verdict is checked through both the fast matching path and
the explaining interpreter (they must agree).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sigma.rule import SigmaRule

from rules.compile import CompiledRule, compile_rule
from rules.evaluate import Evaluator, EventResult
from rules.events import Event, event_from_mapping
from rules.model import LogSource, ParsedRule
from rules.parse import parse_rule as load_rule
from tests.factories import rule_document_yaml

RULE_ID = "5d1f3c3e-0000-4000-8000-000000000001"
PROC = {"product": "windows", "category": "process_creation"}
SYSMON_1 = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}


def make_rule(
    detection: dict[str, Any],
    *,
    logsource: dict[str, str] | None = None,
    rule_id: str = RULE_ID,
    title: str = "Inline test rule",
) -> ParsedRule:
    return load_rule(
        rule_document_yaml(
            detection,
            title=title,
            id=rule_id,
            status="test",
            level="medium",
            logsource=logsource or PROC,
        )
    )


def evaluate(
    detection: dict[str, Any], event: dict[str, Any] | Event, **options: Any
) -> EventResult:
    options.setdefault("all_rules", True)
    ev = Evaluator([make_rule(detection)])
    fast = ev.evaluate(event, explain=False, **options)
    full = ev.evaluate(event, explain=True, **options)
    assert fast.matched_ids == full.matched_ids, "fast path and explanation disagree"
    for m in full.matches:
        assert any(c.value for c in m.conditions), "explained condition must hold"
    return full


def hit(detection: dict[str, Any], event: dict[str, Any] | Event, **options: Any) -> bool:
    return bool(evaluate(detection, event, **options).matches)


def sel(condition: str = "selection", **items: Any) -> dict[str, Any]:
    return {"selection": items, "condition": condition}


# --------------------------------------------------------------------------------------------
# Parsing facts


def test_condition_tree_keeps_identifier_names_for_explanations() -> None:
    det = {
        "selection_img": {"Image|endswith": "\\cmd.exe"},
        "filter_main": {"User": "SYSTEM"},
        "condition": "selection_img and not filter_main",
    }
    res = evaluate(det, {"Image": "C:\\x\\cmd.exe", "User": "alice"})
    (match,) = res.matches
    stages = match.conditions[0].stages
    assert [(s.text, s.value, s.negated) for s in stages] == [
        ("selection_img", True, False),
        ("not filter_main", True, True),
    ]
    assert {i.name: i.value for i in match.identifiers} == {
        "selection_img": True,
        "filter_main": False,
    }


def _sigma_only_rule(detection: dict[str, Any]) -> ParsedRule:
    """A ParsedRule whose SigmaRule was built without parsing the condition."""
    doc = {"title": "t", "id": RULE_ID, "logsource": PROC, "detection": detection}
    sigma = SigmaRule.from_dict(doc)
    return ParsedRule(
        id=RULE_ID,
        title="t",
        status="",
        level="",
        description="",
        author="",
        date="",
        modified="",
        references=[],
        falsepositives=[],
        related=[],
        tags=[],
        logsource=LogSource("windows", "process_creation"),
        detection=detection,
        conditions=[str(detection["condition"])],
        stages=[],
        exclusions=[],
        indicators=[],
        raw_yaml="",
        sigma=sigma,
    )


def test_undefined_identifier_is_reported_at_compile_time() -> None:
    compiled = compile_rule(_sigma_only_rule(sel("selection and nosuch", A="x")))
    assert not compiled.evaluable
    assert any("nosuch" in r for r in compiled.unsupported)


def test_deprecated_count_aggregation_is_unsupported_not_ignored() -> None:
    compiled = compile_rule(_sigma_only_rule(sel("selection | count() > 5", A="x")))
    assert not compiled.evaluable
    assert any("count()" in r for r in compiled.unsupported)


def test_lookaround_regex_that_re2_rejects_is_unsupported() -> None:
    # pySigma 1.5.1 validates with Python's re, so the rule loads; RE2 refuses it.
    compiled = compile_rule(make_rule(sel(**{"CommandLine|re": "(?<=a)b"})))
    assert not compiled.evaluable
    assert "RE2" in compiled.unsupported[0]


def test_rule_without_parsed_detection_is_unsupported() -> None:
    rule = make_rule(sel(A="x"))
    rule.sigma = None  # e.g. a correlation rule
    compiled = compile_rule(rule)
    assert not compiled.evaluable and compiled.literals is None


def test_selector_matching_no_identifier_is_unsupported() -> None:
    compiled = compile_rule(_sigma_only_rule(sel("1 of nothing_*", A="x")))
    assert not compiled.evaluable
    assert "nothing_*" in compiled.unsupported[0]


# --------------------------------------------------------------------------------------------
# 1-4: strings and wildcards


def test_plain_value_matches_whole_value_case_insensitively() -> None:
    det = sel(Image="cmd.exe")
    assert hit(det, {"Image": "CMD.EXE"})
    assert not hit(det, {"Image": "C:\\cmd.exe"})
    assert not hit(det, {"Image": "cmd.exe "})


def test_wildcard_patterns_are_anchored_at_both_ends() -> None:
    det = sel(CommandLine="net*user")
    assert hit(det, {"CommandLine": "netXuser"})
    assert hit(det, {"CommandLine": "NET  USER"})
    assert not hit(det, {"CommandLine": "mynetXuserZ"})
    assert not hit(det, {"CommandLine": "netXuserZ"})


def test_question_mark_is_exactly_one_code_point() -> None:
    det = sel(Value="a?c")
    assert hit(det, {"Value": "a🔥c"})
    assert hit(det, {"Value": "abc"})
    assert not hit(det, {"Value": "ac"})
    assert not hit(det, {"Value": "abbc"})


def test_multiple_wildcards_match_in_order() -> None:
    det = sel(CommandLine="*a*b*c")
    assert hit(det, {"CommandLine": "xxaxxbxxc"})
    assert not hit(det, {"CommandLine": "cba"})
    assert not hit(det, {"CommandLine": "abcx"})


def test_escaped_wildcards_are_literal() -> None:
    det = sel(Value="a\\*b")
    assert hit(det, {"Value": "a*b"})
    assert not hit(det, {"Value": "aXb"})
    det = sel(Value="what\\?")
    assert hit(det, {"Value": "what?"})
    assert not hit(det, {"Value": "whatX"})


def test_double_backslash_is_one_backslash() -> None:
    assert hit(sel(Value="a\\\\b"), {"Value": "a\\b"})
    assert not hit(sel(Value="a\\\\b"), {"Value": "a\\\\b"})


def test_backslash_before_other_characters_stays_including_trailing() -> None:
    assert hit(sel(Image="C:\\Temp\\x.exe"), {"Image": "c:\\temp\\X.EXE"})
    det = sel(**{"TargetFilename|endswith": "\\Temp\\"})
    assert hit(det, {"TargetFilename": "C:\\Windows\\Temp\\"})
    assert not hit(det, {"TargetFilename": "C:\\Windows\\Temp"})


# --------------------------------------------------------------------------------------------
# 5-6: |all, |cased, |re


def test_contains_all_requires_every_item() -> None:
    det = sel(**{"CommandLine|contains|all": ["-nop", "-enc", "hidden"]})
    assert hit(det, {"CommandLine": "powershell -NOP -w HIDDEN -enc AAA"})
    assert not hit(det, {"CommandLine": "powershell -nop -enc AAA"})


def test_expansions_inside_all_stay_or_ed() -> None:
    det = sel(**{"CommandLine|windash|contains|all": ["-a", "-b"]})
    assert hit(det, {"CommandLine": "tool /a -b"})
    assert hit(det, {"CommandLine": "tool \u2013a /b"})
    assert not hit(det, {"CommandLine": "tool /a"})


def test_cased_is_case_sensitive() -> None:
    det = sel(**{"Value|cased": "Foo"})
    assert hit(det, {"Value": "Foo"})
    assert not hit(det, {"Value": "foo"})
    det = sel(**{"Value|cased|contains": "Foo"})
    assert hit(det, {"Value": "xFoox"})
    assert not hit(det, {"Value": "xFOOx"})


def test_regex_is_case_sensitive_search_unless_i() -> None:
    assert hit(sel(**{"Value|re": "b+c"}), {"Value": "abbbcd"})
    assert not hit(sel(**{"Value|re": "B+C"}), {"Value": "abbbcd"})
    assert hit(sel(**{"Value|re|i": "B+C"}), {"Value": "abbbcd"})
    assert hit(sel(**{"Value|re|ignorecase": "B+C"}), {"Value": "abbbcd"})


def test_regex_multiline_and_dotall_flags() -> None:
    text = {"Value": "first\nsecond"}
    assert not hit(sel(**{"Value|re": "^second"}), text)
    assert hit(sel(**{"Value|re|m": "^second"}), text)
    assert not hit(sel(**{"Value|re": "first.second"}), text)
    assert hit(sel(**{"Value|re|s": "first.second"}), text)


def test_regex_runs_on_numbers_as_text() -> None:
    assert hit(sel(**{"EventID|re": "^41\\d\\d$"}), {"EventID": 4104})


# --------------------------------------------------------------------------------------------
# 7-9: null, not, exists


def test_null_matches_absent_or_json_null() -> None:
    det = sel(ParentImage=None)
    assert hit(det, {"Image": "x"})
    assert hit(det, {"ParentImage": None})
    assert not hit(det, {"ParentImage": ""})
    assert not hit(det, {"ParentImage": "x"})


def test_empty_string_matches_only_present_empty_field() -> None:
    det = sel(ParentImage="")
    assert hit(det, {"ParentImage": ""})
    assert not hit(det, {"Image": "x"})
    assert not hit(det, {"ParentImage": None})


def test_not_of_absent_field_is_true() -> None:
    det = {"selection": {"Image|endswith": "\\a.exe"}, "condition": "not selection"}
    assert hit(det, {"Other": "x"})
    assert not hit(det, {"Image": "C:\\a.exe"})


def test_not_only_rules_need_logsource_scoping() -> None:
    det = {"selection": {"Image|endswith": "\\a.exe"}, "condition": "not selection"}
    unrelated = {"Channel": "Security", "EventID": 4624, "TargetUserName": "bob"}
    assert hit(det, unrelated, all_rules=True)
    assert not hit(det, unrelated, all_rules=False)
    assert hit(det, {**SYSMON_1, "Image": "C:\\b.exe"}, all_rules=False)


def test_exists_false_means_absent_and_present_null_exists() -> None:
    det = sel(**{"Field|exists": False})
    assert hit(det, {"Other": 1})
    assert not hit(det, {"Field": None})
    det = sel(**{"Field|exists": True})
    assert hit(det, {"Field": None})
    assert hit(det, {"Field": ""})
    assert not hit(det, {"Other": 1})


def test_neq_modifier_negates_the_item() -> None:
    det = sel(**{"User|neq": "SYSTEM"}, Image="a.exe")
    assert hit(det, {"Image": "a.exe", "User": "bob"})
    assert not hit(det, {"Image": "a.exe", "User": "system"})


# --------------------------------------------------------------------------------------------
# 10-13: keywords, selectors, precedence, lists


def test_keywords_are_case_insensitive_substrings_of_any_value() -> None:
    det = {"keywords": ["mimikatz", "sekurlsa::"], "condition": "keywords"}
    assert hit(det, {"A": "x", "B": "run MIMIKATZ.exe"})
    assert hit(det, {"Nested": {"Deep": ["y", "SEKURLSA::logonpasswords"]}})
    assert not hit(det, {"A": "mimi katz"})


def test_keyword_explanation_names_the_matching_field() -> None:
    det = {"keywords": ["mimikatz"], "condition": "keywords"}
    res = evaluate(det, {"A": "x", "Nested": {"B": "Run Mimikatz now"}})
    pred = res.matches[0].identifiers[0].predicates[0]
    assert pred.field is None and pred.matched_field == "Nested.B"
    assert pred.span == (4, 12) and pred.kind == "keyword"


def test_keywords_with_all_are_and_ed() -> None:
    det = {"keywords": {"|all": ["alpha", "beta"]}, "condition": "keywords"}
    assert hit(det, {"A": "xALPHAx", "B": "beta"})
    assert not hit(det, {"A": "alpha"})


def test_keyword_wildcards_and_numbers() -> None:
    assert hit({"kw": ["foo*bar"], "condition": "kw"}, {"A": "xx foo 1 bar yy"})
    assert hit({"kw": [4104], "condition": "kw"}, {"A": "id=4104;"})


def test_one_of_is_or_and_all_of_is_and() -> None:
    det = {
        "selection_a": {"A": "1"},
        "selection_b": {"B": "2"},
        "condition": "1 of selection_*",
    }
    assert hit(det, {"A": "1"})
    det["condition"] = "all of selection_*"
    assert not hit(det, {"A": "1"})
    assert hit(det, {"A": "1", "B": "2"})


def test_them_and_patterns_skip_underscore_identifiers() -> None:
    det = {"sel": {"A": "1"}, "_helper": {"B": "2"}, "condition": "all of them"}
    assert hit(det, {"A": "1"})
    det = {"sel_x": {"A": "1"}, "_sel_y": {"B": "2"}, "condition": "all of *sel*"}
    assert hit(det, {"A": "1"})
    det = {"sel": {"A": "1"}, "_helper": {"B": "2"}, "condition": "1 of them"}
    assert not hit(det, {"B": "2"})


def test_precedence_or_lower_than_and_lower_than_not() -> None:
    base = {"a": {"A": "1"}, "b": {"B": "1"}, "c": {"C": "1"}}
    # a or b and c == a or (b and c)
    assert hit({**base, "condition": "a or b and c"}, {"A": "1"})
    assert not hit({**base, "condition": "(a or b) and c"}, {"A": "1"})
    # not a and b == (not a) and b
    assert hit({**base, "condition": "not a and b"}, {"B": "1"})
    assert not hit({**base, "condition": "not (a and b)"}, {"A": "1", "B": "1"})
    assert hit({**base, "condition": "not (a and b)"}, {"A": "1"})


def test_list_of_conditions_is_or_ed() -> None:
    det = {"a": {"A": "1"}, "b": {"B": "1"}, "condition": ["a", "b"]}
    assert hit(det, {"B": "1"})
    res = evaluate(det, {"B": "1"})
    assert [c.value for c in res.matches[0].conditions] == [False, True]


def test_list_of_maps_is_or_of_ands() -> None:
    det = {"selection": [{"A": "1", "B": "2"}, {"C": "3"}], "condition": "selection"}
    assert hit(det, {"A": "1", "B": "2"})
    assert hit(det, {"C": "3"})
    assert not hit(det, {"A": "1"})
    assert not hit(det, {"A": "1", "C": "4"})


def test_values_are_or_ed_unless_all() -> None:
    assert hit(sel(A=["1", "2"]), {"A": "2"})
    assert not hit(sel(**{"A|all": ["1", "2"]}), {"A": "2"})
    assert hit(sel(**{"A|contains|all": ["1", "2"]}), {"A": "12"})


def test_plain_value_list_is_a_keyword_list() -> None:
    det = {"keywords": ["alpha", "beta"], "condition": "keywords"}
    assert hit(det, {"X": "zzBETAzz"})


# --------------------------------------------------------------------------------------------
# 14-18: numbers, booleans, comparisons, cidr, fieldref


def test_numbers_compare_numerically_with_json_numbers_and_as_text_with_strings() -> None:
    det = sel(EventID=4104)
    assert hit(det, {"EventID": 4104})
    assert hit(det, {"EventID": 4104.0})
    assert hit(det, {"EventID": "4104"})
    assert not hit(det, {"EventID": "04104"})
    assert not hit(det, {"EventID": 4103})


def test_string_rule_value_matches_numeric_event_value_as_text() -> None:
    assert hit(sel(EventID="4104"), {"EventID": 4104})
    assert hit(sel(EventID="41*"), {"EventID": 4104})


def test_booleans_match_json_true_and_true_strings() -> None:
    det = sel(Enabled=True)
    assert hit(det, {"Enabled": True})
    assert hit(det, {"Enabled": "true"})
    assert hit(det, {"Enabled": "True"})
    assert not hit(det, {"Enabled": False})
    assert not hit(det, {"Enabled": "yes"})
    assert not hit(det, {"Enabled": 1})
    assert hit(sel(Enabled=False), {"Enabled": "false"})


@pytest.mark.parametrize(
    ("modifier", "value", "event_value", "expected"),
    [
        ("gt", 5, 6, True),
        ("gt", 5, 5, False),
        ("gte", 5, 5, True),
        ("lt", 5, 4.5, True),
        ("lt", 5, "4", True),
        ("lte", 5, "5.0", True),
        ("gt", 5, " 10 ", True),
        ("gt", 5, "ten", False),
        ("gt", 5, "0x10", False),
        ("gt", 0, True, False),
        ("gt", 5, None, False),
    ],
)
def test_numeric_comparisons_parse_decimal_strings_only(
    modifier: str, value: int, event_value: Any, expected: bool
) -> None:
    assert hit(sel(**{f"Size|{modifier}": value}), {"Size": event_value}) is expected


def test_numeric_comparison_on_absent_field_is_false() -> None:
    assert not hit(sel(**{"Size|gt": 1}), {"Other": 5})


def test_cidr_ipv4_and_ipv6() -> None:
    det = sel(**{"DestinationIp|cidr": ["10.0.0.0/8", "fe80::/10"]})
    assert hit(det, {"DestinationIp": "10.1.2.3"})
    assert hit(det, {"DestinationIp": "FE80::1"})
    assert hit(det, {"DestinationIp": "::ffff:10.0.0.1"})
    assert not hit(det, {"DestinationIp": "11.0.0.1"})
    assert not hit(det, {"DestinationIp": "2001:db8::1"})


@pytest.mark.parametrize("bad", ["10.0.0", "10.0.0.256", "not-an-ip", "", 167772161])
def test_cidr_invalid_addresses_never_match(bad: Any) -> None:
    assert not hit(sel(**{"DestinationIp|cidr": "10.0.0.0/8"}), {"DestinationIp": bad})


def test_fieldref_compares_fields_case_insensitively() -> None:
    det = sel(**{"ParentImage|fieldref": "Image"})
    assert hit(det, {"Image": "C:\\A.exe", "ParentImage": "c:\\a.EXE"})
    assert not hit(det, {"Image": "C:\\A.exe", "ParentImage": "C:\\B.exe"})
    assert not hit(det, {"ParentImage": "x"})


def test_fieldref_combines_with_startswith_endswith_contains() -> None:
    ev = {"Image": "C:\\Tools\\Evil.exe", "Name": "evil.exe", "Dir": "c:\\tools", "Mid": "TOOLS"}
    assert hit(sel(**{"Image|fieldref|endswith": "Name"}), ev)
    assert hit(sel(**{"Image|fieldref|startswith": "Dir"}), ev)
    assert hit(sel(**{"Image|fieldref|contains": "Mid"}), ev)
    assert not hit(sel(**{"Image|fieldref|startswith": "Name"}), ev)


# --------------------------------------------------------------------------------------------
# 19-21: windash, base64, arrays


@pytest.mark.parametrize("dash", ["-", "/", "\u2013", "\u2014", "\u2015"])
def test_windash_expands_to_every_dash_variant(dash: str) -> None:
    det = sel(**{"CommandLine|windash|contains": " -enc "})
    assert hit(det, {"CommandLine": f"powershell {dash}enc AAAA"})


def test_windash_only_replaces_dash_or_slash_characters() -> None:
    det = sel(**{"CommandLine|windash|contains": "x-y"})  # inner dash stays
    assert hit(det, {"CommandLine": "a x-y b"})
    assert not hit(det, {"CommandLine": "a x/y b"})
    assert not hit(sel(**{"CommandLine|windash|contains": " -a"}), {"CommandLine": " +a"})


def test_base64offset_gives_three_variants() -> None:
    det = sel(**{"CommandLine|base64offset|contains": "http://"})
    for prefix in (b"", b"x", b"xy"):
        encoded = base64.b64encode(prefix + b"http://evil").decode()
        assert hit(det, {"CommandLine": f"powershell -e {encoded}"}), prefix
    assert not hit(det, {"CommandLine": base64.b64encode(b"https:/").decode()})


def test_base64_keeps_padding() -> None:
    det = sel(**{"Payload|base64": "ab"})  # YWI=
    assert hit(det, {"Payload": "YWI="})
    assert not hit(det, {"Payload": "YWI"})


def test_wide_and_utf16_encodings() -> None:
    text = base64.b64encode("IEX".encode("utf-16le")).decode()
    det = sel(**{"CommandLine|wide|base64offset|contains": "IEX"})
    assert hit(det, {"CommandLine": f"-enc {text}"})
    assert hit(sel(**{"V|utf16be|contains": "ab"}), {"V": "x\x00a\x00b"})
    # The UTF-16LE byte order mark FF FE, one character per byte (docs/semantics.md).
    assert hit(sel(**{"V|utf16|contains": "ab"}), {"V": "\xff\xfea\x00b\x00"})


def test_modifiers_outside_the_specification_are_rejected_at_parse_time() -> None:
    # `utf16le` (unknown to pySigma 1.5.1) is the appendix's name for `wide`: accepted
    # (tests/engine/test_modifiers.py); a modifier no one defines is refused.
    assert hit(sel(**{"V|utf16le|contains": "ab"}), {"V": "xa\x00b\x00"})
    with pytest.raises(Exception, match="utf32"):
        make_rule(sel(**{"V|utf32|contains": "ab"}))


def test_array_event_values_match_if_any_element_matches() -> None:
    assert hit(sel(Tags="b"), {"Tags": ["a", "B", "c"]})
    assert not hit(sel(Tags="d"), {"Tags": ["a", "b"]})
    assert hit(sel(**{"Tags|contains|all": ["a", "c"]}), {"Tags": ["xa", "yc"]})
    assert hit(sel(Ports=443), {"Ports": [80, [443]]})


# --------------------------------------------------------------------------------------------
# 22-25: field names, Unicode, newlines, unsupported features


def test_exact_key_wins_over_dotted_path() -> None:
    ev = {"a.b": "flat", "a": {"b": "nested"}}
    assert hit(sel(**{"a.b": "flat"}), ev)
    assert not hit(sel(**{"a.b": "nested"}), ev)
    assert hit(sel(**{"a.b": "nested"}), {"a": {"b": "nested"}})
    assert hit(sel(**{"a.b.c": "deep"}), {"a": [{"b": {"c": "x"}}, {"b": {"c": "deep"}}]})


def test_evtx_dump_records_flatten_to_eventdata_and_system_fields() -> None:
    record = {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-PowerShell"}},
                "EventID": {"#text": 4104, "#attributes": {"Qualifiers": 0}},
                "Channel": "Microsoft-Windows-PowerShell/Operational",
                "Computer": "host1",
            },
            "EventData": {"ScriptBlockText": "Invoke-Mimikatz", "Script Path": "c:\\a.ps1"},
        }
    }
    det = sel(
        EventID=4104,
        Provider_Name="Microsoft-Windows-PowerShell",
        Computer="HOST1",
        ScriptPath="c:\\a.ps1",
        **{"ScriptBlockText|contains": "mimikatz"},
    )
    logsource = {"product": "windows", "category": "ps_script"}
    ev = Evaluator([make_rule(det, logsource=logsource)])
    assert ev.evaluate(record, explain=False).matched_ids == [RULE_ID]


def test_field_names_with_spaces_are_found_without_them() -> None:
    assert hit(sel(NewProcessName="a.exe"), {"New Process Name": "a.exe"})
    assert hit(sel(**{"New Process Name": "a.exe"}), {"NewProcessName": "a.exe"})


def test_case_folding_is_unicode_not_ascii() -> None:
    assert hit(sel(City="straße"), {"City": "STRASSE"})
    assert hit(sel(**{"V|contains": "ΣΊΣΥΦΟΣ"}), {"V": "ο σίσυφος"})
    assert hit(sel(V="Ärger"), {"V": "ärger"})  # SQLite NOCASE gets this one wrong
    assert hit(sel(V="k"), {"V": "\u212a"})  # KELVIN SIGN folds to k


def test_span_is_mapped_back_through_length_changing_casefold() -> None:
    res = evaluate(sel(**{"V|contains": "ab"}), {"V": "ßßAB"})
    pred = res.matches[0].identifiers[0].predicates[0]
    assert pred.span == (2, 4)


def test_wildcards_cross_newlines() -> None:
    assert hit(sel(V="first*second"), {"V": "first\nline\nsecond"})
    assert hit(sel(V="a?b"), {"V": "a\nb"})
    assert hit(sel(**{"V|contains": "x*y"}), {"V": "..x\r\ny.."})


def test_expand_placeholders_are_reported_not_ignored() -> None:
    det = sel(**{"User|expand": "%admins%"})
    ev = Evaluator([make_rule(det)])
    assert not ev.rules[0].evaluable
    res = ev.evaluate({**SYSMON_1, "User": "%admins%"})
    assert res.matches == [] and res.rules_in_scope == 0
    assert [u.rule_id for u in res.unsupported] == [RULE_ID]
    assert "expand" in res.unsupported[0].reasons[0]


def test_timestamp_part_modifiers() -> None:
    ev = {"UtcTime": "2025-10-24 23:34:34.634"}
    assert hit(sel(**{"UtcTime|hour": 23}), ev)
    assert hit(sel(**{"UtcTime|month": 10}), ev)
    assert not hit(sel(**{"UtcTime|day": 1}), ev)


# --------------------------------------------------------------------------------------------
# Explanations, suppression, near misses


def test_explanation_reports_kind_rule_value_event_value_and_span() -> None:
    det = sel(
        **{
            "Image|endswith": "\\powershell.exe",
            "CommandLine|windash|contains": " -enc ",
            "ParentImage|re|i": "EXPLORER\\.EXE$",
        }
    )
    ev = {
        "Image": "C:\\Windows\\PowerShell.exe",
        "CommandLine": "powershell /enc ZQB4AA==",
        "ParentImage": "C:\\Windows\\explorer.exe",
    }
    res = evaluate(det, ev)
    preds = {p.field: p for p in res.matches[0].identifiers[0].predicates}
    img = preds["Image"]
    assert (img.kind, img.rule_value, img.event_value) == (
        "endswith",
        "\\powershell.exe",
        ev["Image"],
    )
    assert ev["Image"][img.span[0] : img.span[1]] == "\\PowerShell.exe"
    cli = preds["CommandLine"]
    assert cli.kind == "windash|contains" and cli.rule_value == " -enc "
    assert ev["CommandLine"][cli.span[0] : cli.span[1]] == " /enc "
    par = preds["ParentImage"]
    assert par.kind == "re|i"
    assert ev["ParentImage"][par.span[0] : par.span[1]] == "explorer.exe"


def test_equals_and_null_explanations() -> None:
    res = evaluate(sel(User="bob", Parent=None), {"User": "BOB"})
    preds = {p.field: p for p in res.matches[0].identifiers[0].predicates}
    assert preds["User"].kind == "equals" and preds["User"].span == (0, 3)
    assert preds["Parent"].kind == "null" and preds["Parent"].present is False


def test_suppressed_rule_names_the_filter() -> None:
    det = {
        "selection": {"Image|endswith": "\\rundll32.exe"},
        "filter_main_system": {"User|contains": "SYSTEM"},
        "filter_optional_x": {"CommandLine|contains": "shell32"},
        "condition": "selection and not 1 of filter_*",
    }
    res = evaluate(det, {"Image": "C:\\rundll32.exe", "User": "NT AUTHORITY\\SYSTEM"})
    assert res.matches == []
    (sup,) = res.suppressed
    assert sup.filters == ["filter_main_system"]
    assert sup.stages == ["not 1 of filter_*"]


def test_near_miss_two_of_three_contains_all_values() -> None:
    det = sel(**{"ScriptBlockText|contains|all": ["Net.WebClient", "DownloadString", "IEX"]})
    res = evaluate(det, {"ScriptBlockText": "(New-Object Net.WebClient).DownloadString(u)"})
    (near,) = res.near_misses
    assert near.reason == "all-values" and near.missing_identifier == "selection"
    assert near.missing[0].matched == 2 and near.missing[0].total == 3
    assert near.missing[0].missing_values == ["IEX"]


def test_near_miss_one_identifier_short() -> None:
    det = {
        "selection_img": {"Image|endswith": "\\certutil.exe"},
        "selection_cli": {"CommandLine|contains": "-urlcache"},
        "condition": "selection_img and selection_cli",
    }
    res = evaluate(det, {"Image": "C:\\certutil.exe", "CommandLine": "certutil -dump"})
    (near,) = res.near_misses
    assert near.reason == "identifier"
    assert near.missing_identifier == "selection_cli"
    assert near.matched_identifiers == ["selection_img"]


def test_near_miss_one_item_short_in_a_map() -> None:
    det = sel(**{"Image|endswith": "\\net.exe", "CommandLine|contains": " user "})
    res = evaluate(det, {"Image": "C:\\net.exe", "CommandLine": "net group"})
    (near,) = res.near_misses
    assert near.reason == "item" and near.missing[0].field == "CommandLine"


def test_unrelated_rule_is_not_a_near_miss() -> None:
    det = sel(**{"Image|endswith": "\\net.exe", "CommandLine|contains": " user "})
    assert evaluate(det, {"Image": "C:\\a.exe", "CommandLine": "x"}).near_misses == []


def test_or_condition_is_never_one_identifier_short() -> None:
    det = {"a": {"A": "1"}, "b": {"B": "1"}, "condition": "a or b"}
    assert evaluate(det, {"A": "2"}).near_misses == []


def test_result_to_dict_is_json_serialisable() -> None:
    det = sel(**{"CommandLine|contains": "x"})
    res = evaluate(det, {"CommandLine": "axb"})
    data = res.to_dict()
    assert json.loads(json.dumps(data))["matches"][0]["rule_id"] == RULE_ID
    assert data["matches"][0]["identifiers"][0]["predicates"][0]["span"] == (1, 2)
    assert res.elapsed_ms >= 0 and res.rules_evaluated == 1


def test_rule_ids_restrict_and_report_out_of_scope_and_unknown() -> None:
    other = "5d1f3c3e-0000-4000-8000-000000000002"
    rules = [
        make_rule(sel(A="1")),
        make_rule(sel(A="1"), rule_id=other, logsource={"product": "linux", "service": "auth"}),
    ]
    ev = Evaluator(rules)
    res = ev.evaluate({**SYSMON_1, "A": "1"}, rule_ids=[other, "nope"])
    assert res.matches == [] and res.out_of_scope == [other] and res.unknown_rule_ids == ["nope"]
    res = ev.evaluate({**SYSMON_1, "A": "1"}, rule_ids=[RULE_ID])
    assert res.matched_ids == [RULE_ID] and res.rules_in_scope == 1
    res = ev.evaluate({**SYSMON_1, "A": "1"}, rule_ids=[other], all_rules=True)
    assert res.matched_ids == [other]


def test_scriptblock_string_is_evaluated_against_ps_script_rules() -> None:
    ps = make_rule(
        sel(**{"ScriptBlockText|contains": "Invoke-Mimikatz"}),
        logsource={"product": "windows", "category": "ps_script"},
    )
    proc = make_rule(
        sel(**{"CommandLine|contains": "x"}), rule_id="5d1f3c3e-0000-4000-8000-0000000000ff"
    )
    ev = Evaluator([ps, proc])
    res = ev.evaluate("Invoke-Mimikatz -DumpCreds")
    assert res.matched_ids == [RULE_ID]
    assert "windows/ps_script" in res.logsources and res.rules_in_scope == 1


def test_compiled_rule_exposes_literals_and_logsource() -> None:
    compiled: CompiledRule = compile_rule(make_rule(sel(**{"CommandLine|contains": "Mimi"})))
    assert compiled.literals == frozenset({"mimi"})
    assert compiled.logsource_label == "windows/process_creation"


def test_evaluator_accepts_event_objects_and_mappings() -> None:
    ev = Evaluator([make_rule(sel(A="1"))])
    assert ev.match_ids(event_from_mapping({"A": "1"}), all_rules=True) == [RULE_ID]
    assert ev.match_ids({"A": "1"}, all_rules=True) == [RULE_ID]
    with pytest.raises(TypeError):
        ev.evaluate(42)  # type: ignore[arg-type]


def test_get_evaluator_rebuilds_only_when_the_fingerprint_changes() -> None:
    from rules.evaluate import clear_evaluator_cache, get_evaluator

    calls: list[int] = []

    def load() -> list[ParsedRule]:
        calls.append(1)
        return [make_rule(sel(A="1"))]

    clear_evaluator_cache()
    try:
        first = get_evaluator("v1", load)
        assert get_evaluator("v1", load) is first and len(calls) == 1
        second = get_evaluator("v2", load)
        assert second is not first and second.fingerprint == "v2" and len(calls) == 2
    finally:
        clear_evaluator_cache()


def test_rule_ids_may_be_any_iterable_and_unsupported_requested_rules_are_reported() -> None:
    expand_id = "5d1f3c3e-0000-4000-8000-000000000003"
    rules = [make_rule(sel(A="1")), make_rule(sel(**{"A|expand": "%x%"}), rule_id=expand_id)]
    ev = Evaluator(rules)
    res = ev.evaluate({**SYSMON_1, "A": "1"}, rule_ids=iter([RULE_ID, expand_id]))
    assert res.matched_ids == [RULE_ID]
    assert [u.rule_id for u in res.unsupported] == [expand_id]


def test_events_without_eventlog_identity_are_scoped_to_non_windows_rules() -> None:
    linux_id = "5d1f3c3e-0000-4000-8000-000000000004"
    rules = [
        make_rule({"kw": ["Bad protocol version"], "condition": "kw"}),
        make_rule(
            {"kw": ["Bad protocol version"], "condition": "kw"},
            rule_id=linux_id,
            logsource={"product": "linux", "service": "auth"},
        ),
    ]
    ev = Evaluator(rules)
    syslog = {"program": "sshd", "message": "Bad protocol version identification 'x'"}
    res = ev.evaluate(syslog)
    assert res.matched_ids == [linux_id] and res.rules_in_scope == 1 and res.logsources == []
    assert ev.evaluate(syslog, all_rules=True).matched_ids == [RULE_ID, linux_id]
