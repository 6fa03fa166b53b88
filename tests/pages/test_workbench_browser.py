"""The workbench in a real browser (Debian chromium through Playwright): open a rule, "Open in
workbench", edit it, see the findings and the overlap update live, copy the share link into
a new page and get the same draft back. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Rule
from catalog.services import import_rules
from tests.factories import (
    WINDOWS_PROCESS_CREATION,
    fresh_workbench,
    rule_yaml,
    write_rule_files,
)
from tests.pages.conftest import EXAMPLE_RULES

# ``browser``: the module-scoped Playwright fixture of the site's own browser test.
from tests.pages.test_browser import CHROMIUM, browser, new_page, shot  # noqa: F401

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
if not CHROMIUM.exists():
    pytest.skip(f"chromium not found at {CHROMIUM}", allow_module_level=True)


@pytest.fixture
def site(live_server: Any, transactional_db: None) -> Iterator[str]:
    import_rules([str(EXAMPLE_RULES)], trigger="examples")
    for _ in fresh_workbench():  # the index and samples are built from this catalog
        yield live_server.url


def without_key(text: str, key: str) -> str:
    """The YAML text without the top-level ``key`` (and its indented continuation lines)."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and line[:1] in (" ", "\t"):
            continue
        skipping = False
        kept.append(line)
    return "".join(kept)


def test_open_edit_see_findings_and_overlap_then_share(browser: Any, site: str) -> None:  # noqa: F811
    rule = Rule.objects.exclude(rule_indicators=None).order_by("title").first()
    assert rule is not None
    page, errors = new_page(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page.goto(f"{site}/rules/{rule.rule_id}/")
    page.get_by_role("link", name="Open in workbench").click()
    page.wait_for_url(re.compile(r"/workbench/\?rule="))
    editor = page.locator("#workbench-rule")
    assert editor.input_value() == rule.raw_yaml
    assert page.locator(".workbench-gutter span").count() == rule.raw_yaml.count("\n") + 1
    shot(page, "workbench-01-opened")

    # Edit: a new id (now a duplicate of the original) and no description (a SigmaHQ finding).
    new_id = str(uuid.uuid4())
    edited = rule.raw_yaml.replace(rule.rule_id, new_id)
    edited = without_key(edited, "description")
    editor.fill(edited)
    results = page.locator("#workbench-results")
    sync_api.expect(results.locator(".workbench-duplicate")).to_contain_text(rule.title)
    sync_api.expect(results.locator("#wb-findings")).to_contain_text("description")
    first = results.locator("#wb-similar tbody tr").first
    sync_api.expect(first).to_contain_text(rule.title)
    sync_api.expect(page.locator("#workbench-status")).to_contain_text("Updated")
    shot(page, "workbench-02-edited")

    # A YAML error shows inline, with its line marked in the gutter.
    editor.fill(edited.replace("detection:", "detection: [", 1))
    sync_api.expect(results.locator(".workbench-problem")).to_contain_text("Line")
    sync_api.expect(page.locator(".workbench-gutter .is-error")).to_have_count(1)
    editor.fill(edited)
    sync_api.expect(results.locator(".workbench-duplicate")).to_be_visible()

    page.get_by_role("button", name="Copy share link").click()
    sync_api.expect(page.locator("#workbench-status")).to_contain_text("Share link")
    link = page.evaluate("navigator.clipboard.readText()")
    assert "#draft=" in link and new_id not in link  # compressed, not plain text
    assert link == page.url

    other, other_errors = new_page(browser)
    other.goto(link)
    sync_api.expect(other.locator("#workbench-rule")).to_have_value(edited)
    sync_api.expect(other.locator("#workbench-results .workbench-duplicate")).to_be_visible()
    shot(other, "workbench-03-shared")
    blocked = [e for e in errors + other_errors if "Content Security Policy" in e or "Refused" in e]
    assert not blocked, blocked
    page.context.close()
    other.context.close()


def test_phone_and_dark_layouts_render(browser: Any, site: str) -> None:  # noqa: F811
    page, errors = new_page(browser, phone=True, dark=True)
    page.goto(f"{site}/workbench/")
    assert page.locator("h1").inner_text().startswith("Write or tune a rule")
    assert page.locator("#wb-findings").is_visible()
    shot(page, "workbench-04-phone-dark")
    assert not errors, errors
    page.context.close()


def _whoami_match(browser: Any, site: str, tmp_path: Path) -> tuple[Any, list[str], Any, str]:  # noqa: F811
    """A catalog rule for whoami.exe, an event it matches evaluated in the sandbox page: the
    page, its console errors, the match's card and the rule's id."""
    rule_id = str(uuid.uuid4())
    detection = "selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection"
    text = rule_yaml(
        title="Whoami run", id=rule_id, logsource=WINDOWS_PROCESS_CREATION, detection=detection
    )
    import_rules([str(write_rule_files(tmp_path, {"whoami.yml": text}))], trigger="test")
    event = {
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "EventID": 1,
        "Image": "C:\\Windows\\System32\\whoami.exe",
    }
    page, errors = new_page(browser)
    page.goto(f"{site}/sandbox/")
    page.fill("#sandbox-text", json.dumps(event))
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_selector(".sandbox-match")
    return page, errors, page.locator(".sandbox-match", has_text="Whoami run"), rule_id


def test_tune_from_a_sandbox_match(browser: Any, site: str, tmp_path: Path) -> None:  # noqa: F811
    page, errors, match, _ = _whoami_match(browser, site, tmp_path)
    match.get_by_role("button", name="Exclude this…").first.click()
    page.wait_for_url(re.compile(r"/workbench/"))
    editor = page.locator("#workbench-rule")
    sync_api.expect(editor).to_have_value(re.compile("filter_optional_workbench"))
    tune = page.locator(".workbench-tune")
    sync_api.expect(tune).to_contain_text("The excluded event no longer matches")
    shot(page, "workbench-05-tuned")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    page.context.close()


def test_a_meta_filter_from_a_sandbox_match(browser: Any, site: str, tmp_path: Path) -> None:  # noqa: F811
    page, errors, match, rule_id = _whoami_match(browser, site, tmp_path)
    match.get_by_role("button", name="As a meta filter…").first.click()
    page.wait_for_url(re.compile(r"/workbench/"))
    editor = page.locator("#workbench-rule")
    sync_api.expect(editor).to_have_value(re.compile(r"^title: Suppress Whoami run[\s\S]*filter:"))
    assert rule_id in editor.input_value()  # the filter names the rule; the rule is not copied
    assert "detection:" not in editor.input_value()
    sync_api.expect(page.locator(".workbench-tune")).to_contain_text("suppressed by the filter")
    results = page.locator("#workbench-results")
    sync_api.expect(results.locator(".workbench-filters")).to_contain_text("Whoami run")
    sync_api.expect(results.locator(".sandbox-correlations")).to_contain_text(
        "suppressed by filter"
    )
    shot(page, "workbench-06-meta-filter")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    page.context.close()


def test_a_catalog_correlation_opens_with_its_rules_and_runs_on_events(
    browser: Any,  # noqa: F811
    site: str,
) -> None:
    from tests.conftest import EXAMPLES

    import_rules([str(EXAMPLES / "correlations")], trigger="test")
    events = (EXAMPLES / "correlations" / "events.jsonl").read_text()
    page, errors = new_page(browser)
    page.goto(f"{site}/correlations/")
    page.get_by_role("link", name="Repeated Bad Password Logons for One Account").first.click()
    page.get_by_role("link", name="Open in workbench").click()
    page.wait_for_url(re.compile(r"/workbench/\?correlation="))
    page.fill("#workbench-events", events)
    page.get_by_role("button", name="Analyse").click()
    results = page.locator("#workbench-results")
    documents = results.locator(".workbench-document-list")
    sync_api.expect(documents).to_contain_text("Successful Logon After Repeated Bad Passwords")
    found = results.locator(".sandbox-correlations")
    sync_api.expect(found).to_contain_text("TargetUserName=alice")
    sync_api.expect(found).to_contain_text("(the draft)")
    shot(page, "workbench-07-correlation")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    page.context.close()
