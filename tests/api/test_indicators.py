"""/api/indicators/ and /api/exclusions/: identity lookup, filters, ordering, rules of one."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.models import Exclusion, Indicator, RuleExclusion, RuleIndicator
from tests.api.conftest import results

pytestmark = pytest.mark.usefixtures("catalog")

ENDPOINTS = [
    ("/api/indicators/", Indicator, RuleIndicator, "indicator"),
    ("/api/exclusions/", Exclusion, RuleExclusion, "exclusion"),
]
endpoints = pytest.mark.parametrize(("url", "model", "link", "name"), ENDPOINTS, ids=["ind", "exc"])


def lookup(client: Any, url: str, **params: str) -> list[dict[str, Any]]:
    return results(client, url, **params)


@endpoints
def test_items_have_identity_corpus_and_rules_link(
    client: Any, url: str, model: Any, link: Any, name: str
) -> None:
    item = lookup(client, url)[0]
    assert set(item) == {"id", "url", "field", "kind", "value", "corpus", "rules"}
    row = model.objects.get(pk=item["id"])
    assert (item["field"], item["kind"], item["value"]) == (row.field, row.kind, row.value)
    assert item["corpus"] == row.rule_count
    assert item["url"].endswith(f"{url}{row.pk}/")
    assert item["rules"].endswith(f"{url}{row.pk}/rules/")


@endpoints
def test_identity_lookup_finds_exactly_one(
    client: Any, url: str, model: Any, link: Any, name: str
) -> None:
    for row in model.objects.all():
        found = lookup(client, url, field=row.field, kind=row.kind, value=row.value)
        assert [i["id"] for i in found] == [row.pk], (row.field, row.kind, row.value)
        distinct_rules = link.objects.filter(**{name: row}).values("rule").distinct().count()
        assert found[0]["corpus"] == distinct_rules


@endpoints
def test_fast_identity_path_agrees_with_the_filter_set(
    client: Any, url: str, model: Any, link: Any, name: str
) -> None:
    for row in model.objects.all()[:40]:
        params = {"field": row.field, "kind": f" {row.kind} ", "value": row.value.upper()}
        fast = client.get(url, params).json()
        # Any other filter beside the identity takes the filter set's path.
        slow = client.get(url, {**params, "min_corpus": "0"}).json()
        assert fast == slow
        assert fast["count"] in (0, 1)


def test_lookup_is_casefolded_for_ordinary_kinds(client: Any) -> None:
    row = Indicator.objects.filter(kind="contains").exclude(value__iexact="").first()
    for spelling in (row.value.upper(), row.value.lower(), row.value.swapcase()):
        found = lookup(client, "/api/indicators/", field=row.field, kind=row.kind, value=spelling)
        assert [i["id"] for i in found] == [row.pk]


@pytest.mark.parametrize("kind", ["re", "re|i", "contains|cased"])
def test_lookup_keeps_case_for_case_keeping_kinds(client: Any, kind: str) -> None:
    row = Indicator.objects.filter(kind=kind).first()
    assert row is not None and row.value != row.value.swapcase()
    found = lookup(client, "/api/indicators/", field=row.field, kind=kind, value=row.value)
    assert [i["id"] for i in found] == [row.pk]
    other = lookup(
        client, "/api/indicators/", field=row.field, kind=kind, value=row.value.swapcase()
    )
    assert other == []


def test_keyword_indicators_have_an_empty_field(client: Any) -> None:
    row = Indicator.objects.filter(field="").first()
    assert row is not None
    found = lookup(client, "/api/indicators/", field="", kind=row.kind, value=row.value)
    assert [i["id"] for i in found] == [row.pk]
    keywords = lookup(client, "/api/indicators/", field="")
    assert {i["id"] for i in keywords} == set(
        Indicator.objects.filter(field="").values_list("pk", flat=True)
    )


def test_value_without_field_matches_any_field(client: Any) -> None:
    row = Indicator.objects.filter(kind="endswith").first()
    found = lookup(client, "/api/indicators/", kind="endswith", value=row.value.upper())
    assert row.pk in {i["id"] for i in found}
    assert all(i["kind"] == "endswith" for i in found)


def test_unknown_identity_is_an_empty_list(client: Any) -> None:
    assert lookup(client, "/api/indicators/", field="Image", kind="contains", value="zzz") == []


@endpoints
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "equals"}, lambda r: r.kind == "equals"),
        ({"min_corpus": "2"}, lambda r: r.rule_count >= 2),
        ({"max_corpus": "1"}, lambda r: r.rule_count <= 1),
        (
            {"min_corpus": "1", "max_corpus": "1", "kind": "contains"},
            lambda r: r.rule_count == 1 and r.kind == "contains",
        ),
    ],
    ids=["kind", "min", "max", "combined"],
)
def test_filters(
    client: Any,
    url: str,
    model: Any,
    link: Any,
    name: str,
    params: dict[str, str],
    expected: Any,
) -> None:
    got = {i["id"] for i in lookup(client, url, **params)}
    assert got == {r.pk for r in model.objects.all() if expected(r)}


@endpoints
def test_field_and_rule_filters(client: Any, url: str, model: Any, link: Any, name: str) -> None:
    row = model.objects.exclude(field="").first()
    got = {i["id"] for i in lookup(client, url, field=row.field)}
    assert got == set(model.objects.filter(field=row.field).values_list("pk", flat=True))
    rule_link = link.objects.select_related("rule").first()
    got = {i["id"] for i in lookup(client, url, rule=rule_link.rule.rule_id)}
    want = link.objects.filter(rule=rule_link.rule).values_list(f"{name}_id", flat=True)
    assert got == set(want)


@endpoints
@pytest.mark.parametrize("ordering", ["corpus", "-corpus"])
def test_ordering_by_corpus(
    client: Any, url: str, model: Any, link: Any, name: str, ordering: str
) -> None:
    counts = [i["corpus"] for i in lookup(client, url, ordering=ordering)]
    assert counts == sorted(counts, reverse=ordering.startswith("-"))
    assert len(counts) == model.objects.count()


def test_default_order_is_most_used_first(client: Any) -> None:
    counts = [i["corpus"] for i in lookup(client, "/api/indicators/")]
    assert counts == sorted(counts, reverse=True)


@endpoints
@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"value": "x"}, "value"),
        ({"value": "x", "kind": ""}, "value"),
        ({"min_corpus": "many"}, "min_corpus"),
        ({"max_corpus": "-1"}, "max_corpus"),
        ({"min_corpus": str(2**40)}, "min_corpus"),
        ({"ordering": "popularity"}, "ordering"),
        ({"kind": "con\x00tains"}, "kind"),
        ({"field": "x", "kind": "equals", "value": "a\x00b"}, "value"),
        ({"identity": "abc"}, "identity"),
    ],
)
def test_bad_parameters(
    client: Any, url: str, model: Any, link: Any, name: str, params: dict[str, str], bad: str
) -> None:
    response = client.get(url, params)
    assert response.status_code == 400
    assert response.json()["parameter"] == bad


@endpoints
def test_detail_and_unknown_ids(client: Any, url: str, model: Any, link: Any, name: str) -> None:
    row = model.objects.first()
    assert client.get(f"{url}{row.pk}/").json()["corpus"] == row.rule_count
    for missing in ("999999999", str(10**30)):
        assert client.get(f"{url}{missing}/").status_code == 404
        assert client.get(f"{url}{missing}/rules/").status_code == 404
    assert client.get(f"{url}abc/").status_code == 404


@endpoints
def test_rules_of_one_lists_each_rule_once(
    client: Any, url: str, model: Any, link: Any, name: str
) -> None:
    row = model.objects.order_by("-rule_count").first()
    body = client.get(f"{url}{row.pk}/rules/").json()
    ids = [i["id"] for i in body["results"]]
    assert len(ids) == len(set(ids)) == body["count"] == row.rule_count
    want = link.objects.filter(**{name: row}).values_list("rule__rule_id", flat=True)
    assert set(ids) == set(want)


def test_rules_of_one_take_the_rule_filters(client: Any) -> None:
    row = Indicator.objects.order_by("-rule_count").first()
    levels = set(RuleIndicator.objects.filter(indicator=row).values_list("rule__level", flat=True))
    level = sorted(levels)[0]
    items = results(client, f"/api/indicators/{row.pk}/rules/", level=level)
    assert items and all(i["level"] == level for i in items)
    response = client.get(f"/api/indicators/{row.pk}/rules/", {"level": "urgent"})
    assert response.status_code == 400
