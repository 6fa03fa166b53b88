"""rules.validate: pySigma core + SigmaHQ validators, offline, with YAML lines."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.validation import SigmaValidator
from sigma.validators.core import validators as core_validators
from sigma.validators.sigmahq import validators as sigmahq_validators

from rules.validate import SKIPPED, Finding, validate_text, validator_names
from tests.conftest import REPO
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml

RULE_ID = "5a1c2d3e-0000-4000-8000-000000000014"


def good_rule(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "title": "Suspicious Whoami Execution",
        "id": RULE_ID,
        "status": "test",
        "description": "Detects the execution of whoami, often used after a compromise.",
        "references": ["https://example.org/whoami"],
        "author": "Test Author",
        "date": "2024-01-02",
        "tags": ["attack.discovery", "attack.t1033"],
        "logsource": WINDOWS_PROCESS_CREATION,
        "detection": "selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection",
        "falsepositives": ["Administrative scripts"],
        "level": "medium",
    }
    fields.update(overrides)
    return rule_yaml(**fields)


def by_validator(findings: list[Finding]) -> dict[str, Finding]:
    return {f.validator: f for f in findings}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket opened while validating fails the test (the catalog runs offline)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the validators tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_clean_rule_has_no_findings() -> None:
    assert validate_text(good_rule(), "proc_creation_win_whoami_execution.yml") == []


def test_every_validator_runs_except_the_skipped_ones() -> None:
    expected = set(core_validators) | set(sigmahq_validators)
    assert set(validator_names()) == expected - set(SKIPPED)
    assert set(SKIPPED) <= expected


def test_unknown_attack_tag_names_the_tag_and_its_line() -> None:
    text = good_rule(tags=["attack.discovery", "attack.t9999"])
    found = by_validator(validate_text(text))["attacktag"]
    assert found.severity == "medium"
    assert "attack.t9999" in found.message
    assert text.splitlines()[found.line - 1].strip() == "- attack.t9999"


def test_attack_sub_techniques_and_v19_tactics_are_known() -> None:
    text = good_rule(tags=["attack.stealth", "attack.execution", "attack.t1059.001"])
    assert "attacktag" not in by_validator(validate_text(text))


def test_sigmahq_taxonomy_data_is_loaded_offline() -> None:
    text = good_rule(logsource={"product": "windows", "category": "no_such_category"})
    found = by_validator(validate_text(text))["sigmahq_logsource_unknown"]
    assert text.splitlines()[found.line - 1] == "logsource:"


def test_sigmahq_field_check_points_at_the_field() -> None:
    detection = "selection:\n    CommandLine|contains: 'a'\n    image: x\ncondition: selection"
    text = good_rule(detection=detection)
    found = by_validator(validate_text(text))["sigmahq_invalid_fieldname"]
    assert "image" in found.message
    assert text.splitlines()[found.line - 1].strip() == "image: x"


def test_windows_provider_data_is_loaded_offline() -> None:
    detection = "selection:\n    Provider_Name: Microsoft-Windows-Sysmon\ncondition: selection"
    found = by_validator(validate_text(good_rule(detection=detection)))
    assert "sigmahq_category_windows_provider_name" in found


def test_metadata_findings_point_at_their_key() -> None:
    text = good_rule(title="whoami", description="Short")
    found = by_validator(validate_text(text))
    lines = text.splitlines()
    assert lines[found["sigmahq_title_case"].line - 1].startswith("title:")
    assert lines[found["sigmahq_description_length"].line - 1].startswith("description:")


@pytest.mark.parametrize(("length", "flagged"), [(110, False), (111, True), (121, True)])
def test_titles_over_110_characters_are_flagged_as_sigmahq_conventions_say(
    length: int, flagged: bool
) -> None:
    title = ("Suspicious Whoami Execution From An Unusual Parent Process " * 3)[:length].strip()
    title = title.ljust(length, "X")
    found = by_validator(validate_text(good_rule(title=title)))
    assert ("sigmahq_title_length" in found) is flagged


def test_missing_key_has_no_line() -> None:
    found = by_validator(validate_text(good_rule(author=None)))
    assert found["sigmahq_author_existence"].line is None


def test_file_name_checks_use_the_source_path() -> None:
    assert "sigmahq_filename_prefix" in by_validator(validate_text(good_rule(), "rules/Bad.yml"))
    assert "sigmahq_filename_prefix" not in by_validator(validate_text(good_rule()))


def test_findings_serialise_with_the_api_keys() -> None:
    found = validate_text(good_rule(level=None))[0]
    assert set(found.to_dict()) == {"validator", "severity", "message", "line"}


def test_validation_never_opens_a_socket_in_a_fresh_process(tmp_path: Path) -> None:
    """First use of every loader (SigmaHQ data, ATT&CK) happens offline, from a cold start."""
    (tmp_path / "rule.yml").write_text(good_rule(tags=["attack.t9999"], level=None))
    script = f"""
import os, sys
def refuse(event, args):
    # Audit events fire for every socket use, whatever library opens it.
    if event.startswith("socket."):
        print("socket opened:", event, file=sys.stderr)
        os._exit(3)
sys.addaudithook(refuse)
sys.path.insert(0, {str(REPO)!r})
from rules.validate import validate_text
found = validate_text(open({str(tmp_path / "rule.yml")!r}).read(), "proc_creation_win_x_y.yml")
print(sorted({{f.validator for f in found}}))
"""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "attacktag" in done.stdout and "sigmahq_level_existence" in done.stdout
    # No disk cache was written under $HOME either.
    assert not (tmp_path / ".cache").exists()


@pytest.mark.corpus
def test_corpus_totals_equal_pysigmas_own_run(corpus_rule_files: list[Path]) -> None:
    """Our per-rule run gives the same counts per validator as pySigma's SigmaValidator over
    the same files (a SigmaCollection, as ``sigma check`` runs them)."""
    ours: Counter[str] = Counter()
    for path in corpus_rule_files:
        text = path.read_text(encoding="utf-8")
        ours.update(f.validator for f in validate_text(text, str(path)))
    classes = {**core_validators, **sigmahq_validators}
    collection = list(SigmaCollection.load_ruleset([str(p) for p in corpus_rule_files]))
    theirs: Counter[str] = Counter()
    for name in validator_names():
        # One validator per run: each issue is then known to come from that validator.
        issues = SigmaValidator({classes[name]}).validate_rules(iter(collection))
        if issues:
            theirs[name] = len(issues)
    assert ours == theirs


@pytest.mark.parametrize(
    "selection",
    [
        "CommandLine|contains:\n        - 'Whoami'\n        - 'whoami'\n        - 'WHOAMI'",
        "CommandLine|contains|cased:\n        - 'Whoami'\n        - 'whoami'\n        - 'Whoami'",
        "CommandLine|re:\n        - 'a.*'\n        - 'A.*'",
        "CommandLine:\n        - 'x'\n        - 'y'",
    ],
)
def test_duplicate_values_are_found_as_sigmahqs_own_check_finds_them(selection: str) -> None:
    """rules.validate swaps in a faster duplicate-value check: the same issues, same order."""
    text = good_rule(detection=f"selection:\n    {selection}\ncondition: selection")
    ours = [
        f.message for f in validate_text(text) if f.validator == "sigmahq_field_duplicate_value"
    ]
    rule = SigmaCollection.from_yaml(text).rules[0]
    cls = sigmahq_validators["sigmahq_field_duplicate_value"]
    theirs = SigmaValidator({cls}).validate_rules(iter([rule]))
    assert len(ours) == len(theirs)
    values = [i.value for i in theirs]  # type: ignore[attr-defined]
    assert values == [m.rsplit("value=", 1)[1] for m in ours]


def test_dangling_references_are_found_and_conditions_left_as_they_were() -> None:
    """Both dangling checks share one parse of each condition, only while validating."""
    from sigma.rule import SigmaRule

    from rules.validate import validate_rule

    text = good_rule(
        detection="selection:\n    Image|endswith: '\\whoami.exe'\n"
        "unused:\n    User: 'x'\ncondition: selection or 1 of missing_*"
    )
    rule = SigmaRule.from_yaml(text)
    found = by_validator(validate_rule(rule, text))
    assert "detection_name=unused" in found["dangling_detection"].message
    assert "condition_name=missing_*" in found["dangling_condition"].message
    assert all("parse" not in vars(c) for c in rule.detection.parsed_condition)
