"""Finding 5: any tag text an imported rule carries renders, escaped, on every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalog.services import import_rules
from tests.factories import rule_yaml

RULE_ID = "0e6a7c1b-5d2f-4a8e-9b3c-1f2e3d4c5b6a"
ODD_TAGS = [
    "attack.defense/evasion",
    "attack.",
    "attack.t1059/001",
    "attack.<script>alert(1)</script>",
    "attack.a b",
    "attack.%2F..%2F",
    "attack.?x=1#y",
    "attack.\u00e9v\u00e9nement",
    "cve.2021/44228",
    "weird/namespace.x",
    "detection.emerging/threats",
]


@pytest.fixture
def odd_rule(db: None, tmp_path: Path) -> None:
    text = rule_yaml(
        title="Odd tags",
        id=RULE_ID,
        status="test",
        tags=[f"'{t}'" for t in ODD_TAGS],
        logsource={"product": "windows", "category": "process_creation"},
        detection="sel:\n    Image|endswith: '\\odd.exe'\ncondition: sel",
        level="low",
    )
    (tmp_path / "odd.yml").write_text(text)
    report = import_rules([str(tmp_path)])
    assert report.created == 1, report.errors


PAGES = [
    "/",
    "/attack/",
    "/attack/?covered=1",
    "/attack/tactic/defense-evasion/",
    "/attack/tactic/defense%2Fevasion/",
    "/rules/",
    f"/rules/{RULE_ID}/",
    "/rules/?tactic=defense/evasion",
    "/rules/?tag=attack.defense/evasion",
    "/rules/?namespace=weird/namespace",
    "/rules/?technique=T1059/001",
    "/events/",
    "/api/attack/",
    "/api/attack/layer.json",
    f"/api/rules/{RULE_ID}/",
    "/api/rules/?tactic=defense/evasion",
]


@pytest.mark.parametrize("url", PAGES)
def test_odd_tags_render_on_every_page(client: Any, odd_rule: None, url: str) -> None:
    response = client.get(url)
    assert response.status_code < 500, (url, response.content[:500])
    if response["Content-Type"].startswith("text/html"):
        assert b"<script>alert(1)</script>" not in response.content


def test_the_matrix_lists_an_odd_tactic_escaped(client: Any, odd_rule: None) -> None:
    text = client.get("/attack/").content.decode()
    assert "defense/evasion" in text
    assert "&lt;script&gt;" in text or "script" not in text.split("legacy")[-1]
