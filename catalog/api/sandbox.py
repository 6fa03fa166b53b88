"""``POST /api/sandbox/``: evaluate a scriptblock, one event or a list of events against the
catalog. :class:`SandboxRequestSerializer` is both the validation and the OpenAPI schema of
the body; its messages name the parameter at fault (``'events' is empty``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import BODY, ErrorSerializer, ParameterError
from catalog.offload import OffloadFailed, run_heavy
from catalog.sandbox import (
    HEAVY_CHARS,
    LARGE_INPUT_HINT,
    MAX_BODY_BYTES,
    MAX_EVENTS,
    is_heavy,
    run_sandbox,
)
from catalog.throttling import (
    SandboxRateThrottle,
    Throttled,
    busy_refusal,
    heavy_slot,
    process_busy,
)
from rules.events import (
    Event,
    EventInputError,
    find_lone_surrogate,
    read_events,
    scriptblock_event,
)
from rules.shapes import events_from_mappings

MAX_RULE_IDS = 5000
EVENT_KEYS = ("scriptblock", "event", "events", "text")


def _messages(text: str, *codes: str) -> dict[str, str]:
    """One message for several DRF error codes (the parameter's name is in the text)."""
    return dict.fromkeys(codes, text)


class JSONStringField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would take ``5`` as ``"5"``. Whitespace
    is kept (a scriptblock is evaluated as pasted); all-blank text is ``blank``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if not self.allow_blank and not data.strip():
            self.fail("blank")
        return str(super().to_internal_value(data))


class JSONBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only: DRF's BooleanField would take ``"yes"`` and ``1``."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class EventListField(serializers.ListField):
    """``events``: checked in the order that gives the most useful message (type, empty, the
    413 size limit, then each item, named by its index)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.DictField(), **kwargs)

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            raise serializers.ValidationError("'events' must be an array of objects")
        if not data:
            raise serializers.ValidationError("'events' is empty")
        if len(data) > MAX_EVENTS:
            raise ParameterError(
                f"'events' has {len(data):,} items; the limit is {MAX_EVENTS:,}",
                parameter="events",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise serializers.ValidationError(f"'events[{index}]' is not a JSON object")
        return data


def timestamp_field_option() -> JSONStringField:
    """``timestamp_field``, as the sandbox and its background jobs take it (one validation)."""
    return JSONStringField(
        required=False,
        max_length=200,
        help_text="The event field holding each event's time, for correlations (default: "
        "detected from @timestamp, timestamp, TimeCreated SystemTime, UtcTime, _time, ...)",
        error_messages=_messages("'timestamp_field' must be a string", "invalid", "null")
        | {
            "blank": "'timestamp_field' is empty",
            "max_length": "'timestamp_field' is longer than 200 characters",
        },
    )


class SandboxRequestSerializer(serializers.Serializer):
    """Exactly one of ``scriptblock``, ``event`` or ``events``, and evaluation options."""

    scriptblock = JSONStringField(
        required=False,
        help_text="A PowerShell scriptblock, evaluated as the 4104 event that logs it",
        error_messages=_messages("'scriptblock' must be a string", "invalid", "null")
        | {"blank": "'scriptblock' is empty"},
    )
    event = serializers.DictField(
        required=False,
        allow_empty=False,
        help_text="One event (flat fields or an evtx_dump record)",
        error_messages=_messages("'event' must be a JSON object", "not_a_dict", "null")
        | {"empty": "'event' is empty"},
    )
    events = EventListField(
        required=False, help_text=f"Up to {MAX_EVENTS:,} events, evaluated in order"
    )
    text = JSONStringField(
        required=False,
        help_text="Events as text in any input shape: Windows event XML (Event Viewer, "
        "wevtutil, Splunk XmlWinEventLog), JSON or JSON lines (evtx_dump, Winlogbeat/ECS, "
        "Hayabusa, Chainsaw); each event's 'kind' in the answer names the shape read",
        error_messages=_messages("'text' must be a string", "invalid", "null")
        | {"blank": "'text' is empty"},
    )
    all_rules = JSONBooleanField(
        required=False,
        default=False,
        help_text="Evaluate every rule, not only those whose logsource fits the event",
        error_messages=_messages("'all_rules' must be true or false", "invalid", "null"),
    )
    rule_ids = serializers.ListField(
        child=JSONStringField(
            allow_blank=True,
            error_messages=_messages(
                "'rule_ids' must be an array of rule id strings", "invalid", "null"
            ),
        ),
        required=False,
        allow_null=True,
        max_length=MAX_RULE_IDS,
        help_text="Evaluate only these rules (Sigma ids)",
        error_messages=_messages(
            "'rule_ids' must be an array of rule id strings", "not_a_list", "max_length"
        ),
    )
    timestamp_field = timestamp_field_option()
    explain = JSONBooleanField(
        required=False,
        default=True,
        help_text="Explain each match (identifiers, predicates, spans, near misses)",
        error_messages=_messages("'explain' must be true or false", "invalid", "null"),
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Checked before the fields, as a whole-body error: which input was given at all.
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({BODY: ["the body must be a JSON object"]})
        if sum(key in data for key in EVENT_KEYS) != 1:
            raise serializers.ValidationError(
                {BODY: ["give exactly one of 'scriptblock', 'event', 'events' or 'text'"]}
            )
        return dict(super().to_internal_value(data))

    def events_to_evaluate(self) -> list[Event]:
        """The validated input as events."""
        data = self.validated_data
        if "scriptblock" in data:
            return [scriptblock_event(data["scriptblock"])]
        # Input shapes (rules.shapes): evtx_dump, Winlogbeat, Hayabusa, Chainsaw objects, or
        # any shape as text (Windows event XML, JSON lines); one shape per request.
        try:
            if "text" in data:
                return read_events(data["text"], max_events=MAX_EVENTS).events
            if "event" in data:
                return events_from_mappings([data["event"]], max_events=MAX_EVENTS).events
            return events_from_mappings(data["events"], max_events=MAX_EVENTS).events
        except EventInputError as exc:
            key = next(k for k in ("text", "event", "events") if k in data)
            raise ParameterError(str(exc), parameter=key) from None


class SandboxJSONParser(JSONParser):
    """JSON bodies; syntax errors (and nesting too deep for the decoder) are a 400 that
    names the body."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except ParseError as exc:
            raise ParseError(f"invalid JSON: {exc.detail}") from None
        except RecursionError:
            raise ParseError("invalid JSON: nested too deeply") from None


class Busy(APIException):
    """A heavy request refused at once (429 per client, 503 for the process), Retry-After set
    by DRF from ``wait``."""

    def __init__(self, refusal: Throttled) -> None:
        super().__init__(str(refusal))
        self.status_code = refusal.status_code
        self.wait = refusal.wait


_RESULT_SCHEMA = inline_serializer(
    "SandboxResult",
    {
        "events": serializers.ListField(child=serializers.DictField()),
        "correlations": serializers.ListField(
            child=serializers.DictField(),
            help_text="Correlation matches over the events in timestamp order: id, title, "
            "type, group, events (indices), value, window, occurrences, explanation",
        ),
        "summary": serializers.DictField(),
    },
)


def check_body(request: Request, too_large: str) -> None:
    """What an evaluating endpoint checks before reading a body (the sandbox's, the
    workbench's): its size (413 with ``too_large``), a large body while the process is busy
    with heavy work (503, refused before parsing it), lone surrogates (400)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ParameterError(
            too_large, parameter=BODY, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if length.isdigit() and int(length) >= HEAVY_CHARS and process_busy():
        # A body this large is (almost always) heavy work: refuse it before parsing it.
        raise Busy(busy_refusal())
    surrogate = find_lone_surrogate(request.data)
    if surrogate is not None:
        raise ParameterError(surrogate.message, parameter=surrogate.parameter or BODY)


class SandboxAPIView(APIView):
    """Evaluate a scriptblock, one event or a list of events against the catalog."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # no session: no CSRF for this public endpoint
    parser_classes = [SandboxJSONParser]
    throttle_classes = [SandboxRateThrottle]  # the same limit and key as the /sandbox/ page

    @extend_schema(
        request=SandboxRequestSerializer,
        responses={
            200: _RESULT_SCHEMA,
            400: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
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
        check_body(
            request,
            f"the body is over {MAX_BODY_BYTES:,} bytes, the limit for a synchronous "
            f"evaluation; {LARGE_INPUT_HINT}",
        )
        payload = SandboxRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        options = payload.validated_data
        events = payload.events_to_evaluate()
        arguments = {
            "all_rules": options["all_rules"],
            "rule_ids": options.get("rule_ids"),
            "explain": options["explain"],
            "timestamp_field": options.get("timestamp_field"),
        }
        if not is_heavy(events):
            return Response(run_sandbox(events, **arguments).to_dict())
        try:
            with heavy_slot(request, "sandbox"):
                # Evaluated and rendered in a helper process when HEAVY_OFFLOAD is on
                # (catalog.offload): the web process only waits on a pipe.
                body = run_heavy(evaluated_json, events, **arguments)
        except Throttled as refusal:
            raise Busy(refusal) from None
        except OffloadFailed:
            raise Busy(busy_refusal()) from None
        return HttpResponse(body, content_type="application/json")


def evaluated_json(events: list[Event], **arguments: Any) -> bytes:
    """The finished JSON body of a sandbox answer, byte for byte what ``Response(...)``
    renders (DRF's JSONRenderer), built where the evaluation runs."""
    return JSONRenderer().render(run_sandbox(events, **arguments).to_dict())
