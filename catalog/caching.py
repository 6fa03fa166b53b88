"""Caching keyed by the catalog fingerprint, for pages whose data only changes with an import.

:func:`catalog.services.catalog_fingerprint` changes with every import, so putting it in
every key makes a page reflect a new import on its next request without any invalidation.
Three tools: :func:`cached` (one computed value), :class:`Lazy` (a context value computed
only if a ``{% cache %}`` fragment renders) and :func:`fingerprint_cached` (whole responses).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from catalog.services import current_fingerprint

T = TypeVar("T")

CACHE_SECONDS = 3600
PAGE_CACHE_SECONDS = 600


def cached(name: str, fingerprint: str, build: Callable[[], T]) -> T:
    """``build()`` once per catalog state: the fingerprint is part of the key, so an import
    (which changes it) makes every page recompute on its next request."""
    key = "pages:" + hashlib.sha1(f"{name}\x1f{fingerprint}".encode()).hexdigest()
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, CACHE_SECONDS)
    return value


class Lazy:
    """A context value computed on first use and kept: inside a ``{% cache %}`` block it runs
    only when the fragment is not cached, so a warm page skips the queries behind it."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build
        self.value: Any = None
        self.done = False

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self.build(), True
        return self.value


def fingerprint_cached(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Cache whole responses of a public page per URL and catalog state.

    Only anonymous GETs (no session cookie) are cached, and only 200s: the page must hold
    nothing per user (no CSRF token: the sandbox forms it posts to are CSRF-exempt because
    evaluating text changes nothing). A new import changes the fingerprint, so the next
    request renders afresh.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "GET" or settings.SESSION_COOKIE_NAME in request.COOKIES:
            return view(request, *args, **kwargs)
        digest = hashlib.sha1(
            f"{current_fingerprint()}|{request.get_full_path()}".encode()
        ).hexdigest()
        key = f"page:{view.__name__}:{digest}"
        hit = cache.get(key)
        if hit is not None:
            content, content_type = hit
            return HttpResponse(content, content_type=content_type)
        response = view(request, *args, **kwargs)
        if response.status_code == 200 and not response.streaming and not response.cookies:
            cache.set(key, (response.content, response["Content-Type"]), PAGE_CACHE_SECONDS)
        return response

    return wrapper
