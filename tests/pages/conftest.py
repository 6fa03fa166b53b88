"""Page test fixtures: plain static storage, a fresh cache per test, the example catalog
imported once per module (rolled back after it), and helpers to write small rule packs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import get_resolver

from tests import factories
from tests.conftest import EXAMPLE_RULES

__all__ = ["EXAMPLE_RULES", "SECTION_IDS", "links", "rule_yaml", "section_order", "write_rules"]

SECTION_IDS = [
    "description", "details", "attack", "events", "rule-body", "stages", "exclusions",
    "indicators",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _pages_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No collectstatic manifest in tests; no cached page data leaking between tests; the
    catalog fingerprint read afresh each time (query counts stay deterministic)."""
    factories.isolate_site(settings, monkeypatch)
    if "conversion" not in get_resolver().namespace_dict and find_spec("catalog.conversion_urls"):
        # The rule page's Convert section (a colleague's) reverses ``conversion:`` URLs.
        settings.ROOT_URLCONF = "tests.pages.urls"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def examples(example_catalog: None, db: None) -> None:
    """Per-test access to the example catalog (changes are undone after the test)."""


def rule_yaml(number: int, *, indicators: int = 2, title: str | None = None,
              extra: str = "") -> str:  # fmt: skip
    """A valid rule whose ``indicators`` CommandLine values are all its own, plus one
    indicator and one exclusion every generated rule shares."""
    values = "\n".join(f"        - 'marker-{number}-{i}'" for i in range(indicators))
    detection = f"""
selection:
    Image|endswith: '\\shared.exe'
    CommandLine|contains:
{values}
filter:
    ParentImage|endswith: '\\explorer.exe'
condition: selection and not filter
"""
    return factories.rule_yaml(
        title=title or f"Generated rule {number:03d}",
        id=uuid.UUID(int=10_000 + number),
        status="test",
        level=("low", "medium", "high", "critical")[number % 4],
        description="Generated for page tests.",
        author="Page Tests, Someone Else",
        date=f"2024-01-{1 + number % 28:02d}",
        logsource=factories.WINDOWS_PROCESS_CREATION,
        tags=["attack.execution", "attack.t1059.001", "attack.t1105"],
        detection=detection,
        extra=extra,
    )


def write_rules(folder: Path, count: int, **kwargs: Any) -> Path:
    texts = {f"generated_{n:03d}.yml": rule_yaml(n, **kwargs) for n in range(count)}
    return factories.write_rule_files(folder, texts)


def links(html: str) -> list[str]:
    """Site-internal hrefs of a page, HTML entities in query strings decoded."""
    found = re.findall(r'href="(/[^"#]*)', html)
    return [href.replace("&amp;", "&") for href in found]


def section_order(html: str) -> list[str]:
    """The rule page's section ids in document order."""
    found = re.findall(r'<section id="([a-z-]+)" class="rule-section', html)
    return [name for name in found if name in SECTION_IDS]
