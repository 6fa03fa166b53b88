"""Database connections are pooled, not hoarded per thread (finding 13).

runserver (``scripts/serve.sh``) serves every client connection in a new thread; with a
persistent connection per thread (CONN_MAX_AGE=60), 30 keep-alive clients left 26 PostgreSQL
connections open after they had gone, and an hour of browsing exhausted the server's 100.
"""

from __future__ import annotations

import http.client
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.production.conftest import postgres_only
from tests.production.servers import free_port, running, server_env

CLIENTS = 30
POOL_MAX = 4


def open_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return int(cursor.fetchone()[0])


def keep_alive_clients(port: int) -> list[int]:
    """CLIENTS keep-alive clients, all connected at once, a few requests each, then gone."""
    statuses: list[int] = []
    together = threading.Barrier(CLIENTS, timeout=120)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for _ in range(3):
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            together.wait()  # every client still connected: one server thread each
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@postgres_only("counts the test database's connections in pg_stat_activity")
def test_threaded_runserver_leaves_at_most_the_pool_open(tmp_path: Path) -> None:
    settings_dict: dict[str, Any] = connection.settings_dict
    name = f"catalog_pool_{secrets.token_hex(4)}"
    url = (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/"
        f"{settings_dict['NAME']}?application_name={name}"
    )
    port = free_port()
    env = server_env(
        DATABASE_URL=url, DEBUG="1", DB_POOL_MAX_SIZE=str(POOL_MAX), CACHE_DIR=str(tmp_path)
    )
    command = [
        sys.executable,
        "manage.py",
        "runserver",
        "--noreload",
        "--skip-checks",
        f"127.0.0.1:{port}",
    ]
    with running(env, port, tmp_path / "server.log", command):
        statuses = keep_alive_clients(port)
        assert statuses.count(200) == CLIENTS * 3, statuses
        # The clients are gone; the server's threads wind down. Give them a moment, then
        # count (a poll, not a timing assertion: the bound must hold, however long it takes).
        deadline = time.monotonic() + 10
        while open_connections(name) > POOL_MAX and time.monotonic() < deadline:
            time.sleep(0.5)
        assert open_connections(name) <= POOL_MAX
    deadline = time.monotonic() + 10
    while open_connections(name) and time.monotonic() < deadline:
        time.sleep(0.5)  # the database notices closed sockets a moment later
    assert open_connections(name) == 0  # and none outlives the server
