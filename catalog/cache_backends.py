"""The cache configuration behind ``CACHE_URL`` and the file cache used when it is unset.

Imported by ``catalog.settings``: nothing here may import models or read settings.

Why files by default: every worker of one machine shares them (unlike ``LocMemCache``, where
each worker counted throttles alone and grew its own page cache), they need no extra service
and no ``createcachetable``, and unlike the database cache they never wait on an import's
write transaction (SQLite has one writer). Several machines share Redis instead.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.cache.backends.base import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT_SENTINEL
from django.core.cache.backends.filebased import FileBasedCache

# Entries the file cache keeps before it culls a third of them at random. Generous on purpose:
# a small limit culls on nearly every write (a culled rule page renders again).
FILE_CACHE_MAX_ENTRIES = 20_000
DEFAULT_TIMEOUT = 3600
# Called after clear(): per-process copies of cache entries (catalog.caching's local page
# layer) forget theirs too.
CLEAR_HOOKS: list[Callable[[], None]] = []


class FileCache(FileBasedCache):
    """Django's file cache with atomic counters, counting its files on one write in
    ``CULL_EVERY``, not on each.

    ``add``/``incr``/``decr`` (throttle counters, concurrency slots) hold an exclusive
    ``flock`` on one lock file, so workers and threads never lose a count (Django's file cache
    does read-then-write). ``FileBasedCache`` also lists the whole directory before every
    ``set`` to decide whether to cull; with tens of thousands of entries that listing dominates
    a throttle update. Checking on every ``CULL_EVERY``-th write per process lets the directory
    overshoot MAX_ENTRIES by at most ``CULL_EVERY`` entries per process.
    """

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        self._cull_every = max(1, int(params.get("OPTIONS", {}).get("CULL_EVERY", 50)))
        self._writes = 0
        super().__init__(location, params)

    def _cull(self) -> None:
        self._writes += 1
        if self._writes % self._cull_every == 0:
            super()._cull()

    def clear(self) -> None:
        super().clear()
        for hook in CLEAR_HOOKS:
            hook()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._createdir()
        # Not a *.djcache file: clear() and culling leave it alone.
        with open(os.path.join(self._dir, "counters.lock"), "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT_SENTINEL,
            version: int | None = None) -> bool:  # fmt: skip
        with self._locked():
            return super().add(key, value, timeout, version)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Rewrite the counter's file in place under the lock, keeping its expiry (as Redis's
        INCR does; Django's resets it to the default timeout). In place because replacing a
        file by rename costs milliseconds on ext4 (it flushes the data), on every request
        that a throttle counts. BaseCache.decr calls incr(key, -delta): both are covered."""
        fname = self._key_to_file(key, version)
        with self._locked():
            try:
                with open(fname, "r+b") as handle:
                    expiry = pickle.load(handle)
                    if expiry is not None and expiry < time.time():
                        raise FileNotFoundError  # expired: as if missing
                    value = pickle.loads(zlib.decompress(handle.read())) + delta
                    handle.seek(0)
                    handle.write(pickle.dumps(expiry, self.pickle_protocol))
                    handle.write(zlib.compress(pickle.dumps(value, self.pickle_protocol)))
                    handle.truncate()
                    return int(value)
            except (FileNotFoundError, EOFError):
                raise ValueError(f"Key '{key}' not found") from None

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except (EOFError, zlib.error, pickle.UnpicklingError):
            # Read while incr rewrote it in place: read again once the rewrite is done.
            with self._locked():
                return super().get(key, default, version)


def cache_from_url(url: str, cache_dir: Path, key_prefix: str = "catalog") -> dict[str, Any]:
    """The ``CACHES["default"]`` entry for ``CACHE_URL`` (``""`` -> files in ``cache_dir``).

    ``redis://``/``rediss://``/``unix://`` -> Django's own ``RedisCache`` (Redis or Valkey);
    ``file:///path`` -> files there; ``locmem://`` -> this process only (development).
    """
    scheme = urlsplit(url).scheme.lower() if url else "file"
    if scheme in {"redis", "rediss", "unix", "valkey", "valkeys"}:
        location = url.replace("valkey", "redis", 1) if scheme.startswith("valkey") else url
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "TIMEOUT": DEFAULT_TIMEOUT,
            "KEY_PREFIX": key_prefix,  # sites sharing one Redis keep apart
            # A Redis outage must not hang requests: fail within seconds, not the TCP timeout.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    if scheme == "file":
        path = urlsplit(url).path if url else ""
        return {
            "BACKEND": "catalog.cache_backends.FileCache",
            "LOCATION": path or str(cache_dir),
            "TIMEOUT": DEFAULT_TIMEOUT,
            "OPTIONS": {"MAX_ENTRIES": FILE_CACHE_MAX_ENTRIES},
        }
    if scheme == "locmem":
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "catalog",
            "TIMEOUT": DEFAULT_TIMEOUT,
            "OPTIONS": {"MAX_ENTRIES": 2000},
        }
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"CACHE_URL {url!r}: unknown scheme {scheme!r} (use redis://, rediss://, file:// or "
        "locmem://, or leave it unset for files under CACHE_DIR)"
    )
