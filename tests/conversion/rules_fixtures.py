# ruff: noqa: E501 - rule texts are quoted verbatim
"""Sigma rules the conversion tests convert (no corpus needed)."""

from __future__ import annotations

import textwrap

from tests.factories import SEED_DETECTION, WINDOWS_PROCESS_CREATION, rule_yaml

SEED_ID = "adf876b3-f1f8-4aa9-a4e4-a64106feec06"

# SigmaHQ rules/windows/powershell/powershell_script/posh_ps_test_netconnection.yml (DRL 1.1);
# the detection is the one the engine tests use (tests.factories.SEED_DETECTION).
SEED_YAML = (
    """\
title: Testing Usage of Uncommonly Used Port
id: adf876b3-f1f8-4aa9-a4e4-a64106feec06
status: test
description: |
    Adversaries may communicate using a protocol and port paring that are typically not associated.
    For example, HTTPS over port 8088(Citation: Symantec Elfin Mar 2019) or port 587(Citation: Fortinet Agent Tesla April 2018) as opposed to the traditional port 443.
references:
    - https://github.com/redcanaryco/atomic-red-team/blob/f339e7da7d05f6057fdfcdd3742bfcf365fee2a9/atomics/T1571/T1571.md#atomic-test-1---testing-usage-of-uncommonly-used-port-with-powershell
    - https://learn.microsoft.com/en-us/powershell/module/nettcpip/test-netconnection?view=windowsserver2022-ps
author: frack113
date: 2022-01-23
tags:
    - attack.command-and-control
    - attack.t1571
logsource:
    product: windows
    category: ps_script
    definition: 'Requirements: Script Block Logging must be enabled'
detection:
"""
    + textwrap.indent(SEED_DETECTION.strip("\n"), "    ")
    + """
falsepositives:
    - Legitimate administrative script
level: medium
"""
)

PROCESS_ID = "5f3c1f1e-0000-4000-8000-000000000001"
PROCESS_YAML = rule_yaml(
    title="Whoami Execution",
    id=PROCESS_ID,
    status="test",
    description="Whoami run from a command line.",
    author="test",
    date="2024-01-01",
    tags=["attack.discovery", "attack.t1033"],
    logsource=WINDOWS_PROCESS_CREATION,
    detection="""
selection:
    Image|endswith: '\\\\whoami.exe'
    CommandLine|contains: '/all'
condition: selection
""",
    level="high",
)

PLACEHOLDER_ID = "5f3c1f1e-0000-4000-8000-000000000002"
PLACEHOLDER_YAML = rule_yaml(
    title="Admin Logon From Unknown Workstation",
    id=PLACEHOLDER_ID,
    status="test",
    description="Uses an |expand placeholder that needs a pipeline.",
    author="test",
    date="2024-01-01",
    logsource={"product": "windows", "service": "security"},
    detection="""
selection:
    EventID: 4624
    TargetUserName|expand: '%Administrators%'
condition: selection
""",
    level="low",
)

FIELDREF_ID = "5f3c1f1e-0000-4000-8000-000000000003"
FIELDREF_YAML = rule_yaml(
    title="Process Image Equals Parent Image",
    id=FIELDREF_ID,
    status="test",
    description="Field reference, unsupported by the Lucene backends.",
    author="test",
    date="2024-01-01",
    logsource=WINDOWS_PROCESS_CREATION,
    detection="selection:\n    Image|fieldref: ParentImage\ncondition: selection",
    level="low",
)

MULTI_YAML = rule_yaml(
    title="Two Conditions",
    id="5f3c1f1e-0000-4000-8000-000000000004",
    logsource=WINDOWS_PROCESS_CREATION,
    detection="""
a:
    Image|endswith: '\\\\a.exe'
b:
    Image|endswith: '\\\\b.exe'
condition:
    - a
    - b
""",
    level="low",
)
