"""Fault tests: database outage -> 503 and recovery; a killed import; import vs browsing.

Each test fails when the protection it checks is switched off (see conftest:
``PRODUCTION_TESTS_DISABLE=middleware`` / ``=atomic``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test import Client

from tests.conftest import EXAMPLES
from tests.factories import rule_yaml
from tests.production.conftest import DISABLED, REPO, postgres_only

RULE_ID = "0d5a2e8c-6b1f-4c3a-9e7d-2f4b8a1c5e90"
VERSIONS = {
    "old": ["alpha-one", "alpha-two", "alpha-three"],
    "new": ["beta-one", "beta-two", "beta-three", "beta-four", "beta-five"],
}


def fault_rule(version: str, rule_id: str, values: list[str]) -> str:
    """A rule whose ScriptBlockText indicators are ``values``."""
    detection = [
        "selection:",
        "    ScriptBlockText|contains:",
        *(f"        - '{v}'" for v in values),
        "condition: selection",
    ]
    return rule_yaml(
        title=f"Production fault test rule {version}",
        id=rule_id,
        status="test",
        description="A rule whose indicators change between versions.",
        author="production tests",
        date="2026-11-28",
        logsource={"product": "windows", "category": "ps_script"},
        detection="\n".join(detection),
        level="low",
    )


def rule_text(version: str, rule_id: str = RULE_ID) -> str:
    return fault_rule(version, rule_id, VERSIONS[version])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- (1) the database goes away during requests ----------------------------------------------


def assert_outage_responses(client: Client) -> None:
    page = client.get("/rules/")
    assert page.status_code == 503, page.status_code
    assert page["Content-Type"].startswith("text/html")
    assert b"temporarily unavailable" in page.content
    assert page["Retry-After"]
    assert "Content-Security-Policy" in page  # still a normal, headed response

    api = client.get("/api/rules/")
    assert api.status_code == 503
    assert api["Content-Type"] == "application/json"
    assert "unavailable" in api.json()["detail"]

    wants_json = client.get("/rules/", HTTP_ACCEPT="application/json")
    assert wants_json.status_code == 503
    assert wants_json["Content-Type"] == "application/json"

    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"


def assert_healthy(client: Client) -> None:
    assert client.get("/rules/").status_code == 200
    assert client.get("/api/rules/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200, health.content
    assert health.json()["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_outage_broken_connection_answers_503_and_recovers(monkeypatch):
    """Any vendor: every query on the request's connection fails as if the server were gone."""
    client = Client(raise_request_exception=False)
    assert_healthy(client)

    def broken_cursor(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    assert_outage_responses(client)
    monkeypatch.undo()  # the database is back
    assert_healthy(client)


@contextlib.contextmanager
def server_down() -> Iterator[None]:
    """Kill this connection's backend mid-request, and refuse new connections meanwhile."""
    import psycopg

    settings_dict = connection.settings_dict
    port = settings_dict["PORT"]
    admin_dsn = (
        f"host={settings_dict['HOST'] or '127.0.0.1'} port={port or 5432} "
        f"user={settings_dict['USER']} dbname={settings_dict['NAME']}"
    )
    killed = []

    def terminate_then_execute(execute, sql, params, many, context):
        if not killed:
            pid = context["connection"].connection.info.backend_pid
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)
            # New connections now go to a port where nothing listens.
            settings_dict["PORT"] = str(free_port())
            _renew_pool()
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(terminate_then_execute):
            yield
    finally:
        settings_dict["PORT"] = port
        connection.close()  # drop a connection the server may have killed
        _renew_pool()
    assert killed, "the request never reached the database"


def _renew_pool() -> None:
    """A connection pool (DB_POOL, PostgreSQL) keeps the address it was made with: drop it so
    the next connection uses the current settings, as with no pool."""
    if getattr(connection, "pool", None) is not None:
        connection.close_pool()


@postgres_only("SQLite has no server backend to terminate")
@pytest.mark.django_db(transaction=True)
def test_outage_postgres_backend_terminated_mid_request_answers_503_and_recovers():
    client = Client(raise_request_exception=False)
    assert_healthy(client)
    with server_down():
        assert_outage_responses(client)
    assert_healthy(client)


# -- (2) an import killed half-way -------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import contextlib, os, sys
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    django.setup()
    import catalog.importer as importer
    if os.environ.get("IMPORT_WITHOUT_TRANSACTION") == "1":
        class _NoTransaction:
            @staticmethod
            def atomic(*args, **kwargs):
                return contextlib.nullcontext()
        importer.transaction = _NoTransaction
    from django.core.management import call_command
    call_command("import_rules", "--no-progress", *sys.argv[1:])
    """
)


def snapshot(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rules = conn.execute(
            "SELECT rule_id, content_hash, revision FROM catalog_rule ORDER BY rule_id"
        ).fetchall()
        indicators = conn.execute(
            "SELECT r.rule_id, i.identity FROM catalog_ruleindicator ri "
            "JOIN catalog_rule r ON r.id = ri.rule_id "
            "JOIN catalog_indicator i ON i.id = ri.indicator_id ORDER BY 1, 2"
        ).fetchall()
        stages = conn.execute("SELECT count(*) FROM catalog_stage").fetchone()
    return {"rules": rules, "indicators": indicators, "stages": stages}


def write_locks(dsn: str, exclude_pid: int) -> int:
    """Catalog tables (not the ImportRun log) the importer's backend holds write locks on."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT c.relname) FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.datname = current_database() AND l.pid <> %s AND l.pid <> pg_backend_pid() "
            "AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r' "
            "AND c.relname LIKE 'catalog\\_%%' AND c.relname <> 'catalog_importrun'",
            [exclude_pid],
        ).fetchone()
    return int(row[0])


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (prod_kill_...), dropped afterwards."""
    import psycopg

    params = connection.settings_dict
    host, port, user = params["HOST"] or "127.0.0.1", params["PORT"] or 5432, params["USER"]
    name = f"prod_kill_{uuid.uuid4().hex[:10]}"
    admin_dsn = f"host={host} port={port} user={user} dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://{user}@{host}:{port}/{name}"
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )
    try:
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_import(url: str, paths: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "ERROR"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if "atomic" in DISABLED:
        env["IMPORT_WITHOUT_TRANSACTION"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *paths],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def big_rule_folder(root: Path, count: int) -> Path:
    """The changed rule plus ``count`` new rules: enough rows to make the write phase long."""
    folder = root / "next"
    folder.mkdir()
    (folder / "changed.yml").write_text(rule_text("new"))
    for n in range(count):
        values = [f"bulk-{n}-{k}" for k in range(12)]
        text = fault_rule(f"bulk {n}", str(uuid.UUID(int=n + 1, version=4)), values)
        (folder / f"bulk_{n:05d}.yml").write_text(text)
    return folder


@postgres_only("the test kills an importer that writes to its own PostgreSQL database")
def test_import_killed_half_way_leaves_previous_catalog_and_next_import_completes(
    scratch_database, tmp_path
):
    url = scratch_database
    dsn = url.replace("postgres://", "postgresql://")
    first = tmp_path / "first"
    first.mkdir()
    (first / "changed.yml").write_text(rule_text("old"))
    done = run_import(url, [str(EXAMPLES / "rules"), str(first)])
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err.decode()
    before = snapshot(dsn)
    assert len(before["rules"]) > 10

    folder = big_rule_folder(tmp_path, 3000)
    own_pid = os.getpid()
    killed_mid_write = False
    proc = run_import(url, [str(EXAMPLES / "rules"), str(folder)])
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            # Several catalog tables written and not yet committed: well into the write.
            if write_locks(dsn, own_pid) >= (1 if "atomic" in DISABLED else 3):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert killed_mid_write, "the import finished before it could be killed mid-write"
    assert proc.returncode == -signal.SIGKILL

    time.sleep(0.5)  # the server notices the dead client and rolls its transaction back
    assert snapshot(dsn) == before, "a killed import changed the catalog"

    rerun = run_import(url, [str(EXAMPLES / "rules"), str(folder)])
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()
    assert b"3001 " in out or b"3001 new" in out or b"updated" in out, out
    after = snapshot(dsn)
    assert len(after["rules"]) == len(before["rules"]) + 3000
    changed = {identity for rule_id, identity in after["indicators"] if rule_id == RULE_ID}
    assert len(changed) == len(VERSIONS["new"])


# -- (3) import and browsing at the same time ------------------------------------------------


@postgres_only("the SQLite test database is a shared in-memory file that serialises threads")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "strict_snapshot",
    [
        False,
        True,
    ],
    ids=["indicator-set", "rule-and-indicators-one-snapshot"],
)
def test_concurrent_import_and_browsing_see_old_or_new_never_half(
    tmp_path, monkeypatch, strict_snapshot
):
    """Readers see exactly the old or the new indicator set, never a half-written one.

    ``strict_snapshot`` also requires the title (rule row) to belong to the same version as
    the indicators (child rows), i.e. one consistent snapshot per response.
    """
    from django.db import connections

    import catalog.importer as importer
    from catalog.services import import_rules

    if "atomic" in DISABLED:

        class _NoTransaction:
            @staticmethod
            def atomic(*args: Any, **kwargs: Any) -> Any:
                return contextlib.nullcontext()

        monkeypatch.setattr(importer, "transaction", _NoTransaction)

    rule_file = tmp_path / "rule.yml"
    rule_file.write_text(rule_text("old"))
    import_rules([str(EXAMPLES / "rules"), str(rule_file)])
    expected = {version: {v.casefold() for v in values} for version, values in VERSIONS.items()}

    stop = threading.Event()
    seen: dict[str, int] = {"old": 0, "new": 0}
    problems: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(30):
                rule_file.write_text(rule_text("new" if n % 2 == 0 else "old"))
                import_rules([str(rule_file)])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            stop.set()
            connections.close_all()

    def reader() -> None:
        client = Client(raise_request_exception=False)
        try:
            while not stop.is_set():
                response = client.get(f"/api/rules/{RULE_ID}/")
                if response.status_code != 200:
                    problems.append(f"status {response.status_code}")
                    continue
                body = response.json()
                values = {i["value"].casefold() for i in body["indicators"]}
                found = [v for v, wanted in expected.items() if values == wanted]
                if not found:
                    problems.append(f"half-written indicator set {sorted(values)}")
                    continue
                seen[found[0]] += 1
                titled = "new" if body["title"].endswith(" new") else "old"
                if strict_snapshot and titled != found[0]:
                    problems.append(f"{titled} rule row with {found[0]} indicators")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert not problems, problems[:10]
    assert seen["old"] and seen["new"], seen
