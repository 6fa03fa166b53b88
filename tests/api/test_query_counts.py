"""Query counts stay constant as pages grow (limit=5 vs limit=50) and per detail."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Indicator, Rule
from catalog.services import import_rules
from tests.api.conftest import write_synthetic_rules


@pytest.fixture
def big_catalog(catalog: None, tmp_path: Any) -> None:
    """Examples plus 60 rules sharing an indicator, so that every page below is full."""
    import_rules([str(write_synthetic_rules(tmp_path / "synthetic", 60))])


def queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        assert response.status_code == 200, response.content
        if response.streaming:
            b"".join(response.streaming_content)
    return len(captured)


def list_urls() -> list[str]:
    shared = Indicator.objects.order_by("-rule_count").first()
    assert shared.rule_count > 50
    return [
        "/api/rules/",
        "/api/rules/?tactic=execution",
        "/api/rules/?q=synthetic",
        "/api/indicators/",
        "/api/indicators/?kind=endswith",
        "/api/exclusions/?min_corpus=1",
        f"/api/indicators/{shared.pk}/rules/",
    ]


@pytest.mark.usefixtures("big_catalog")
def test_list_queries_do_not_grow_with_page_size(client: Any) -> None:
    for url in list_urls():
        sep = "&" if "?" in url else "?"
        small = queries(client, f"{url}{sep}limit=5")
        large = queries(client, f"{url}{sep}limit=50")
        assert large == small, url


@pytest.mark.usefixtures("big_catalog")
def test_import_run_list_queries_do_not_grow(staff_client: Any, tmp_path: Any) -> None:
    for number in range(8):
        import_rules([str(write_synthetic_rules(tmp_path / f"again{number}", 1))])
    assert queries(staff_client, "/api/imports/?limit=2") == queries(
        staff_client, "/api/imports/?limit=8"
    )


@pytest.mark.usefixtures("big_catalog")
def test_rule_detail_queries_do_not_grow_with_indicators(client: Any) -> None:
    small = Rule.objects.order_by("title").first()
    counts = {
        rule.rule_id: queries(client, f"/api/rules/{rule.rule_id}/")
        for rule in (small, *Rule.objects.order_by("-pk")[:1], *Rule.objects.order_by("pk")[:3])
    }
    assert len(set(counts.values())) == 1, counts
    # The catalog fingerprint, the rule, its children (one UNION ALL), its evidence
    # (findings, regression replay, related rules: one UNION ALL, issue 14).
    assert set(counts.values()) == {4}


@pytest.mark.usefixtures("big_catalog")
def test_identity_lookup_is_two_queries(client: Any) -> None:
    row = Indicator.objects.order_by("-rule_count").first()
    url = f"/api/indicators/?field={row.field}&kind={row.kind}&value={row.value}"
    # The catalog fingerprint (validators) and the unique-index probe; no COUNT.
    assert queries(client, url) == 2


@pytest.mark.usefixtures("big_catalog")
@pytest.mark.parametrize(
    "url", ["/api/attack/", "/api/attack/layer.json", "/api/events/", "/api/attack/?level=high"]
)
def test_aggregates_use_a_fixed_number_of_queries(client: Any, url: str, tmp_path: Any) -> None:
    before = queries(client, url)
    import_rules([str(write_synthetic_rules(tmp_path / "extra", 70))])
    assert queries(client, url) == before
