"""Sandbox page (``/sandbox/``) and API (``POST /api/sandbox/``)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from catalog.models import Rule
from catalog.sandbox import MAX_EVENTS, SandboxRun, highlight, run_sandbox
from rules.events import Event, EventInputError, event_from_mapping, parse_events, scriptblock_event

MAX_BODY_BYTES = 2 * 1024 * 1024


class SandboxInputError(ValueError):
    """A request the sandbox cannot evaluate; ``status`` is 400 or 413."""

    def __init__(self, message: str, *, parameter: str = "", status_code: int = 400) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.status_code = status_code

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self)}
        if self.parameter:
            body["parameter"] = self.parameter
        return body


def events_from_payload(payload: Any) -> list[Event]:
    """Validate an API payload and turn it into events (errors name the parameter)."""
    if not isinstance(payload, dict):
        raise SandboxInputError("the body must be a JSON object")
    given = [key for key in ("scriptblock", "event", "events") if key in payload]
    if len(given) != 1:
        raise SandboxInputError(
            "give exactly one of 'scriptblock', 'event' or 'events'", parameter="body"
        )
    key = given[0]
    value = payload[key]
    if key == "scriptblock":
        if not isinstance(value, str):
            raise SandboxInputError("'scriptblock' must be a string", parameter=key)
        if not value.strip():
            raise SandboxInputError("'scriptblock' is empty", parameter=key)
        return [scriptblock_event(value)]
    if key == "event":
        if not isinstance(value, dict):
            raise SandboxInputError("'event' must be a JSON object", parameter=key)
        if not value:
            raise SandboxInputError("'event' is empty", parameter=key)
        return [event_from_mapping(value)]
    if not isinstance(value, list):
        raise SandboxInputError("'events' must be an array of objects", parameter=key)
    if not value:
        raise SandboxInputError("'events' is empty", parameter=key)
    if len(value) > MAX_EVENTS:
        raise SandboxInputError(
            f"'events' has {len(value):,} items; the limit is {MAX_EVENTS:,}",
            parameter=key,
            status_code=413,
        )
    events = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise SandboxInputError(f"'events[{index}]' is not a JSON object", parameter=key)
        events.append(event_from_mapping(item, index=index))
    return events


def options_from_payload(payload: dict[str, Any]) -> tuple[bool, list[str] | None, bool]:
    all_rules = payload.get("all_rules", False)
    if not isinstance(all_rules, bool):
        raise SandboxInputError("'all_rules' must be true or false", parameter="all_rules")
    rule_ids = payload.get("rule_ids")
    if rule_ids is not None and (
        not isinstance(rule_ids, list)
        or not all(isinstance(r, str) for r in rule_ids)
        or len(rule_ids) > 5000
    ):
        raise SandboxInputError(
            "'rule_ids' must be an array of rule id strings", parameter="rule_ids"
        )
    explain = payload.get("explain", True)
    if not isinstance(explain, bool):
        raise SandboxInputError("'explain' must be true or false", parameter="explain")
    return all_rules, rule_ids, explain


class SandboxThrottle(ScopedRateThrottle):
    """Per-client limit (``DEFAULT_THROTTLE_RATES['sandbox']``); 429 with Retry-After."""

    scope_attr = "throttle_scope"


_REQUEST_SCHEMA = inline_serializer(
    "SandboxRequest",
    {
        "scriptblock": serializers.CharField(required=False),
        "event": serializers.DictField(required=False),
        "events": serializers.ListField(child=serializers.DictField(), required=False),
        "all_rules": serializers.BooleanField(required=False, default=False),
        "rule_ids": serializers.ListField(child=serializers.CharField(), required=False),
        "explain": serializers.BooleanField(required=False, default=True),
    },
)
_ERROR_SCHEMA = inline_serializer(
    "SandboxError",
    {"error": serializers.CharField(), "parameter": serializers.CharField(required=False)},
)


class SandboxAPIView(APIView):
    """Evaluate a scriptblock, one event or a list of events against the catalog."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # no session: no CSRF for this public endpoint
    parser_classes = [JSONParser]
    throttle_classes = [SandboxThrottle]
    throttle_scope = "sandbox"

    @extend_schema(
        request=_REQUEST_SCHEMA,
        responses={
            200: inline_serializer(
                "SandboxResult",
                {
                    "events": serializers.ListField(child=serializers.DictField()),
                    "summary": serializers.DictField(),
                },
            ),
            400: _ERROR_SCHEMA,
            413: _ERROR_SCHEMA,
            429: _ERROR_SCHEMA,
        },
        examples=[
            OpenApiExample(
                "Scriptblock",
                value={"scriptblock": "Test-NetConnection -ComputerName example.org -port 8088 "},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return Response(
                {"error": f"the body is over {MAX_BODY_BYTES:,} bytes", "parameter": "body"},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        try:
            payload = request.data
        except ParseError as exc:
            return Response({"error": f"invalid JSON: {exc.detail}", "parameter": "body"}, 400)
        except RecursionError:
            return Response({"error": "invalid JSON: nested too deeply", "parameter": "body"}, 400)
        try:
            events = events_from_payload(payload)
            all_rules, rule_ids, explain = options_from_payload(payload)
        except SandboxInputError as exc:
            return Response(exc.to_dict(), status=exc.status_code)
        run = run_sandbox(events, all_rules=all_rules, rule_ids=rule_ids, explain=explain)
        return Response(run.to_dict())


# -- page ------------------------------------------------------------------------------------

EXAMPLE_SCRIPTBLOCK = "Test-NetConnection -ComputerName example.org -port 8088 "


@csrf_exempt  # evaluating text changes nothing; lets rule pages be cached without a token
@require_http_methods(["GET", "POST"])
def sandbox_page(request: HttpRequest) -> HttpResponse:
    """Paste text/JSON or upload a JSON/EVTX file; results render on the same page."""
    rule_id = (request.POST.get("rule_id") or request.GET.get("rule") or "").strip()
    rule = None
    if rule_id:
        rule = Rule.objects.filter(rule_id=rule_id).only("rule_id", "title").first()
    context: dict[str, Any] = {
        "text": request.POST.get("text", ""),
        "all_rules": request.POST.get("all_rules") == "on",
        "rule": rule,
        "example": EXAMPLE_SCRIPTBLOCK,
        "max_events": MAX_EVENTS,
    }
    if request.method != "POST":
        return render(request, "sandbox/sandbox.html", context)
    status_code = 200
    try:
        events = _page_events(request)
        run = run_sandbox(
            events,
            all_rules=context["all_rules"] or rule is not None,
            rule_ids=[rule.rule_id] if rule else None,
        )
        context["run"] = run
        context["rows"] = _result_rows(run)
    except (SandboxInputError, EventInputError) as exc:
        context["error"] = str(exc)
        status_code = getattr(exc, "status_code", 400)
    return render(request, "sandbox/sandbox.html", context, status=status_code)


def _page_events(request: HttpRequest) -> list[Event]:
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > MAX_BODY_BYTES:
            raise SandboxInputError(
                f"the file is {upload.size:,} bytes; the limit is {MAX_BODY_BYTES:,}",
                status_code=413,
            )
        data = upload.read()
        kind = "evtx" if upload.name.lower().endswith(".evtx") else "auto"
        return parse_events(data, kind=kind, max_events=MAX_EVENTS)
    text = request.POST.get("text", "")
    if not text.strip():
        raise SandboxInputError("paste a scriptblock or JSON events, or choose a file")
    kind = request.POST.get("kind", "auto")
    if kind not in {"auto", "json", "scriptblock"}:
        kind = "auto"
    return parse_events(text, kind=kind, max_events=MAX_EVENTS)


def _result_rows(run: SandboxRun) -> list[dict[str, Any]]:
    """Per event: the result plus highlighted event values for each matched predicate."""
    rows = []
    for event, result in zip(run.events, run.results, strict=False):
        matches = []
        for match in result.matches:
            # Spans are offsets into the matched value (one element when a field is an array).
            spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
            for identifier in match.identifiers:
                for predicate in identifier.predicates:
                    if predicate.span and predicate.matched_field is not None:
                        value = predicate.event_value
                        text = value if isinstance(value, str) else json.dumps(value)
                        key = (predicate.matched_field, text)
                        spans.setdefault(key, []).append(tuple(predicate.span))
            highlighted = [
                {"field": name, "pieces": highlight(text, field_spans)}
                for (name, text), field_spans in spans.items()
            ]
            matches.append({"match": match, "highlighted": highlighted})
        rows.append({"event": event, "result": result, "matches": matches})
    return rows
