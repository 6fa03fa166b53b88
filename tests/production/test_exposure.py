"""What the site tells an anonymous caller about itself (finding 12): no browsable API in
production, no server name, a health check that names neither the engine nor the error."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from io import BytesIO
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import OperationalError
from django.test import Client

from tests.production.conftest import REPO

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ENGINES = ("postgres", "sqlite", "mysql", "oracle", "psycopg")


@pytest.mark.django_db
def test_api_answers_json_to_a_browser_in_production() -> None:
    response = Client().get("/api/rules/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    json.loads(response.content)
    assert Client().get("/api/rules/", HTTP_ACCEPT="text/html").status_code == 406


@pytest.mark.django_db
def test_api_refuses_format_api_in_production() -> None:
    response = Client().get("/api/rules/?format=api")
    assert response.status_code == 404 or response["Content-Type"].startswith("application/json")
    assert b"<html" not in response.content.lower()


@pytest.mark.parametrize(("debug", "browsable"), [("1", True), ("0", False)])
def test_browsable_api_only_with_debug(debug: str, browsable: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'catalog.settings'; "
        "from django.conf import settings; "
        "print(settings.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**env, "DEBUG": debug},
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert ("BrowsableAPIRenderer" in out) is browsable
    assert "JSONRenderer" in out


@pytest.mark.django_db
def test_healthz_says_ok_without_naming_the_engine() -> None:
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok" and body["database"] == "ok"
    assert not any(engine in response.content.decode().lower() for engine in ENGINES)


@pytest.mark.django_db
def test_healthz_outage_names_neither_engine_nor_exception(monkeypatch: Any, settings: Any) -> None:
    from django.db import connection

    settings.HEALTHZ_REUSE_SECONDS = 0  # check the database on this very request

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError('connection to server at "10.1.2.3", port 5432 failed')

    monkeypatch.setattr(connection, "cursor", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}
    text = response.content.decode().lower()
    assert "operationalerror" not in text and "10.1.2.3" not in text
    assert not any(engine in text for engine in ENGINES)


def _call_wsgi(path: str) -> tuple[str, list[tuple[str, str]]]:
    from catalog.wsgi import application

    environ: dict[str, Any] = {"PATH_INFO": path, "wsgi.input": BytesIO(b"")}
    setup_testing_defaults(environ)
    environ["SERVER_SOFTWARE"] = "granian"
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        seen.update(status=status, headers=headers)
        return lambda data: None

    body = application(environ, start_response)
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return seen["status"], seen["headers"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/static/css/site.css", "/does-not-exist/", "/healthz"])
def test_wsgi_application_names_no_server(path: str) -> None:
    status, headers = _call_wsgi(path)
    servers = [value for name, value in headers if name.lower() == "server"]
    assert servers == ["sigma-catalog"], (status, servers)


def test_gunicorn_config_renames_its_server_header() -> None:
    import gunicorn.http.wsgi

    runpy.run_path(os.path.join(REPO, "catalog", "gunicorn.conf.py"))
    assert gunicorn.http.wsgi.SERVER == "sigma-catalog"


@pytest.mark.django_db
def test_healthz_reuses_a_success_but_never_vouches_past_an_outage(monkeypatch: Any) -> None:
    """One round trip per second per process under load; yet a request that met the outage
    makes the next /healthz check again (and fail)."""
    from django.db import connection

    from catalog import health

    health.forget()
    assert Client().get("/healthz").status_code == 200
    calls = []
    real_cursor = connection.cursor
    monkeypatch.setattr(connection, "cursor", lambda: calls.append(1) or real_cursor())
    assert Client().get("/healthz").status_code == 200
    assert calls == []  # reused
    monkeypatch.undo()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "cursor", broken)
    monkeypatch.setattr("django.db.backends.utils.CursorWrapper.execute", broken)
    assert Client().get("/rules/").status_code == 503  # a page meets the outage
    assert Client().get("/healthz").status_code == 503
