"""Job tests: clients by role, uploads, synthetic rules, and an in-process worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.api.conftest import synthetic_rule
from tests.factories import isolate_site, zip_of


@pytest.fixture(autouse=True)
def _jobs_site(settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_site(settings, monkeypatch)
    settings.DATA_DIR = tmp_path / "data"
    settings.JOBS_HEARTBEAT_SECONDS = 0  # no heartbeat thread against the test transaction
    settings.JOBS_STALE_SECONDS = 120


def login(username: str, *, staff: bool) -> Client:
    user = get_user_model().objects.create_user(username, password="x-jobs-pw-1", is_staff=staff)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db: None) -> Client:
    return login("jobs-staff", staff=True)


@pytest.fixture
def user_client(db: None) -> Client:
    return login("jobs-user", staff=False)


def rules_zip(count: int, start: int = 0) -> bytes:
    return zip_of({f"rules/r{n}.yml": synthetic_rule(n) for n in range(start, start + count)})


def matching_event(number: int, *, when: str = "2026-01-02 03:04:05.678") -> dict[str, Any]:
    """An event that synthetic rule ``number`` matches."""
    return {
        "EventID": 1,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "Image": f"C:\\tools\\synthetic{number}.exe",
        "CommandLine": "run synthetic-marker now",
        "User": "alice",
        "UtcTime": when,
    }


def jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def run_worker() -> None:
    """Run every queued job in this process (the real worker loop, in batch mode).

    The loop's ``close_old_connections`` would close the test's connection (inside the
    test transaction its autocommit differs from the settings'), so it is skipped here.
    """
    from unittest import mock

    with mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"):
        call_command("db_worker", batch=True, startup_delay=False, reload=False, verbosity=0)
