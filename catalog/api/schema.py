"""OpenAPI generation: drf-spectacular's AutoSchema plus the error responses every API view
can give, so that clients (and the schemathesis run in the tests) know them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS, IsAdminUser

from catalog.api.errors import ErrorSerializer


class CatalogAutoSchema(AutoSchema):
    """Adds 400 (every view rejects bad and unknown parameters), 404 (path parameters),
    401/403 (writes and staff-only views) and 304 (conditional GETs) to each operation."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        # One shape for every error (catalog.api.errors): the 400 names the bad parameter.
        detail = self.resolve_serializer(ErrorSerializer, "response").ref
        errors = {"400": ("Bad parameter: the body names it", detail)}
        if "{" in path:
            errors["404"] = ("Not found", detail)
        staff_only = any(
            isinstance(p, type) and issubclass(p, IsAdminUser) for p in self.view.permission_classes
        )
        if staff_only or method.upper() not in SAFE_METHODS:
            errors["401"] = ("Not authenticated", detail)
            errors["403"] = ("Not allowed (staff only)", detail)
        for code, (description, schema) in errors.items():
            responses.setdefault(
                code,
                {"content": {"application/json": {"schema": schema}}, "description": description},
            )
        if getattr(self.view, "conditional", False) and method.upper() == "GET":
            responses.setdefault(
                "304", {"description": "Not modified since the ETag/Last-Modified given"}
            )
        return operation

    def get_filter_backends(self) -> list[Any]:
        # Views computed over the filtered rules (ATT&CK, layer, events, exports) are not
        # lists, but take the rule filters all the same.
        if getattr(self.view, "computed_over_rules", False):
            return list(self.view.filter_backends)
        return super().get_filter_backends()
