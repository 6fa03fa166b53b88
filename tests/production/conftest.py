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

from tests.factories import isolate_site

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
def _isolated_site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests change the catalog behind the API's back: never reuse a cached fingerprint."""
    isolate_site(settings, monkeypatch)


@pytest.fixture(autouse=True)
def _protections(settings: Any) -> None:
    if "middleware" in DISABLED:
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if not m.endswith("DatabaseUnavailableMiddleware")
        ]
