"""Security headers on pages, API responses and errors; HSTS only when configured."""

from __future__ import annotations

import re

import pytest
from django.test import Client

PAGES = ["/", "/rules/", "/sandbox/", "/api/rules/", "/api/", "/does-not-exist/"]


def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def script_sources(header: str) -> list[str]:
    directives = csp_directives(header)
    return directives.get("script-src", directives.get("default-src", []))


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_security_headers_present(path):
    response = Client().get(path)
    assert response.status_code < 500
    csp = response["Content-Security-Policy"]
    sources = script_sources(csp)
    assert sources, csp
    assert "'unsafe-inline'" not in sources
    assert "'unsafe-eval'" not in sources
    assert "*" not in sources
    assert csp_directives(csp).get("frame-ancestors") == ["'none'"]
    assert csp_directives(csp).get("object-src") == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] in {
        "same-origin",
        "strict-origin-when-cross-origin",
        "no-referrer",
    }
    # HSTS is off unless configured (it must only ever be sent over HTTPS).
    assert "Strict-Transport-Security" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/rules/", "/sandbox/"])
def test_pages_have_no_inline_scripts(path):
    html = Client().get(path).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE):
        assert "src=" in tag, f"inline script on {path}: {tag}"
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE), "inline event handler"


@pytest.mark.django_db
def test_api_docs_policy_allows_no_inline_scripts():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert "'unsafe-inline'" not in script_sources(response["Content-Security-Policy"])


@pytest.mark.django_db
def test_hsts_when_configured(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    response = Client().get("/", secure=True)
    assert response["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")
    # Never over plain HTTP.
    assert "Strict-Transport-Security" not in Client().get("/")


@pytest.mark.django_db
def test_ssl_redirect_when_configured(settings):
    settings.SECURE_SSL_REDIRECT = True
    response = Client().get("/rules/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def test_static_file_has_headers(client):
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
