"""Work under a hard limit in a forked child (catalog.offload.run_bounded): its value or its
exception comes back; past its time, memory or result size it is killed and reaped; and it
ends itself when the process that forked it dies first."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from catalog.offload import OverLimit, run_bounded
from tests.production.conftest import REPO

MiB = 1 << 20
LIMITS = {"seconds": 10.0, "memory": 256 * MiB, "result_bytes": MiB}
BACKTRACKING = ".*" * 14 + "!"  # ~10^9 steps on 20 characters, in one C call


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and _field(entry.name, 1) == str(pid):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _field(pid: str, index: int) -> str:
    """A field of /proc/PID/stat after the command name: 0 the state, 1 the parent's pid."""
    return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[index]


def running(pid: int) -> bool:
    try:
        return _field(str(pid), 0) != "Z"
    except OSError:
        return False


def test_value_comes_back_from_another_process() -> None:
    assert run_bounded(os.getpid, (), **LIMITS) != os.getpid()
    assert run_bounded(sorted, ([3, 1, 2],), **LIMITS) == [1, 2, 3]


def test_the_functions_exception_is_raised_here() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        run_bounded(int, ("not a number",), **LIMITS)


def test_before_fork_runs_in_this_process() -> None:
    seen: list[int] = []
    run_bounded(len, ("abc",), **LIMITS, before_fork=lambda _: seen.append(os.getpid()))
    assert seen == [os.getpid()]


def test_overrun_is_killed_and_reaped() -> None:
    before = children(os.getpid())
    started = time.monotonic()
    with pytest.raises(OverLimit, match=r"longer than 0.3 s"):
        run_bounded(re.match, (BACKTRACKING, "x" * 20), **{**LIMITS, "seconds": 0.3})
    assert time.monotonic() - started < 3
    assert children(os.getpid()) == before


def _grow() -> None:
    blocks = []
    while True:
        blocks.append(bytearray(MiB))


def test_memory_past_the_budget_is_refused() -> None:
    with pytest.raises(OverLimit, match="more than 64 MiB of memory"):
        run_bounded(_grow, (), **{**LIMITS, "memory": 64 * MiB})


def test_a_result_past_its_size_is_refused() -> None:
    with pytest.raises(OverLimit, match="larger than 1 MiB"):
        run_bounded(bytes, (2 * MiB,), **LIMITS)


def test_the_child_ends_itself_when_its_parent_dies() -> None:
    script = textwrap.dedent(
        f"""
        import os, re, sys
        from catalog.offload import run_bounded
        print(os.getpid(), flush=True)
        run_bounded(re.match, ({BACKTRACKING!r}, "x" * 20), seconds=1.0, memory=1 << 28,
                    result_bytes=1 << 20)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not children(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = children(pid)
        os.kill(pid, signal.SIGKILL)  # the parent goes before it could kill its child
        parent.wait(timeout=5)
        assert running(child)  # orphaned, still working...
        deadline = time.monotonic() + 5
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)  # ...until its own alarm, a second past its time
    finally:
        parent.kill()
        parent.wait(timeout=5)
        if child and running(child):
            os.kill(child, signal.SIGKILL)  # the test failed: leave no orphan behind
