"""rules.convert.pipelines: a user's pipeline YAML is validated, located by line when broken,
never run as code, and combined with the catalog pipeline as `sigma convert -p` does."""

from __future__ import annotations

import pytest

from rules import convert as conv
from rules.convert.pipelines import MAX_PIPELINE_BYTES
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
