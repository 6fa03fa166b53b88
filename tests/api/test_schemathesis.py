"""Property-based run of the whole API against its own OpenAPI schema (schemathesis).

Every operation gets generated requests, valid and invalid; each response must not be a
server error and must conform to the schema (status code, content type, headers, body).
Kept small (``max_examples``) so the run takes about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

# A test dependency (requirements-dev.txt): skip, with the reason, where it is not installed.
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.wsgi import application  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def keep_test_connection() -> Iterator[None]:
    """Requests go through the real WSGI handler, whose request signals would close the
    connection holding the test transaction (Django's test client disconnects them too)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


# Loaded at collection: generating the schema reads no database. The sandbox endpoint is
# another module's, with its own tests and a rate limit that a generated burst would trip.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application).exclude(
    path_regex="^/api/sandbox/"
)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_schema(case: Any, catalog: None, keep_test_connection: None) -> None:
    case.call_and_validate(checks=CHECKS)
