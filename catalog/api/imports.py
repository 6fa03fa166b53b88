"""Import runs for staff (``/api/imports/``): a brief list, one run in full (its refused
files paged), and POST a rule file or archive to import it as a background job.

The request never imports (and never forks): it saves the upload, enqueues a job and answers
202 with the job's URL (``GET /api/jobs/<id>/`` for progress and the report).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.base import CatalogViewMixin
from catalog.api.errors import ParameterError
from catalog.api.jobs import JOB_SCHEMA, accepted, refuse_oversized_body
from catalog.api.serializers import (
    ImportErrorSerializer,
    ImportRunSerializer,
    ImportUploadSerializer,
)
from catalog.jobs.models import Job
from catalog.jobs.services import create_job
from catalog.models import ImportRun

ERRORS_LIMIT = 100
ERRORS_MAX_LIMIT = 1000
MESSAGE_CHARS = 500


class ImportRunBriefSerializer(serializers.ModelSerializer):
    """A run in the list: counts and status, no file lists (those are on the detail)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:import-detail")
    message = serializers.SerializerMethodField()

    class Meta:
        model = ImportRun
        fields = [
            "id", "url", "started_at", "finished_at", "trigger", "status", "created", "updated",
            "unchanged", "failed", "pruned", "seconds", "message",
        ]  # fmt: skip
        read_only_fields = fields

    def get_message(self, run: ImportRun) -> str:
        return run.message[:MESSAGE_CHARS]


def _paging_number(request: Request, name: str, default: int, most: int | None) -> int:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or (most is not None and int(raw) > most):
        limit = f" from 0 to {most}" if most is not None else " of 0 or more"
        raise ParameterError(f"'{name}' must be a whole number{limit}", parameter=name)
    return int(raw)


@extend_schema_view(
    list=extend_schema(summary="Import runs, newest first (staff; brief)"),
    retrieve=extend_schema(
        summary="One import run (staff); its refused files paged",
        parameters=[
            OpenApiParameter("errors_offset", int, description="first refused file listed"),
            OpenApiParameter(
                "errors_limit", int, description=f"refused files listed (≤ {ERRORS_MAX_LIMIT})"
            ),
        ],
    ),
    create=extend_schema(
        summary="Import an uploaded rule file or archive as a background job (staff)",
        request={"multipart/form-data": ImportUploadSerializer},
        responses={202: JOB_SCHEMA},
    ),
)
class ImportRunViewSet(
    CatalogViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Import runs for staff; POST a .yml/.zip/.tar.gz to import it as a job (202)."""

    queryset = ImportRun.objects.order_by("-started_at", "-pk")
    serializer_class = ImportRunSerializer
    permission_classes = [IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_regex = r"\d+"

    def allowed_query_params(self) -> set[str]:
        allowed = super().allowed_query_params()
        return allowed | {"errors_offset", "errors_limit"} if self.action == "retrieve" else allowed

    def get_queryset(self) -> QuerySet[ImportRun]:
        queryset = super().get_queryset()
        # The list never loads the (possibly huge) file lists.
        return queryset.defer("errors", "sources") if self.action == "list" else queryset

    def get_serializer_class(self) -> type[Any]:
        if self.action == "create":
            return ImportUploadSerializer
        return ImportRunBriefSerializer if self.action == "list" else ImportRunSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        offset = _paging_number(request, "errors_offset", 0, None)
        limit = _paging_number(request, "errors_limit", ERRORS_LIMIT, ERRORS_MAX_LIMIT)
        run = self.get_object()
        data = dict(self.get_serializer(run).data)
        data["errors"] = ImportErrorSerializer(run.errors[offset : offset + limit], many=True).data
        data["errors_total"] = len(run.errors)
        data["errors_offset"], data["errors_limit"] = offset, limit
        return Response(data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        refuse_oversized_body(request, settings.RULE_ARCHIVE_MAX_BYTES)
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        job = create_job(
            Job.Kind.IMPORT,
            upload.validated_data["file"],
            user=request.user,
            options={"prune": upload.validated_data["prune"], "trigger": "api"},
        )
        return accepted(request, job)
