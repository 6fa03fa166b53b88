"""Logsource taxonomy: logsource -> event sources, and event -> logsources for scoping."""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from rules.taxonomy import (
    EventSource,
    event_sources,
    is_scopable,
    logsource_matches,
    logsources_for_event,
    requirement_for,
)
from tests.factories import corpus_documents

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / ".." / "shared"
CORPUS = SHARED / "corpus" / "sigmahq"
SHIPPED_CSV = REPO_ROOT / "rules" / "data" / "logsource_events.csv"

POWERSHELL_4104 = {
    "Channel": "Microsoft-Windows-PowerShell/Operational",
    "Provider_Name": "Microsoft-Windows-PowerShell",
    "EventID": 4104,
}
SYSMON_1 = {
    "Channel": "Microsoft-Windows-Sysmon/Operational",
    "Provider_Name": "Microsoft-Windows-Sysmon",
    "EventID": 1,
}

# Logsources used by the SigmaHQ corpus for which the CSV names no provider, channel or event
# ID, so the "Event coverage" table is empty. Each group says why.
UNCOVERED_LOGSOURCES: frozenset[tuple[str, str, str]] = frozenset(
    {
        # Product-only rules: they apply to every log of the product, no single source.
        ("linux", "", ""),
        ("windows", "", ""),
        ("qualys", "", ""),
        # macOS categories: the Sigma taxonomy defines no event source for them.
        ("macos", "file_event", ""),
        ("macos", "process_creation", ""),
        # Linux services read from syslog-style files the taxonomy does not name.
        ("linux", "", "clamav"),
        ("linux", "", "cron"),
        ("linux", "", "guacamole"),
        ("linux", "", "sshd"),
        ("linux", "", "sudo"),
        ("linux", "", "syslog"),
        ("linux", "", "vsftpd"),
        # Product-independent categories fed by network devices, proxies, AV, databases.
        ("", "antivirus", ""),
        ("", "database", ""),
        ("", "dns", ""),
        ("", "firewall", ""),
        ("", "proxy", ""),
        ("", "webserver", ""),
        ("", "", "apache"),
        ("", "", "netflow"),
        ("", "", "nginx"),
        # Cloud, SaaS and identity audit logs (JSON APIs, not event logs).
        ("aws", "", "cloudtrail"),
        ("azure", "", "activitylogs"),
        ("azure", "", "auditlogs"),
        ("azure", "", "pim"),
        ("azure", "", "riskdetection"),
        ("azure", "", "signinlogs"),
        ("bitbucket", "", "audit"),
        ("gcp", "", "gcp.audit"),
        ("gcp", "", "google_workspace.admin"),
        ("gcp", "", "google_workspace.login"),
        ("github", "", "audit"),
        ("kubernetes", "", "audit"),
        ("kubernetes", "application", "audit"),
        ("m365", "", "audit"),
        ("m365", "", "exchange"),
        ("m365", "", "threat_detection"),
        ("m365", "", "threat_management"),
        ("okta", "", "okta"),
        ("onelogin", "", "onelogin.events"),
        # Network appliances and sensors.
        ("cisco", "", "aaa"),
        ("cisco", "", "bgp"),
        ("cisco", "", "duo"),
        ("cisco", "", "ldp"),
        ("cisco", "", "syslog"),
        ("fortigate", "", "event"),
        ("fortios", "", "sslvpnd"),
        ("huawei", "", "bgp"),
        ("juniper", "", "bgp"),
        ("paloalto", "appliance", "globalprotect"),
        ("paloalto", "file_event", "globalprotect"),
        ("zeek", "", "dce_rpc"),
        ("zeek", "", "dns"),
        ("zeek", "", "http"),
        ("zeek", "", "kerberos"),
        ("zeek", "", "rdp"),
        ("zeek", "", "smb_files"),
        ("zeek", "", "x509"),
        # Application logs (framework error logs, honeypots, RPC firewall).
        ("django", "application", ""),
        ("jvm", "application", ""),
        ("nodejs", "application", ""),
        ("opencanary", "application", ""),
        ("python", "application", ""),
        ("rpc_firewall", "application", ""),
        ("ruby_on_rails", "application", ""),
        ("spring", "application", ""),
        ("sql", "application", ""),
        ("velocity", "application", ""),
    }
)


@cache
def corpus_logsources() -> Counter[tuple[str, str, str]]:
    """(product, category, service) of every corpus rule, lower-cased, with counts."""
    found: Counter[tuple[str, str, str]] = Counter()
    for doc in corpus_documents():
        logsource = doc.get("logsource")
        if isinstance(logsource, dict):
            product, category, service = (
                str(logsource.get(k) or "").lower() for k in ("product", "category", "service")
            )
            found[(product, category, service)] += 1
    return found


def shown(sources: list[EventSource]) -> list[tuple[str, str, str]]:
    """What the rule page's "Event coverage" table prints."""
    return [(s.provider_display, s.event_label, s.display_title) for s in sources]


# --- logsource -> event sources ------------------------------------------------------------


def test_ps_script_is_script_block_4104() -> None:
    assert shown(event_sources("windows", "ps_script", "")) == [
        (
            "PowerShell",
            "Event ID 4104",
            "Creating Scriptblock text (MessageNumber of MessageTotal).",
        ),
        (
            "PowerShell Core",
            "Event ID 4104",
            "Creating Scriptblock text (MessageNumber of MessageTotal).",
        ),
    ]
    first = event_sources("Windows", "PS_SCRIPT", None)[0]
    assert (first.provider, first.channel, first.event_id) == (
        "Microsoft-Windows-PowerShell",
        "Microsoft-Windows-PowerShell/Operational",
        4104,
    )


def test_process_creation_windows_and_linux() -> None:
    assert shown(event_sources("windows", "process_creation", "")) == [
        ("Sysmon", "Event ID 1", "Process Create"),
        ("Security", "Event ID 4688", "A new process has been created."),
    ]
    assert shown(event_sources("linux", "process_creation", "")) == [
        ("Sysmon for Linux", "Event ID 1", "Process Create")
    ]


def test_registry_categories_include_security_4657() -> None:
    ids = [(s.provider_display, s.event_id) for s in event_sources("windows", "registry_event", "")]
    assert ids == [("Sysmon", 12), ("Sysmon", 13), ("Sysmon", 14), ("Security", 4657)]


def test_service_is_whole_channel() -> None:
    [security] = event_sources("windows", "", "security")
    assert security.event_id is None
    assert security.whole_channel
    assert (security.provider_display, security.event_label) == ("Security", "All events")
    assert security.display_title == "Any event in Security"
    assert len(event_sources("windows", "", "applocker")) == 4  # one row per channel


def test_service_narrowed_to_the_rules_event_ids() -> None:
    security = event_sources("windows", "", "security", event_ids=[4625, 4624])
    assert shown(security) == [
        ("Security", "Event ID 4625", "An account failed to log on."),
        ("Security", "Event ID 4624", "An account was successfully logged on."),
    ]
    # System event IDs are unique only per provider: the rule's Provider_Name picks one.
    system = event_sources(
        "windows", "", "system", event_ids=[16], providers=["Microsoft-Windows-Kernel-General"]
    )
    assert [(s.provider, s.event_id) for s in system] == [("Microsoft-Windows-Kernel-General", 16)]
    # An ID the table does not know is still listed, in the service's channel, untitled.
    [extra] = event_sources("windows", "", "system", event_ids=[9999])
    assert (extra.channel, extra.event_id, extra.display_title) == ("System", 9999, "")


def test_services_without_channel_rows_list_their_events() -> None:
    assert [s.event_id for s in event_sources("windows", "", "smbclient-connectivity")] == [
        30803,
        30804,
        30806,
    ]


def test_combined_and_productless_logsources() -> None:
    both = event_sources("windows", "process_creation", "security")
    assert [(s.provider_display, s.event_id) for s in both] == [("Security", 4688)]
    anywhere = event_sources("", "process_creation", "")
    assert {s.provider_display for s in anywhere} == {"Sysmon", "Security", "Sysmon for Linux"}


@pytest.mark.parametrize(
    "logsource",
    [
        ("aws", "", "cloudtrail"),
        ("windows", "no_such_category", ""),
        ("macos", "process_creation", ""),
        ("windows", "", ""),
        ("", "", ""),
    ],
)
def test_unknown_logsources_have_no_sources(logsource: tuple[str, str, str]) -> None:
    assert event_sources(*logsource) == []


def test_display_titles() -> None:
    [ps_module, _] = event_sources("windows", "ps_module", "")
    assert ps_module.display_title == "Module logging (pipeline execution details)"
    titles = {
        s.event_id: s.display_title
        for s in event_sources("windows", "", "windefend", event_ids=[1116, 5013])
    }
    assert titles[1116] == (
        "Microsoft Defender Antivirus has detected malware or other potentially unwanted software."
    )
    assert titles[5013] == "Tamper Protection … a change to …."
    [ci] = event_sources("windows", "", "codeintegrity-operational", event_ids=[3001])
    assert (
        ci.display_title
        == "Code Integrity determined an unsigned kernel module … is loaded into the system."
    )
    [rdp] = event_sources("windows", "", "terminalservices-localsessionmanager", event_ids=[21])
    assert rdp.display_title == "Remote Desktop Services: Session logon succeeded."
    [untitled] = event_sources("windows", "", "application", event_ids=[1000])
    assert (untitled.event_label, untitled.display_title) == ("Event ID 1000", "")


def test_provider_display_names() -> None:
    names = {
        "ps_classic_start": "Windows PowerShell",
        "file_access": "Kernel-File (ETW)",
        "image_load": "Sysmon",
    }
    for category, expected in names.items():
        assert event_sources("windows", category, "")[0].provider_display == expected
    [system] = event_sources("windows", "", "system")
    assert system.provider_display == "System"  # no provider: named after the channel


# --- event -> logsources (sandbox scoping) -------------------------------------------------


def test_powershell_4104_event_keys() -> None:
    keys = logsources_for_event(POWERSHELL_4104)
    assert {("windows", "ps_script", ""), ("windows", "", "powershell")} <= keys
    assert ("windows", "ps_module", "") not in keys
    assert ("windows", "process_creation", "") not in keys


def test_sysmon_1_event_keys() -> None:
    keys = logsources_for_event(SYSMON_1)
    assert {("windows", "process_creation", ""), ("windows", "", "sysmon")} <= keys
    assert ("linux", "process_creation", "") not in keys


def test_event_id_forms_and_channel_case() -> None:
    expected = logsources_for_event(SYSMON_1)
    for event_id in ("1", " 1 ", {"#text": 1, "#attributes": {"Qualifiers": 0}}):
        assert logsources_for_event({**SYSMON_1, "EventID": event_id}) == expected
    assert logsources_for_event({**SYSMON_1, "Channel": SYSMON_1["Channel"].upper()}) == expected


def test_security_and_linux_events() -> None:
    process = logsources_for_event({"Channel": "Security", "EventID": 4688})
    assert {("windows", "process_creation", ""), ("windows", "", "security")} <= process
    linux = logsources_for_event({"Channel": "Linux-Sysmon/Operational", "EventID": 1})
    assert ("linux", "process_creation", "") in linux
    assert ("windows", "", "") not in linux


def test_events_without_a_channel_use_the_provider() -> None:
    kernel_file = logsources_for_event(
        {"Provider_Name": "Microsoft-Windows-Kernel-File", "EventID": 12}
    )
    assert ("windows", "file_access", "") in kernel_file
    sysmon = logsources_for_event({"Provider_Name": "Microsoft-Windows-Sysmon", "EventID": 1})
    assert ("windows", "process_creation", "") in sysmon


def test_unknown_and_empty_events() -> None:
    unknown_channel = logsources_for_event({"Channel": "Vendor-Thing/Operational", "EventID": 7})
    assert unknown_channel == {("", "", ""), ("windows", "", "")}
    assert logsources_for_event({}) == {("", "", "")}


def test_sigma_matching_semantics() -> None:
    logon = logsources_for_event({"Channel": "Security", "EventID": 4624})
    odd_security = logsources_for_event({"Channel": "Security", "EventID": 99999})
    ps = logsources_for_event(POWERSHELL_4104)
    assert logsource_matches(("windows", "", "security"), logon)
    assert logsource_matches(("windows", "", "security"), odd_security)
    assert logsource_matches(("Windows", None, "Security"), logon)
    assert logsource_matches(("windows", "", ""), ps)
    assert logsource_matches(("", "", ""), ps)
    assert logsource_matches(("", "ps_script", ""), ps)
    assert logsource_matches(("windows", "ps_script", "powershell"), ps)
    assert not logsource_matches(("windows", "process_creation", ""), ps)
    assert not logsource_matches(("windows", "ps_script", "security"), ps)
    assert not logsource_matches(("linux", "", ""), ps)


def test_event_keys_are_cached() -> None:
    """The hot path: the same event identity gives the same frozen set, no recomputation."""
    first = logsources_for_event(POWERSHELL_4104)
    assert logsources_for_event(dict(POWERSHELL_4104)) is first


def test_is_scopable() -> None:
    assert is_scopable(("windows", "ps_script", ""))
    assert is_scopable(("windows", "", "security"))
    assert is_scopable(("windows", "", ""))
    assert is_scopable(("linux", "process_creation", ""))
    assert not is_scopable(("windows", "", "smbserver-connectivity"))  # event ID only
    assert not is_scopable(("aws", "", "cloudtrail"))


# --- requirements ------------------------------------------------------------------------


def test_requirements() -> None:
    assert requirement_for("windows", "ps_script", "") == (
        "Script Block Logging must be enabled (Event ID 4104)"
    )
    assert requirement_for("windows", "ps_module", None) == (
        "Module Logging must be enabled (Event ID 4103)"
    )
    assert requirement_for("windows", "process_creation", "") == (
        "Sysmon Event ID 1 or Security 4688 with command-line auditing"
    )
    assert requirement_for("windows", "registry_set", "") == (
        "Sysmon Event ID 13 or Security 4657 with registry auditing (SACLs)"
    )
    assert requirement_for("windows", "image_load", "") == "Sysmon Event ID 7"
    assert requirement_for("linux", "process_creation", "") == "Sysmon for Linux Event ID 1"
    assert requirement_for("windows", "", "system") is None
    assert requirement_for("aws", "", "cloudtrail") is None


# --- data and corpus -----------------------------------------------------------------------


def test_shipped_csv_matches_reference() -> None:
    reference = SHARED / "reference" / "logsource_events.csv"
    if not reference.is_file():
        pytest.skip(f"reference CSV not found at {reference.resolve()} (shared folder absent)")
    assert SHIPPED_CSV.read_bytes() == reference.read_bytes()


@pytest.mark.corpus
def test_every_corpus_logsource_is_covered_or_listed() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS.resolve()} (shared folder absent)")
    used = corpus_logsources()
    covered = {key for key in used if event_sources(*key)}
    uncovered = set(used) - covered
    rules_covered = sum(used[key] for key in covered)
    print(
        f"\n{len(used)} corpus logsources: {len(covered)} with event sources "
        f"({rules_covered} of {sum(used.values())} rules), {len(uncovered)} listed as uncovered"
    )
    assert sorted(uncovered - UNCOVERED_LOGSOURCES) == [], "new logsource without event sources"
    # Keep the list honest: nothing in it may have gained event sources.
    assert sorted(UNCOVERED_LOGSOURCES & covered) == []
