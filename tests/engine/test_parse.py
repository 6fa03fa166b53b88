"""rules.parse: metadata of a rule document, and a typed error for everything that is not one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rules.errors import (
    ConditionError,
    DetectionError,
    ModifierError,
    NotASigmaRuleError,
    RuleError,
    UnsafeDocumentError,
    YamlSyntaxError,
)
from rules.model import LogSource, Related, Tag
from rules.parse import MAX_RULE_BYTES, parse_rule
from tests.factories import rule_yaml

REPO = Path(__file__).resolve().parents[2]
RULE_ID = "0b4c1d6e-7f8a-4b9c-8d0e-1f2a3b4c5d6e"

FULL_RULE = textwrap.dedent(
    f"""\
    title: Suspicious Thing
    id: {RULE_ID}
    related:
        - id: 11111111-2222-3333-4444-555555555555
          type: derived
    status: experimental
    description: |
        First line.
        Second line.
    references:
        - https://example.org/a
    author: Alice, Bob
    date: 2024-01-23
    modified: 2024/02/03
    tags:
        - attack.execution
        - attack.t1059.001
        - cve.2021-44228
        - detection.threat-hunting
    logsource:
        product: windows
        category: process_creation
        definition: 'Requirements: Sysmon'
    detection:
        selection:
            Image|endswith: '\\cmd.exe'
        filter:
            ParentImage|endswith: '\\explorer.exe'
        condition: selection and not filter
    falsepositives:
        - Admins
    level: high
    """
)


def minimal_rule(detection: str = "sel:\n    F: x\ncondition: sel", extra: str = "") -> str:
    head = rule_yaml(title="t", id=RULE_ID, logsource={"product": "windows"})
    return head + extra + rule_yaml(detection=detection)


def test_metadata_of_a_full_rule():
    rule = parse_rule(FULL_RULE, "rules/windows/x.yml")
    assert rule.id == RULE_ID
    assert rule.title == "Suspicious Thing"
    assert rule.status == "experimental"
    assert rule.level == "high"
    assert rule.description == "First line.\nSecond line."
    assert rule.author == "Alice, Bob"
    assert rule.date == "2024-01-23"
    assert rule.modified == "2024-02-03"
    assert rule.references == ["https://example.org/a"]
    assert rule.falsepositives == ["Admins"]
    assert rule.related == [Related(id="11111111-2222-3333-4444-555555555555", type="derived")]
    assert rule.logsource == LogSource(
        product="windows", category="process_creation", definition="Requirements: Sysmon"
    )
    assert rule.logsource.label == "windows/process_creation"
    assert rule.conditions == ["selection and not filter"]
    assert rule.raw_yaml == FULL_RULE
    assert rule.source_path == "rules/windows/x.yml"


def test_tags_split_at_the_first_dot_and_attack_tags_are_selected():
    rule = parse_rule(FULL_RULE)
    assert rule.tags == [
        Tag("attack.execution", "attack", "execution"),
        Tag("attack.t1059.001", "attack", "t1059.001"),
        Tag("cve.2021-44228", "cve", "2021-44228"),
        Tag("detection.threat-hunting", "detection", "threat-hunting"),
    ]
    assert [t.value for t in rule.attack_tags] == ["execution", "t1059.001"]


def test_bytes_and_text_give_the_same_rule():
    from_text = parse_rule(FULL_RULE)
    from_bytes = parse_rule(FULL_RULE.encode())
    assert (from_bytes.id, from_bytes.indicators, from_bytes.exclusions) == (
        from_text.id,
        from_text.indicators,
        from_text.exclusions,
    )


def test_a_utf8_byte_order_mark_is_accepted():
    rule = parse_rule(b"\xef\xbb\xbf" + minimal_rule().encode())
    assert rule.id == RULE_ID


def test_non_ascii_utf8_text_is_kept():
    rule = parse_rule(minimal_rule("sel:\n    F: 'café ✓'\ncondition: sel").encode())
    assert [i.value for i in rule.indicators] == ["café ✓"]


def test_expand_placeholders_are_flagged_as_unsupported():
    rule = parse_rule(minimal_rule("sel:\n    F|expand: '%admins%'\ncondition: sel"))
    assert rule.unsupported and "sel" in rule.unsupported[0]


# --- errors ---------------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    [f'l0: &l0 ["{"lol" * 3}"' + ', "lol"' * 8 + "]"]
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["title: *l9"]
)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param("title: [unclosed\nid: x\n", YamlSyntaxError, "invalid YAML", id="bad-yaml"),
        pytest.param("a: b\n  c: d\n", YamlSyntaxError, "invalid YAML", id="bad-indentation"),
        pytest.param(b"\x7fELF\x02\x01\x00\x00title", YamlSyntaxError, "binary", id="binary"),
        pytest.param("title: caf\xe9\n".encode("latin-1"), YamlSyntaxError, "UTF-8", id="latin-1"),
        pytest.param("title: x\n".encode("utf-16"), YamlSyntaxError, "", id="utf-16"),
        pytest.param("- title: x\n- id: y\n", NotASigmaRuleError, "mapping", id="list"),
        pytest.param("just a string\n", NotASigmaRuleError, "mapping", id="scalar"),
        pytest.param("", NotASigmaRuleError, "empty", id="empty"),
        pytest.param("# only a comment\n", NotASigmaRuleError, "empty", id="comment-only"),
        pytest.param(
            f"title: t\nid: {RULE_ID}\nlogsource: {{product: windows}}\n",
            NotASigmaRuleError,
            "detection",
            id="missing-detection",
        ),
        pytest.param(
            "detection: {sel: {F: x}, condition: sel}\n",
            NotASigmaRuleError,
            "title",
            id="missing-title-id-logsource",
        ),
        pytest.param(
            f"title: t\nid: {RULE_ID}\nlogsource: {{product: windows}}\ndetection: [a, b]\n",
            NotASigmaRuleError,
            "detection",
            id="detection-not-a-mapping",
        ),
        pytest.param(
            "title: t\nid: 42\nlogsource: {product: windows}\n"
            "detection: {sel: {F: x}, condition: sel}\n",
            NotASigmaRuleError,
            "id",
            id="numeric-id",
        ),
        pytest.param(
            f"title: t\nid: {RULE_ID}\nlogsource: windows\n"
            "detection: {sel: {F: x}, condition: sel}\n",
            NotASigmaRuleError,
            "logsource",
            id="logsource-not-a-mapping",
        ),
        pytest.param(
            f"title: t\nid: {RULE_ID}\ncorrelation: {{type: event_count}}\n",
            NotASigmaRuleError,
            "correlation",
            id="correlation-rule",
        ),
        pytest.param(
            minimal_rule() + "---\n" + minimal_rule(),
            NotASigmaRuleError,
            "2 YAML documents",
            id="multi-document",
        ),
        pytest.param(
            minimal_rule("sel:\n    F: x"), ConditionError, "condition", id="missing-condition"
        ),
        pytest.param(
            minimal_rule("sel:\n    F: x\ncondition: sel and not filter"),
            ConditionError,
            "filter",
            id="undefined-identifier",
        ),
        pytest.param(
            minimal_rule("sel:\n    F: x\ncondition: 1 of filter_*"),
            ConditionError,
            "filter_",
            id="pattern-matching-nothing",
        ),
        pytest.param(
            minimal_rule("sel:\n    F: x\ncondition: sel and"),
            ConditionError,
            "",
            id="truncated-condition",
        ),
        pytest.param(
            minimal_rule("sel:\n    F: x\ncondition: sel | count() by Host > 5"),
            ConditionError,
            "",
            id="deprecated-count-aggregation",
        ),
        pytest.param(
            minimal_rule("sel:\n    F|foo: x\ncondition: sel"),
            ModifierError,
            "foo",
            id="unknown-modifier",
        ),
        pytest.param(
            minimal_rule("sel:\n    F|re: '(unclosed'\ncondition: sel"),
            ModifierError,
            "",
            id="invalid-regex",
        ),
        pytest.param(
            minimal_rule("sel:\n    F|cidr: not-a-network\ncondition: sel"),
            ModifierError,
            "",
            id="invalid-cidr",
        ),
        pytest.param(
            minimal_rule("sel:\ncondition: sel"), DetectionError, "sel", id="empty-identifier"
        ),
        pytest.param(BILLION_LAUGHS, UnsafeDocumentError, "alias", id="billion-laughs"),
        pytest.param("a: &a [*a, *a]\n", UnsafeDocumentError, "", id="recursive-alias"),
        pytest.param(
            "title: x\ndescription: " + "a" * MAX_RULE_BYTES + "\n",
            UnsafeDocumentError,
            "bytes",
            id="oversized-text",
        ),
        pytest.param(
            b"title: x\ndescription: " + b"a" * MAX_RULE_BYTES + b"\n",
            UnsafeDocumentError,
            "bytes",
            id="oversized-bytes",
        ),
    ],
)
def test_invalid_documents_raise_a_typed_error_with_a_clear_message(data, error, message):
    with pytest.raises(RuleError) as caught:
        parse_rule(data, "bad.yml")
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    text = str(caught.value)
    assert text.strip(), "the error message is empty"
    assert "Traceback" not in text
    assert message in text
    assert caught.value.code == error.code


def test_every_error_class_has_its_own_code():
    classes = [
        RuleError,
        YamlSyntaxError,
        UnsafeDocumentError,
        NotASigmaRuleError,
        ConditionError,
        ModifierError,
        DetectionError,
    ]
    assert len({cls.code for cls in classes}) == len(classes)
    assert all(issubclass(cls, RuleError) for cls in classes)


def test_alias_bomb_is_refused_quickly():
    started = time.perf_counter()
    with pytest.raises(UnsafeDocumentError):
        parse_rule(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1.0


def test_alias_bomb_inside_an_otherwise_valid_rule_is_refused():
    bomb = "\n".join(
        ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
        + [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 7)]
    )
    text = bomb + "\n" + minimal_rule("sel:\n    F: *x6\ncondition: sel")
    started = time.perf_counter()
    with pytest.raises(UnsafeDocumentError):
        parse_rule(text)
    assert time.perf_counter() - started < 1.0


def test_a_document_just_under_the_size_limit_is_not_refused_for_size():
    rule = minimal_rule()
    padding = MAX_RULE_BYTES - len(rule.encode()) - len("# \n")
    text = rule + "# " + "x" * padding + "\n"
    assert len(text.encode()) == MAX_RULE_BYTES
    assert parse_rule(text).id == RULE_ID


def test_deeply_nested_yaml_is_refused_not_a_crash():
    with pytest.raises(RuleError):
        parse_rule("a: " + "[" * 5000 + "]" * 5000)
    nested_block = "".join(" " * i + "k:\n" for i in range(1200)) + " " * 1200 + "v\n"
    with pytest.raises(RuleError):
        parse_rule(nested_block)


def test_engine_modules_never_import_django():
    """Every module of the rules package imports in a fresh interpreter where Django cannot be
    imported at all, and none tries to.

    Django is blocked rather than merely looked for in ``sys.modules``: third-party packages
    probe for it (diskcache, under pysigma-validators-sigmahq, imports ``django.core.cache``
    when it can, and shrugs when it cannot). A rules module that needs Django fails to import
    and is listed; one that merely tries is caught by the blocker's record."""
    script = textwrap.dedent(
        """
        import importlib, importlib.abc, pkgutil, sys

        class BlockDjango(importlib.abc.MetaPathFinder):
            tried = []

            def find_spec(self, name, path=None, target=None):
                if name == "django" or name.startswith("django."):
                    caller = sys._getframe(1)
                    while caller and caller.f_globals.get("__name__", "").startswith("importlib"):
                        caller = caller.f_back
                    importer = caller.f_globals.get("__name__", "?") if caller else "?"
                    self.tried.append(importer)
                    raise ImportError(f"Django is blocked in this test ({name})")
                return None

        blocker = BlockDjango()
        sys.meta_path.insert(0, blocker)
        import rules
        failed = []
        names = sorted(m.name for m in pkgutil.walk_packages(rules.__path__, "rules."))
        for name in ["rules.parse", "rules.extract", "rules.model", *names]:
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print("MODULES", len(names))
        print("DJANGO", sorted(m for m in sys.modules if m == "django" or m.startswith("django.")))
        print("TRIED", sorted({t for t in blocker.tried if t.startswith("rules")}))
        print("FAILED", failed)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert int(lines["MODULES"]) >= 5
    assert lines["DJANGO"] == "[]"
    assert lines["TRIED"] == "[]"  # no rules module asked for Django
    assert lines["FAILED"] == "[]"
