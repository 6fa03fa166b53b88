"""ETag / Last-Modified on read endpoints, 304 answers, and validators that follow the catalog."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils.http import http_date, parse_http_date

from catalog import services
from catalog.models import Indicator, Rule
from catalog.services import import_rules
from tests.api.conftest import write_synthetic_rules

pytestmark = pytest.mark.usefixtures("catalog")

POWERSHELL_DOWNLOAD = "46e8d1d4-f5e6-4ef8-ba57-646df59c30a9"


def read_urls() -> list[str]:
    indicator = Indicator.objects.first()
    return [
        "/api/rules/?level=high",
        f"/api/rules/{POWERSHELL_DOWNLOAD}/",
        "/api/indicators/?kind=equals",
        f"/api/indicators/{indicator.pk}/",
        f"/api/indicators/{indicator.pk}/rules/",
        "/api/exclusions/",
        "/api/attack/",
        "/api/attack/layer.json",
        "/api/events/",
        "/api/rules/export.csv",
        "/api/rules/export.ndjson",
    ]


def test_read_endpoints_carry_validators_and_answer_304(client: Any) -> None:
    latest = Rule.objects.latest("updated_at").updated_at
    for url in read_urls():
        response = client.get(url)
        assert response.status_code == 200, url
        etag = response["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert parse_http_date(response["Last-Modified"]) == int(latest.timestamp())
        assert "no-cache" in response["Cache-Control"]
        again = client.get(url, HTTP_IF_NONE_MATCH=etag)
        assert again.status_code == 304, url
        assert again["ETag"] == etag
        assert again.content == b""
        since = client.get(url, HTTP_IF_MODIFIED_SINCE=response["Last-Modified"])
        assert since.status_code == 304, url


def test_stale_validators_get_the_full_response(client: Any) -> None:
    url = "/api/rules/"
    assert client.get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200
    old = http_date(0)
    assert client.get(url, HTTP_IF_MODIFIED_SINCE=old).status_code == 200


def test_etag_depends_on_the_query_and_the_representation(client: Any) -> None:
    one = client.get("/api/rules/?level=high")["ETag"]
    assert client.get("/api/rules/?level=low")["ETag"] != one
    # DEBUG=0 renders JSON only (no browsable API, finding 12): HTML is refused, unvalidated.
    html = client.get("/api/rules/?level=high", HTTP_ACCEPT="text/html")
    assert html.status_code == 406 and "ETag" not in html


def test_an_import_changes_the_validators(client: Any, tmp_path: Any) -> None:
    before = client.get("/api/indicators/")
    import_rules([str(write_synthetic_rules(tmp_path / "more", 3))])
    after = client.get("/api/indicators/", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]


def test_errors_and_staff_views_carry_no_validators(client: Any, staff_client: Any) -> None:
    assert "ETag" not in client.get("/api/rules/?level=urgent")
    assert "ETag" not in client.get("/api/rules/no-such-rule/")
    assert "ETag" not in staff_client.get("/api/imports/")


def test_the_fingerprint_is_reused_briefly_and_forgotten_on_import(
    client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(services, "FINGERPRINT_TTL", 60.0)
    first = client.get("/api/attack/")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/attack/")["ETag"] == first["ETag"]
    assert not any("MAX(" in q["sql"] for q in captured.captured_queries)
    import_rules([str(write_synthetic_rules(tmp_path / "more", 2))])
    assert client.get("/api/attack/")["ETag"] != first["ETag"]
