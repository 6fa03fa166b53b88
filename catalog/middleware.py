"""Response headers and failure handling shared by every page and API response."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

# No inline scripts anywhere: every script is a static file, so 'self' is enough.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


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
