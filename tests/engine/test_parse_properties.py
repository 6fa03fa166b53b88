"""Property tests: parse_rule never raises anything but a RuleError, whatever it is given."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.errors import RuleError
from rules.parse import parse_rule

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RULE_ID = "f0e1d2c3-b4a5-4697-8877-665544332211"

MODIFIERS = [
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "fieldref",
    "windash",
    "base64",
    "base64offset",
    "wide",
    "utf16",
    "cased",
    "expand",
    "neq",
    "foo",
    "",
]
IDENTIFIERS = ["selection", "sel_a", "sel_b", "filter", "filter_main", "_hidden", "keywords"]
CONDITION_WORDS = [
    *IDENTIFIERS,
    "and",
    "or",
    "not",
    "(",
    ")",
    "1 of",
    "all of",
    "any of",
    "them",
    "selection*",
    "sel_*",
    "filter_*",
    "_h*",
    "|",
    "count()",
    ">",
    "5",
    "undefined",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["*", "**", "*x*", "x*", "*x", "\\*", "a?b", "10.0.0.0/8", "(", "[a-z]+"]),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)
field_keys = st.builds(
    lambda name, mods: "|".join([name, *mods]),
    st.sampled_from(["Image", "CommandLine", "EventID", "", "F"]),
    st.lists(st.sampled_from(MODIFIERS), max_size=3),
)
detection_values = st.one_of(scalars, st.lists(scalars, max_size=4), json_like)
identifier_bodies = st.one_of(
    st.dictionaries(field_keys, detection_values, max_size=3),
    st.lists(
        st.one_of(st.dictionaries(field_keys, detection_values, max_size=2), scalars), max_size=3
    ),
    scalars,
)
conditions = st.lists(st.sampled_from(CONDITION_WORDS), min_size=0, max_size=7).map(" ".join)


@st.composite
def rule_documents(draw: st.DrawFn) -> dict[str, Any]:
    detection: dict[Any, Any] = draw(
        st.dictionaries(st.sampled_from(IDENTIFIERS), identifier_bodies, max_size=4)
    )
    detection["condition"] = draw(
        st.one_of(conditions, st.lists(conditions, max_size=3), json_like)
    )
    document: dict[str, Any] = {
        "title": draw(st.one_of(st.text(max_size=10), json_like)),
        "id": draw(st.one_of(st.just(RULE_ID), json_like)),
        "logsource": draw(
            st.one_of(
                st.fixed_dictionaries({"product": st.sampled_from(["windows", "linux"])}),
                json_like,
            )
        ),
        "detection": draw(st.one_of(st.just(detection), json_like)),
    }
    optional = {
        "status": st.sampled_from(["test", "stable", "experimental", "bogus"]),
        "level": st.sampled_from(["low", "high", "critical", "bogus"]),
        "tags": st.one_of(
            st.lists(st.sampled_from(["attack.t1059", "attack.execution", "x"])), json_like
        ),
        "related": json_like,
        "author": json_like,
        "date": st.one_of(st.dates(), json_like),
        "references": json_like,
        "falsepositives": json_like,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            document[key] = draw(strategy)
    return document


def check(data: str | bytes) -> None:
    try:
        parse_rule(data, "property.yml")
    except RuleError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_rule_errors(text):
    check(text)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_rule_errors(data):
    check(data)


@SETTINGS
@given(json_like)
def test_arbitrary_yaml_structures_raise_only_rule_errors(value):
    check(yaml.safe_dump(value, allow_unicode=True))


@SETTINGS
@given(rule_documents())
def test_rule_shaped_documents_raise_only_rule_errors(document):
    check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@SETTINGS
@given(rule_documents())
def test_rule_shaped_documents_in_flow_style_raise_only_rule_errors(document):
    check(yaml.safe_dump(document, default_flow_style=True, width=80))


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                "title: t\n",
                f"id: {RULE_ID}\n",
                "logsource: {product: windows}\n",
                "detection:\n",
                "    sel:\n",
                "        F: x\n",
                "        F|contains: [a, '*b*']\n",
                "    condition: sel\n",
                "    condition: sel and not f\n",
                "    f: {G: 1}\n",
                "- a\n",
                "---\n",
                "&a [*a]\n",
                "  bad indent\n",
                "\t\n",
                "'\n",
                "%YAML 1.1\n",
                "!!python/object:os.system\n",
                "a: !!binary AAAA\n",
                "x: *undefined\n",
            ]
        ),
        max_size=12,
    ).map("".join)
)
def test_line_soup_near_valid_rules_raises_only_rule_errors(text):
    check(text)
