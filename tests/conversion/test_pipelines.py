"""rules.convert.pipelines: a user's pipeline YAML is validated, located by line when broken,
never run as code, and combined with the catalog pipeline as `sigma convert -p` does."""

from __future__ import annotations

import pytest

from rules import convert as conv
from rules.convert.pipelines import (
    MAX_ITEMS,
    MAX_PIPELINE_BYTES,
    MAX_REPLACEMENT_CHARS,
    MAX_STRING_CHARS,
    MAX_TRANSFORMATIONS,
)
from tests.conversion.rules_fixtures import PROCESS_YAML

MAPPING = """\
name: mine
priority: 30
transformations:
  - id: fields
    type: field_name_mapping
    mapping:
      Image: process.path
"""


def test_valid_pipeline_changes_the_query_and_the_command() -> None:
    custom = conv.parse_custom_pipeline(MAPPING)
    assert custom.name == "mine" and len(custom.digest) == 12
    plain = conv.convert(PROCESS_YAML, "kusto", "none")
    mine = conv.convert(PROCESS_YAML, "kusto", "none", custom=custom)
    assert "process.path" in mine.query and "process.path" not in plain.query
    assert mine.sigma_cli_command == "sigma convert -t kusto -p pipeline.yml rule.yml"
    assert mine.custom_pipeline == custom.digest


def test_custom_pipeline_is_ordered_by_priority_with_the_catalog_one() -> None:
    custom = conv.parse_custom_pipeline(MAPPING.replace("Image:", "process.executable:"))
    # priority 30 runs after ecs_windows (20): it renames ECS's own field name.
    result = conv.convert(PROCESS_YAML, "lucene", "ecs_windows", custom=custom)
    assert result.ok and "-p ecs_windows -p pipeline.yml" in result.sigma_cli_command
    assert (
        "--without-pipeline"
        not in conv.convert(PROCESS_YAML, "splunk", "none", custom=custom).sigma_cli_command
    )


def test_each_build_is_fresh() -> None:
    custom = conv.parse_custom_pipeline(MAPPING)
    assert custom.build() is not custom.build()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "empty"),
        ("- a\n", 1, "mapping"),
        ("name: [x\n", 2, "YAML"),
        ("name: x\nbogus: 1\n", None, "Unkown keys"),
        (
            "transformations:\n  - type: field_name_mapping\n    mapping: {a: b}\n  - type: nope\n",
            4,
            "nope",
        ),
        ("transformations:\n  - type: field_name_mapping\n", 2, "refuses"),
        ("finalizers:\n  - type: template\n    template: x\n", 2, "Jinja"),
        ("postprocessing:\n  - type: template\n    template: x\n", 2, "Jinja"),
        ("postprocessing:\n  - type: template\n    template: x\n    vars: /x.py\n", 2, "Jinja"),
        ("transformations:\n  - type: query_expression_placeholders\n    path: /\n", 3, "path"),
        ("transformations:\n  - type: regex\n    regex: '(a+)+b'\n", 3, "nested"),
        ("!!python/object/apply:os.system ['id']\n", 1, "mapping"),
        ("name: !!python/object/apply:os.system ['id']\n", 1, "YAML"),
        ("a: &a [*a]\n", None, ""),
    ],
)
def test_broken_or_unsafe_pipelines_are_refused(text: str, line: int | None, words: str) -> None:
    with pytest.raises(conv.PipelineYAMLError) as info:
        conv.parse_custom_pipeline(text)
    assert info.value.line == line or line is None
    assert words in str(info.value)
    if line is not None:
        assert str(info.value).startswith(f"line {line}: ")


def test_size_and_encoding_caps() -> None:
    with pytest.raises(conv.PipelineYAMLError, match="larger than"):
        conv.parse_custom_pipeline("#" * (MAX_PIPELINE_BYTES + 1))
    with pytest.raises(conv.PipelineYAMLError, match="not UTF-8"):
        conv.parse_custom_pipeline(b"name: \xff\n")
    with pytest.raises(conv.PipelineYAMLError, match="nested too deeply"):
        conv.parse_custom_pipeline("a: " + "[" * 50 + "]" * 50 + "\n")


def _items(count: int, section: str = "transformations") -> str:
    item = "  - {type: replace_string, regex: a, replacement: b}\n"
    if section != "transformations":
        item = "  - {type: replace, pattern: a, replacement: b}\n"
    return f"{section}:\n" + item * count


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (_items(MAX_TRANSFORMATIONS + 1), MAX_TRANSFORMATIONS + 2, "more than 256 transformations"),
        (
            # Sections add up, and a nested transformation's items count.
            _items(200)
            + "  - type: nested\n    items:\n"
            + "      - {type: replace_string, regex: a, replacement: b}\n" * 60,
            204 + 55,  # 201 above, the 56th nested item (line 204 is the first) is one too many
            "more than 256",
        ),
        (
            _items(200) + _items(60, "postprocessing"),
            203 + 56,  # 200 transformations, the 57th postprocessing item (from line 203)
            "more than 256",
        ),
        (
            "transformations:\n  - type: field_name_mapping\n    mapping:\n      Hashes: ["
            + ", ".join(f"f{i}" for i in range(MAX_ITEMS + 1))
            + "]\n",
            4,
            "a list of more than 500 items",
        ),
        (
            "transformations:\n  - type: replace_string\n    regex: a\n    replacement: '"
            + "x" * (MAX_REPLACEMENT_CHARS + 1)
            + "'\n",
            4,
            "'replacement' is longer than 1024 characters",
        ),
        (
            "name: x\npostprocessing:\n  - type: embed\n    prefix: '"
            + "x" * (MAX_REPLACEMENT_CHARS + 1)
            + "'\n",
            4,
            "'prefix' is longer",
        ),
        (
            "transformations:\n  - type: field_name_mapping\n    mapping:\n      Image: "
            + "p" * (MAX_STRING_CHARS + 1)
            + "\n",
            4,
            "a value longer than 4096 characters",
        ),
        # libyaml refuses deep flow nesting (the pure-Python composer raised RecursionError).
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", 1, "YAML"),
    ],
)
def test_sizes_are_bounded_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(conv.PipelineYAMLError) as info:
        conv.parse_custom_pipeline(text)
    assert info.value.line == line and words in str(info.value)
    assert str(info.value).startswith(f"line {line}: ")


def test_largest_accepted_shapes_still_parse() -> None:
    assert conv.parse_custom_pipeline(_items(MAX_TRANSFORMATIONS))
    many = "transformations:\n  - type: field_name_mapping\n    mapping:\n      Hashes: ["
    assert conv.parse_custom_pipeline(many + ", ".join(f"f{i}" for i in range(MAX_ITEMS)) + "]\n")
    replacement = "x" * MAX_REPLACEMENT_CHARS
    text = f"transformations:\n  - {{type: replace_string, regex: a, replacement: {replacement}}}\n"
    assert conv.parse_custom_pipeline(text).document["transformations"][0]["replacement"]
