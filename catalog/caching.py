"""Caching keyed by the catalog fingerprint, for pages whose data only changes with an import.

:func:`catalog.services.catalog_fingerprint` changes with every import, so putting it in
every key makes a page reflect a new import on its next request without any invalidation.
Three tools: :func:`cached` (one computed value), :class:`Lazy` (a context value computed
only if a ``{% cache %}`` fragment renders) and :func:`fingerprint_cached` (whole responses).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from catalog.cache_backends import CLEAR_HOOKS
from catalog.services import current_fingerprint, pinned_fingerprint

T = TypeVar("T")

CACHE_SECONDS = 3600
PAGE_CACHE_SECONDS = 600
_REPO = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """A digest of the code and templates that render cached pages, part of every cache key.

    The shared cache outlives a deploy (file cache, Redis): without it a new release of the
    site would serve pages rendered by the old templates until the next import. Computed
    from file contents, so every node running the same code agrees.
    """
    digest = hashlib.sha1()
    for folder, pattern in (("templates", "*.html"), ("catalog", "*.py")):
        for path in sorted((_REPO / folder).rglob(pattern)):
            digest.update(path.relative_to(_REPO).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cached(name: str, fingerprint: str, build: Callable[[], T]) -> T:
    """``build()`` once per catalog state: the fingerprint is part of the key, so an import
    (which changes it) makes every page recompute on its next request."""
    text = f"{name}\x1f{fingerprint}\x1f{code_version()}"
    key = "pages:" + hashlib.sha1(text.encode()).hexdigest()
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


Params = Mapping[str, Callable[[list[str]], str]]


def flag(values: list[str]) -> str:
    """A ``?x=1`` switch as a page reads it (``request.GET.get(x) == "1"``): "1" or ""."""
    return "1" if values and values[-1] == "1" else ""


def last_value(values: list[str]) -> str:
    """A parameter read with ``request.GET.get``: its last value ("" when absent)."""
    return values[-1] if values else ""


def every_value(values: list[str]) -> str:
    """A parameter read with ``getlist`` (facets): all its values, in order."""
    return "\x1f".join(v.replace("\x00", "") for v in values)


class EveryParameter(dict[str, Callable[[list[str]], str]]):
    """``params`` of a view that answers 400 to any parameter it does not read (the API's
    conditional views): every parameter is part of the key."""


def page_key(request: HttpRequest, name: str, params: Params) -> str:
    """The cache key of a page: its path, the catalog state and only the query parameters the
    page reads, each normalised as the view reads it, in sorted order. Other parameters
    (tracking tags, cache busters, junk) share the one entry instead of each making its own
    (finding 6: 2,000 junk URLs grew every worker by 700 MB). Host and scheme are part of it
    too: a response may hold absolute URLs."""
    if isinstance(params, EveryParameter):
        pairs = sorted((k, every_value(v)) for k, v in request.GET.lists())
        read = "&".join(f"{k}={v}" for k, v in pairs) + "|" + request.headers.get("Accept", "")
    else:
        read = "&".join(f"{k}={params[k](request.GET.getlist(k))}" for k in sorted(params))
    origin = f"{request.scheme}://{request.get_host()}"
    text = f"{current_fingerprint()}|{code_version()}|{origin}{request.path}|{read}"
    return f"page:{name}:{hashlib.sha1(text.encode()).hexdigest()}"


def fingerprint_cached(
    params: Params | None = None,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Mark a public page for :class:`PageCacheMiddleware`: whole responses cached per path,
    read parameters and catalog state.

    ``params`` maps each query parameter the view reads to how it reads it (:func:`flag`,
    :func:`every_value`); any other parameter leaves the key unchanged. The page must hold
    nothing per user (no CSRF token: the sandbox forms it posts to are CSRF-exempt because
    evaluating text changes nothing).
    """
    read: Params = dict(params or {})

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        view.page_cache_params = read  # type: ignore[attr-defined]  # copied by @wraps
        return view

    return decorator


# Response headers never stored with a page: per response, or re-added by outer middleware.
_UNCACHED_HEADERS = {"set-cookie", "date", "content-length", "expires"}


class _LocalPages:
    """A small per-process LRU in front of the shared cache, bounded in bytes. Safe because a
    page key names one catalog state: an entry never goes stale, it only stops being asked
    for (and ages out here after PAGE_CACHE_SECONDS, like in the shared cache)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self.items: OrderedDict[str, tuple[float, int, Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self.lock:
            item = self.items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                self._drop(key)
                return None
            self.items.move_to_end(key)
            return item[2]

    def put(self, key: str, value: Any, size: int) -> None:
        if size > self.max_bytes // 8:
            return  # a huge page would evict everything else
        with self.lock:
            if key in self.items:
                self._drop(key)
            self.items[key] = (time.monotonic() + PAGE_CACHE_SECONDS, size, value)
            self.size += size
            while self.size > self.max_bytes:
                self._drop(next(iter(self.items)))

    def _drop(self, key: str) -> None:
        self.size -= self.items.pop(key)[1]

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.size = 0


LOCAL_PAGES = _LocalPages(32 * 1024 * 1024)
CLEAR_HOOKS.append(LOCAL_PAGES.clear)  # cache.clear() forgets the local copies too
_NEVER_PAGES = ("/admin/", "/static/", "/healthz", "/sandbox/", "/api/sandbox/", "/api/jobs/")
EVERY_PARAMETER = EveryParameter()


@receiver(setting_changed)
def _forget_local_pages(**kwargs: Any) -> None:
    """Tests change settings (headers, policies) under an unchanged catalog: drop local copies."""
    LOCAL_PAGES.clear()


RENDER_LOCK_SECONDS = 10
"""How long a render holds its page's lock at most (a crashed worker's lock expires)."""
RENDER_WAIT_SECONDS = 2.0
"""How long a request waits for another's render of the same page before rendering itself."""
_POLL_SECONDS = 0.01


def _lookup(key: str) -> Any:
    hit = LOCAL_PAGES.get(key)
    if hit is None:
        hit = cache.get(key)
        if hit is not None:
            LOCAL_PAGES.put(key, hit, len(hit[0]))
    return hit


def _wait_for(key: str, lock: str) -> Any:
    """The entry another request is rendering, once it is stored; None when that render ends
    without one (an error page is not stored) or takes longer than RENDER_WAIT_SECONDS."""
    deadline = time.monotonic() + RENDER_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        hit = _lookup(key)
        if hit is not None:
            return hit
        if cache.get(lock) is None:
            return _lookup(key)  # stored just before the lock went, or not at all
    return None


class PageCacheMiddleware:
    """Serve pages marked with :func:`fingerprint_cached` from the cache, ahead of sessions,
    CSRF, authentication and the view (placed right after whitenoise).

    Only anonymous GETs (no session cookie) are served or stored, and only 200s without
    cookies. The stored entry is the finished response (body and headers, after the inner
    middleware set CSP and friends); outer middleware (security, whitenoise) runs on hits as
    on misses. The entry lives in the shared cache (``CACHE_URL``): every worker and node
    serves the one copy, and a new import changes the fingerprint in the key, so the next
    request renders afresh everywhere.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        params = self._params(request)
        if params is None:
            return self.get_response(request)
        request.get_host()  # a disallowed Host is refused (400) as without the cache
        match = request.resolver_match
        try:
            fingerprint = current_fingerprint()
        except DatabaseError:
            # No fingerprint: the view meets the outage too and answers 503 (middleware.py).
            return self.get_response(request)
        token = pinned_fingerprint.set(fingerprint)
        try:
            return self._serve(request, page_key(request, match.view_name, params))
        finally:
            pinned_fingerprint.reset(token)

    def _serve(self, request: HttpRequest, key: str) -> HttpResponse:
        hit = _lookup(key)
        if hit is None:
            # One render per page and catalog state: after an import every page misses at
            # once, and without this each concurrent request (on every node) renders the same
            # page. The others wait for its entry, briefly; past that they render too.
            lock = key + ":rendering"
            if not cache.add(lock, 1, RENDER_LOCK_SECONDS):
                hit = _wait_for(key, lock)
                if hit is None:
                    return self._render(request, key)
            else:
                try:
                    return self._render(request, key)
                finally:
                    cache.delete(lock)
        content, headers = hit
        return HttpResponse(content, headers=headers)

    def _render(self, request: HttpRequest, key: str) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 200 and not response.streaming and not response.cookies:
            headers = {k: v for k, v in response.items() if k.lower() not in _UNCACHED_HEADERS}
            entry = (response.content, headers)
            cache.set(key, entry, PAGE_CACHE_SECONDS)
            LOCAL_PAGES.put(key, entry, len(response.content))
        return response

    @staticmethod
    def _params(request: HttpRequest) -> Params | None:
        if request.method != "GET" or settings.SESSION_COOKIE_NAME in request.COOKIES:
            return None
        if request.path_info.startswith(_NEVER_PAGES):
            return None  # no cached page there: skip resolving the URL twice
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
        params: Params | None = getattr(match.func, "page_cache_params", None)
        view_class = getattr(match.func, "cls", None)
        if params is None and getattr(view_class, "conditional", False):
            # An API view whose answer is a function of the catalog state and the URL (its
            # ETag says so): cached for anonymous callers, who send no credentials. A
            # conditional request goes to the view, which answers 304 itself.
            if any(h in request.headers for h in ("Authorization", "If-None-Match",
                                                   "If-Modified-Since")):  # fmt: skip
                return None
            params = EVERY_PARAMETER
        if params is not None:
            request.resolver_match = match
        return params
