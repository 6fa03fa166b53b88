"""The site in a real browser (Debian chromium through Playwright) against a live server with
the example rules: search, filter by a facet, open a rule and check its tables, copy its YAML,
keyboard access, no Content-Security-Policy violations; screenshots of every page (desktop,
phone, dark) go to test-artifacts/ for people to look at."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Exclusion, Indicator, Rule, Technique
from catalog.services import import_rules
from rules.attack import coverage_table
from tests.conftest import REPO
from tests.pages.conftest import EXAMPLE_RULES, SECTION_IDS

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
if not CHROMIUM.exists():
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM (used by the
    # test itself, not the server) must be told that this is fine here.
    import os

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(live_server: Any, transactional_db: None) -> str:
    import_rules([str(EXAMPLE_RULES)], trigger="examples")
    return live_server.url


def new_page(browser: Any, *, phone: bool = False, dark: bool = False) -> tuple[Any, list[str]]:
    """A page plus the console errors it logs (CSP violations show up there)."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844} if phone else {"width": 1366, "height": 900},
        color_scheme="dark" if dark else "light",
        device_scale_factor=1,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_search_filter_open_rule_and_check_its_tables(browser: Any, site: str) -> None:
    page, errors = new_page(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page.goto(site + "/")
    assert page.locator("h1").inner_text().startswith("Sigma detection rules")
    shot(page, "01-home")

    # Keyboard: the first Tab lands on the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.fill("#home-q", "powershell")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/rules/\?q=powershell"))
    results = page.locator(".rule-item")
    searched = results.count()
    assert searched > 0
    shot(page, "02-rules-search")

    page.locator('#filters a[href*="level=high"]').first.click()
    page.wait_for_url(re.compile(r"level=high"))
    assert "q=powershell" in page.url
    assert 0 < results.count() <= searched
    badges = page.locator(".rule-item-head .badge[class*='level-']").all_inner_texts()
    levels = {text.strip().lower() for text in badges}
    assert levels == {"high"}
    assert page.locator(".chip.removable").count() == 2  # search + level, each removable
    shot(page, "03-rules-search-high")

    title = page.locator(".rule-title").first.inner_text()
    page.locator(".rule-title").first.click()
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == title
    rule = Rule.objects.get(title=title)
    ids = page.eval_on_selector_all("section.rule-section", "els => els.map(e => e.id)")
    assert [i for i in ids if i in SECTION_IDS] == SECTION_IDS
    tags = rule.tags.filter(namespace="attack").values_list("value", flat=True)
    assert page.locator("#attack table tbody tr").count() == len(coverage_table(tags).rows)
    assert page.locator("#events table tbody tr").count() >= 1
    indicator_rows = page.locator("#indicators table tbody tr").count()
    assert indicator_rows == rule.rule_indicators.count()
    corpus = page.locator("#indicators .corpus").all_inner_texts()
    links = rule.rule_indicators.select_related("indicator").order_by("position")
    assert corpus == [str(link.indicator.rule_count) for link in links]
    shot(page, "04-rule")

    copy = page.locator('button[data-copy="rule-yaml"]')
    assert copy.is_visible()  # shown by static/js/site.js
    copy.click()
    sync_api.expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == rule.raw_yaml

    with page.expect_download() as download:
        page.locator("a[download]").click()
    assert Path(download.value.path()).read_text() == rule.raw_yaml
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    page.context.close()


def test_every_page_renders_without_errors_on_desktop_phone_and_dark(
    browser: Any, site: str
) -> None:
    rule = Rule.objects.filter(rule_exclusions__isnull=False).first()
    technique = Technique.objects.filter(attack_id__contains=".").first()
    indicator = Indicator.objects.order_by("-rule_count").first()
    exclusion = Exclusion.objects.order_by("-rule_count").first()
    pages = {
        "home": "/",
        "rules": "/rules/",
        "rule": rule.get_absolute_url(),
        "attack": "/attack/",
        "tactic": "/attack/tactic/execution/",
        "technique": technique.get_absolute_url(),
        "events": "/events/",
        "event": "/events/powershell-4104/",
        "indicators": "/indicators/",
        "indicator": indicator.get_absolute_url(),
        "exclusions": "/exclusions/",
        "exclusion": exclusion.get_absolute_url(),
        "not-found": "/rules/no-such-rule/",
    }
    for variant, options in (("desktop", {}), ("phone", {"phone": True}),
                             ("dark", {"dark": True})):  # fmt: skip
        page, errors = new_page(browser, **options)
        for name, url in pages.items():
            response = page.goto(site + url)
            assert response.status == (404 if name == "not-found" else 200), url
            assert page.locator("header.site-header").is_visible()
            assert page.locator("footer").inner_text().count("MITRE") >= 1
            if options.get("phone"):  # nothing wider than the screen but scrollable tables
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= 390 + 1, (url, overflow)
            shot(page, f"{variant}-{name}")
        csp = [e for e in errors if "Content Security Policy" in e or "Refused" in e]
        assert not csp, csp
        page.context.close()


def teardown_module() -> None:
    # Keep the artifacts folder free of stale downloads Playwright may leave behind.
    shutil.rmtree(ARTIFACTS / "downloads", ignore_errors=True)
