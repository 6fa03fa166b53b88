"""Every modifier of the Sigma specification's modifier appendix (v2.1.0), alone and in the
combinations it documents, on matching and non-matching events; the decisions where the
appendix and pySigma 1.5.1 disagree (docs/semantics.md), both sides of each.

Each verdict goes through the fast path and the explaining interpreter (``evaluate`` asserts
they agree).
"""

from __future__ import annotations

import base64
import re
import sqlite3
from typing import Any

import pytest

from rules.convert.converter import convert
from rules.errors import ModifierError
from rules.modifiers import (
    APPENDIX_MODIFIERS,
    MAX_WINDASH_VARIANTS,
    WINDASH_CHARACTERS,
    conversion_problems,
    sigma_document,
    sigma_rule_from_document,
)
from tests.engine.test_evaluate_semantics import evaluate, hit, make_rule, sel
from tests.factories import rule_document_yaml

UUID = "5d1f3c3e-0000-4000-8000-0000000000e1"
RAW: dict[str, Any] = {"title": "t", "id": UUID, "logsource": {"product": "w"}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------
# Each modifier alone: (detection item, matching event, non-matching event)

ALONE: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "all": ({"V|contains|all": ["ab", "cd"]}, {"V": "xcdxab"}, {"V": "xab"}),
    "startswith": ({"V|startswith": "ab"}, {"V": "ABc"}, {"V": "cab"}),
    "endswith": ({"V|endswith": "ab"}, {"V": "cAB"}, {"V": "abc"}),
    "contains": ({"V|contains": "ab"}, {"V": "cabc"}, {"V": "a b"}),
    "exists": ({"V|exists": True}, {"V": None}, {"W": 1}),
    "cased": ({"V|cased": "Ab"}, {"V": "Ab"}, {"V": "ab"}),
    "neq": ({"V|neq": "ab"}, {"V": "abc"}, {"V": "AB"}),
    "windash": ({"V|windash": "-x"}, {"V": "\u2014x"}, {"V": "_x"}),
    "re": ({"V|re": "^a.c$"}, {"V": "abc"}, {"V": "ABC"}),
    "i": ({"V|re|i": "^a.c$"}, {"V": "ABC"}, {"V": "ab"}),
    "m": ({"V|re|m": "^b$"}, {"V": "a\nb\nc"}, {"V": "abc"}),
    "s": ({"V|re|s": "a.c"}, {"V": "a\nc"}, {"V": "a\n\nc"}),
    "base64": ({"V|base64": "cmd"}, {"V": b64(b"cmd")}, {"V": "cmd"}),
    "base64offset": (
        {"V|base64offset|contains": "cmd"},
        {"V": b64(b"xxcmdxx")},
        {"V": b64(b"xxcmxx")},
    ),
    "utf16le": ({"V|utf16le": "ab"}, {"V": "a\x00b\x00"}, {"V": "ab"}),
    "utf16be": ({"V|utf16be": "ab"}, {"V": "\x00a\x00b"}, {"V": "a\x00b\x00"}),
    "utf16": ({"V|utf16": "ab"}, {"V": "\xff\xfea\x00b\x00"}, {"V": "a\x00b\x00"}),
    "wide": ({"V|wide": "ab"}, {"V": "a\x00b\x00"}, {"V": "\x00a\x00b"}),
    "lt": ({"V|lt": 5}, {"V": 4}, {"V": 5}),
    "lte": ({"V|lte": 5}, {"V": "5"}, {"V": 6}),
    "gt": ({"V|gt": 5}, {"V": 5.5}, {"V": 5}),
    "gte": ({"V|gte": 5}, {"V": 5}, {"V": "4"}),
    "minute": ({"V|minute": 7}, {"V": "2025-01-02T03:07:09Z"}, {"V": "2025-01-02T03:08:09Z"}),
    "hour": ({"V|hour": 3}, {"V": "2025-01-02T03:07:09"}, {"V": "2025-01-02T04:07:09"}),
    "day": ({"V|day": 2}, {"V": "2025-01-02 03:07:09"}, {"V": "2025-01-03"}),
    "week": ({"V|week": 1}, {"V": "2025-01-02"}, {"V": "2025-01-09"}),
    "month": ({"V|month": 1}, {"V": "2025-01-02"}, {"V": "2025-02-02"}),
    "year": ({"V|year": 2025}, {"V": "2025-01-02"}, {"V": "2024-01-02"}),
    "cidr": ({"V|cidr": "10.0.0.0/8"}, {"V": "10.1.2.3"}, {"V": "11.0.0.1"}),
    "fieldref": ({"V|fieldref": "W"}, {"V": "Ab", "W": "aB"}, {"V": "Ab", "W": "Abc"}),
}


def test_every_appendix_modifier_has_a_case() -> None:
    # `expand` needs a pipeline's placeholder values: tested below as reported, not matched.
    assert set(ALONE) | {"expand"} == set(APPENDIX_MODIFIERS)


@pytest.mark.parametrize("name", sorted(ALONE))
def test_modifier_alone(name: str) -> None:
    item, positive, negative = ALONE[name]
    assert hit(sel(**item), positive), f"{name} should match {positive}"
    assert not hit(sel(**item), negative), f"{name} should not match {negative}"


def test_expand_is_accepted_and_reported_as_needing_configuration() -> None:
    rule = make_rule(sel(**{"V|expand": "%admins%"}))
    result = evaluate(sel(**{"V|expand": "%admins%"}), {"V": "x"})
    assert not result.matches
    assert any("placeholder" in reason for reason in rule.unsupported)


# --------------------------------------------------------------------------------------------
# Documented combinations

COMBINATIONS: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({"V|contains|all": ["-a", "-b"]}, {"V": "x -b -a"}, {"V": "x -a"}),
    ({"V|windash|contains": "-enc "}, {"V": "ps /enc x"}, {"V": "ps enc x"}),
    ({"V|windash|contains|all": ["-a", "-b"]}, {"V": "x /a \u2013b"}, {"V": "x /a"}),
    ({"V|cased|contains": "Ab"}, {"V": "xAbx"}, {"V": "xabx"}),
    ({"V|cased|startswith": "Ab"}, {"V": "Abx"}, {"V": "abx"}),
    ({"V|cased|endswith": "Ab"}, {"V": "xAb"}, {"V": "xAB"}),
    ({"V|neq|contains": "ab"}, {"V": "xyz"}, {"V": "xABx"}),
    ({"V|contains|neq": ["ab", "cd"]}, {"V": "xyz"}, {"V": "xcdx"}),
    ({"V|fieldref|neq": "W"}, {"V": "a", "W": "b"}, {"V": "a", "W": "A"}),
    ({"V|fieldref|startswith": "W"}, {"V": "abc", "W": "AB"}, {"V": "abc", "W": "bc"}),
    ({"V|fieldref|endswith": "W"}, {"V": "abc", "W": "BC"}, {"V": "abc", "W": "ab"}),
    ({"V|fieldref|contains": "W"}, {"V": "abc", "W": "B"}, {"V": "abc", "W": "d"}),
    ({"V|re|i|m": "^b$"}, {"V": "a\nB"}, {"V": "aB"}),
    ({"V|re|s|i": "A.C"}, {"V": "a\nc"}, {"V": "a\n\nc"}),
    ({"V|wide|base64offset|contains": "IEX"}, {"V": b64("x IEX".encode("utf-16le"))}, {"V": "x"}),
    ({"V|utf16le|base64offset|contains": "iex"}, {"V": b64("iex(".encode("utf-16le"))}, {"V": ""}),
    ({"V|utf16be|base64|contains": "ab"}, {"V": "z" + b64("ab".encode("utf-16be"))}, {"V": "z"}),
    ({"V|utf16|base64": "ab"}, {"V": b64(b"\xff\xfe" + "ab".encode("utf-16le"))}, {"V": ""}),
    ({"V|base64|contains": "cmd"}, {"V": "x" + b64(b"cmd")}, {"V": "x"}),
    ({"V|base64offset|contains|all": ["ab", "cd"]}, {"V": b64(b"xabxcd")}, {"V": b64(b"ab")}),
    ({"V|gte": 3, "W|lt": 10}, {"V": 3, "W": 9}, {"V": 3, "W": 10}),
    ({"V|exists": False}, {"W": 1}, {"V": ""}),
    ({"|contains": "mimi"}, {"A": "xMIMIx"}, {"A": "mim"}),
    ({"|cased": "Mimi"}, {"A": "x Mimi x"}, {"A": "x mimi x"}),
]


@pytest.mark.parametrize("case", range(len(COMBINATIONS)))
def test_documented_combination(case: int) -> None:
    item, positive, negative = COMBINATIONS[case]
    assert hit(sel(**item), positive), f"{item} should match {positive}"
    assert not hit(sel(**item), negative), f"{item} should not match {negative}"


def test_explanation_names_the_modifiers_as_written() -> None:
    result = evaluate(sel(**{"V|utf16le|base64offset|contains": "ab"}), {"V": b64(b"a\x00b\x00")})
    (match,) = result.matches
    (predicate,) = match.identifiers[0].predicates
    assert predicate.kind == "utf16le|base64offset|contains"


# --------------------------------------------------------------------------------------------
# Decision: `cased` applies wherever it is written (pySigma: only when it comes last)


@pytest.mark.parametrize(
    "key",
    ["V|cased|windash", "V|windash|cased", "V|cased|windash|contains", "V|contains|windash|cased"],
)
def test_cased_holds_with_windash_in_any_order(key: str) -> None:
    assert hit(sel(**{key: "-Ab"}), {"V": "/Ab"})
    assert not hit(sel(**{key: "-Ab"}), {"V": "/ab"})


@pytest.mark.parametrize("key", ["V|cased|base64", "V|base64|cased"])
def test_cased_holds_with_base64_in_any_order(key: str) -> None:
    assert hit(sel(**{key: "ab"}), {"V": "YWI="})
    assert not hit(sel(**{key: "ab"}), {"V": "ywi="})


def test_cased_variants_are_cased_strings_in_any_order() -> None:
    # pySigma 1.5.1 alone returns plain SigmaStrings for `cased|windash` and `cased|base64`.
    for key in ("V|cased|windash", "V|windash|cased"):
        doc = {**RAW, "detection": {"s": {key: "-Ab"}, "condition": "s"}}
        (item,) = sigma_rule_from_document(doc).detection.detections["s"].detection_items
        assert {type(v).__name__ for v in item.value[0].values} == {"SigmaCasedString"}
    doc = {**RAW, "detection": {"s": {"V|cased|base64": "ab"}, "condition": "s"}}
    assert sigma_document(doc)["detection"]["s"] == {"V|base64|cased": "ab"}


def test_cased_with_re_is_refused_with_a_message() -> None:
    with pytest.raises(ModifierError, match="already case-sensitive"):
        make_rule(sel(**{"V|cased|re": "a.c"}))
    with pytest.raises(ModifierError, match="already case-sensitive"):
        make_rule(sel(**{"V|re|cased": "a.c"}))


# --------------------------------------------------------------------------------------------
# Decision: `cased` with `fieldref` compares case-sensitively (pySigma drops it silently);
# conversion says a backend cannot express it.


@pytest.mark.parametrize("key", ["V|fieldref|cased", "V|cased|fieldref"])
def test_cased_fieldref_compares_case_sensitively(key: str) -> None:
    assert hit(sel(**{key: "W"}), {"V": "Ab", "W": "Ab"})
    assert not hit(sel(**{key: "W"}), {"V": "Ab", "W": "ab"})


def test_fieldref_without_cased_stays_case_insensitive() -> None:
    assert hit(sel(**{"V|fieldref": "W"}), {"V": "Ab", "W": "ab"})


def _fieldref_yaml(key: str) -> str:
    return rule_document_yaml(
        sel(**{key: "W"}), title="fieldref", id=UUID, logsource={"product": "windows"}
    )


def test_cased_fieldref_conversion_says_the_backend_cannot() -> None:
    assert conversion_problems(make_rule(sel(**{"V|cased|fieldref": "W"})).sigma)
    result = convert(_fieldref_yaml("V|cased|fieldref"), "splunk")
    assert not result.ok
    assert "cased" in (result.error or "") and "fieldref" in (result.error or "")


def test_plain_fieldref_is_not_refused_for_cased() -> None:
    assert not conversion_problems(make_rule(sel(**{"V|fieldref": "W"})).sigma)
    assert "cased" not in (convert(_fieldref_yaml("V|fieldref"), "splunk").error or "")


# --------------------------------------------------------------------------------------------
# Decision: windash sources are the appendix's five characters, at pySigma's places


@pytest.mark.parametrize("source", WINDASH_CHARACTERS)
@pytest.mark.parametrize("written", WINDASH_CHARACTERS)
def test_windash_interchanges_all_five_characters(source: str, written: str) -> None:
    assert hit(sel(**{"V|windash|contains": f"{source}enc"}), {"V": f"x {written}enc y"})


def test_windash_leaves_a_dash_inside_a_word() -> None:
    # pySigma's rule (a flag starts a word): Invoke-Expression is not a flag.
    assert hit(sel(**{"V|windash|contains": "invoke-expr"}), {"V": "Invoke-Expression"})
    assert not hit(sel(**{"V|windash|contains": "invoke-expr"}), {"V": "Invoke/Expression"})


def test_windash_matches_pysigma_for_hyphen_and_slash_sources() -> None:
    doc: dict[str, Any] = {"title": "t", "id": UUID, "logsource": {"product": "w"}}
    doc["detection"] = {"s": {"V|windash": "/x -y"}, "condition": "s"}
    ours = sigma_rule_from_document(doc).detection.detections["s"].detection_items[0]
    texts = [str(v) for v in ours.value[0].values]
    assert len(texts) == 25 and texts[0] == "-x -y" and texts[6] == "/x /y"


def test_windash_with_too_many_flags_is_refused() -> None:
    flags = " ".join(f"-{c}" for c in "abcdefg")
    assert len(WINDASH_CHARACTERS) ** 7 > MAX_WINDASH_VARIANTS
    with pytest.raises(Exception, match="variants"):
        make_rule(sel(**{"V|windash": flags}))


# --------------------------------------------------------------------------------------------
# Decision: UTF-16 of any text, and `utf16` starts with the bytes FF FE


def test_wide_encodes_non_ascii_text() -> None:
    # pySigma refuses: "Wide modifier only allowed for ascii strings".
    value = b64("Ärger".encode("utf-16le"))
    assert hit(sel(**{"V|wide|base64": "Ärger"}), {"V": value})
    assert not hit(sel(**{"V|wide|base64": "Ärger"}), {"V": b64("Ärger".encode())})


def test_utf16_bom_is_ff_fe_not_the_utf8_bom() -> None:
    spec = b64(b"\xff\xfe" + "cmd".encode("utf-16le"))  # //5jAG0AZAA=
    pysigma = b64("\ufeffcmd".encode("utf-16le").decode("utf-8", "replace").encode())
    assert hit(sel(**{"V|utf16|base64": "cmd"}), {"V": spec})
    assert not hit(sel(**{"V|utf16|base64": "cmd"}), {"V": "77u/YwBtAGQA"})  # pySigma 1.5.1
    assert spec != pysigma


def test_wide_keeps_wildcards() -> None:
    assert hit(sel(**{"V|wide": "a*"}), {"V": "a\x00zzz"})
    assert not hit(sel(**{"V|wide": "a*"}), {"V": "b\x00zzz"})


# --------------------------------------------------------------------------------------------
# Decision: YAML scalar types


def test_string_modifiers_take_numbers_as_written() -> None:
    # pySigma: "Modifier SigmaStartswithModifier incompatible to value type of '41'".
    assert hit(sel(**{"EventID|startswith": 41}), {"EventID": 4104})
    assert not hit(sel(**{"EventID|startswith": 41}), {"EventID": 1410})
    assert hit(sel(**{"V|cased": True}), {"V": "true"})
    assert not hit(sel(**{"V|cased": True}), {"V": "True"})


def test_written_number_text_is_kept() -> None:
    rule = load_yaml_rule("    selection:\n      V|contains: 0x10\n    condition: selection\n")
    assert hit_rule(rule, {"V": "x0x10"})
    assert not hit_rule(rule, {"V": "x16"})


def test_numeric_modifiers_take_quoted_decimals() -> None:
    # pySigma: "Modifier SigmaGreaterThanModifier incompatible to value type of '5'".
    assert hit(sel(**{"V|gt": "5"}), {"V": 6})
    assert not hit(sel(**{"V|gt": "5"}), {"V": 5})
    assert hit(sel(**{"V|hour": "3"}), {"V": "2025-01-01T03:00:00"})


def test_numeric_modifiers_refuse_text_that_is_not_a_number() -> None:
    with pytest.raises(Exception, match="incompatible"):
        make_rule(sel(**{"V|gt": "five"}))


def test_plain_values_keep_their_types() -> None:
    # No modifier: a number is a number (numeric equality), as pySigma reads it.
    assert hit(sel(V=5), {"V": 5.0})
    assert hit(sel(V=5), {"V": "5"})
    assert not hit(sel(V=5), {"V": "05"})


def test_documents_pysigma_reads_unchanged_are_the_same_object() -> None:
    doc = {"detection": {"s": {"V|contains": "a", "W": 5}, "condition": "s"}}
    assert sigma_document(doc) is doc


# --------------------------------------------------------------------------------------------
# Agreement with pySigma's SQLite backend where we follow pySigma


AGREEING: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"V|contains": "ab"}, {"V": "xABx"}),
    ({"V|startswith": "ab"}, {"V": "xab"}),
    ({"V|endswith": "ab"}, {"V": "xAb"}),
    ({"V|contains|all": ["a", "z"]}, {"V": "za"}),
    ({"V|windash|contains": "-x"}, {"V": "q /x"}),
    ({"V|windash|contains": "-x"}, {"V": "q _x"}),
    ({"V|base64offset|contains": "cmd"}, {"V": b64(b"xcmd")}),
    ({"V|wide|base64offset|contains": "cmd"}, {"V": b64("xcmd".encode("utf-16le"))}),
    ({"V|neq": "a"}, {"V": "b"}),
    ({"V|neq": "a"}, {"V": "A"}),
    ({"V|gt": 5}, {"V": "7"}),
    ({"V|lte": 5}, {"V": "7"}),
    ({"V|re": "^a"}, {"V": "ab"}),
]


def _sqlite_matches(item: dict[str, Any], event: dict[str, Any]) -> bool:
    from sigma.backends.sqlite import sqliteBackend

    (query,) = sqliteBackend().convert_rule(make_rule(sel(**item)).sigma)
    con = sqlite3.connect(":memory:")
    con.create_function("regexp", 2, lambda p, v: v is not None and bool(re.search(p, v)))
    con.execute('CREATE TABLE logs ("V" TEXT COLLATE NOCASE)')
    value = event["V"]
    con.execute("INSERT INTO logs VALUES (?)", [None if value is None else str(value)])
    return bool(con.execute(query).fetchall())


def test_neq_on_an_absent_field_matches_as_not_does() -> None:
    # `neq` negates the item: an absent field is "different", as `not selection` is true for
    # it; pySigma's SQLite backend says the same (NOT COALESCE((V='a'), 0)).
    assert hit(sel(**{"V|neq": "a"}), {"W": "x"})
    pytest.importorskip("sigma.backends.sqlite")
    assert _sqlite_matches({"V|neq": "a"}, {"V": None})


@pytest.mark.parametrize("case", range(len(AGREEING)))
def test_engine_agrees_with_pysigma_sqlite(case: int) -> None:
    pytest.importorskip("sigma.backends.sqlite")
    item, event = AGREEING[case]
    assert hit(sel(**item), event) == _sqlite_matches(item, event)


# --------------------------------------------------------------------------------------------


def load_yaml_rule(detection_yaml: str) -> Any:
    from rules.parse import parse_rule

    text = (
        "title: written\nid: 5d1f3c3e-0000-4000-8000-0000000000d1\nstatus: test\n"
        "logsource:\n    product: windows\ndetection:\n" + detection_yaml
    )
    return parse_rule(text)


def hit_rule(rule: Any, event: dict[str, Any]) -> bool:
    from rules.evaluate import Evaluator

    ev = Evaluator([rule])
    fast = ev.evaluate(event, explain=False, all_rules=True)
    full = ev.evaluate(event, explain=True, all_rules=True)
    assert fast.matched_ids == full.matched_ids
    return bool(full.matches)
