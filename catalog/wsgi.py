"""WSGI entry point (gunicorn catalog.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
application = get_wsgi_application()


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


if os.environ.get("SANDBOX_PRELOAD", "").lower() in {"1", "true", "yes", "on"}:
    _warm_sandbox()
