"""Required-literal extraction and the Aho-Corasick prefilter, on small inline rules.

The corpus-wide equivalence proof lives in test_evaluate_corpus.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

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


_LITERAL_FREE = [
    ({"selection": {"Image": "a.exe"}, "condition": "not selection"}, {}),
    (sel(ParentImage=None), {}),
    (sel(**{"Field|exists": True}), {"Field": None}),
    (sel(**{"Field|exists": False}), {}),
    (sel(**{"Size|gt": 10}), {"Size": "11"}),
    (sel(**{"Ip|cidr": "10.0.0.0/8"}), {"Ip": "10.1.2.3"}),
    (sel(**{"A|fieldref": "B"}), {"A": "x", "B": "x"}),
    (sel(**{"CommandLine|re": "^.{200,}$"}), {"CommandLine": "x" * 200}),
    (sel(Value=""), {"Value": ""}),
    (sel(Value="*"), {"Value": "anything"}),
    (sel(Value="?"), {"Value": "1"}),
    (sel(Enabled=True), {"Enabled": True}),
    (sel(**{"User|neq": "x"}), {"User": "y"}),
    ({"a": {"A": "x"}, "b": {"B": None}, "condition": "a or b"}, {}),
]


@pytest.mark.parametrize(
    ("detection", "fields"),
    _LITERAL_FREE,
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
def test_rules_without_a_required_literal_are_candidates_when_they_match(
    detection: dict[str, Any], fields: dict[str, Any]
) -> None:
    rule = compiled(detection)
    assert rule.evaluable and rule.literals is None
    pf = Prefilter([rule], [0])
    event = event_from_mapping(fields)
    assert rule.match(event)
    assert pf.event_candidates(event) == {0}
    if not rule.requirements:  # nothing to check: a candidate for every event
        assert pf.event_candidates(event_from_mapping({"Other": "anything"})) == {0}


def test_requirements_keep_the_fields_a_rule_reads() -> None:
    # No literal, but the field must be there for `|gt`, `|re`, `|cidr` or `|exists: true`.
    for detection, fields in [_LITERAL_FREE[n] for n in (2, 4, 5, 6, 7)]:
        rule = compiled(detection)
        pf = Prefilter([rule], [0])
        assert pf.event_candidates(event_from_mapping({"Other": "x"})) == set(), detection
        assert pf.event_candidates(event_from_mapping(fields)) == {0}, detection


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

    def candidates(**fields: Any) -> set[int]:
        return pf.event_candidates(event_from_mapping(fields))

    assert candidates(Image="run", CommandLine="MIMIKATZ") == {0, 2}
    assert candidates(CommandLine="nothing here") == {2}
    assert candidates(CommandLine="rubeus mimikatz") == {0, 1, 2}


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
    wrong_fields = event_from_mapping({"Other": "\\x.exe", "Another": "bob"})
    assert pf.event_candidates(wrong_fields) == {1}
    both = event_from_mapping({"Image": "C:\\X.exe", "User": "bob"})
    assert pf.event_candidates(both) == {0, 1}


# -- the prefilter never drops a rule that matches (generated rules and events) --------------

_FIELDS = ["Image", "CommandLine", "EventID", "New Process Name", "a.b", "User"]
_TEXTS = ["cmd.exe", "C:\\Windows\\CMD.EXE", "Straße", "STRASSE", "4104", "1", "", "x y", "É"]
_NUMBERS = [4104, 4104.0, 1, 1.5, 0]
_MODIFIERS = ["", "", "", "|contains", "|startswith", "|endswith", "|contains|all", "|cased", "|re",
              "|windash|contains", "|exists"]  # fmt: skip
_rule_value = st.one_of(
    st.sampled_from(_TEXTS), st.sampled_from(_NUMBERS), st.sampled_from(["*", "?", "c*d"])
)
_event_value = st.one_of(
    st.sampled_from(_TEXTS),
    st.sampled_from([*_NUMBERS, True, None]),
    st.lists(st.sampled_from([*_TEXTS, 4104, 1]), max_size=3),
)


@st.composite
def _items(draw: st.DrawFn) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        name, modifier = draw(st.sampled_from(_FIELDS)), draw(st.sampled_from(_MODIFIERS))
        if modifier == "|exists":
            items[name + modifier] = draw(st.booleans())
        elif modifier in ("|re", "|cased"):
            items[name + modifier] = draw(
                st.lists(st.sampled_from(_TEXTS[:5]), min_size=1, max_size=3)
            )
        else:
            items[name + modifier] = draw(st.lists(_rule_value, min_size=1, max_size=3))
    return items


@st.composite
def _detections(draw: st.DrawFn) -> dict[str, Any]:
    detection: dict[str, Any] = {"sel1": draw(_items()), "sel2": draw(_items())}
    if draw(st.booleans()):
        detection["kw"] = draw(st.lists(st.sampled_from(_TEXTS[:4]), min_size=1, max_size=2))
    conditions = ["sel1", "sel1 and sel2", "sel1 or sel2", "sel1 and not sel2", "1 of sel*",
                  "all of sel*", "sel1 or (sel2 and not sel1)"]  # fmt: skip
    if "kw" in detection:
        conditions += ["kw", "kw and sel1", "kw or sel2"]
    detection["condition"] = draw(st.sampled_from(conditions))
    return detection


def _rule_fields(detection: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(field, values) of every item, for events built from the rule's own values."""
    out = []
    for items in detection.values():
        if isinstance(items, dict):
            for key, values in items.items():
                out.append((key.split("|")[0], values if isinstance(values, list) else [values]))
    return out


@st.composite
def _events(draw: st.DrawFn, detection: dict[str, Any]) -> dict[str, Any]:
    """Mostly the rule's own fields and values (so that rules match), in other shapes: as
    numbers or strings, in lists, under a space-less or dotted name, in another field."""
    own = _rule_fields(detection)
    fields: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        if own and draw(st.integers(0, 3)):
            name, values = draw(st.sampled_from(own))
            value = draw(st.sampled_from([v for v in values if not isinstance(v, bool)] or [1]))
            text = str(value)
            shapes = [value, text, text.upper(), text.swapcase(), [value, "other"], f"x{text}y"]
            if isinstance(value, int | float):
                shapes.append(float(value))
            value = draw(st.sampled_from(shapes))
            if draw(st.integers(0, 4)) == 0:
                name = draw(st.sampled_from(_FIELDS))
        else:
            name, value = draw(st.sampled_from(_FIELDS)), draw(_event_value)
        if name == "New Process Name" and draw(st.booleans()):
            name = "NewProcessName"
        if name == "a.b" and draw(st.booleans()):
            fields["a"] = {"b": value}
        else:
            fields[name] = value
    return fields


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(detection=_detections(), data=st.data())
def test_a_matching_rule_is_always_a_candidate(detection: dict[str, Any], data: Any) -> None:
    """Numbers against strings, casefolding (ß), lists, space-less aliases, dotted paths,
    keywords, negations, ``|all``, expansions: whenever the rule matches, it is a candidate."""
    try:
        rule = compiled(detection)
    except Exception:  # a combination pySigma refuses
        assume(False)
    assume(rule.evaluable)
    pf = Prefilter([rule], [0])
    for fields in data.draw(st.lists(_events(detection), min_size=1, max_size=8)):
        event = event_from_mapping(fields)
        if rule.match(event):
            assert pf.event_candidates(event) == {0}, (rule.requirements, fields)


@pytest.mark.parametrize(
    ("detection", "fields"),
    [
        (sel(Image="cmd.exe"), {"Image": "CMD.EXE"}),
        (sel(Name="Straße"), {"Name": "STRASSE"}),
        (sel(EventID=4104), {"EventID": 4104.0}),
        (sel(EventID=4104), {"EventID": "4104"}),
        (sel(EventID=1), {"EventID": [7, 1]}),
        (sel(EventID=1.5), {"EventID": 1.5}),
        (sel(**{"New Process Name": "a.exe"}), {"NewProcessName": "A.exe"}),
        (sel(NewProcessName="a.exe"), {"New Process Name": "A.exe"}),
        (sel(**{"a.b": "x"}), {"a": {"b": "X"}}),
        (sel(**{"a.b": 4104}), {"a": [{"b": 4104}]}),
        (sel(Enabled=True), {"Enabled": "True"}),
        (sel(**{"Image|endswith": ["\\a.exe", "\\b.exe"]}), {"Image": ["x", "C:\\B.EXE"]}),
        (
            sel(**{"CommandLine|contains|all": ["ab", "longer-one"]}),
            {"CommandLine": "LONGER-ONE ab"},
        ),
        ({"keywords": ["Mimikatz"], "condition": "keywords"}, {"Any": {"deep": ["MIMIKATZ x"]}}),
    ],
)
def test_facts_read_values_as_the_matchers_do(
    detection: dict[str, Any], fields: dict[str, Any]
) -> None:
    """Exact values compare casefolded, numbers numerically and as text, through lists,
    space-less aliases and dotted paths: the prefilter's facts must hold where the matchers
    do."""
    rule = compiled(detection)
    event = event_from_mapping(fields)
    assert rule.match(event)
    assert Prefilter([rule], [0]).event_candidates(event) == {0}, rule.requirements


def test_every_required_item_is_checked() -> None:
    """An AND keeps all its items' clauses: the rule needs EventID 1 *and* the literal."""
    rule = compiled(sel(EventID=1, **{"CommandLine|contains": "mimikatz"}))
    pf = Prefilter([rule], [0])
    assert pf.event_candidates(event_from_mapping({"EventID": 1, "CommandLine": "x"})) == set()
    assert (
        pf.event_candidates(event_from_mapping({"EventID": 3, "CommandLine": "mimikatz"})) == set()
    )
    assert pf.event_candidates(event_from_mapping({"EventID": 1, "CommandLine": "Mimikatz"})) == {0}
