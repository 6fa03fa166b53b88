"""rules.convert.verify: queries checked with the target's grammar, certain fixes, the lexical
check, and the fast paths agreeing with the real parsers (luqum, eql) on a corpus sample."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rules import convert as conv
from rules.convert import verify
from tests.conversion.rules_fixtures import PLACEHOLDER_YAML, PROCESS_YAML, SEED_YAML
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml

eql = pytest.importorskip("eql")
luqum_parser = pytest.importorskip("luqum.parser")


def real_eql(query: str) -> str | None:
    try:
        with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
            eql.parse_query(query)
    except eql.EqlError as exc:
        return str(exc)
    return None


def real_luqum(query: str) -> str | None:
    try:
        luqum_parser.parser.parse(query, lexer=luqum_parser.lexer.clone())
    except Exception as exc:  # noqa: BLE001 - luqum's own errors, whatever their class
        return str(exc)
    return None


# --------------------------------------------------------------------------- EQL


@pytest.mark.parametrize(
    ("query", "fixed", "fix"),
    [
        ('any where user-agent:"x"', 'any where `user-agent`:"x"', "backticks"),
        (
            'any where a.b-c like~ ("x", "y") and d:"e"',
            'any where `a.b-c` like~ ("x", "y") and d:"e"',
            "backticks",
        ),
        ('any where a:"C:\\\\x\\/y"', 'any where a:"C:\\\\x/y"', "'/'"),
    ],
)
def test_eql_certain_fixes(query: str, fixed: str, fix: str) -> None:
    assert real_eql(query) is not None
    result, fixes, problem = verify.fix_eql(query)
    assert problem is None and result == fixed and real_eql(result) is None
    assert len(fixes) == 1 and fix in fixes[0]


@pytest.mark.parametrize(
    "query",
    [
        'any where "bash -c" and "&/dev/tcp/"',  # bare strings as conditions
        "any where logtype:16001",  # `:` with a number
        'any where a:"x\\*"',  # EQL has no escape for a literal wildcard: not certain
        'any where a regex~ "x"y"',  # an unescaped quote in a regex
    ],
)
def test_eql_uncertain_queries_are_invalid_with_the_parsers_message(query: str) -> None:
    result, fixes, problem = verify.fix_eql(query)
    assert result == query and fixes == ()
    assert problem and problem.startswith("line 1, column")
    assert real_eql(query) is not None


def test_eql_string_with_a_dash_is_not_backticked() -> None:
    query = 'any where a:"x-y:z" and b-c:"q"'
    assert verify.fix_eql(query)[0] == 'any where a:"x-y:z" and `b-c`:"q"'


def test_eql_shape_cache_agrees_with_eql() -> None:
    queries = [
        'any where a:"x" and (b like~ ("y", "z") or not c:"w")',
        "any where a:1 and b:2",
        'any where cidrMatch(source.ip, "x")',
        'any where cidrMatch(source.ip, "10.0.0.0/8") or a:"b"',
        'any where true:"x"',
        'any where a:"x" and "y"',
    ]
    for query in queries:
        assert (verify.eql_problem(query) is None) is (real_eql(query) is None), query


# --------------------------------------------------------------------------- Lucene


@pytest.mark.parametrize(
    "query",
    [
        "a:b AND c:(d OR e)",
        'a:"x y" AND NOT b:*z*',
        "a:/(^|\\\\/)\\.[^.\\\\/]/",
        "a:[1 TO 5]",
        "a:(b",
        "a:b)",
        'a:"unclosed',
        "a:b^2 AND c~",
    ],
)
def test_lean_lucene_parser_agrees_with_luqum(query: str) -> None:
    assert verify.lucene_problem(query) == real_luqum(query)


def test_elastalert_filter_is_checked() -> None:
    result = conv.convert(PROCESS_YAML, "elastalert")
    assert result.verifier == "luqum" and result.status == "verified"


# --------------------------------------------------------------------------- lexical


@pytest.mark.parametrize(
    ("query", "dialect", "problem"),
    [
        ('a="C:\\Windows\\"', "spl2", "never closes"),
        ('a="x" | where (b', "spl", "never closed"),
        ("a) b", "spl", "unbalanced"),
        ("source=x | where LIKE(a, %b%)", "ppl", "wildcard"),
        ("a LIKE 'it''s'", "sql", None),
        ("a == @'C:\\x'", "kql", None),
        ("{job=`a\\`}", "logql", None),
        ('a="x\\"y"', "spl", None),
    ],
)
def test_lexical_check(query: str, dialect: str, problem: str | None) -> None:
    found = verify.lexical_problem(query, verify.DIALECTS.get(dialect, verify.Dialect()))
    if problem is None:
        assert found is None
    else:
        assert found and problem in found


def test_leftover_placeholder_is_invalid() -> None:
    found = verify.placeholder_problem('user="%Administrators%"', {"Administrators"})
    assert found and "%Administrators%" in found
    # A literal %APPDATA% in a value is not an |expand placeholder.
    assert verify.placeholder_problem('path="%APPDATA%"', {"Administrators"}) is None


def test_loki_keeps_a_placeholder_and_is_marked_invalid() -> None:
    result = conv.convert(PLACEHOLDER_YAML, "loki")
    if result.ok:  # the Loki backend writes the placeholder out literally
        assert result.status == "invalid" and "%Administrators%" in (result.problem or "")


def test_python_and_json_outputs_are_parsed() -> None:
    panther = conv.convert(PROCESS_YAML, "panther")
    assert panther.verifier == "python" and panther.status == "verified"
    sumo = conv.convert(PROCESS_YAML, "sumologic_cse")
    assert sumo.verifier == "json" and sumo.valid is True


def test_dashed_field_rule_converts_to_a_fixed_eql_query() -> None:
    text = rule_yaml(
        title="Dashed Field",
        id="5f3c1f1e-0000-4000-8000-0000000000d1",
        logsource=WINDOWS_PROCESS_CREATION,
        detection="selection:\n    user-agent: 'curl'\ncondition: selection",
        level="low",
    )
    result = conv.convert(text, "eql")
    assert result.ok and result.status == "fixed"
    assert "user-agent`:" in result.query and real_eql(result.query) is None
    assert result.fixes and result.valid is True


def test_unchecked_formats_say_so() -> None:
    result = conv.convert(SEED_YAML, "splunk", "splunk_windows", "savedsearches")
    assert result.ok and result.status == "unchecked" and result.valid is None


# --------------------------------------------------------------------------- corpus sample


@pytest.mark.corpus
@pytest.mark.parametrize("target", ["eql", "lucene", "opensearch_lucene"])
def test_presented_valid_queries_parse_with_the_real_parser(
    target: str, corpus_rule_files: list[Path]
) -> None:
    sample = random.Random(target).sample(corpus_rule_files, 60)
    real = real_eql if target == "eql" else real_luqum
    converter = conv.Converter(target)
    for path in sample:
        result = converter.convert(path.read_text(encoding="utf-8"))
        for query in result.queries:
            if result.valid:
                assert real(query) is None, (path.name, query)
            elif result.ok:
                assert result.problem
