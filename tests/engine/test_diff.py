"""The semantic diff between two revisions of a rule (rules.diff), without a database."""

from __future__ import annotations

import json

from rules.diff import (
    DETECTION,
    METADATA,
    TUNING,
    UNCHANGED,
    RuleSnapshot,
    diff_rules,
    side_by_side,
    snapshot_of,
)
from rules.parse import parse_rule
from tests.factories import SEED_DETECTION, WINDOWS_PROCESS_CREATION, rule_yaml

RULE_ID = "0c4b2c4e-6f0f-4a47-9a57-5a7f3d0e8b11"


def snapshot(detection: str = SEED_DETECTION, **fields: object) -> RuleSnapshot:
    values: dict[str, object] = {
        "title": "Diff test rule",
        "id": RULE_ID,
        "status": "test",
        "logsource": {"product": "windows", "service": "powershell"},
        "detection": detection,
        "level": "low",
        "tags": ["attack.t1571"],
    }
    values.update(fields)
    return snapshot_of(parse_rule(rule_yaml(**values), "rule.yml"))


def values(items: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(i.field, i.kind, i.value) for i in items]


def test_identical_revisions_are_unchanged() -> None:
    diff = diff_rules(snapshot(), snapshot())
    assert diff.change_class == UNCHANGED
    assert diff.fields == []
    assert not diff.changed


def test_metadata_only_changes_are_metadata() -> None:
    diff = diff_rules(snapshot(), snapshot(level="high", status="stable", title="Renamed"))
    assert diff.change_class == METADATA
    assert diff.field_names == ["title", "status", "level"]
    assert (diff.fields[2].old, diff.fields[2].new) == ("low", "high")
    assert not (diff.indicators_added or diff.indicators_removed)


def test_tags_and_references_are_metadata() -> None:
    diff = diff_rules(snapshot(), snapshot(tags=["attack.t1571", "attack.execution"]))
    assert diff.change_class == METADATA
    assert diff.field_names == ["tags"]


def test_a_new_exclusion_value_is_tuning() -> None:
    tuned = SEED_DETECTION.replace("        - ' 80 '\n", "        - ' 80 '\n        - ' 8080 '\n")
    diff = diff_rules(snapshot(), snapshot(tuned))
    assert diff.change_class == TUNING
    assert diff.field_names == ["detection"]
    assert values(diff.exclusions_added) == [("ScriptBlockText", "contains", " 8080 ")]
    assert diff.exclusions_removed == []
    assert diff.indicators_added == diff.indicators_removed == []


def test_a_new_filter_identifier_in_the_condition_is_tuning() -> None:
    tuned = SEED_DETECTION.replace(
        "condition: selection and not filter",
        "filter_admin:\n    User: admin\ncondition: selection and not filter and not filter_admin",
    )
    diff = diff_rules(snapshot(), snapshot(tuned))
    assert diff.change_class == TUNING
    assert set(diff.field_names) == {"condition", "detection"}
    assert values(diff.exclusions_added) == [("User", "equals", "admin")]


def test_dropping_every_exclusion_is_tuning() -> None:
    plain = "selection:\n    ScriptBlockText|contains|all:\n        - Test-NetConnection\n"
    plain += "        - '-ComputerName '\n        - '-port '\ncondition: selection\n"
    diff = diff_rules(snapshot(), snapshot(plain))
    assert diff.change_class == TUNING
    assert values(diff.exclusions_removed) == [
        ("ScriptBlockText", "contains", " 443 "),
        ("ScriptBlockText", "contains", " 80 "),
    ]


def test_a_new_indicator_is_a_detection_change() -> None:
    changed = SEED_DETECTION.replace("- '-port '\n", "- '-port '\n        - '-Verb'\n")
    diff = diff_rules(snapshot(), snapshot(changed))
    assert diff.change_class == DETECTION
    assert values(diff.indicators_added) == [("ScriptBlockText", "contains", "-Verb")]
    assert diff.indicators_removed == []


def test_a_changed_modifier_is_a_detection_change() -> None:
    changed = SEED_DETECTION.replace("ScriptBlockText|contains|all:", "ScriptBlockText|contains:")
    diff = diff_rules(snapshot(), snapshot(changed))
    # The same (field, kind, value) identities, but |all dropped: what matches changed.
    assert diff.indicators_added == diff.indicators_removed == []
    assert diff.change_class == DETECTION


def test_a_logsource_change_is_a_detection_change() -> None:
    diff = diff_rules(snapshot(), snapshot(logsource=WINDOWS_PROCESS_CREATION))
    assert diff.change_class == DETECTION
    assert diff.field_names == ["logsource"]


def test_a_condition_change_is_a_detection_change() -> None:
    changed = SEED_DETECTION.replace("selection and not filter", "selection or not filter")
    diff = diff_rules(snapshot(), snapshot(changed))
    assert diff.change_class == DETECTION
    assert "condition" in diff.field_names


def test_predicates_are_compared_by_identity_not_case() -> None:
    recased = SEED_DETECTION.replace("Test-NetConnection", "test-netconnection")
    diff = diff_rules(snapshot(), snapshot(recased))
    # contains is case-insensitive: the identity (casefolded value) is unchanged.
    assert diff.indicators_added == diff.indicators_removed == []
    assert diff.field_names == ["detection"]


def test_regex_values_keep_their_case_in_the_identity() -> None:
    before = "sel:\n    CommandLine|re: 'abc'\ncondition: sel"
    after = "sel:\n    CommandLine|re: 'ABC'\ncondition: sel"
    diff = diff_rules(snapshot(before), snapshot(after))
    assert values(diff.indicators_added) == [("CommandLine", "re", "ABC")]
    assert values(diff.indicators_removed) == [("CommandLine", "re", "abc")]


def test_indicator_diff_is_the_set_difference_of_identities() -> None:
    old = snapshot("sel:\n    Image|endswith:\n        - a.exe\n        - b.exe\ncondition: sel")
    new = snapshot("sel:\n    Image|endswith:\n        - b.exe\n        - c.exe\ncondition: sel")
    diff = diff_rules(old, new)
    old_ids = {i.identity for i in old.indicators}
    new_ids = {i.identity for i in new.indicators}
    assert {i.identity for i in diff.indicators_added} == new_ids - old_ids
    assert {i.identity for i in diff.indicators_removed} == old_ids - new_ids


def test_snapshot_round_trips_through_json() -> None:
    original = snapshot(
        "sel:\n    EventID: 0x10\n    Count|gt: 1.50\n    When: null\ncondition: sel",
        references=["https://example.org"],
        related=None,
    )
    restored = RuleSnapshot.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored == original
    assert diff_rules(original, restored).change_class == UNCHANGED


def test_to_dict_has_the_changes_api_shape() -> None:
    changed = SEED_DETECTION.replace("- '-port '\n", "- '-port '\n        - '-Verb'\n")
    shape = diff_rules(snapshot(), snapshot(changed, level="high")).to_dict()
    assert shape == {
        "class": DETECTION,
        "fields": ["level", "detection"],
        "indicators_added": [{"field": "ScriptBlockText", "kind": "contains", "value": "-Verb"}],
        "indicators_removed": [],
        "exclusions_added": [],
        "exclusions_removed": [],
    }


def test_side_by_side_aligns_changed_lines() -> None:
    rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(r.tag, r.old_number, r.new_number) for r in rows] == [
        ("equal", 1, 1),
        ("replace", 2, 2),
        ("equal", 3, 3),
        ("insert", None, 4),
    ]
    assert (rows[1].old_text, rows[1].new_text) == ("b", "B")


def test_side_by_side_marks_deleted_lines() -> None:
    rows = side_by_side("a\nb\nc\n", "a\nc\n")
    assert [(r.tag, r.old_number, r.new_number) for r in rows] == [
        ("equal", 1, 1),
        ("delete", 2, None),
        ("equal", 3, 2),
    ]
