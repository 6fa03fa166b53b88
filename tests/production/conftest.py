"""Production-hardening tests: shared helpers.

``PRODUCTION_TESTS_DISABLE`` (comma-separated: ``middleware``, ``atomic``) switches a
protection off so the fault tests can be seen to FAIL without it, e.g.::

    PRODUCTION_TESTS_DISABLE=middleware python -m pytest tests/production -q -k outage
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.db import connection

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DISABLED = {
    item.strip()
    for item in os.environ.get("PRODUCTION_TESTS_DISABLE", "").split(",")
    if item.strip()
}



def postgres_only(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason=f"needs PostgreSQL (DATABASE_URL=postgres://...): {reason}",
    )


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """The manifest storage needs ``collectstatic`` first; tests need no hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests change the catalog behind the API's back: never reuse a cached fingerprint."""
    from catalog import services

    monkeypatch.setattr(services, "FINGERPRINT_TTL", 0.0)
    services.forget_fingerprint()


@pytest.fixture(autouse=True)
def _protections(settings: Any) -> None:
    if "middleware" in DISABLED:
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if not m.endswith("DatabaseUnavailableMiddleware")
        ]
