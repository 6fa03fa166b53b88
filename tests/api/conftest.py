"""API test fixtures: the example catalog imported once per module, clients by role.

The module-level catalog lives in an outer transaction that is rolled back when the module
ends, so other test packages still start from an empty database; each test runs inside its
own savepoint on top of it (pytest-django's ``db``), so tests may write freely.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog import services
from catalog.services import import_rules
from tests.conftest import EXAMPLES

EXAMPLE_RULES = EXAMPLES / "rules"


@pytest.fixture(scope="module")
def example_catalog(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The 17 example rules, imported once for the module and rolled back after it."""
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        import_rules([str(EXAMPLE_RULES)], trigger="examples")
    yield
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


@pytest.fixture
def catalog(example_catalog: None, db: None) -> None:
    """Per-test access to the example catalog (changes are undone after the test)."""


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """The manifest storage needs ``collectstatic`` first; tests need no hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests roll the catalog back behind the API's back: never reuse a fingerprint."""

    monkeypatch.setattr(services, "FINGERPRINT_TTL", 0.0)
    services.forget_fingerprint()


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def _token_client(username: str, *, staff: bool) -> APIClient:
    user = get_user_model().objects.create_user(username, password="x" * 12, is_staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def staff_client(db: None) -> APIClient:
    return _token_client("staff", staff=True)


@pytest.fixture
def user_client(db: None) -> APIClient:
    return _token_client("user", staff=False)


def results(client: APIClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """The ``results`` of a 200 list response (all pages up to the cap)."""
    response = client.get(url, {"limit": 1000, **params})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def synthetic_rule(number: int, *, level: str = "medium") -> str:
    """A small valid rule: two indicators and two exclusions (one of each shared by all)."""
    return f"""title: Synthetic rule {number:03d}
id: {uuid.UUID(int=number + 1)}
status: test
level: {level}
logsource:
    product: windows
    category: process_creation
tags:
    - attack.execution
    - attack.t1059.001
detection:
    selection:
        Image|endswith: '\\synthetic{number}.exe'
        CommandLine|contains: 'synthetic-marker'
    filter:
        User: 'SYSTEM'
        ParentImage|endswith: '\\parent{number}.exe'
    condition: selection and not filter
"""


def write_synthetic_rules(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"synthetic_{number:03d}.yml").write_text(synthetic_rule(number))
    return folder
