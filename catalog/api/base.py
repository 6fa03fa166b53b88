"""What every API view shares: token-first authentication, strict query parameters,
conditional GETs answered from the catalog fingerprint, single-format negotiation for files,
and the rule querysets the list views start from."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.http import http_date
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings

from catalog.api.filtersets import RuleAPIFilterSet
from catalog.api.schema import CatalogAutoSchema
from catalog.models import Rule, Tag
from catalog.services import current_fingerprint

# Bump when a response's shape changes: ETags must not survive a change of representation.
REPRESENTATION_VERSION = "1"

BRIEF_RULE_FIELDS = (
    "rule_id", "title", "status", "level", "product", "category", "service", "rule_set",
    "date", "modified",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Shared behaviour
# --------------------------------------------------------------------------------------------


class _Conditional(Exception):
    """Carries the 304 (or 412) that answers a conditional request."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def catalog_validators(request: Request) -> tuple[str, int | None]:
    """ETag and Last-Modified (Unix time) of the current catalog for this representation.

    The catalog fingerprint (rule count + latest ``updated_at``) changes with every import
    that changes anything, and indicator counts only change through imports.
    """
    fingerprint = current_fingerprint()
    latest = fingerprint.partition(":")[2]
    try:
        last_modified = int(datetime.fromisoformat(latest).timestamp()) if latest else None
    except ValueError:
        last_modified = None
    key = "|".join(
        [
            REPRESENTATION_VERSION,
            fingerprint,
            request.accepted_media_type or "",
            request.get_full_path(),
        ]
    )
    return f'"{hashlib.sha1(key.encode()).hexdigest()}"', last_modified


class CatalogViewMixin:
    """Base of every API view: token auth first (so anonymous writes get 401 with
    ``WWW-Authenticate``), strict query parameters, conditional GETs when ``conditional``."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    schema = CatalogAutoSchema()
    conditional = False

    def is_collection(self) -> bool:
        """Whether filters and pagination apply (lists, not details or writes)."""
        return getattr(self, "action", "list") == "list"

    def allowed_query_params(self) -> set[str]:
        allowed = {api_settings.URL_FORMAT_OVERRIDE}
        if not self.is_collection():
            return allowed
        filterset = getattr(self, "filterset_class", None)
        if filterset is not None:
            allowed |= set(filterset.base_filters)
        paginator = getattr(self, "paginator", None)
        if paginator is not None:
            allowed |= {paginator.limit_query_param, paginator.offset_query_param}
        return allowed

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        unknown = sorted(set(request.query_params) - self.allowed_query_params())
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})
        if self.conditional and request.method in ("GET", "HEAD"):
            self._validators = catalog_validators(request)
            etag, last_modified = self._validators
            answer = get_conditional_response(
                request._request, etag=etag, last_modified=last_modified
            )
            if answer is not None:
                raise _Conditional(answer)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Conditional):
            return exc.response
        return super().handle_exception(exc)  # type: ignore[misc]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        validators = getattr(self, "_validators", None)
        if validators and response.status_code in (200, 304):
            etag, last_modified = validators
            response.headers["ETag"] = etag
            if last_modified is not None:
                response.headers["Last-Modified"] = http_date(last_modified)
            # Cacheable, but revalidated every time: the ETag makes that a cheap 304.
            patch_cache_control(response, no_cache=True)
            patch_vary_headers(response, ["Accept"])
        return response


class SingleFormatNegotiation(BaseContentNegotiation):
    """Serve the view's first renderer whatever ``Accept`` says (files such as a layer or an
    export have one format; errors still render as JSON)."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


def rules_filter_given(request: Request) -> bool:
    return any(name in request.query_params for name in RuleAPIFilterSet.base_filters)


def with_total_order(queryset: QuerySet[Rule]) -> QuerySet[Rule]:
    """Append the primary key to the ordering: pages must not overlap or skip rules."""
    ordering = list(queryset.query.order_by) or list(Rule._meta.ordering)
    return queryset.order_by(*ordering, "pk")


def brief_rules() -> QuerySet[Rule]:
    return Rule.objects.only(*BRIEF_RULE_FIELDS).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("name"))
    )
