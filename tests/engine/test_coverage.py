"""rules.coverage: which rules can fire with a telemetry profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rules.coverage import (
    MAX_PROFILE_ITEMS,
    Profile,
    ProfileError,
    RuleNeeds,
    coverage,
    profile_from_events,
    rule_needs,
)
from rules.events import event_from_mapping, load_events_file
from rules.model import ParsedRule
from rules.parse import parse_rule
from rules.regression import replay

PS_SCRIPT = ("windows", "ps_script", "")
PROC = ("windows", "process_creation", "")
SCRIPT = [("ScriptBlockText", "contains", "Invoke-Mimikatz")]
IMAGE = [("Image", "endswith", "\\whoami.exe")]


def needs(rule_id: str, logsource: tuple[str, str, str], indicators: Any = ()) -> RuleNeeds:
    return rule_needs(rule_id, rule_id, logsource, list(indicators), ["T1059.001"])


def profile(**data: Any) -> Profile:
    return Profile.from_dict(data)


def sysmon(event_id: int, **fields: str) -> Any:
    return event_from_mapping(
        {
            "Event": {
                "System": {
                    "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                    "EventID": event_id,
                    "Channel": "Microsoft-Windows-Sysmon/Operational",
                },
                "EventData": fields,
            }
        }  # fmt: skip
    )


def test_powershell_4104_fires_ps_script_rules_only() -> None:
    rules = [needs("ps", PS_SCRIPT, SCRIPT), needs("proc", PROC, IMAGE)]
    picked = profile(event_sources=[{"provider": "Microsoft-Windows-PowerShell", "event_id": 4104}])
    result = coverage(picked, rules)
    assert result.firable == ("ps",)
    (blocked,) = result.blocked
    assert blocked.id == "proc" and blocked.reasons[0].startswith("missing event source: Sysmon 1")


def test_a_provider_matches_by_short_name_and_every_event() -> None:
    rules = [needs("ps", PS_SCRIPT, SCRIPT), needs("proc", PROC, IMAGE)]
    assert coverage(profile(event_sources=[{"provider": "PowerShell", "event_id": 4104}]),
                    rules).firable == ("ps",)  # fmt: skip
    everything = profile(event_sources=[{"provider": "sysmon", "event_id": None}])
    assert coverage(everything, rules).firable == ("proc",)


def test_a_rule_selecting_event_ids_needs_those_events() -> None:
    security = ("windows", "", "security")
    rule = needs("logon", security, [("EventID", "equals", "4625")])
    assert coverage(profile(event_sources=[{"provider": "Security", "event_id": 4625}]),
                    [rule]).firable == ("logon",)  # fmt: skip
    assert not coverage(profile(event_sources=[{"provider": "Security", "event_id": 4624}]),
                        [rule]).firable  # fmt: skip


def test_logsources_cover_rules_of_any_part_left_out() -> None:
    rules = [
        needs("lin", ("linux", "process_creation", "")),
        needs("aws", ("aws", "", "cloudtrail")),
    ]
    assert coverage(profile(logsources=[{"product": "linux"}]), rules).firable == ("lin",)
    assert coverage(profile(logsources=[{"service": "cloudtrail"}]), rules).firable == ("aws",)
    assert not coverage(profile(logsources=[{"product": "linux", "category": "file_event"}]),
                        rules).firable  # fmt: skip


def test_fields_the_events_never_carry_block_a_rule() -> None:
    rule = needs("proc", PROC, [*IMAGE, ("OriginalFileName", "equals", "whoami.exe")])
    seen = profile_from_events([sysmon(1, Image="C:\\Windows\\System32\\whoami.exe")])
    result = coverage(seen, [rule])
    assert result.blocked[0].reasons == ("fields never seen: OriginalFileName",)
    assert result.counts["missing_fields"] == 1


def test_profile_from_events_detects_sources_and_fields() -> None:
    seen = profile_from_events([sysmon(1, Image="x"), sysmon(1, Image="y"), sysmon(11)])
    assert [(p.provider, p.event_id) for p in seen.event_sources] == [
        ("Microsoft-Windows-Sysmon", 1), ("Microsoft-Windows-Sysmon", 11),
    ]  # fmt: skip
    assert seen.fields is not None and "Image" in seen.fields


def test_lost_techniques_and_counts() -> None:
    rules = [needs("ps", PS_SCRIPT, SCRIPT), needs("proc", PROC, IMAGE)]
    rules[1] = RuleNeeds("proc", "proc", PROC, rules[1].sources, rules[1].fields, ("T1033",))
    result = coverage(profile(event_sources=[{"provider": "PowerShell", "event_id": 4104}]), rules)
    assert result.lost == ["T1033"]
    assert result.counts["techniques_lost"] == 1 and result.counts["firable"] == 1


def test_profile_round_trips() -> None:
    original = profile(
        event_sources=[{"provider": "Sysmon", "event_id": 1}, {"provider": "Security"}],
        logsources=[{"product": "linux", "category": "process_creation"}],
        fields=["Image"],
    )
    assert Profile.from_dict(original.to_dict()) == original


@pytest.mark.parametrize(
    ("document", "parameter"),
    [
        ([], "profile"),
        ({"bogus": []}, "bogus"),
        ({"event_sources": "Sysmon"}, "event_sources"),
        ({"event_sources": [{"event_id": 1}]}, "event_sources"),
        ({"event_sources": [{"provider": "Sysmon", "event_id": "one"}]}, "event_sources"),
        ({"event_sources": [{"provider": "x" * 300}]}, "event_sources"),
        ({"logsources": [{}]}, "logsources"),
        ({"logsources": [{"product": "win\x00dows"}]}, "logsources"),
        ({"fields": [{"a": 1}]}, "fields"),
        ({"fields": ["f"] * (MAX_PROFILE_ITEMS + 1)}, "fields"),
    ],
)
def test_malformed_profiles_are_refused(document: Any, parameter: str) -> None:
    with pytest.raises(ProfileError) as refused:
        Profile.from_dict(document)
    assert refused.value.parameter == parameter


def _corpus_needs(rules: list[ParsedRule]) -> list[RuleNeeds]:
    return [
        rule_needs(
            r.id,
            r.title,
            (r.logsource.product, r.logsource.category, r.logsource.service),
            [(i.field, i.kind, i.value) for i in r.indicators],
        )  # fmt: skip
        for r in rules
    ]


@pytest.mark.corpus
def test_corpus_powershell_4104_is_exactly_the_ps_script_rules(
    corpus_rule_files: list[Path],
) -> None:
    rules = [parse_rule(p.read_bytes(), str(p)) for p in corpus_rule_files]
    picked = profile(event_sources=[{"provider": "Microsoft-Windows-PowerShell", "event_id": 4104}])
    firable = set(coverage(picked, _corpus_needs(rules)).firable)
    assert firable == {r.id for r in rules if r.logsource.category == "ps_script"}


@pytest.mark.corpus
def test_corpus_a_rules_regression_events_make_it_firable(
    corpus: Path, corpus_rule_files: list[Path]
) -> None:
    rules = [parse_rule(p.read_bytes(), str(p)) for p in corpus_rule_files]
    all_needs = _corpus_needs(rules)
    checked = 0
    for rule, path in zip(rules, corpus_rule_files, strict=True):
        outcome = replay(rule, str(path))
        if outcome is None or not outcome.tested:
            continue
        events = [e for t in outcome.tests for e in load_events_file(str(corpus / t.path))]
        assert rule.id in coverage(profile_from_events(events), all_needs).firable, rule.id
        checked += 1
    assert checked == 96
