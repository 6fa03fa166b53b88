"""Limit/offset pagination for the whole API: strict parameters, ``limit`` capped."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# Offsets past this are refused: beyond it a value would overflow the databases' integers.
MAX_OFFSET = 1_000_000_000


def _integer_param(request: Request, name: str, minimum: int, maximum: int | None) -> int | None:
    """The integer value of query parameter ``name``, None when absent; a 400 when invalid."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: ["A whole number is required."]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValidationError({name: [f"Must be {bound}."]})
    return value


class CatalogPagination(LimitOffsetPagination):
    """One pagination setting for the whole API; ``limit`` is capped at ``max_limit``.

    DRF's own class silently replaces a malformed ``limit`` with the default; here a bad value
    is a 400 naming the parameter, like every other bad parameter of the API.
    """

    default_limit = 50
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        value = _integer_param(request, self.limit_query_param, 1, None)
        return self.default_limit if value is None else min(value, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _integer_param(request, self.offset_query_param, 0, MAX_OFFSET) or 0

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        page = list(queryset[self.offset : self.offset + self.limit])
        if len(page) < self.limit and (page or self.offset == 0):
            # A short page ends the results, so the total is known without a COUNT query
            # (an identity lookup, the commonest call, then costs one query instead of two).
            self.count = self.offset + len(page)
        else:
            self.count = self.get_count(queryset)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return page

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
