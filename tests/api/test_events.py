"""/api/events/: event sources with the number of rules each one feeds."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.models import Rule
from tests.api.conftest import results

pytestmark = pytest.mark.usefixtures("catalog")


def key(source: dict[str, Any]) -> tuple[Any, ...]:
    return (source["provider_display"], source["channel"], source["event_id"], source["title"])


def per_rule_sources(client: Any, **params: str) -> dict[tuple[Any, ...], int]:
    """Count event sources over the rules' own detail pages (the independent view)."""
    counts: dict[tuple[Any, ...], int] = {}
    for item in results(client, "/api/rules/", **params):
        for source in client.get(item["url"]).json()["events"]["sources"]:
            counts[key(source)] = counts.get(key(source), 0) + 1
    return counts


@pytest.mark.parametrize("params", [{}, {"product": "windows"}, {"category": "ps_script"}])
def test_event_counts_agree_with_the_rule_pages(client: Any, params: dict[str, str]) -> None:
    body = client.get("/api/events/", params).json()
    assert {key(s): s["rules"] for s in body["sources"]} == per_rule_sources(client, **params)
    rules = [s["rules"] for s in body["sources"]]
    assert rules == sorted(rules, reverse=True)


def test_script_block_logging_is_listed(client: Any) -> None:
    body = client.get("/api/events/", {"category": "ps_script"}).json()
    sources = {(s["provider_display"], s["event_id"]): s for s in body["sources"]}
    assert (
        sources[("PowerShell", 4104)]["rules"] == Rule.objects.filter(category="ps_script").count()
    )


def test_unmapped_rules_are_those_without_event_coverage(client: Any) -> None:
    unmapped = [
        item["id"]
        for item in results(client, "/api/rules/")
        if not client.get(item["url"]).json()["events"]["sources"]
    ]
    assert client.get("/api/events/").json()["unmapped_rules"] == len(unmapped)


def test_bad_filter_is_400(client: Any) -> None:
    response = client.get("/api/events/", {"status": "nope"})
    assert response.status_code == 400 and response.json()["parameter"] == "status"
