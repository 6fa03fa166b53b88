"""Releases, their changelogs and rule history (``/api/releases/``, ``/api/rules/<id>/...``)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.base import CatalogViewMixin
from catalog.api.errors import ErrorSerializer, ParameterError
from catalog.models import Release, RuleRevision
from catalog.queries.releases import (
    earlier_releases,
    revision_diff,
    rule_revisions,
    since_payload,
    stored_payload,
)

_LISTS = ("rule_ids", "added", "modified", "removed", "deprecated")


class ReleaseSerializer(serializers.Serializer):  # the schema of release_json
    name = serializers.CharField()
    source = serializers.CharField()
    released_at = serializers.DateTimeField()
    imported_at = serializers.DateTimeField()
    counts = serializers.DictField(child=serializers.IntegerField())
    url = serializers.URLField()
    changes = serializers.URLField()


class RevisionSerializer(serializers.Serializer):  # the schema of revision_json
    number = serializers.IntegerField()
    release = serializers.CharField()
    released_at = serializers.DateTimeField()
    content_hash = serializers.CharField()
    title = serializers.CharField()
    level = serializers.CharField()
    status = serializers.CharField()
    # "class" is a keyword: declared below.
    fields = serializers.ListField(child=serializers.CharField())
    url = serializers.URLField()


RevisionSerializer._declared_fields["class"] = serializers.CharField(allow_null=True)
_ERRORS = {400: ErrorSerializer, 404: ErrorSerializer}


class _ReleaseView(CatalogViewMixin, APIView):
    permission_classes = [AllowAny]
    conditional = True
    query_params: frozenset[str] = frozenset()

    def allowed_query_params(self) -> set[str]:
        return super().allowed_query_params() | set(self.query_params)


def release_json(release: Release, request: Request) -> dict[str, Any]:
    return {
        "name": release.name,
        "source": release.source,
        "released_at": release.released_at.isoformat(),
        "imported_at": release.imported_at.isoformat(),
        "counts": release.counts,
        "url": request.build_absolute_uri(release.get_absolute_url()),
        "changes": request.build_absolute_uri(reverse("api:release-changes", args=[release.name])),
    }


def _not_found(what: str) -> ParameterError:
    return ParameterError(what, parameter=None, status_code=404)


@extend_schema(
    summary="Releases, newest first",
    parameters=[OpenApiParameter("source", OpenApiTypes.STR, description="one rule set only")],
    responses={200: ReleaseSerializer(many=True), 400: ErrorSerializer},
)
class ReleaseListView(_ReleaseView):
    query_params = frozenset({"source"})

    def get(self, request: Request) -> Response:
        releases = Release.objects.defer(*_LISTS)
        source = request.query_params.get("source")
        if source:
            releases = releases.filter(source=source)
        return Response([release_json(r, request) for r in releases])


@extend_schema(
    summary="What a release changed (or every release after `since`)",
    parameters=[OpenApiParameter("since", OpenApiTypes.STR, description="an earlier release")],
    responses={200: OpenApiTypes.OBJECT, **_ERRORS},
)
class ReleaseChangesView(_ReleaseView):
    query_params = frozenset({"since"})

    def get(self, request: Request, name: str) -> HttpResponseBase:
        since_name = request.query_params.get("since")
        if since_name is None:
            # One query: the release's stored answer (written at import), not the release.
            found = (
                Release.objects.filter(name=name)
                .order_by("-sequence")
                .values_list("pk", "changelog__payload")
                .first()
            )
            if found is None:
                raise _not_found(f"No release is named {name!r}.")
            pk, payload = found
            if payload is None:  # recorded before answers were stored
                payload = stored_payload(Release.objects.get(pk=pk))
            return _json_text(request, payload)
        # The id lists are read only when the answer is not cached yet.
        release = Release.objects.defer(*_LISTS).filter(name=name).order_by("-sequence").first()
        if release is None:
            raise _not_found(f"No release is named {name!r}.")
        choices = earlier_releases(release)
        if since_name not in choices:
            raise ParameterError(
                f"since must name a release of {release.source} before {release.name}.",
                parameter="since",
                choices=choices,
            )
        since = Release.objects.defer(*_LISTS).get(source=release.source, name=since_name)
        return _json_text(request, since_payload(release, since))


def _json_text(request: Request, payload: str) -> HttpResponseBase:
    """A stored JSON answer as it is when plain JSON was negotiated (what the JSON renderer
    would write: the text came from it); parsed for any other rendering (``indent``, the
    browsable API in development)."""
    renderer = request.accepted_renderer
    if isinstance(renderer, JSONRenderer) and request.accepted_media_type == renderer.media_type:
        return HttpResponse(payload.encode(), content_type=renderer.media_type)
    return Response(json.loads(payload))


def revision_json(revision: RuleRevision, request: Request) -> dict[str, Any]:
    return {
        "number": revision.number,
        "release": revision.release.name,
        "released_at": revision.release.released_at.isoformat(),
        "content_hash": revision.content_hash,
        "title": revision.title,
        "level": revision.level,
        "status": revision.status,
        "class": revision.change_class or None,
        "fields": (revision.diff or {}).get("fields", []),
        "url": request.build_absolute_uri(revision.get_absolute_url()),
    }


@extend_schema(
    summary="Every revision of a rule, oldest first",
    responses={200: RevisionSerializer(many=True), **_ERRORS},
)
class RuleRevisionsView(_ReleaseView):
    def get(self, request: Request, rule_id: str) -> Response:
        revisions = rule_revisions(rule_id)
        if not revisions:
            raise _not_found("No rule has this id.")
        return Response([revision_json(r, request) for r in revisions])


@extend_schema(
    summary="The semantic diff between two revisions of a rule",
    parameters=[
        OpenApiParameter("from", OpenApiTypes.INT, description="default: the one before `to`"),
        OpenApiParameter("to", OpenApiTypes.INT, description="default: the latest"),
    ],
    responses={200: OpenApiTypes.OBJECT, **_ERRORS},
)
class RuleDiffView(_ReleaseView):
    query_params = frozenset({"from", "to"})

    def get(self, request: Request, rule_id: str) -> Response:
        revisions = {r.number: r for r in rule_revisions(rule_id)}
        if not revisions:
            raise _not_found("No rule has this id.")
        numbers = [str(n) for n in sorted(revisions)]
        to = self._number(request, "to", max(revisions), numbers)
        start = self._number(request, "from", max(to - 1, min(revisions)), numbers)
        old, new = revisions[start], revisions[to]
        diff = revision_diff(old, new)
        return Response(
            {
                "id": rule_id,
                "from": revision_json(old, request),
                "to": revision_json(new, request),
                **diff.to_dict(),
                "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in diff.fields],
            }
        )

    @staticmethod
    def _number(request: Request, name: str, default: int, numbers: list[str]) -> int:
        text = request.query_params.get(name)
        if text is None:
            return default
        if text not in numbers:
            raise ParameterError(
                f"{name} must be a revision number of this rule.", parameter=name, choices=numbers
            )
        return int(text)
