"""Import runs for staff (``/api/imports/``): list and read them, POST a rule file or archive
to import it synchronously."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.base import CatalogViewMixin
from catalog.api.errors import ParameterError
from catalog.api.serializers import (
    ImportReportSerializer,
    ImportRunSerializer,
    ImportUploadSerializer,
)
from catalog.models import ImportRun
from catalog.services import ImportAborted
from catalog.uploads import import_upload


@extend_schema_view(
    list=extend_schema(summary="Import runs, newest first (staff)"),
    retrieve=extend_schema(summary="One import run (staff)"),
    create=extend_schema(
        summary="Import an uploaded rule file or archive (staff)",
        request={"multipart/form-data": ImportUploadSerializer},
        responses={201: ImportReportSerializer},
    ),
)
class ImportRunViewSet(
    CatalogViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Import runs for staff; POST a .yml/.zip/.tar.gz to import it (synchronously)."""

    queryset = ImportRun.objects.order_by("-started_at", "-pk")
    serializer_class = ImportRunSerializer
    permission_classes = [IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_regex = r"\d+"

    def get_serializer_class(self) -> type[Any]:
        return ImportUploadSerializer if self.action == "create" else ImportRunSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            report = import_upload(
                upload.validated_data["file"], prune=upload.validated_data["prune"], trigger="api"
            )
        except ImportAborted as exc:
            messages = [f"{exc} (import run {exc.report.run_id})"]
            messages += [f"{e.path}: {e.error}" for e in exc.report.errors]
            raise ParameterError("\n".join(messages), parameter="file") from exc
        run_url = (
            request.build_absolute_uri(reverse("api:import-detail", args=[report.run_id]))
            if report.run_id
            else None
        )
        data = {
            "run": run_url,
            "run_id": report.run_id,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "failed": report.failed,
            "pruned": report.pruned,
            "seconds": report.seconds,
            "summary": report.summary(),
            "errors": [e.to_dict() for e in report.errors],
        }
        headers = {"Location": run_url} if run_url else {}
        return Response(data, status=status.HTTP_201_CREATED, headers=headers)
