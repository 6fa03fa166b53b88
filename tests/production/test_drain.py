"""A request refused with 429/503 before its body was read gets the body read and dropped
first (catalog.middleware.DrainRefusedBodyMiddleware): otherwise the refusal closes the
connection while the client still uploads, and the client sees a broken pipe, not the
Retry-After. Replayed against a real server by bench/bench_load.py's heavy clients."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from catalog.middleware import DRAIN_LIMIT, DrainRefusedBodyMiddleware


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def _request(size: int) -> tuple[Any, CountingStream]:
    stream = CountingStream(b"x" * size)
    request = RequestFactory().post("/api/sandbox/", data=b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(size)
    request.META["wsgi.input"] = stream
    request._stream = stream  # what HttpRequest.read() reads from
    request._read_started = False
    return request, stream


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_reads_the_unread_body_first(status: int) -> None:
    request, stream = _request(1_500_000)
    response = DrainRefusedBodyMiddleware(lambda r: HttpResponse(status=status))(request)
    assert response.status_code == status
    assert stream.consumed == 1_500_000


@pytest.mark.parametrize(("status", "size"), [(200, 1000), (400, 1000), (503, DRAIN_LIMIT + 1)])
def test_other_answers_and_huge_bodies_are_not_read(status: int, size: int) -> None:
    request, stream = _request(size)
    DrainRefusedBodyMiddleware(lambda r: HttpResponse(status=status))(request)
    assert stream.consumed == 0


def test_a_body_the_view_read_is_not_read_again() -> None:
    request, stream = _request(1000)

    def view(r: Any) -> HttpResponse:
        r.read()
        return HttpResponse(status=503)

    DrainRefusedBodyMiddleware(view)(request)
    assert stream.consumed == 1000
