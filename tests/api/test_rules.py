"""/api/rules/: every catalog filter, sorting, pagination, bad parameters, the full rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catalog.api.pagination import CatalogPagination
from catalog.models import Indicator, Rule, RuleExclusion, RuleIndicator
from tests.api.conftest import results

pytestmark = pytest.mark.usefixtures("catalog")

POWERSHELL_DOWNLOAD = "46e8d1d4-f5e6-4ef8-ba57-646df59c30a9"
SCRIPT_HOST_WEB = "3b93fffd-50a7-484b-8b7a-33503427b90e"
FAILED_LOGON = "f0c7e330-8718-4a66-94e9-2dc00a059931"


def tags_of(rule: Rule) -> set[str]:
    return {tag.name for tag in rule.tags.all()}


def uses_technique(rule: Rule, technique: str) -> bool:
    wanted = f"attack.{technique.lower()}"
    return any(t == wanted or t.startswith(wanted + ".") for t in tags_of(rule))


# Each filter against an expectation computed from the rows, not from the filter set.
FILTERS: list[tuple[dict[str, Any], Callable[[Rule], bool]]] = [
    ({"level": "high"}, lambda r: r.level == "high"),
    ({"level": ["low", "critical"]}, lambda r: r.level in ("low", "critical")),
    ({"status": "stable"}, lambda r: r.status == "stable"),
    ({"status": ["test", "experimental"]}, lambda r: r.status in ("test", "experimental")),
    ({"product": "windows"}, lambda r: r.product == "windows"),
    ({"category": "process_creation"}, lambda r: r.category == "process_creation"),
    ({"service": "cloudtrail"}, lambda r: r.service == "cloudtrail"),
    ({"author": "CATALOG project"}, lambda r: "catalog project" in r.author.lower()),
    ({"rule_set": "rules"}, lambda r: r.rule_set == "rules"),
    ({"rule_set": "rules-dfir"}, lambda r: False),
    ({"tag": "attack.t1059.001"}, lambda r: "attack.t1059.001" in tags_of(r)),
    ({"tag": "ATTACK.T1059.001"}, lambda r: "attack.t1059.001" in tags_of(r)),
    ({"namespace": "cve"}, lambda r: any(t.startswith("cve.") for t in tags_of(r))),
    ({"tactic": "execution"}, lambda r: "attack.execution" in tags_of(r)),
    ({"tactic": "TA0002"}, lambda r: "attack.execution" in tags_of(r)),
    ({"tactic": "command_and_control"}, lambda r: "attack.command-and-control" in tags_of(r)),
    ({"technique": "T1059"}, lambda r: uses_technique(r, "t1059")),
    ({"technique": "t1218.011"}, lambda r: uses_technique(r, "t1218.011")),
    (
        {"product": "windows", "level": "high"},
        lambda r: r.product == "windows" and r.level == "high",
    ),
    ({"q": "EncodedCommand"}, lambda r: r.rule_id == POWERSHELL_DOWNLOAD),
    ({"q": POWERSHELL_DOWNLOAD}, lambda r: r.rule_id == POWERSHELL_DOWNLOAD),
]


@pytest.mark.parametrize(("params", "expected"), FILTERS, ids=lambda v: str(v)[:40])
def test_each_filter_selects_the_rules_the_facet_means(
    client: Any, params: dict[str, Any], expected: Callable[[Rule], bool]
) -> None:
    got = {item["id"] for item in results(client, "/api/rules/", **params)}
    want = {r.rule_id for r in Rule.objects.prefetch_related("tags") if expected(r)}
    assert got == want
    assert want or params == {"rule_set": "rules-dfir"}, "a filter case should select something"


def test_indicator_and_exclusion_filters(client: Any) -> None:
    indicator = Indicator.objects.filter(rule_count__gte=2).first()
    assert indicator is not None
    got = {i["id"] for i in results(client, "/api/rules/", indicator=indicator.pk)}
    links = RuleIndicator.objects.filter(indicator=indicator)
    assert got == set(links.values_list("rule__rule_id", flat=True))
    link = RuleExclusion.objects.select_related("exclusion", "rule").first()
    got = {i["id"] for i in results(client, "/api/rules/", exclusion=link.exclusion_id)}
    assert link.rule.rule_id in got


def test_q_ranks_or_narrows_to_matching_rules(client: Any) -> None:
    items = results(client, "/api/rules/", q="powershell")
    assert items
    for item in items:
        text = Rule.objects.get(rule_id=item["id"]).search_text.lower()
        assert "powershell" in text


def test_list_items_are_brief(client: Any) -> None:
    item = results(client, "/api/rules/", q=POWERSHELL_DOWNLOAD)[0]
    assert set(item) == {
        "id",
        "url",
        "title",
        "status",
        "level",
        "logsource",
        "rule_set",
        "date",
        "modified",
        "tags",
    }
    assert item["url"].endswith(f"/api/rules/{POWERSHELL_DOWNLOAD}/")
    assert item["logsource"] == {
        "product": "windows",
        "category": "process_creation",
        "service": "",
    }
    assert "attack.t1059.001" in item["tags"]


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("title", lambda i: i["title"], False),
        ("-title", lambda i: i["title"], True),
        ("date", lambda i: i["date"], False),
        ("-modified", lambda i: i["modified"], True),
    ],
)
def test_sort(client: Any, sort: str, key: Callable[[dict[str, Any]], str], reverse: bool) -> None:
    items = results(client, "/api/rules/", sort=sort)
    assert [key(i) for i in items] == sorted((key(i) for i in items), reverse=reverse)


def test_sort_by_level_is_by_severity(client: Any) -> None:
    order = ["informational", "low", "medium", "high", "critical"]
    levels = [i["level"] for i in results(client, "/api/rules/", sort="-level")]
    assert levels == sorted(levels, key=order.index, reverse=True)


def test_pagination_walks_every_rule_once(client: Any) -> None:
    seen: list[str] = []
    url = "/api/rules/?limit=5"
    while url:
        body = client.get(url).json()
        assert body["count"] == Rule.objects.count()
        seen += [i["id"] for i in body["results"]]
        url = body["next"]
    assert len(seen) == len(set(seen)) == Rule.objects.count()


def test_limit_is_capped(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CatalogPagination, "max_limit", 4)
    body = client.get("/api/rules/", {"limit": 100}).json()
    assert len(body["results"]) == 4
    assert "limit=4" in body["next"]


def test_offset_past_the_end_is_an_empty_page(client: Any) -> None:
    body = client.get("/api/rules/", {"offset": 1000}).json()
    assert body["results"] == []
    assert body["count"] == Rule.objects.count()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-3"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": str(10**15)}, "offset"),
        ({"level": "urgent"}, "level"),
        ({"status": "bogus"}, "status"),
        ({"indicator": "abc"}, "indicator"),
        ({"indicator": "1.5"}, "indicator"),
        ({"indicator": str(10**30)}, "indicator"),
        ({"exclusion": "-1"}, "exclusion"),
        ({"sort": "size"}, "sort"),
        ({"q": "nul\x00byte"}, "q"),
        ({"product": "win\x00dows"}, "product"),
        ({"levle": "high"}, "levle"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: Any, params: dict[str, str], name: str
) -> None:
    response = client.get("/api/rules/", params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["parameter"] == name


def test_detail_has_the_whole_rule(client: Any) -> None:
    body = client.get(f"/api/rules/{POWERSHELL_DOWNLOAD}/").json()
    rule = Rule.objects.get(rule_id=POWERSHELL_DOWNLOAD)
    assert body["id"] == POWERSHELL_DOWNLOAD
    assert body["title"] == rule.title
    assert body["raw_yaml"] == rule.raw_yaml
    assert body["logsource"] == {
        "product": "windows",
        "category": "process_creation",
        "service": "",
        "definition": rule.definition,
        "label": "windows/process_creation",
    }
    assert body["detection"] == rule.detection
    assert body["web_url"].endswith(f"/rules/{POWERSHELL_DOWNLOAD}/")
    keys = (
        "description", "author", "date", "modified", "references", "falsepositives", "related",
        "conditions", "revision", "created_at", "updated_at", "tags",
    )  # fmt: skip
    for key in keys:
        assert key in body
    assert [s["index"] for s in body["stages"]][0] == 0


def test_detail_children_match_the_rows(client: Any) -> None:
    for rule in Rule.objects.all():
        body = client.get(f"/api/rules/{rule.rule_id}/").json()
        assert body["tags"] == sorted(t.name for t in rule.tags.all())
        assert body["stages"] == [
            {
                "group": s.group,
                "index": s.index,
                "text": s.text,
                "identifiers": s.identifiers,
                "yaml": s.yaml,
                "negated": s.negated,
            }
            for s in rule.stages.order_by("group", "index")
        ]
        links = rule.rule_indicators.select_related("indicator").order_by("position")
        got = [(i["id"], i["value"], i["identifier"], i["corpus"]) for i in body["indicators"]]
        assert got == [
            (link.indicator_id, link.value, link.identifier, link.indicator.rule_count)
            for link in links
        ]
        links = rule.rule_exclusions.select_related("exclusion").order_by("position")
        assert [(e["id"], e["field"], e["kind"]) for e in body["exclusions"]] == [
            (link.exclusion_id, link.exclusion.field, link.exclusion.kind) for link in links
        ]


def test_detail_attack_table_follows_the_tags(client: Any) -> None:
    body = client.get(f"/api/rules/{POWERSHELL_DOWNLOAD}/").json()
    rows = {row["tactic"]["shortname"]: row for row in body["attack"]["rows"]}
    assert [t["id"] for t in rows["execution"]["techniques"]] == ["T1059.001"]
    assert [t["id"] for t in rows["stealth"]["techniques"]] == ["T1027.010"]
    assert [t["id"] for t in rows["command-and-control"]["techniques"]] == ["T1105"]
    assert rows["execution"]["tactic"]["id"] == "TA0002"
    assert all(row["tagged"] for row in rows.values())


def test_detail_event_coverage(client: Any) -> None:
    events = client.get(f"/api/rules/{POWERSHELL_DOWNLOAD}/").json()["events"]
    assert {(s["provider_display"], s["event_id"]) for s in events["sources"]} == {
        ("Sysmon", 1),
        ("Security", 4688),
    }
    assert "4688" in events["requirement"]
    # A service logsource is narrowed to the event IDs the rule selects.
    events = client.get(f"/api/rules/{FAILED_LOGON}/").json()["events"]
    assert [s["event_id"] for s in events["sources"]] == [4625]


def test_detail_indicators_and_exclusions_carry_corpus_counts(client: Any) -> None:
    body = client.get(f"/api/rules/{SCRIPT_HOST_WEB}/").json()
    rule = Rule.objects.get(rule_id=SCRIPT_HOST_WEB)
    assert len(body["indicators"]) == rule.rule_indicators.count()
    assert len(body["exclusions"]) == rule.rule_exclusions.count() > 0
    for key, model in (("indicators", "indicator"), ("exclusions", "exclusion")):
        for item in body[key]:
            assert item["url"].endswith(f"/api/{model}s/{item['id']}/")
            assert item["rules"].endswith(f"/api/{model}s/{item['id']}/rules/")
            counted = client.get(item["url"]).json()["corpus"]
            assert item["corpus"] == counted >= 1


@pytest.mark.parametrize(
    "rule_id", ["no-such-rule", "00000000-0000-0000-0000-000000000000", "nul%00id", "a b"]
)
def test_unknown_rule_is_404(client: Any, rule_id: str) -> None:
    response = client.get(f"/api/rules/{rule_id}/")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_detail_takes_no_filters(client: Any) -> None:
    response = client.get(f"/api/rules/{POWERSHELL_DOWNLOAD}/", {"level": "low"})
    assert response.status_code == 400
    assert response.json()["parameter"] == "level"


@pytest.mark.parametrize(
    "path", ["/api/no-such-thing/", "/api/imports/%0Anew-line/", "/api/indicators/a/b/c/"]
)
def test_unknown_api_path_is_json_404(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "parameter": None}


def test_root_links_every_endpoint(client: Any) -> None:
    body = client.get("/api/").json()
    for url in body.values():
        path = url.removeprefix("http://testserver")
        if path.endswith((".ndjson", ".csv")):
            continue  # streamed; covered in test_exports
        assert client.get(path).status_code in (200, 401), path
