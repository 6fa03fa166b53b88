"""rules.regression: replaying SigmaHQ regression samples through the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.evaluate import Evaluator
from rules.events import load_events_file
from rules.parse import parse_rule
from rules.regression import declared_path, replay
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml, write_regression_sample

RULE_ID = "5a1c2d3e-0000-4000-8000-0000000000aa"
NAME = "windows/proc_creation_win_whoami"
DATA = f"regression_data/rules/{NAME}"


def sysmon_event(image: str, event_id: int = 1) -> dict[str, Any]:
    """One Sysmon event in evtx_dump JSON shape, as SigmaHQ's regression files hold them."""
    return {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                "EventID": event_id,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
            },
            "EventData": {"Image": image, "CommandLine": image},
        }
    }


def whoami_rule(regression_path: str | None = f"{DATA}/info.yml") -> str:
    return rule_yaml(
        title="Whoami Execution",
        id=RULE_ID,
        logsource=WINDOWS_PROCESS_CREATION,
        detection="selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection",
        level="low",
        regression_tests_path=regression_path,
    )


def write_corpus(
    root: Path,
    events: list[dict[str, Any]],
    *,
    match_count: int | None = None,
    rule_text: str | None = None,
) -> Path:
    """A SigmaHQ-shaped folder: rules/…/x.yml and regression_data/…/{info.yml, <id>.json}
    (``match_count`` None: the test states none, so at least one match is expected)."""
    declared = write_regression_sample(root, NAME, RULE_ID, "Whoami Execution", events)
    info_file = root / declared
    info = yaml.safe_load(info_file.read_text())
    test = info["regression_tests_info"][0]
    test.pop("match_count")
    if match_count is not None:
        test["match_count"] = match_count
    info_file.write_text(yaml.safe_dump(info))
    rule_file = root / "rules" / "windows" / "proc_creation_win_whoami.yml"
    rule_file.parent.mkdir(parents=True)
    rule_file.write_text(rule_text or whoami_rule(declared))
    return rule_file


def replayed(rule_file: Path):  # type: ignore[no-untyped-def]
    return replay(parse_rule(rule_file.read_bytes(), str(rule_file)), str(rule_file))


def test_no_declared_path_means_no_replay(tmp_path: Path) -> None:
    rule = parse_rule(whoami_rule(None).encode())
    assert declared_path(rule.document) is None
    assert replay(rule, str(tmp_path / "x.yml")) is None


def test_a_matching_sample_passes(tmp_path: Path) -> None:
    events = [sysmon_event("C:\\Windows\\System32\\whoami.exe")]
    outcome = replayed(write_corpus(tmp_path, events))
    assert outcome is not None
    assert (outcome.tested, outcome.passed, outcome.samples, outcome.matches) == (True, True, 1, 1)
    assert outcome.provider == "Microsoft-Windows-Sysmon"
    # The JSON is kept for "Replay in sandbox".
    assert json.loads(outcome.sample_json) == events[0]
    assert outcome.tests[0].expected is None


def test_match_count_is_exact(tmp_path: Path) -> None:
    events = [sysmon_event("C:\\Windows\\System32\\whoami.exe") for _ in range(3)]
    outcome = replayed(write_corpus(tmp_path, events, match_count=1))
    assert outcome is not None and outcome.tested
    assert outcome.matches == 3
    assert not outcome.passed
    assert outcome.to_dict()["tests"][0]["expected"] == 1


def test_a_sample_that_does_not_match_fails(tmp_path: Path) -> None:
    events = [sysmon_event("C:\\Windows\\explorer.exe")]
    outcome = replayed(write_corpus(tmp_path, events))
    assert outcome is not None
    assert outcome.tested and not outcome.passed and outcome.matches == 0


def test_events_outside_the_rules_logsource_do_not_count(tmp_path: Path) -> None:
    """Logsource-scoped like the sandbox: a Sysmon 11 (file event) is not a process start."""
    events = [sysmon_event("C:\\Windows\\System32\\whoami.exe", event_id=11)]
    outcome = replayed(write_corpus(tmp_path, events))
    assert outcome is not None and outcome.matches == 0


def test_missing_data_is_declared_but_untested(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules" / "x.yml"
    rule_file.parent.mkdir()
    (tmp_path / "regression_data").mkdir()
    rule_file.write_text(whoami_rule())
    outcome = replayed(rule_file)
    assert outcome is not None
    assert not outcome.tested and "not in this corpus" in outcome.error


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "regression_data/../../etc/passwd", "rules/x.yml", "..\\..\\x.yml"],
)
def test_paths_outside_regression_data_are_refused(tmp_path: Path, path: str) -> None:
    events = [sysmon_event("C:\\Windows\\System32\\whoami.exe")]
    rule_file = write_corpus(tmp_path, events, rule_text=whoami_rule(path))
    outcome = replayed(rule_file)
    assert outcome is not None and not outcome.tested
    assert "must" in outcome.error


def test_a_symlink_out_of_the_corpus_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps(sysmon_event("C:\\Windows\\System32\\whoami.exe")))
    rule_file = write_corpus(tmp_path / "corpus", [])
    data = tmp_path / "corpus" / DATA / f"{RULE_ID}.json"
    data.unlink()
    data.symlink_to(outside)
    outcome = replayed(rule_file)
    assert outcome is not None
    assert outcome.tests[0].error and outcome.sample_json == ""


def test_archive_members_are_not_replayed() -> None:
    rule = parse_rule(whoami_rule().encode())
    outcome = replay(rule, "rules.zip!rules/x.yml")
    assert outcome is not None and "archive" in outcome.error


@pytest.mark.corpus
def test_corpus_outcomes_agree_with_the_engine(corpus: Path, corpus_rule_files: list[Path]) -> None:
    """Every rule with shipped regression data is tested, and its counts equal a separate
    evaluation of the same ``.evtx`` file through :class:`Evaluator`."""
    info_ids = {
        yaml.safe_load(p.read_text())["rule_metadata"][0]["id"]
        for p in (corpus / "regression_data").rglob("info.yml")
    }
    tested = set()
    for path in corpus_rule_files:
        rule = parse_rule(path.read_bytes(), str(path))
        outcome = replay(rule, str(path))
        if outcome is None or not outcome.tested:
            continue
        tested.add(rule.id)
        evaluator = Evaluator([rule])
        for test in outcome.tests:
            events = load_events_file(str(corpus / test.path))
            assert test.samples == len(events)
            assert test.matches == sum(rule.id in evaluator.match_ids(e) for e in events)
    assert tested == info_ids
