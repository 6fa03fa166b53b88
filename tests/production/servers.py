"""Real servers for the production tests: started in their own process group, always stopped.

``running(...)`` starts ``scripts/run_web.sh`` (the shipped server) or any other command,
waits for ``/healthz`` and, whatever happens in the ``with`` block, sends SIGTERM to the whole
group (SIGKILL after 20 s), so no worker outlives a failing test or keeps its port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.production.conftest import REPO

# Environment of a test process that a server must not inherit.
_DROP = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(overrides)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextmanager
def running(
    env: dict[str, str],
    port: int,
    log: Path,
    command: Sequence[str] = ("bash", "scripts/run_web.sh"),
) -> Iterator[str]:
    """Start ``command`` (env must make it listen on ``port``); yield its base URL."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(command), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no /healthz answer: {log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield base
    finally:
        stop(proc)
