"""Throttles that count people, not headers: one implementation for pages and the API.

* :func:`client_address` is the address a limit counts: ``REMOTE_ADDR``, or with
  ``TRUSTED_PROXIES = N`` (N proxies in front of the site, each appending to
  ``X-Forwarded-For``) the Nth address from the right of that header. With the default 0 the
  header is ignored, so rotating it buys nothing.
* :func:`hit_rate_limit` is a fixed-window counter in ``caches["default"]`` (``add`` then
  ``incr``: atomic on Redis and the database cache), so every worker and machine sharing the
  cache counts together. The sandbox page and ``POST /api/sandbox/`` share one key per client.
* :func:`heavy_slot` bounds heavy work: at most ``HEAVY_PER_CLIENT`` requests in flight per
  client (shared slot keys that expire, so a crashed request cannot lock a client out), and
  at most ``HEAVY_PER_PROCESS`` heavy evaluations per process (a semaphore, never waited on:
  the excess is refused at once with Retry-After instead of queueing behind the CPU).
* :class:`AdminLoginThrottleMiddleware` refuses ``/admin/`` sign-in after too many failures
  per client address and per username.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import caches
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

DURATIONS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def _cache() -> Any:
    return caches["default"]


# -- the client ---------------------------------------------------------------------------------


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str:
    """The address of the person behind the request, as far as the trusted proxies tell."""
    remote = _valid_ip(request.META.get("REMOTE_ADDR", "") or "") or "unknown"
    hops = int(getattr(settings, "TRUSTED_PROXIES", 0) or 0)
    if hops <= 0:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if not forwarded:
        return remote
    # Each trusted proxy appended the address it saw: the Nth from the right is the client
    # as the outermost trusted proxy saw it; anything further left is the client's own claim.
    chosen = forwarded[-min(hops, len(forwarded))]
    return _valid_ip(chosen) or remote


# -- rate limits --------------------------------------------------------------------------------


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"120/min"`` -> (120, 60); ``None`` or ``""`` -> no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    number = "".join(ch for ch in period if ch.isdigit()) or "1"
    unit = period.lstrip("0123456789").strip().lower()
    return int(count), int(number) * DURATIONS.get(unit, DURATIONS.get(unit[:1], 60))


def sandbox_rate() -> str | None:
    """The sandbox rate (``SANDBOX_THROTTLE``), read at request time so tests can change it."""
    rates = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_THROTTLE_RATES", {})
    return rates.get("sandbox")


def hit_rate_limit(scope: str, ident: str, rate: str | None) -> int | None:
    """Count one request; the seconds to wait when over the limit, else ``None``."""
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, period = parsed
    now = time.time()
    window = int(now // period)
    key = f"throttle:{scope}:{ident}:{window}"
    cache = _cache()
    if cache.add(key, 1, timeout=period + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this request opens the window
            cache.add(key, 1, timeout=period + 1)
            count = 1
    if count <= limit:
        return None
    return max(1, int((window + 1) * period - now + 0.999))


def failure_count(scope: str, ident: str) -> int:
    return int(_cache().get(f"failures:{scope}:{ident}", 0) or 0)


def record_failure(scope: str, ident: str, period: int) -> None:
    key = f"failures:{scope}:{ident}"
    cache = _cache()
    if not cache.add(key, 1, timeout=period):
        try:
            cache.incr(key)
        except ValueError:
            cache.add(key, 1, timeout=period)


class Throttled(Exception):
    """Too many requests (429) or too busy (503); ``wait`` is the Retry-After in seconds."""

    def __init__(self, message: str, *, wait: int, status_code: int = 429) -> None:
        super().__init__(message)
        self.wait = wait
        self.status_code = status_code


class SandboxRateThrottle(BaseThrottle):
    """DRF face of the shared sandbox limit (``DEFAULT_THROTTLE_RATES['sandbox']``)."""

    def __init__(self) -> None:
        self._wait: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        self._wait = check_sandbox_rate(request)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


def check_sandbox_rate(request: HttpRequest) -> int | None:
    """The one sandbox limit, shared by the page and the API (same key per client)."""
    return hit_rate_limit("sandbox", client_address(request), sandbox_rate())


# -- heavy work ---------------------------------------------------------------------------------

_process_lock = threading.Lock()
_process_slots: threading.BoundedSemaphore | None = None
_process_size = 0


def _semaphore() -> threading.BoundedSemaphore:
    global _process_slots, _process_size
    size = max(1, int(getattr(settings, "HEAVY_PER_PROCESS", 1)))
    with _process_lock:
        if _process_slots is None or _process_size != size:
            _process_slots, _process_size = threading.BoundedSemaphore(size), size
        return _process_slots


def busy_refusal() -> Throttled:
    """The 503 for a request refused because this process's heavy slots are all taken."""
    return Throttled(
        "the server is busy with other large evaluations; retry shortly", wait=5, status_code=503
    )


def process_busy() -> bool:
    """Whether every heavy evaluation slot of this process is taken right now.

    A peek, not a reservation: the request that asks still takes its slot with
    :func:`heavy_slot`. It lets a large body be refused before it is read and parsed, which
    is most of the CPU a refused request would otherwise cost the threads serving others.
    """
    semaphore = _semaphore()
    if semaphore.acquire(blocking=False):
        semaphore.release()
        return False
    return True


@contextmanager
def heavy_slot(
    request: HttpRequest, scope: str = "heavy", *, process_cap: bool = True
) -> Iterator[None]:
    """Hold one of the client's heavy slots and (``process_cap``) one of the process's heavy
    evaluation slots; raise :class:`Throttled` at once when either is taken (429 per client,
    503 for the process)."""
    per_client = int(getattr(settings, "HEAVY_PER_CLIENT", 2))
    expiry = int(getattr(settings, "HEAVY_SLOT_SECONDS", 120))
    cache = _cache()
    # K slot keys per client, each taken with an atomic ``add`` that sets its expiry once:
    # nothing renews it (unlike a counter, whose incr resets the timeout on some backends),
    # so a slot left by a crashed request frees itself after HEAVY_SLOT_SECONDS.
    prefix = f"inflight:{scope}:{client_address(request)}"
    slot = next(
        (f"{prefix}:{i}" for i in range(per_client) if cache.add(f"{prefix}:{i}", 1, expiry)),
        None,
    )
    semaphore: threading.BoundedSemaphore | None = None
    try:
        if slot is None:
            raise Throttled(
                f"{per_client} heavy requests from this client are already running; "
                "wait for them to finish",
                wait=5,
            )
        semaphore = _semaphore() if process_cap else None
        if semaphore is not None and not semaphore.acquire(blocking=False):
            semaphore = None
            raise busy_refusal()
        yield
    finally:
        if semaphore is not None:
            semaphore.release()
        if slot is not None:
            cache.delete(slot)


class HeldStream:
    """A streamed body that holds a heavy slot until it is sent or closed.

    The slot is taken when this is built (in the view), so a refusal is still a proper
    429 response rather than a broken stream; WSGI servers call ``close()`` whether or not
    the body was read, which gives the slot back."""

    def __init__(self, request: HttpRequest, scope: str, chunks: Iterator[bytes]) -> None:
        self._slot = heavy_slot(request, scope, process_cap=False)
        self._slot.__enter__()
        self._chunks = chunks
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._open:
            self._open = False
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            self._slot.__exit__(None, None, None)


# -- admin sign-in ------------------------------------------------------------------------------


def _login_settings() -> tuple[int, int]:
    return (
        int(getattr(settings, "LOGIN_FAILURE_LIMIT", 5)),
        int(getattr(settings, "LOGIN_FAILURE_SECONDS", 300)),
    )


def _login_idents(request: HttpRequest, username: str | None) -> list[tuple[str, str]]:
    idents = [("login-address", client_address(request))]
    if username:
        idents.append(("login-user", username.strip().casefold()[:150]))
    return idents


@receiver(user_login_failed)
def _count_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    if request is None:
        return
    _limit, period = _login_settings()
    for scope, ident in _login_idents(request, credentials.get("username")):
        record_failure(scope, ident, period)


class AdminLoginThrottleMiddleware:
    """After ``LOGIN_FAILURE_LIMIT`` failed sign-ins in ``LOGIN_FAILURE_SECONDS`` from one
    address or for one username, the admin sign-in answers 429 with a clear page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The admin's sign-in and the site's own (/accounts/login/, for saved drafts).
        if request.method == "POST" and request.path in (reverse("admin:login"), reverse("login")):
            limit, period = _login_settings()
            username = request.POST.get("username")
            if any(failure_count(s, i) >= limit for s, i in _login_idents(request, username)):
                minutes = max(1, period // 60)
                html = render_to_string(
                    "throttled.html",
                    {
                        "message": f"Too many failed sign-in attempts. Try again in "
                        f"{minutes} minute{'s' if minutes != 1 else ''}."
                    },
                    request=request,
                )
                response = HttpResponse(html, status=429)
                response["Retry-After"] = str(period)
                return response
        return self.get_response(request)
