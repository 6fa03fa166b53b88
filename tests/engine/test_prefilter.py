"""Required-literal extraction and the Aho-Corasick prefilter, on small inline rules.

The corpus-wide equivalence proof lives in test_evaluate_corpus.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rules.compile import compile_rule, regex_literals
from rules.evaluate import Evaluator, Prefilter
from rules.events import event_from_mapping
from rules.parse import parse_rule as load_rule
from tests.factories import WINDOWS_PROCESS_CREATION, rule_document_yaml

RULE_ID = "7a0c1e22-0000-4000-8000-000000000001"


def compiled(detection: dict[str, Any], rule_id: str = RULE_ID) -> Any:
    text = rule_document_yaml(detection, title="t", id=rule_id, logsource=WINDOWS_PROCESS_CREATION)
    return compile_rule(load_rule(text))


def literals(detection: dict[str, Any]) -> frozenset[str] | None:
    return compiled(detection).literals


def sel(condition: str = "selection", **items: Any) -> dict[str, Any]:
    return {"selection": items, "condition": condition}


def test_literals_are_casefolded_string_parts() -> None:
    assert literals(sel(**{"CommandLine|contains": "Invoke-MIMIKATZ"})) == {"invoke-mimikatz"}
    assert literals(sel(Image="C:\\Temp\\x*EVIL.exe")) == {"c:\\temp\\x"}
    assert literals(sel(Image="C:\\Temp\\*.exe")) == {"c:\\temp*.exe"}  # \\* escapes the star
    assert literals(sel(Name="Straße")) == {"strasse"}


def test_or_of_values_is_the_union() -> None:
    assert literals(sel(**{"Image|endswith": ["\\a.exe", "\\b.exe"]})) == {"\\a.exe", "\\b.exe"}


def test_and_keeps_one_side_the_most_selective() -> None:
    lits = literals(sel(**{"Image|endswith": "\\x.exe", "CommandLine|contains": "-encodedcommand"}))
    assert lits == {"-encodedcommand"}


def test_contains_all_needs_only_one_value() -> None:
    lits = literals(sel(**{"CommandLine|contains|all": ["ab", "longer-one"]}))
    assert lits == {"longer-one"}


def test_expansions_contribute_every_variant() -> None:
    lits = literals(sel(**{"CommandLine|windash|contains": " -x"}))
    assert lits == {" -x", " /x", " \u2013x", " \u2014x", " \u2015x"}


def test_numbers_have_their_decimal_text() -> None:
    assert literals(sel(EventID=4104)) == {"4104"}
    assert literals(sel(EventID=[4103, 4104])) == {"4103", "4104"}


def test_regex_required_literals() -> None:
    assert literals(sel(**{"CommandLine|re": "(?i)invoke-(web|rest)request"})) == {"invoke-"}
    assert regex_literals("a(bc|de)f") == {"bc", "de"}
    assert regex_literals("[a-z]+\\.exe$") == {".exe"}
    assert regex_literals("x{0,3}") is None
    assert regex_literals("(foo|.*)") is None
    assert regex_literals("[[:alpha:]]]") is None  # POSIX classes: do not trust Python's parse


@pytest.mark.parametrize(
    "detection",
    [
        {"selection": {"Image": "a.exe"}, "condition": "not selection"},
        sel(ParentImage=None),
        sel(**{"Field|exists": True}),
        sel(**{"Field|exists": False}),
        sel(**{"Size|gt": 10}),
        sel(**{"Ip|cidr": "10.0.0.0/8"}),
        sel(**{"A|fieldref": "B"}),
        sel(**{"CommandLine|re": "^.{200,}$"}),
        sel(Value=""),
        sel(Value="*"),
        sel(Value="?"),
        sel(Enabled=True),
        sel(**{"User|neq": "x"}),
        {"a": {"A": "x"}, "b": {"B": None}, "condition": "a or b"},
    ],
    ids=[
        "not-only",
        "null",
        "exists",
        "exists-false",
        "numeric-compare",
        "cidr",
        "fieldref",
        "regex-without-literal",
        "empty-string",
        "star",
        "single-wildcard",
        "boolean",
        "neq",
        "or-with-a-literal-free-side",
    ],
)
def test_rules_without_a_required_literal_are_always_candidates(detection: dict[str, Any]) -> None:
    rule = compiled(detection)
    assert rule.evaluable and rule.literals is None
    pf = Prefilter([rule], [0])
    assert pf.candidates("") == {0} and pf.candidates("anything") == {0}


def test_filter_literals_are_never_required() -> None:
    det = {
        "selection": {"Image|endswith": "\\rundll32.exe"},
        "filter": {"CommandLine|contains": "shell32.dll"},
        "condition": "selection and not filter",
    }
    assert literals(det) == {"\\rundll32.exe"}


def test_prefilter_candidates_follow_the_literals() -> None:
    rules = [
        compiled(sel(**{"CommandLine|contains": "mimikatz"}), f"{RULE_ID[:-1]}a"),
        compiled(sel(**{"CommandLine|contains": "rubeus"}), f"{RULE_ID[:-1]}b"),
        compiled(sel(ParentImage=None), f"{RULE_ID[:-1]}c"),
    ]
    pf = Prefilter(rules, [0, 1, 2])
    assert pf.candidates("run\x00MIMIKATZ".casefold()) == {0, 2}
    assert pf.candidates("nothing here") == {2}
    assert pf.candidates("rubeus mimikatz") == {0, 1, 2}


def test_evaluator_prefilter_on_and_off_agree_on_inline_rules() -> None:
    dets = [
        sel(**{"CommandLine|contains|all": ["a", "bc"]}),
        sel(**{"CommandLine|windash|contains": " -enc "}),
        {"keywords": ["IEX"], "condition": "keywords"},
        {"selection": {"Image": "a.exe"}, "condition": "not selection"},
        sel(**{"CommandLine|re": "x+y"}),
        sel(EventID=4104),
    ]
    rules = [
        load_rule(
            yaml.safe_dump(
                {
                    "title": "t",
                    "id": f"7a0c1e22-0000-4000-8000-0000000001{n:02d}",
                    "logsource": {"product": "windows"},
                    "detection": d,
                }
            )
        )
        for n, d in enumerate(dets)
    ]
    on = Evaluator(rules, prefilter=True)
    off = Evaluator(rules, prefilter=False)
    events = [
        {"CommandLine": "x bc a"},
        {"CommandLine": "ps \u2014enc Z"},
        {"Other": "iex(x)"},
        {"Image": "A.EXE"},
        {"CommandLine": "xxy"},
        {"EventID": "4104"},
        {"EventID": 4104.0},
        {},
    ]
    for fields in events:
        event = event_from_mapping(fields)
        assert on.match_ids(event, all_rules=True) == off.match_ids(event, all_rules=True)
        assert (
            on.evaluate(event, all_rules=True).matched_ids
            == off.evaluate(event, all_rules=True).matched_ids
        )


def test_weak_literals_are_avoided_or_make_the_rule_always_a_candidate() -> None:
    # Short numbers and common characters are in nearly every event.
    assert literals(sel(EventID=1)) is None
    assert literals(sel(**{"CommandLine|contains": "."})) is None
    assert literals(sel(EventID=1, **{"Image|endswith": "\\x.exe"})) == {"\\x.exe"}
    assert literals(sel(**{"CommandLine|contains": "`"})) == {"`"}  # rare: still useful


def test_required_fields_filter_candidates() -> None:
    rule = compiled(sel(**{"Image|endswith": "\\x.exe", "User": "bob"}))
    assert rule.fields in ({"Image"}, {"User"})
    null_rule = compiled(sel(ParentImage=None))
    assert null_rule.fields is None
    pf = Prefilter([rule, null_rule], [0, 1])
    assert pf.candidates("\\x.exe\x00bob", frozenset({"Other"})) == {1}
    assert pf.candidates("\\x.exe\x00bob", frozenset({"Image", "User"})) == {0, 1}
