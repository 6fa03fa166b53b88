"""Heavy sandbox evaluations in helper processes, so the web process stays responsive.

A heavy evaluation (thousands of events, megabytes of JSON to render) is CPU-bound Python and
long C calls (``json.dumps`` of a few MB holds the GIL for tens of milliseconds). Run in the
web process, it makes every cheap request queued in the same process (``/healthz``, cached
pages) wait for the GIL: that was the ``/healthz`` tail under 8 heavy clients (issue 11).

With ``HEAVY_OFFLOAD`` on (``scripts/prod.sh`` turns it on), each web process keeps up to
``HEAVY_PER_PROCESS`` helper processes. A heavy request hands its parsed events to an idle
helper and waits on a pipe (which releases the GIL); the helper evaluates, renders and sends
back the finished bytes or result. Helpers:

* are *spawned* (a fresh interpreter), never forked from a threaded web worker (finding 1);
* run at a lower CPU priority (``HEAVY_OFFLOAD_NICE``), so on a busy machine the kernel serves
  the cheap requests first;
* compile the catalog once at start (``SANDBOX_PRELOAD``) and rebuild it when the catalog
  fingerprint changes, like the web process does;
* are killed and replaced when they overrun ``HEAVY_OFFLOAD_TIMEOUT`` seconds or die, and the
  request gets a 503 (nothing is written by an evaluation, so nothing is left half-done);
* exit on their own when the web process goes away (their pipe closes).

Off (the default for ``runserver``, tests and commands), :func:`run_heavy` calls the
function in-process, so behaviour is identical either way.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from django.conf import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "OffloadFailed",
    "OverLimit",
    "enabled",
    "run_bounded",
    "run_heavy",
    "run_limited",
    "shutdown",
    "start",
]


class OffloadFailed(RuntimeError):
    """The helper process died or overran its time: the caller answers 503."""


class _HelperGone(OffloadFailed):
    """The helper had died before this call reached it (killed, out of memory)."""


def enabled() -> bool:
    return bool(getattr(settings, "HEAVY_OFFLOAD", False))


def _timeout() -> float:
    return float(getattr(settings, "HEAVY_OFFLOAD_TIMEOUT", 60.0))


# -- the helper process ---------------------------------------------------------------------


def _serve(conn: Connection, nice: int) -> None:
    """The helper's loop: receive ``(function, args, kwargs)``, send ``(ok, value)``."""
    if nice:
        with contextlib.suppress(OSError):  # not permitted here: the parent's priority
            os.nice(nice)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    import django

    django.setup()
    from django.db import close_old_connections

    sys.setswitchinterval(0.005)  # nothing else runs in here: Python's default
    if os.environ.get("SANDBOX_PRELOAD", "").lower() in {"1", "true", "yes", "on"}:
        _warm()
    # The compiled catalog lives as long as the helper: keep it out of the cyclic GC.
    gc.freeze()
    while True:
        try:
            function, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return  # the web process is gone
        close_old_connections()  # a database restart between calls: reconnect, not fail
        try:
            reply: tuple[bool, Any] = (True, function(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - re-raised in the web process
            logger.exception("heavy evaluation failed in the helper process")
            reply = (False, _picklable(exc))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _warm() -> None:
    from django.db import DatabaseError

    from catalog.sandbox import catalog_evaluator

    with contextlib.suppress(DatabaseError):  # not migrated yet / database down: build later
        catalog_evaluator()


def _picklable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - any pickling failure: send the text instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# -- the web process's side ---------------------------------------------------------------------


class _Helper:
    """One spawned helper process and the parent's end of its pipe."""

    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self.conn, child_end = context.Pipe()
        nice = int(getattr(settings, "HEAVY_OFFLOAD_NICE", 5))
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child_end, nice), name="catalog-heavy", daemon=True
        )
        self.process.start()
        child_end.close()

    def call(self, function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            self.conn.send((function, args, kwargs))
        except OSError as exc:
            raise _HelperGone from exc  # dead before it got the work: safe to retry elsewhere
        try:
            if not self.conn.poll(_timeout()):
                raise OffloadFailed("the evaluation took too long")
            ok, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise OffloadFailed("the evaluation process stopped") from exc
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


_lock = threading.Lock()
_idle: list[_Helper] = []
_all: list[_Helper] = []
_owner = os.getpid()


def _forget_if_forked() -> None:
    """A forked web worker (gunicorn's preload) must not share its parent's helpers: their
    pipes would carry two processes' requests. The parent keeps and stops them."""
    global _owner
    if os.getpid() != _owner:
        _owner = os.getpid()
        _idle.clear()
        _all.clear()


def _take() -> _Helper:
    """An idle helper, or a new one (the caller holds a heavy slot, so at most
    HEAVY_PER_PROCESS helpers are ever busy at once)."""
    with _lock:
        _forget_if_forked()
        while _idle:
            helper = _idle.pop()
            if helper.alive():
                return helper
            _all.remove(helper)
            helper.kill()
        helper = _Helper()
        _all.append(helper)
        return helper


def _give_back(helper: _Helper) -> None:
    with _lock:
        _idle.append(helper)


def _discard(helper: _Helper) -> None:
    helper.kill()
    with _lock:
        if helper in _all:
            _all.remove(helper)


def run_heavy(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)``, in a helper process when offloading is on.

    ``function`` must be importable by name (a module-level function) and its arguments and
    result picklable. Raises :class:`OffloadFailed` when the helper dies or overruns; the
    function's own exceptions are re-raised here.
    """
    if not enabled():
        return function(*args, **kwargs)
    helper = _take()
    try:
        try:
            result = helper.call(function, args, kwargs)
        except _HelperGone:
            # Not this request's doing: one retry on a fresh helper. A helper that dies
            # *while* evaluating is not retried (the input may be what killed it).
            _discard(helper)
            helper = _take()
            result = helper.call(function, args, kwargs)
    except OffloadFailed:
        logger.warning("heavy evaluation helper (pid %s) failed; replacing it", helper.process.pid)
        _discard(helper)
        raise
    except BaseException:
        _give_back(helper)  # the function raised in the helper: the helper itself is fine
        raise
    _give_back(helper)
    return result


def start() -> None:
    """Start the helpers now (at web-process start, off the request path), so the first
    heavy request does not wait for an interpreter and a compiled catalog."""
    if not enabled():
        return
    size = max(1, int(getattr(settings, "HEAVY_PER_PROCESS", 1)))
    with _lock:
        _forget_if_forked()
        while len(_all) < size:
            helper = _Helper()
            _all.append(helper)
            _idle.append(helper)


def shutdown() -> None:
    """Stop every helper (tests; a web process's exit does this through its pipes)."""
    with _lock:
        helpers = list(_all)
        _all.clear()
        _idle.clear()
    for helper in helpers:
        helper.kill()


# -- work with a hard limit: a short-lived forked child ------------------------------------------


class OverLimit(Exception):  # noqa: N818 - what the caller tells the user
    """Work run by :func:`run_limited` overran its time or memory, or its result was too large;
    the child doing it was killed. ``args[0]`` says which, for a person."""


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * _PAGE


def _child(
    function: Callable[..., Any], args: tuple[Any, ...], seconds: float, memory: int, out: int
) -> None:
    """The forked child's whole life: run, send ``(ok, value)`` pickled, exit without cleanup."""
    import pickle
    import resource
    import signal

    # Its own end, a second after the parent's: should the parent die first (a worker killed
    # for its memory, a restart), no orphan keeps running. SIGALRM's default action kills the
    # process even inside a long C call (a backtracking regex).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, seconds + 1)
    # The parent's objects are never scanned here: a collection would touch (and so copy) every
    # page of the parent's heap. freeze() only moves the generation lists.
    gc.freeze()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        reply: tuple[bool, Any] = (True, function(*args))
    except MemoryError:
        reply = (False, "memory")
    except Exception as exc:  # noqa: BLE001 - re-raised in the parent
        reply = (False, _picklable(exc))
    try:
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        data = pickle.dumps((False, "memory"))
    except Exception as exc:  # noqa: BLE001 - an unpicklable result
        data = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    with open(out, "wb", closefd=True) as pipe:
        pipe.write(data)


def _read_until(fd: int, deadline: float, limit: int) -> tuple[bytes, str]:
    """Everything the child writes and ``""``, or what it wrote so far and why it was cut:
    ``"time"`` when it is not done by ``deadline`` (monotonic), ``"size"`` past ``limit``."""
    import select
    import time

    poller = select.poll()  # not select(): a busy web process may hold descriptors past 1024
    poller.register(fd, select.POLLIN | select.POLLHUP)
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return b"", "time"
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), ""
        size += len(chunk)
        if size > limit:
            return b"", "size"
        chunks.append(chunk)


def run_bounded(
    function: Callable[..., T],
    args: tuple[Any, ...],
    *,
    seconds: float,
    memory: int,
    result_bytes: int,
    before_fork: Callable[..., Any] | None = None,
) -> T:
    """``function(*args)`` in a forked child, killed past ``seconds``.

    The child may use ``memory`` bytes of address space more than its parent had (a
    ``MemoryError`` past that) and send back at most ``result_bytes`` of pickled result.
    Raises :class:`OverLimit` for each of the three; the function's own exceptions are
    re-raised here. No child outlives the call: it is killed (if still running) and reaped,
    and it ends itself a second past its time should this process die first.
    ``before_fork(*args)`` runs here first: imports and set-up done once in the parent are
    neither repeated in every child nor done under a lock another thread held at the fork.

    Forked, not spawned: a fresh interpreter costs a second or more before it has imported
    pySigma. Measured in a process holding the compiled corpus catalog (~290 MB): ``fork()``
    itself ~2 ms, a child that does nothing ~11 ms, a small rule's conversion ~25 ms more
    than in process (copy-on-write as the child touches the parent's objects).
    The child only runs ``function`` on its arguments and writes to a pipe: it never touches
    the database or the cache, and it leaves with ``os._exit`` (no atexit handlers, no
    flushing of the parent's buffers). Should it still block on a lock another thread of the
    parent held at the fork, the time limit ends it like any overrun.
    """
    import pickle
    import signal
    import time

    if before_fork is not None:
        before_fork(*args)
    deadline = time.monotonic() + seconds
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except BaseException as exc:
        os.close(read_end)
        os.close(write_end)
        if isinstance(exc, OSError):  # out of processes or memory: the server is busy
            raise OffloadFailed("could not start a process for the work") from exc
        raise
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            _child(function, args, seconds, memory, write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        data, cut = _read_until(read_end, deadline, result_bytes)
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # done or not, it goes now
        with contextlib.suppress(ChildProcessError):  # reaped already (SIGCHLD ignored)
            os.waitpid(pid, 0)
    if cut == "time":
        raise OverLimit(f"it took longer than {seconds:g} s")
    if cut == "size":
        raise OverLimit(f"its result is larger than {result_bytes / (1 << 20):g} MiB")
    if not data:
        raise OverLimit("its process ended before it finished")  # killed from outside, crashed
    ok, value = pickle.loads(data)
    if ok:
        return value  # type: ignore[no-any-return]
    if value == "memory":
        raise OverLimit(f"it needed more than {memory / (1 << 20):g} MiB of memory")
    raise value


def run_limited(
    function: Callable[..., T],
    args: tuple[Any, ...],
    *,
    seconds: float,
    memory: int,
    result_bytes: int,
    before_fork: Callable[..., Any] | None = None,
) -> T:
    """:func:`run_bounded`, in a helper process when offloading is on (the helper forks the
    child), else in this one.

    The helper is single-threaded, so forking it is safe, and the helper itself survives an
    overrun: only the child is killed. Overrunning the helper's own call instead would kill
    the helper and the next heavy request would wait for a new one, which rebuilds the
    compiled catalog (~10 s of CPU for the corpus) before it answers.
    """
    limits: dict[str, Any] = {
        "seconds": seconds,
        "memory": memory,
        "result_bytes": result_bytes,
        "before_fork": before_fork,
    }
    if enabled():
        ok, value = run_heavy(_bounded_in_helper, function, args, limits)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
    return run_bounded(function, args, **limits)


def _bounded_in_helper(
    function: Callable[..., Any], args: tuple[Any, ...], limits: dict[str, Any]
) -> tuple[bool, Any]:
    """:func:`run_bounded` in the helper, an overrun sent back as a value: an answer to give,
    not a failure for the helper to log."""
    try:
        return True, run_bounded(function, args, **limits)
    except OverLimit as exc:
        return False, exc
