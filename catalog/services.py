"""Catalog writes, and the fingerprint that tells readers the catalog changed.

The import pipeline lives in :mod:`catalog.importer` (reading, planning, parsing) and
:mod:`catalog.import_rows` (the rows it writes); its public names are re-exported here so
callers have one entry point: ``from catalog.services import import_rules``.

The fingerprint is forgotten by the signal handlers that :class:`catalog.apps.CatalogConfig`
connects when the app is ready.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from django.db.models import Count, Max

from catalog.importer import (
    INTERRUPTED_AFTER,
    FileError,
    ImportAborted,
    ImportReport,
    Progress,
    content_hash,
    import_rules,
    rule_set_for,
    unstorable,
)
from catalog.models import Rule

__all__ = [
    "FINGERPRINT_TTL",
    "INTERRUPTED_AFTER",
    "FileError",
    "ImportAborted",
    "ImportReport",
    "Progress",
    "catalog_fingerprint",
    "content_hash",
    "current_fingerprint",
    "forget_fingerprint",
    "import_rules",
    "rule_set_for",
    "unstorable",
]


def catalog_fingerprint() -> str:
    """Changes whenever the catalog changes; lets per-process caches (sandbox) rebuild."""
    # COUNT(*) (not COUNT(id)) lets PostgreSQL answer from the index after VACUUM.
    stats = Rule.objects.aggregate(n=Count("*"), latest=Max("updated_at"))
    return f"{stats['n']}:{stats['latest'].isoformat() if stats['latest'] else ''}"


# How long a process reuses the catalog fingerprint. The query costs a round trip (more than a
# cached page or an indicator lookup); reusing it for a moment makes caches and validators
# nearly free under load. An import or a rule deletion in this process forgets it at once;
# other processes catch up within the TTL.
FINGERPRINT_TTL = 2.0
_fingerprint: tuple[float, str] | None = None


# Set by catalog.caching.PageCacheMiddleware for a cacheable GET: the fingerprint its cache key
# was made from, so the view renders (and validates) that same catalog state without asking
# the database again.
pinned_fingerprint: ContextVar[str | None] = ContextVar("pinned_fingerprint", default=None)


def current_fingerprint() -> str:
    """:func:`catalog_fingerprint`, reused for up to ``FINGERPRINT_TTL`` seconds."""
    global _fingerprint
    pinned = pinned_fingerprint.get()
    if pinned is not None:
        return pinned
    now = time.monotonic()
    cached = _fingerprint
    if cached is not None and now - cached[0] < FINGERPRINT_TTL:
        return cached[1]
    value = catalog_fingerprint()
    _fingerprint = (now, value)
    return value


def forget_fingerprint(**kwargs: Any) -> None:
    """Drop the reused fingerprint (a signal handler: an import ran or a rule was deleted)."""
    global _fingerprint
    _fingerprint = None
