"""Pages over catalogs each test builds itself: escaping of hostile rule text, new imports
showing at once, and SQL query counts that do not grow with the number of rules shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalog.models import Exclusion, Indicator, Rule
from catalog.services import import_rules
from tests.pages.conftest import rule_yaml, write_rules


def get_ok(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def test_script_in_rule_text_renders_inert(client: Client, db: None, tmp_path) -> None:
    payload = "<script>alert(1)</script>"
    extra = (
        "references:\n"
        "    - 'javascript:alert(1)'\n"
        "    - 'https://example.com/<script>alert(2)</script>'\n"
        "falsepositives:\n"
        f"    - '{payload}'\n"
    )
    text = rule_yaml(1, title=f"'Evil {payload} rule'", extra=extra)
    text = text.replace("description: Generated for page tests.",
                        f"description: 'Bad {payload} description'")  # fmt: skip
    (tmp_path / "evil.yml").write_text(text)
    report = import_rules([str(tmp_path)])
    assert not report.errors, report.errors
    rule = Rule.objects.get()
    for url in (rule.get_absolute_url(), "/rules/", "/rules/?q=Evil", "/",
                rule.rule_indicators.first().indicator.get_absolute_url()):  # fmt: skip
        html = get_ok(client, url)
        assert payload not in html and "alert(2)</script>" not in html, url
        assert 'href="javascript:' not in html, url
    html = get_ok(client, rule.get_absolute_url())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pages_reflect_a_new_import_immediately(client: Client, db: None, tmp_path) -> None:
    import_rules([str(write_rules(tmp_path / "a", 3))])
    assert "<strong>3</strong> rules" in get_ok(client, "/")
    assert "T1105" in get_ok(client, "/attack/?covered=1")
    import_rules([str(write_rules(tmp_path / "b", 5))])
    assert "<strong>5</strong> rules" in get_ok(client, "/")
    html = get_ok(client, "/rules/")
    assert re.search(r'<p class="lead" role="status">5 rules', html)


def _shared(model: type[Indicator] | type[Exclusion], value: str) -> str:
    return model.objects.get(value=value).get_absolute_url()


PAGES: dict[str, Callable[[], str]] = {
    "home": lambda: "/",
    "rule list": lambda: "/rules/?per_page=100",
    "rule list searched and faceted": lambda: (
        "/rules/?q=generated&level=high&level=low&tactic=execution&per_page=100"
    ),
    "attack matrix": lambda: "/attack/",
    "tactic": lambda: "/attack/tactic/execution/",
    "technique": lambda: "/attack/technique/T1059/",
    "events": lambda: "/events/",
    "event": lambda: "/events/sysmon-1/",
    "indicators": lambda: "/indicators/",
    "indicator": lambda: _shared(Indicator, "\\shared.exe"),
    "exclusions": lambda: "/exclusions/",
    "exclusion": lambda: _shared(Exclusion, "\\explorer.exe"),
}


def _count_queries(client: Client, url: str) -> tuple[int, int]:
    """(queries with a cold cache, queries with a warm cache) for one page."""
    counts = []
    cache.clear()
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            get_ok(client, url)
        counts.append(len(queries))
    return counts[0], counts[1]


@pytest.mark.django_db
def test_query_counts_do_not_grow_with_the_rules_shown(client: Client, tmp_path: Path) -> None:
    import_rules([str(write_rules(tmp_path / "five", 5))])
    few = {name: _count_queries(client, url()) for name, url in PAGES.items()}
    import_rules([str(write_rules(tmp_path / "fifty", 50))])
    assert Rule.objects.count() == 50
    html = get_ok(client, PAGES["rule list"]())
    assert len(re.findall(r'class="rule-title"', html)) == 50  # all 50 rows are shown
    many = {name: _count_queries(client, url()) for name, url in PAGES.items()}
    assert many == few


@pytest.mark.django_db
def test_rule_page_query_count_does_not_grow_with_its_indicators(
    client: Client, tmp_path: Path
) -> None:
    (tmp_path / "small.yml").write_text(rule_yaml(1, indicators=5))
    (tmp_path / "large.yml").write_text(rule_yaml(2, indicators=50))
    import_rules([str(tmp_path)])
    small, large = (Rule.objects.get(title=f"Generated rule {n:03d}") for n in (1, 2))
    assert large.rule_indicators.count() == small.rule_indicators.count() + 45
    assert _count_queries(client, small.get_absolute_url()) == _count_queries(
        client, large.get_absolute_url()
    )
