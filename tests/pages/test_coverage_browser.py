"""/coverage/ in a real browser (issue 14): pick a telemetry profile from the catalog's own
list and see the ATT&CK matrix change; then browse the site as that telemetry."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pages.test_browser import browser, new_page, shot, site  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def _matrix_cells(page: Any) -> dict[str, str]:
    cells = page.locator("#matrix li[data-technique]")
    return {
        cells.nth(i).get_attribute("data-technique"): cells.nth(i).inner_text()
        for i in range(cells.count())
    }


def test_picking_a_profile_changes_the_matrix(browser: Any, site: str) -> None:  # noqa: F811
    page, errors = new_page(browser)
    page.goto(site + "/coverage/")
    assert page.locator("h1").inner_text() == "Coverage for my telemetry"
    assert page.locator("#matrix").count() == 0  # nothing picked yet

    page.get_by_label("PowerShell 4104", exact=True).check()
    page.get_by_role("button", name="Show coverage").click()
    page.wait_for_url("**/coverage/?p=*")
    firable = int(page.locator("#firable-count").inner_text())
    assert firable == 4  # the example catalog's four ps_script rules
    powershell_only = _matrix_cells(page)
    assert any("lost" in text for text in powershell_only.values())
    shot(page, "coverage-powershell")

    page.get_by_label("Sysmon 1", exact=True).check()
    page.get_by_role("button", name="Show coverage").click()
    page.wait_for_function("Number(document.querySelector('#firable-count').textContent) > 4")
    with_sysmon = _matrix_cells(page)
    assert with_sysmon != powershell_only
    assert sum("lost" in t for t in with_sysmon.values()) < sum(
        "lost" in t for t in powershell_only.values()
    )

    page.get_by_role("button", name="Browse the catalog as this telemetry").click()
    page.goto(site + "/rules/")
    banner = page.get_by_role("region", name="Telemetry profile")
    assert "rules can fire" in banner.inner_text()
    banner.get_by_role("link", name="Rules that can fire").click()
    assert page.locator("ol.rule-list li.rule-item").count() >= 5
    shot(page, "coverage-banner")
    assert not errors, errors
