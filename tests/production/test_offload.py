"""Heavy sandbox evaluations in helper processes (catalog/offload.py, ``HEAVY_OFFLOAD``).

The unit tests drive :func:`catalog.offload.run_heavy` with stdlib functions (importable by
name in the spawned helper, touching no database). The server test starts the shipped server
the way ``scripts/prod.sh`` does (HEAVY_OFFLOAD=1) on its own SQLite catalog and shows that a
heavy request is answered by a low-priority helper, also after that helper was killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog import offload
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml, write_rule_files
from tests.production.conftest import REPO
from tests.production.servers import free_port, running, server_env


@pytest.fixture
def offloading(settings: Any) -> Iterator[None]:
    settings.HEAVY_OFFLOAD = True
    settings.HEAVY_OFFLOAD_TIMEOUT = 30
    offload.shutdown()
    try:
        yield
    finally:
        offload.shutdown()


def test_off_runs_in_the_request_process(settings: Any) -> None:
    settings.HEAVY_OFFLOAD = False
    assert offload.run_heavy(os.getpid) == os.getpid()


def test_on_runs_in_one_reused_helper_at_lower_priority(offloading: None) -> None:
    first = offload.run_heavy(os.getpid)
    assert first != os.getpid()
    assert offload.run_heavy(os.getpid) == first  # the same helper, not one per request
    assert offload.run_heavy(os.nice, 0) == os.nice(0) + 5  # HEAVY_OFFLOAD_NICE default


def test_the_functions_exception_reaches_the_caller_and_the_helper_stays(
    offloading: None,
) -> None:
    pid = offload.run_heavy(os.getpid)
    with pytest.raises(ValueError, match="invalid literal"):
        offload.run_heavy(int, "not a number")
    assert offload.run_heavy(os.getpid) == pid


def test_an_overrun_kills_the_helper_and_the_next_call_gets_a_new_one(
    offloading: None, settings: Any
) -> None:
    pid = offload.run_heavy(os.getpid)
    settings.HEAVY_OFFLOAD_TIMEOUT = 0.5
    started = time.monotonic()
    with pytest.raises(offload.OffloadFailed, match="too long"):
        offload.run_heavy(time.sleep, 30)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed, not left running its 30 s
    settings.HEAVY_OFFLOAD_TIMEOUT = 30
    assert offload.run_heavy(os.getpid) not in {pid, os.getpid()}


def test_a_helper_that_died_between_calls_is_replaced(offloading: None) -> None:
    pid = offload.run_heavy(os.getpid)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    assert offload.run_heavy(os.getpid) not in {pid, os.getpid()}


# -- the shipped server ----------------------------------------------------------------------

RULE_ID = "6a1e3f52-4c57-4f0e-9b1d-0000000000f1"


def _helpers(session: int) -> list[int]:
    """Pids of spawned helper processes in the server's process group/session."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"multiprocessing.spawn" in cmdline and os.getsid(int(entry.name)) == session:
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


def _niceness(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat; 17th after the command name


def _post(base: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        base + "/api/sandbox/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode()}


def _wait_for(predicate: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_shipped_server_answers_heavy_requests_from_a_low_priority_helper(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    rules = write_rule_files(
        tmp_path / "rules",
        {
            "offload.yml": rule_yaml(
                title="Offloaded evaluation probe",
                id=RULE_ID,
                status="test",
                level="high",
                logsource=WINDOWS_PROCESS_CREATION,
                detection="selection:\n    Image|endswith: '\\\\offload.exe'\ncondition: selection",
            )
        },
    )
    env = server_env(
        DATABASE_URL=database,
        DATA_DIR=str(tmp_path / "data"),
        CACHE_DIR=str(tmp_path / "cache"),
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SANDBOX_PRELOAD="1",
        HEAVY_OFFLOAD="1",
        WEB_WORKERS="2",
        ACCESS_LOG="",
    )
    for command in (["migrate", "--noinput", "-v0"], ["import_rules", str(rules)]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=REPO, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
    port = free_port()
    env["BIND"] = f"127.0.0.1:{port}"
    events = [{"Image": f"C:\\Temp\\{name}.exe", "EventID": 1} for name in ("offload", "other")]
    with running(env, port, tmp_path / "server.log") as base:
        # The pid the server was started as leads its session (start_new_session).
        session = os.getsid(int(_wait_for(lambda: _server_pid(port))))
        helpers = _wait_for(lambda: len(_helpers(session)) >= 2 and _helpers(session))
        assert len(helpers) == 2, "one helper per web worker (HEAVY_PER_PROCESS=1)"
        assert _wait_for(lambda: all(_niceness(pid) >= 5 for pid in helpers), 20)

        status, answer = _post(base, {"events": events, "all_rules": True})
        assert status == 200, (answer, (tmp_path / "server.log").read_text()[-3000:])
        matched = [[m["rule_id"] for m in e["matches"]] for e in answer["events"]]
        assert matched == [[RULE_ID], []]

        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        assert _wait_for(lambda: not set(helpers) & set(_helpers(session)), 20)
        for _ in range(4):  # whichever worker answers, its dead helper is replaced
            status, again = _post(base, {"events": events, "all_rules": True})
            assert status == 200, (again, (tmp_path / "server.log").read_text()[-3000:])
            assert [[m["rule_id"] for m in e["matches"]] for e in again["events"]] == matched
        # Whichever workers answered replaced their helper; no worker has more than one.
        assert 1 <= len(_helpers(session)) <= 2


def _server_pid(port: int) -> int | None:
    """The pid of the process group leader listening on ``port`` (the granian master)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"granian" in cmdline and f"{port}".encode() in cmdline:
                return int(entry.name)
    return None
