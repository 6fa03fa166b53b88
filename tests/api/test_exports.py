"""/api/rules/export.ndjson and export.csv: streamed, filtered like /api/rules/, complete."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from catalog.api import exports
from catalog.models import Rule
from tests.api.conftest import results, write_synthetic_rules

pytestmark = pytest.mark.usefixtures("catalog")


def body_of(response: Any) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def ndjson(client: Any, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/rules/export.ndjson", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert 'filename="rules.ndjson"' in response["Content-Disposition"]
    return [json.loads(line) for line in body_of(response).splitlines()]


def csv_rows(client: Any, **params: str) -> list[dict[str, str]]:
    response = client.get("/api/rules/export.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(body_of(response))))


@pytest.mark.parametrize("params", [{}, {"level": "high"}, {"tactic": "execution"}, {"q": "zzz"}])
def test_exports_honour_the_filters_and_order(client: Any, params: dict[str, str]) -> None:
    listed = [item["id"] for item in results(client, "/api/rules/", **params)]
    assert [r["id"] for r in ndjson(client, **params)] == listed
    assert [r["id"] for r in csv_rows(client, **params)] == listed


def test_ndjson_records_carry_tags_indicators_and_yaml(client: Any) -> None:
    records = {r["id"]: r for r in ndjson(client)}
    for rule in Rule.objects.prefetch_related("tags", "rule_indicators__indicator"):
        record = records[rule.rule_id]
        assert record["title"] == rule.title
        assert record["raw_yaml"] == rule.raw_yaml
        assert sorted(record["tags"]) == sorted(t.name for t in rule.tags.all())
        assert [(i["field"], i["kind"], i["value"]) for i in record["indicators"]] == [
            (link.indicator.field, link.indicator.kind, link.value)
            for link in rule.rule_indicators.order_by("position")
        ]
        assert len(record["exclusions"]) == rule.rule_exclusions.count()


def test_csv_columns_and_cells(client: Any) -> None:
    rows = csv_rows(client)
    assert list(rows[0]) == exports.CSV_COLUMNS
    by_id = {row["id"]: row for row in rows}
    for rule in Rule.objects.prefetch_related("tags"):
        row = by_id[rule.rule_id]
        assert row["tags"].split() == sorted(t.name for t in rule.tags.all())
        indicators = json.loads(row["indicators"])
        assert len(indicators) == rule.rule_indicators.count()
        assert all(len(triple) == 3 for triple in indicators)


def test_export_queries_grow_per_chunk_not_per_rule(
    client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog.services import import_rules

    import_rules([str(write_synthetic_rules(tmp_path / "more", 40))])
    monkeypatch.setattr(exports, "CHUNK_SIZE", 1000)
    with CaptureQueriesContext(connection) as one_chunk:
        body_of(client.get("/api/rules/export.ndjson"))
    monkeypatch.setattr(exports, "CHUNK_SIZE", 20)
    with CaptureQueriesContext(connection) as chunks:
        body_of(client.get("/api/rules/export.ndjson"))
    count = Rule.objects.count()
    # Per chunk: the rules (a cursor fetch on PostgreSQL) and three prefetches.
    assert len(one_chunk) < 10
    assert len(chunks) - len(one_chunk) <= 3 * (count // 20 + 1)
    assert len(chunks) < count / 2


def test_bad_filter_is_a_json_400(client: Any) -> None:
    for url in ("/api/rules/export.ndjson", "/api/rules/export.csv"):
        response = client.get(url, {"level": "urgent"}, HTTP_ACCEPT="text/csv")
        assert response.status_code == 400
        assert response.json()["parameter"] == "level"
