"""Background jobs in the API: ``GET /api/jobs/<id>/`` (status, progress, result),
``POST /api/jobs/<id>/cancel/``, and ``POST /api/sandbox/jobs/`` (a large ``.evtx`` /
``.jsonl`` / ``.xml`` file evaluated as a job; 202 with the job's URLs).

Who may see a job: its owner and staff; a sandbox job submitted anonymously is open to
whoever holds its (random) id. Anyone else gets the 404 of a job that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import BODY, ErrorSerializer, ParameterError
from catalog.api.sandbox import timestamp_field_option
from catalog.jobs.models import Job
from catalog.jobs.sandbox import JOB_SUFFIXES, is_job_upload
from catalog.jobs.services import (
    can_view,
    create_job,
    effective_status,
    request_cancel,
    sandbox_job_max_bytes,
)
from catalog.throttling import SandboxRateThrottle


def job_urls(request: Request | Any, job: Job) -> dict[str, str]:
    """Absolute URLs of a job: its API resource, its page, its cancel action."""
    absolute = request.build_absolute_uri
    return {
        "url": absolute(reverse("api:job-detail", args=[job.pk])),
        "page": absolute(reverse("jobs:job-detail", args=[job.pk])),
        "cancel": absolute(reverse("api:job-cancel", args=[job.pk])),
    }


def job_data(request: Request, job: Job) -> dict[str, Any]:
    status_, message = effective_status(job)
    data: dict[str, Any] = {
        "id": str(job.pk),
        "kind": job.kind,
        "status": status_,
        "message": message,
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "percent": 100 if status_ == Job.Status.SUCCEEDED else job.percent,
        "cancel_requested": job.cancel_requested,
        "upload": job.upload_name,
        "options": job.options,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "heartbeat_at": job.heartbeat_at,
        "result": job.result,
        **job_urls(request, job),
    }
    if job.kind == Job.Kind.SANDBOX and status_ == Job.Status.SUCCEEDED:
        absolute = request.build_absolute_uri
        data["exports"] = {
            "csv": absolute(reverse("jobs:job-export-csv", args=[job.pk])),
            "json": absolute(reverse("jobs:job-export-json", args=[job.pk])),
        }
    return data


def accepted(request: Request, job: Job) -> Response:
    """202 for a job just queued: where to watch it (``Location``: its API resource)."""
    data = job_data(request, job)
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


JOB_SCHEMA = inline_serializer(
    "Job",
    {
        "id": serializers.UUIDField(),
        "kind": serializers.CharField(help_text="import or sandbox"),
        "status": serializers.CharField(
            help_text="queued, running, succeeded, failed or cancelled"
        ),
        "message": serializers.CharField(),
        "progress": serializers.DictField(child=serializers.IntegerField()),
        "percent": serializers.IntegerField(),
        "cancel_requested": serializers.BooleanField(),
        "upload": serializers.CharField(),
        "options": serializers.DictField(
            help_text="What the job was asked: all_rules and timestamp_field (sandbox), "
            "prune (import)"
        ),
        "created_at": serializers.DateTimeField(),
        "started_at": serializers.DateTimeField(allow_null=True),
        "finished_at": serializers.DateTimeField(allow_null=True),
        "heartbeat_at": serializers.DateTimeField(allow_null=True),
        "result": serializers.DictField(help_text="The import report or the sandbox summary"),
        "url": serializers.URLField(),
        "page": serializers.URLField(),
        "cancel": serializers.URLField(),
        "exports": serializers.DictField(child=serializers.URLField(), required=False),
    },
)


class _JobView(APIView):
    permission_classes = [AllowAny]

    def job(self, request: Request, job_id: str) -> Job:
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            raise Http404("No job has this id.") from None
        job = Job.objects.filter(pk=key).first()
        if job is None or not can_view(job, request.user):
            raise Http404("No job has this id.")
        return job


class JobDetailView(_JobView):
    """A job's status, progress and result."""

    @extend_schema(responses={200: JOB_SCHEMA, 404: ErrorSerializer})
    def get(self, request: Request, job_id: Any) -> Response:
        response = Response(job_data(request, self.job(request, job_id)))
        response["Cache-Control"] = "no-store"
        return response


class JobCancelView(_JobView):
    """Cancel a job: at once when queued, at its next progress step when running."""

    @extend_schema(request=None, responses={200: JOB_SCHEMA, 404: ErrorSerializer})
    def post(self, request: Request, job_id: Any) -> Response:
        job = request_cancel(self.job(request, job_id))
        return Response(job_data(request, job))


class SandboxJobUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text=f"A {', '.join(JOB_SUFFIXES)} file: JSON lines, EVTX or Windows event XML "
        "(Event Viewer's Save as XML, wevtutil qe /f:xml)"
    )
    all_rules = serializers.BooleanField(
        default=False, help_text="Evaluate every rule, not only those whose logsource fits"
    )
    timestamp_field = timestamp_field_option()

    def validate_file(self, upload: Any) -> Any:
        if not is_job_upload(upload.name):
            raise serializers.ValidationError(
                f"Upload a {', '.join(JOB_SUFFIXES)} file (JSON lines, EVTX or event XML)."
            )
        if not upload.size:
            raise serializers.ValidationError("The file is empty.")
        if upload.size > sandbox_job_max_bytes():
            raise ParameterError(
                f"the file is {upload.size:,} bytes; the limit is {sandbox_job_max_bytes():,}",
                parameter="file",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return upload


def sandbox_job_options(all_rules: bool, timestamp_field: str | None) -> dict[str, Any]:
    """A sandbox job's ``options`` (read by :func:`catalog.jobs.sandbox.run_sandbox_file`)."""
    return {"all_rules": all_rules, "timestamp_field": timestamp_field or None}


def checked_timestamp_field(value: str) -> str:
    """``value`` as ``timestamp_field`` of ``POST /api/sandbox/`` (the same validation, for
    the sandbox page's jobs); raises :class:`serializers.ValidationError`."""
    return str(timestamp_field_option().run_validation(value))


def refuse_oversized_body(request: Any, limit: int) -> None:
    """413 before the body is read when its declared length is over ``limit`` (+ form slack)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit + 64 * 1024:
        raise ParameterError(
            f"the upload is over {limit:,} bytes",
            parameter=BODY,
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )


class SandboxJobView(APIView):
    """Evaluate a large ``.evtx`` / ``.jsonl`` / ``.xml`` file in the background (202 + the
    job); ``timestamp_field`` as in ``POST /api/sandbox/``."""

    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [SandboxRateThrottle]  # the sandbox's own per-client limit

    @extend_schema(
        request={"multipart/form-data": SandboxJobUploadSerializer},
        responses={202: JOB_SCHEMA, 400: ErrorSerializer, 413: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        refuse_oversized_body(request, sandbox_job_max_bytes())
        upload = SandboxJobUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        job = create_job(
            Job.Kind.SANDBOX,
            upload.validated_data["file"],
            user=request.user,
            options=sandbox_job_options(
                upload.validated_data["all_rules"], upload.validated_data.get("timestamp_field")
            ),
        )
        return accepted(request, job)
