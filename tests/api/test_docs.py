"""/api/schema/ (OpenAPI 3) and the interactive viewers served from vendored assets."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_is_openapi_3_in_json_and_yaml(client: Any) -> None:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/rules/",
        "/api/rules/{rule_id}/",
        "/api/indicators/",
        "/api/attack/",
        "/api/attack/layer.json",
        "/api/events/",
        "/api/rules/export.csv",
        "/api/imports/",
    ):
        assert path in schema["paths"], path
    assert "Token" in str(schema["components"]["securitySchemes"]) or schema["components"]
    as_yaml = yaml.safe_load(client.get("/api/schema/").content)
    assert as_yaml["paths"].keys() == schema["paths"].keys()


def test_schema_generates_without_warnings(tmp_path: Any) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_swagger_ui_loads_local_assets_only(client: Any) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/")), asset
    # No inline script (the site's CSP forbids them): the start-up script is a request too.
    assert not re.search(r"<script>(?!\s*</script>)", html)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', html)
    assert script, html
    start = client.get(script.group(1).replace("&amp;", "&"))
    assert start.status_code == 200
    assert "/api/schema/" in start.content.decode()
