"""Response headers and failure handling shared by every page and API response."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

# No inline scripts anywhere: every script is a static file, so 'self' is enough.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class NulPathMiddleware:
    """A path holding NUL names nothing here (no id, slug or file has one) and PostgreSQL
    refuses NUL in a query: such a request is a 404 before any view looks it up."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            if request.path_info.startswith("/api/"):
                from catalog.api.errors import api_not_found  # the API's one error shape

                return api_not_found(request)
            raise Http404("no such page")
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy and Permissions-Policy (Django sets the other headers)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csp = getattr(settings, "CONTENT_SECURITY_POLICY", DEFAULT_CSP)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The API docs viewer (Swagger UI) needs inline styles; it sets its own policy.
        if self.csp and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.csp
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class DatabaseUnavailableMiddleware:
    """A database outage answers 503 (page or JSON) instead of a 500, and recovers by itself.

    Django opens connections lazily per request, so once the database is back the next
    request simply succeeds; nothing needs resetting here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DatabaseError | InterfaceError) or not _is_outage(exception):
            return None
        from django.db import connections

        from catalog import health

        health.forget()  # /healthz must not vouch for the database from before the outage
        for conn in connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()
        if request.path.startswith("/api/") or "application/json" in request.headers.get(
            "Accept", ""
        ):
            response: HttpResponse = JsonResponse(
                {
                    "detail": "The catalog database is unavailable; try again shortly.",
                    "parameter": None,
                },
                status=503,
            )
        else:
            response = HttpResponse(render_to_string("503.html", request=request), status=503)
        response["Retry-After"] = "5"
        return response


def _is_outage(exception: Exception) -> bool:
    """Connection-level failures only; a bad query stays a (logged) server error."""
    from django.db import OperationalError

    if isinstance(exception, InterfaceError | OperationalError):
        return True
    text = str(exception).lower()
    return any(s in text for s in ("connection", "server closed", "terminating", "shut down"))


# What the ``Server`` header says, whatever server runs the site: naming the software (and so
# its version's known holes) helps nobody but an attacker (finding 12).
SERVER_HEADER = "sigma-catalog"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def neutral_server_header(app: WSGIApp) -> WSGIApp:
    """Wrap the WSGI application so every response (pages, static files, errors) carries
    ``Server: sigma-catalog`` instead of the server's name. granian keeps an application's
    ``Server`` header; gunicorn writes its own line, renamed in ``catalog/gunicorn.conf.py``,
    so nothing is added there (a second ``Server`` line would be sent)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
            return app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != "server"]
            return start_response(status, [*kept, ("Server", SERVER_HEADER)], *exc_info)

        return app(environ, start)

    return wrapped


DRAIN_LIMIT = 4 * 1024 * 1024
"""Largest unread request body read and dropped before a refusal is sent (see below)."""
_DRAIN_CHUNK = 64 * 1024


class DrainRefusedBodyMiddleware:
    """Read (and drop) the unread body of a request refused with 429 or 503.

    A busy sandbox refuses a large body *before* parsing it (catalog.throttling.process_busy),
    and the rate throttles refuse before the view reads it. Answering while the client is
    still uploading closes the connection under it: the client sees a broken pipe instead of
    the 503/429 and its Retry-After (what bench_load's heavy clients saw once heavy
    evaluations left the web process). Reading the bytes costs a copy, not a parse; bodies
    over DRAIN_LIMIT (or of unknown length) are not read: those connections just close.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code in (429, 503) and not getattr(request, "_read_started", True):
            length = request.META.get("CONTENT_LENGTH") or ""
            if length.isdigit() and 0 < int(length) <= DRAIN_LIMIT:
                try:
                    while request.read(_DRAIN_CHUNK):
                        pass
                except OSError:
                    pass  # the client went away: nothing to answer
        return response
