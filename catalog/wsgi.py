"""WSGI entry point (gunicorn catalog.wsgi)."""

import gc
import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
# A heavy sandbox evaluation holds the GIL in long stretches: handing it over every 1 ms (not
# Python's 5 ms) lets the cheap requests queued in the same worker (/healthz, cached pages)
# through. bench/bench_load.py measures /healthz under that load.
sys.setswitchinterval(float(os.environ.get("WEB_SWITCH_INTERVAL", "0.001")))
application = get_wsgi_application()

from catalog.middleware import neutral_server_header  # noqa: E402 - needs the settings above

application = neutral_server_header(application)


def _warm_sandbox() -> None:
    """Compile the catalog's rules before workers fork, so no request pays for it.

    With gunicorn's ``preload_app`` the compiled rules are shared copy-on-write by every
    worker. The connection used here is closed so that forked workers never share it.
    """
    from django.db import DatabaseError, connections

    from catalog.sandbox import catalog_evaluator

    try:
        catalog_evaluator()
    except DatabaseError:
        pass  # not migrated yet, or the database is down: build lazily on first use
    finally:
        connections.close_all()
        for conn in connections.all(initialized_only=True):
            # A connection pool (PostgreSQL) must not cross a fork: each worker opens its own.
            if getattr(conn, "pool", None) is not None:
                conn.close_pool()


if os.environ.get("SANDBOX_PRELOAD", "").lower() in {"1", "true", "yes", "on"}:
    _warm_sandbox()
# Everything loaded so far (Django, the compiled rules: a million objects) lives as long as the
# process: keep it out of the cyclic GC. Otherwise each full collection walks it all, holding
# the GIL for 1-2 s, and a heavy sandbox request (millions of allocations) triggers one often:
# that was the seconds-long /healthz tail under heavy load. Shared copy-on-write pages stay so.
gc.freeze()


def _start_heavy_helpers() -> None:
    """Heavy sandbox evaluations run in helper processes (catalog.offload, HEAVY_OFFLOAD):
    start them now, not on the first heavy request. Under gunicorn's preload this module is
    imported by the master, which must not own them: gunicorn.conf.py's post_fork starts each
    worker's own."""
    if "gunicorn" in sys.modules:
        return
    from catalog import offload

    offload.start()


_start_heavy_helpers()
