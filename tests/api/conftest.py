"""API test fixtures: the example catalog imported once per module, clients by role.

The module-level catalog lives in an outer transaction that is rolled back when the module
ends, so other test packages still start from an empty database; each test runs inside its
own savepoint on top of it (pytest-django's ``db``), so tests may write freely.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import EXAMPLE_RULES
from tests.factories import (
    WINDOWS_PROCESS_CREATION,
    isolate_site,
    rule_yaml,
    write_rule_files,
)

__all__ = ["EXAMPLE_RULES", "results", "synthetic_rule", "write_synthetic_rules"]


@pytest.fixture
def catalog(example_catalog: None, db: None) -> None:
    """Per-test access to the example catalog (changes are undone after the test)."""


@pytest.fixture(autouse=True)
def _isolated_site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests roll the catalog back behind the API's back: never reuse a fingerprint."""
    isolate_site(settings, monkeypatch)


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
    detection = f"""
selection:
    Image|endswith: '\\synthetic{number}.exe'
    CommandLine|contains: 'synthetic-marker'
filter:
    User: 'SYSTEM'
    ParentImage|endswith: '\\parent{number}.exe'
condition: selection and not filter
"""
    return rule_yaml(
        title=f"Synthetic rule {number:03d}",
        id=uuid.UUID(int=number + 1),
        status="test",
        level=level,
        logsource=WINDOWS_PROCESS_CREATION,
        tags=["attack.execution", "attack.t1059.001"],
        detection=detection,
    )


def write_synthetic_rules(folder: Path, count: int) -> Path:
    texts = {f"synthetic_{n:03d}.yml": synthetic_rule(n) for n in range(count)}
    return write_rule_files(folder, texts)
