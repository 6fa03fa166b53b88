"""The one error shape of every ``/api/`` response (set as DRF's ``EXCEPTION_HANDLER``)::

    {"detail": "Select a valid choice. urgent is not one of the available choices.",
     "parameter": "level",
     "choices": ["critical", "high", "informational", "low", "medium"]}

``parameter`` is always present: the query parameter, body field or ``"body"`` at fault, or
null when no single parameter is (404, 401/403, 405, 429...). ``choices`` is there only when
the parameter takes one of a known list of values. A request with several bad parameters is
answered with the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

BODY = "body"
"""The ``parameter`` of an error about the request body as a whole (size, syntax, type)."""


class ErrorSerializer(serializers.Serializer):
    """Every API error (documentation: the body is built by :func:`api_exception_handler`)."""

    detail = serializers.CharField(help_text="What is wrong, for a person")
    parameter = serializers.CharField(
        allow_null=True,
        help_text='The query parameter, body field or "body" at fault; null when none is',
    )
    choices = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The values the parameter accepts, when it takes one of a list",
    )


class ParameterError(APIException):
    """A bad parameter, with the values it accepts when there is a list of them."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        parameter: str | None,
        choices: Iterable[str] = (),
        status_code: int = status.HTTP_400_BAD_REQUEST,
    ) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.choices = list(choices)
        self.status_code = status_code


def error_body(
    detail: str, parameter: str | None = None, choices: Iterable[str] = ()
) -> dict[str, Any]:
    """The API's error body."""
    body: dict[str, Any] = {"detail": str(detail), "parameter": parameter}
    listed = list(choices)
    if listed:
        body["choices"] = listed
    return body


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, ``WWW-Authenticate``, ``Retry-After``), with the body in the
    API's one shape. Anything DRF does not handle stays a server error."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ParameterError):
        response.data = error_body(str(exc.detail), exc.parameter, exc.choices)
    elif isinstance(exc, ValidationError):
        parameter, message = first_error(exc.detail)
        response.data = error_body(message, parameter, _choices(context.get("view"), parameter))
    else:
        parameter = BODY if isinstance(exc, ParseError) else None
        response.data = error_body(_text(response.data), parameter)
    return response


def first_error(detail: Any) -> tuple[str | None, str]:
    """(parameter, message) of the first error in a ValidationError's detail.

    Nested details (``{"events": {"0": [...]}}``) name their top-level key; errors that
    belong to no field (``non_field_errors``, a bare list) name no parameter.
    """
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        parameter = None if key == api_settings.NON_FIELD_ERRORS_KEY else str(key)
        return parameter, _text(value)
    return None, _text(detail)


def _text(detail: Any) -> str:
    """The first message inside a (possibly nested) error detail."""
    if isinstance(detail, dict):
        return _text(detail["detail"] if "detail" in detail else next(iter(detail.values()), ""))
    if isinstance(detail, list):
        return _text(detail[0] if detail else "")
    return str(detail) or "Invalid input."


def _choices(view: Any, parameter: str | None) -> list[str]:
    """The choices of a filter parameter (``level``, ``sort``...) of the view's filter set."""
    filterset = getattr(view, "filterset_class", None)
    if filterset is None or parameter is None:
        return []
    choices = getattr(filterset.base_filters.get(parameter), "extra", {}).get("choices")
    if callable(choices):  # computed lists (the validator identifiers of ``check``)
        choices = choices()
    if not choices:
        return []
    return [str(value) for value, _label in choices]


def api_not_found(request: HttpRequest) -> JsonResponse:
    """Unknown API paths get JSON in the same shape as every other API error."""
    return JsonResponse(error_body("Not found."), status=404)
