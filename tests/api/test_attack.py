"""/api/attack/ (tactic and technique counts) and /api/attack/layer.json (Navigator layer)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from catalog.models import Rule
from rules import attack
from tests.api.conftest import results
from tests.api.layer_schema import check_layer

pytestmark = pytest.mark.usefixtures("catalog")


def tagged_counts(rules: list[Rule]) -> Counter[str]:
    """attack.* tag -> number of rules carrying it, straight from the tag rows."""
    return Counter(t.name for r in rules for t in r.tags.all() if t.namespace == "attack")


def test_attack_counts_agree_with_the_rule_filters(client: Any) -> None:
    body = client.get("/api/attack/").json()
    assert body["attack_version"] == "19"
    shortnames = [t["shortname"] for t in body["tactics"]]
    assert shortnames[: len(attack.MATRIX_ORDER)] == list(attack.MATRIX_ORDER)
    for tactic in body["tactics"]:
        listed = client.get("/api/rules/", {"tactic": tactic["shortname"], "limit": 1}).json()
        assert tactic["rules"] == listed["count"], tactic["shortname"]
    counts = tagged_counts(list(Rule.objects.prefetch_related("tags")))
    for technique in body["techniques"]:
        assert technique["rules"] == counts[f"attack.{technique['id'].lower()}"]
        tagged = client.get("/api/rules/", {"tag": f"attack.{technique['id']}"}).json()
        assert technique["rules"] == tagged["count"]
    covered = {k.removeprefix("attack.").upper() for k in counts if k.startswith("attack.t")}
    assert {t["id"] for t in body["techniques"]} == covered


def test_attack_takes_the_rule_filters(client: Any) -> None:
    body = client.get("/api/attack/", {"product": "aws"}).json()
    aws = list(Rule.objects.filter(product="aws").prefetch_related("tags"))
    counts = tagged_counts(aws)
    assert {t["id"]: t["rules"] for t in body["techniques"]} == {
        k.removeprefix("attack.").upper(): v for k, v in counts.items() if k.startswith("attack.t")
    }
    stealth = next(t for t in body["tactics"] if t["shortname"] == "stealth")
    assert stealth["rules"] == 0


def layer_for(client: Any, **params: str) -> dict[str, Any]:
    response = client.get("/api/attack/layer.json", params)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    return json.loads(response.content)


@pytest.mark.parametrize("params", [{}, {"product": "windows"}, {"level": "high"}, {"q": "zzz"}])
def test_layer_is_valid_with_one_entry_per_covered_technique(
    client: Any, params: dict[str, str]
) -> None:
    layer = layer_for(client, **params)
    check_layer(layer)
    assert layer["domain"] == "enterprise-attack"
    assert layer["versions"]["attack"] == "19" and layer["versions"]["layer"] == "4.5"
    matching = [r["id"] for r in results(client, "/api/rules/", **params)]
    counts = tagged_counts(list(Rule.objects.filter(rule_id__in=matching).prefetch_related("tags")))
    expected = {
        k.removeprefix("attack.").upper(): v
        for k, v in counts.items()
        if k.startswith("attack.t") and attack.technique(k.removeprefix("attack."))
    }
    entries = {t["techniqueID"]: t for t in layer["techniques"]}
    assert len(entries) == len(layer["techniques"])
    assert {k: t["score"] for k, t in entries.items()} == expected
    top = max(expected.values(), default=1)
    assert layer["gradient"]["maxValue"] == top
    assert layer["legendItems"]


def test_layer_sets_the_tactic_only_when_unambiguous(client: Any) -> None:
    for entry in layer_for(client)["techniques"]:
        tactics = attack.technique(entry["techniqueID"]).tactics
        if len(tactics) == 1:
            assert entry["tactic"] == tactics[0]
        else:
            assert "tactic" not in entry


def test_layer_links_list_the_scored_rules(client: Any) -> None:
    entry = layer_for(client, level="high")["techniques"][0]
    url = entry["links"][0]["url"].removeprefix("http://testserver")
    assert "level=high" in url
    assert client.get(url).json()["count"] == entry["score"]


def test_layer_ignores_accept_and_rejects_bad_filters(client: Any) -> None:
    response = client.get("/api/attack/layer.json", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    response = client.get("/api/attack/layer.json", {"level": "urgent"})
    assert response.status_code == 400 and response.json()["parameter"] == "level"
