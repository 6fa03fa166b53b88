"""Evidence endpoints (issue 14): a rule's related rules (``/api/rules/<id>/related/``)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.base import CatalogViewMixin
from catalog.api.errors import ErrorSerializer, ParameterError
from catalog.api.serializers import RelatedRulesSerializer
from catalog.models import Rule
from catalog.queries.quality import load_evidence


@extend_schema(
    summary="A rule's related rules: similar by shared indicators, and related: links both ways",
    parameters=[
        OpenApiParameter(
            "rule_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The Sigma rule id"
        )
    ],
    responses={200: RelatedRulesSerializer, 404: ErrorSerializer},
)
class RuleRelatedView(CatalogViewMixin, APIView):
    permission_classes = [AllowAny]
    conditional = True

    def get(self, request: Request, rule_id: str) -> Response:
        pk = Rule.objects.filter(rule_id=rule_id).values_list("pk", flat=True).first()
        if pk is None:
            raise ParameterError("No rule has this id.", parameter=None, status_code=404)
        return Response(load_evidence(pk).related)
