"""``POST /api/coverage/``: which rules can fire with a telemetry profile (issue 14).

The body is ``{"profile": {...}}`` (the profile file's object, see
:class:`rules.coverage.Profile`) or ``{"events": [...]}`` (sample events; their sources and
fields are detected). Bounded like the sandbox: body size, event count, the same rate limit.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import BODY, ErrorSerializer, ParameterError
from catalog.api.sandbox import SandboxJSONParser, check_body
from catalog.queries.telemetry import coverage_answer, encode_profile, telemetry_layer
from catalog.throttling import SandboxRateThrottle
from rules.coverage import Profile, ProfileError, profile_from_events
from rules.events import EventInputError
from rules.shapes import events_from_mappings

MAX_EVENTS = 10_000


class BlockedSerializer(serializers.Serializer):
    id = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())


class CoverageResponseSerializer(serializers.Serializer):
    firable = serializers.ListField(child=serializers.CharField(), help_text="Rule ids")
    blocked = BlockedSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    lost = serializers.ListField(child=serializers.CharField(), help_text="Techniques lost")
    profile = serializers.JSONField(help_text="The profile used (events: as detected)")
    token = serializers.CharField(help_text="The profile as /coverage/?p= and ?fires= take it")
    layer = serializers.JSONField(help_text="ATT&CK Navigator layer: % of rules that can fire")


class CoverageRequestSerializer(serializers.Serializer):
    profile = serializers.JSONField(required=False, help_text="A telemetry profile object")
    events = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=MAX_EVENTS,
        help_text="Sample events (JSON objects) whose sources and fields are detected",
    )  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("profile" in attrs) == ("events" in attrs):
            raise ParameterError("give exactly one of profile or events", parameter=BODY)
        return attrs


def _profile(data: dict[str, Any]) -> Profile:
    if "profile" in data:
        try:
            return Profile.from_dict(data["profile"])
        except ProfileError as exc:
            raise ParameterError(str(exc), parameter="profile") from exc
    items = data["events"]
    if not all(isinstance(item, dict) for item in items):
        raise ParameterError("events must be JSON objects", parameter="events")
    try:
        reading = events_from_mappings(items, max_events=MAX_EVENTS)
    except EventInputError as exc:
        raise ParameterError(f"events could not be read: {exc}", parameter="events") from exc
    return profile_from_events(reading.events)


class CoverageAPIView(APIView):
    """Sort every catalog rule into firable and blocked for one telemetry profile."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # public and read-only in effect: no CSRF
    parser_classes = [SandboxJSONParser]
    throttle_classes = [SandboxRateThrottle]

    @extend_schema(
        summary="Which rules can fire with a telemetry profile (or sample events)",
        request=CoverageRequestSerializer,
        responses={
            200: CoverageResponseSerializer,
            400: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
        },  # fmt: skip
        examples=[
            OpenApiExample(
                "PowerShell 4104 only",
                value={
                    "profile": {
                        "event_sources": [
                            {"provider": "Microsoft-Windows-PowerShell", "event_id": 4104}
                        ]
                    }
                },
                request_only=True,
            )  # fmt: skip
        ],
    )
    def post(self, request: Request) -> Response:
        check_body(request, "the body is over the limit of a coverage request")
        if not isinstance(request.data, dict):
            raise ParameterError("the body must be a JSON object", parameter=BODY)
        payload = CoverageRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        profile = _profile(payload.validated_data)
        result, _ = coverage_answer(profile)
        return Response(
            {
                "firable": list(result.firable),
                "blocked": [b.to_dict() for b in result.blocked],
                "counts": result.counts,
                "lost": result.lost,
                "profile": profile.to_dict(),
                "token": encode_profile(profile),
                "layer": telemetry_layer(result, name="Rules that can fire with this telemetry"),
            }
        )


__all__ = ["CoverageAPIView"]
