"""The catalog's query equals what the printed ``sigma convert`` command prints (sigma-cli 3.1.0,
run in-process through click), for every target: the fixture rules here, a random corpus
sample in the ``corpus`` test. A declared fix (``result.fixes``) is the one allowed difference.
"""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rules import convert as conv
from tests.conversion.rules_fixtures import FIELDREF_YAML, PROCESS_YAML, SEED_YAML

cli_convert = pytest.importorskip("sigma.cli.convert").convert

# Panther's backend writes files under sigma-cli and prints only "Converted rules are
# successfully saved": there is no printed query to compare.
CLI_TARGETS = [t for t in conv.TARGETS if t != "panther"]


def cli_text(converter: conv.Converter, result: conv.ConversionResult) -> str:
    """What sigma-cli prints for this one rule: the backend's finalized output."""
    final: Any = converter.backend.finalize(list(result.outputs), converter.output_format)
    if isinstance(final, list) and all(isinstance(item, str) for item in final):
        return "\n\n".join(final)
    if isinstance(final, list):
        return "\n".join(json.dumps(item) for item in final)
    if isinstance(final, dict):
        return json.dumps(final)
    return str(final)


def run_cli(command: str) -> tuple[int, str]:
    args = shlex.split(command)[2:]  # drop "sigma convert"
    outcome = CliRunner().invoke(cli_convert, args, catch_exceptions=True)
    return outcome.exit_code, outcome.stdout


def assert_same_as_cli(target: str, text: str, folder: Path, name: str = "rule.yml") -> None:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    converter = conv.Converter(target)
    result = converter.convert(text, filename=str(path))
    code, printed = run_cli(result.sigma_cli_command)
    if not result.ok:
        assert code != 0 or not printed.strip(), (result.error, printed)
        return
    if result.fixes:  # the catalog fixed the query on purpose (and says so)
        return
    assert code == 0, printed
    assert printed.rstrip("\n") == cli_text(converter, result).rstrip("\n")


@pytest.mark.parametrize("target", CLI_TARGETS)
def test_fixture_rules_equal_sigma_convert(target: str, tmp_path: Path) -> None:
    for index, text in enumerate((SEED_YAML, PROCESS_YAML, FIELDREF_YAML)):
        assert_same_as_cli(target, text, tmp_path, f"rule{index}.yml")


def test_custom_pipeline_equals_sigma_convert_with_the_file(tmp_path: Path) -> None:
    text = "name: mine\npriority: 30\ntransformations:\n  - type: field_name_mapping\n"
    text += "    mapping:\n      Image: process.path\n"
    custom = conv.parse_custom_pipeline(text)
    (tmp_path / "pipeline.yml").write_text(text, encoding="utf-8")
    (tmp_path / "rule.yml").write_text(PROCESS_YAML, encoding="utf-8")
    result = conv.convert(PROCESS_YAML, "splunk", "splunk_sysmon", custom=custom, filename="r")
    assert "process.path=" in result.query
    command = result.sigma_cli_command.replace(" r", f" {tmp_path / 'rule.yml'}")
    command = command.replace("-p pipeline.yml", f"-p {tmp_path / 'pipeline.yml'}")
    code, printed = run_cli(command)
    assert code == 0 and printed.strip() == result.query


@pytest.mark.corpus
@pytest.mark.parametrize("target", CLI_TARGETS)
def test_corpus_sample_equals_sigma_convert(
    target: str, corpus_rule_files: list[Path], tmp_path: Path
) -> None:
    sample = random.Random(f"cli-{target}").sample(corpus_rule_files, 4)
    for path in sample:
        assert_same_as_cli(target, path.read_text(encoding="utf-8"), tmp_path, path.name)
