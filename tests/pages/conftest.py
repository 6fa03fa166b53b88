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
from django.db import transaction
from django.urls import get_resolver

from catalog import services
from catalog.services import import_rules
from tests.conftest import EXAMPLES

EXAMPLE_RULES = EXAMPLES / "rules"
SECTION_IDS = [
    "description", "details", "attack", "events", "rule-body", "stages", "exclusions",
    "indicators",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _pages_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No collectstatic manifest in tests; no cached page data leaking between tests; the
    catalog fingerprint read afresh each time (query counts stay deterministic)."""
    monkeypatch.setattr(services, "FINGERPRINT_TTL", 0.0)
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    if "conversion" not in get_resolver().namespace_dict and find_spec("catalog.conversion_urls"):
        # The rule page's Convert section (a colleague's) reverses ``conversion:`` URLs.
        settings.ROOT_URLCONF = "tests.pages.urls"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def example_catalog(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The example rules, imported once for the module inside a transaction rolled back after
    it, so other modules still start from an empty database."""
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        import_rules([str(EXAMPLE_RULES)], trigger="examples")
    yield
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


@pytest.fixture
def examples(example_catalog: None, db: None) -> None:
    """Per-test access to the example catalog (changes are undone after the test)."""


def rule_yaml(number: int, *, indicators: int = 2, title: str | None = None,
              extra: str = "") -> str:  # fmt: skip
    """A valid rule whose ``indicators`` CommandLine values are all its own, plus one
    indicator and one exclusion every generated rule shares."""
    values = "\n".join(f"            - 'marker-{number}-{i}'" for i in range(indicators))
    return f"""title: {title or f"Generated rule {number:03d}"}
id: {uuid.UUID(int=10_000 + number)}
status: test
level: {("low", "medium", "high", "critical")[number % 4]}
description: Generated for page tests.
author: Page Tests, Someone Else
date: 2024-01-{1 + number % 28:02d}
logsource:
    product: windows
    category: process_creation
tags:
    - attack.execution
    - attack.t1059.001
    - attack.t1105
detection:
    selection:
        Image|endswith: '\\shared.exe'
        CommandLine|contains:
{values}
    filter:
        ParentImage|endswith: '\\explorer.exe'
    condition: selection and not filter
{extra}"""


def write_rules(folder: Path, count: int, **kwargs: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"generated_{number:03d}.yml").write_text(rule_yaml(number, **kwargs))
    return folder


def links(html: str) -> list[str]:
    """Site-internal hrefs of a page, HTML entities in query strings decoded."""
    found = re.findall(r'href="(/[^"#]*)', html)
    return [href.replace("&amp;", "&") for href in found]


def section_order(html: str) -> list[str]:
    """The rule page's section ids in document order."""
    found = re.findall(r'<section id="([a-z-]+)" class="rule-section', html)
    return [name for name in found if name in SECTION_IDS]
