"""Two web nodes (the shipped server, two ports) on one PostgreSQL database and one Redis:
a throttle and a cache invalidation after an import hold across both.

Skipped with a reason unless the suite runs on PostgreSQL (``DATABASE_URL=postgres://...``)
and Redis answers at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``; ``.ci/run`` starts
one). The test makes its own database and drops it; the servers are stopped (process group)
and the Redis keys removed even when an assertion fails.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection

from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml
from tests.production.conftest import REPO
from tests.production.servers import free_port, running, server_env

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
LIMIT = 5
CHANGED_ID = "5d6f2b1e-0a4c-4f0e-9a57-000000000001"
NEW_ID = "5d6f2b1e-0a4c-4f0e-9a57-000000000002"


def _redis_listening() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL (DATABASE_URL=postgres://...): nodes share one database",
    ),
    pytest.mark.skipif(
        not _redis_listening(), reason=f"needs Redis at REDIS_URL ({REDIS_URL}): none answers"
    ),
]


def rule(rule_id: str, title: str) -> str:
    return rule_yaml(
        title=title,
        id=rule_id,
        status="test",
        level="high",
        logsource=WINDOWS_PROCESS_CREATION,
        detection="selection:\n    Image|endswith: '\\\\multinode.exe'\ncondition: selection",
    )


def request(url: str, body: dict[str, Any] | None = None) -> tuple[int, str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    # One Host for both nodes, as behind a load balancer (the page cache keys on the host).
    headers = {"Content-Type": "application/json", "Host": "127.0.0.1"}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers


@pytest.fixture(scope="module")
def shared_database(django_db_blocker: Any) -> Iterator[str]:
    """A fresh database on the suite's PostgreSQL server, dropped afterwards."""
    import psycopg

    params = connection.settings_dict
    server = f"postgres://{params['USER']}@{params['HOST']}:{params['PORT'] or 5432}"
    name = f"catalog_multinode_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def nodes(shared_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Nodes A and B (the shipped server, ``scripts/run_web.sh``), one manage.py env."""
    import redis

    tmp = tmp_path_factory.mktemp("multinode")
    prefix = f"multinode-{secrets.token_hex(4)}"
    env = server_env(
        DATABASE_URL=shared_database, CACHE_URL=REDIS_URL, CACHE_KEY_PREFIX=prefix,
        DEBUG="0", SECRET_KEY=secrets.token_urlsafe(40), ALLOWED_HOSTS="127.0.0.1",
        SANDBOX_THROTTLE=f"{LIMIT}/hour", WEB_WORKERS="2", WEB_THREADS="2", ACCESS_LOG="",
        DATA_DIR=str(tmp), LOG_LEVEL="ERROR",
    )  # fmt: skip
    rules = tmp / "rules"
    rules.mkdir()
    (rules / "changed.yml").write_text(rule(CHANGED_ID, "Multinode original title"))

    def manage(*args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, timeout=300,
            capture_output=True,
        )  # fmt: skip

    manage("migrate", "--noinput", "-v0")
    manage("import_rules", "--no-progress", str(rules))
    client = redis.Redis.from_url(REDIS_URL)
    with ExitStack() as stack:
        stack.callback(lambda: [client.delete(k) for k in client.scan_iter(f"{prefix}:*")])
        bases = []
        for name in ("a", "b"):
            port = free_port()
            node_env = {**env, "BIND": f"127.0.0.1:{port}"}
            bases.append(stack.enter_context(running(node_env, port, tmp / f"{name}.log")))
        yield type("Nodes", (), {"a": bases[0], "b": bases[1], "manage": staticmethod(manage),
                                 "rules": rules, "redis": client, "prefix": prefix})  # fmt: skip


def test_the_sandbox_throttle_counts_requests_on_both_nodes_together(nodes: Any) -> None:
    body = {"scriptblock": "Get-Process"}
    statuses = [
        request(f"{base}/api/sandbox/", body)[0] for base in [nodes.a, nodes.b] * ((LIMIT + 1) // 2)
    ][:LIMIT]
    assert statuses == [200] * LIMIT
    over_b, text, headers = request(f"{nodes.b}/api/sandbox/", body)
    assert over_b == 429, text
    assert "Retry-After" in headers
    assert json.loads(text)["detail"]
    assert request(f"{nodes.a}/api/sandbox/", body)[0] == 429


def test_an_import_invalidates_cached_pages_on_the_other_node(nodes: Any) -> None:
    page = f"/rules/{CHANGED_ID}/"
    status, html, _ = request(nodes.b + page)
    assert status == 200 and "Multinode original title" in html
    assert request(nodes.b + page)[1] == html  # served again, from the cache
    cached = list(nodes.redis.scan_iter(f"{nodes.prefix}:*page:*"))
    assert cached, "node B's page is not in the shared Redis cache"
    assert request(nodes.a + page)[1] == html  # node A serves the same entry

    (nodes.rules / "changed.yml").write_text(rule(CHANGED_ID, "Multinode changed title"))
    (nodes.rules / "new.yml").write_text(rule(NEW_ID, "Multinode new rule"))
    nodes.manage("import_rules", "--no-progress", str(nodes.rules))

    # Each process re-reads the catalog fingerprint within a couple of seconds; poll for it.
    deadline = time.monotonic() + 30
    while "Multinode changed title" not in (html := request(nodes.b + page)[1]):
        assert time.monotonic() < deadline, "node B still serves the page cached before"
        time.sleep(0.5)
    assert "Multinode original title" not in html
    for base in (nodes.a, nodes.b):
        status, new_page, _ = request(f"{base}/rules/{NEW_ID}/")
        assert status == 200 and "Multinode new rule" in new_page


def test_nodes_name_no_server_software(nodes: Any) -> None:
    for path in ("/healthz", "/static/css/site.css", f"/rules/{CHANGED_ID}/"):
        _, _, headers = request(nodes.a + path)
        assert headers.get_all("Server") == ["sigma-catalog"], path
