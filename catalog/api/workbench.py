"""``POST /api/workbench/``: one draft rule analysed against the catalog (parse problems, lint,
seed sections, similar rules, field check, tests, backtest, conversions).

The body's size limit, the rate limit and the heavy-request slots are the sandbox's; the
event inputs are the sandbox's fields. A draft that does not parse is a 400 whose ``detail``
names the line and column, with the problems in ``parse.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import BODY, ErrorSerializer, ParameterError, error_body
from catalog.api.sandbox import (
    EVENT_KEYS,
    Busy,
    JSONBooleanField,
    JSONStringField,
    SandboxJSONParser,
    SandboxRequestSerializer,
    check_body,
    timestamp_field_option,
)
from catalog.sandbox import MAX_BODY_BYTES, is_heavy
from catalog.throttling import (
    SandboxRateThrottle,
    Throttled,
    heavy_slot,
)
from catalog.workbench import (
    ALL_TARGETS,
    MAX_RULE_CHARS,
    MAX_TARGETS,
    TargetChoice,
    WorkbenchReport,
    every_target,
    run_workbench,
)
from rules.convert import ConversionParameterError, resolve_options
from rules.drafts import is_multi_document
from rules.events import Event

HEAVY_TARGETS = 4
"""More conversions than this in one request take a heavy slot (a backend each)."""

EXAMPLE_RULE = """title: Whoami with all switches
id: 2b1c0b7e-8e0a-4f55-9a8a-0d9d3c1f7a11
status: experimental
description: Detects whoami /all, often run right after initial access.
author: you
date: 2026-01-01
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\\\whoami.exe'
        CommandLine|contains: '/all'
    condition: selection
level: medium
"""


def _messages(text: str, *codes: str) -> dict[str, str]:
    return dict.fromkeys(codes, text)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": [ALL_TARGETS]},
            {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string", "description": "a target id"},
                        {
                            "type": "object",
                            "properties": {
                                "target": {"type": "string"},
                                "pipeline": {"type": "string"},
                            },
                            "required": ["target"],
                        },
                    ]
                },
            },
        ]
    }
)
class TargetsField(serializers.Field):
    """``"all"``, or a list of target ids / ``{"target", "pipeline"}`` objects."""

    def to_internal_value(self, data: Any) -> list[TargetChoice]:
        if data == ALL_TARGETS:
            return every_target()
        if not isinstance(data, list):
            raise serializers.ValidationError(
                "'targets' must be \"all\" or an array of target ids or {target, pipeline}"
            )
        if len(data) > MAX_TARGETS:
            raise serializers.ValidationError(f"'targets' has more than {MAX_TARGETS} items")
        choices = []
        for index, item in enumerate(data):
            if isinstance(item, str):
                target, pipeline = item, None
            elif isinstance(item, Mapping) and isinstance(item.get("target"), str):
                target, pipeline = item["target"], item.get("pipeline")
                if pipeline is not None and not isinstance(pipeline, str):
                    raise serializers.ValidationError(f"'targets[{index}].pipeline' not a string")
            else:
                raise serializers.ValidationError(
                    f"'targets[{index}]' must be a target id or an object with 'target'"
                )
            try:
                spec, pipe, _ = resolve_options(target, pipeline)
            except ConversionParameterError as exc:
                raise ParameterError(
                    f"targets[{index}]: {exc.message}", parameter="targets", choices=exc.choices
                ) from None
            choices.append(TargetChoice(spec.id, pipe.id))
        return list(dict.fromkeys(choices))

    def to_representation(self, value: Any) -> Any:
        return value


class WorkbenchRequestSerializer(serializers.Serializer):
    """The draft and what to run on it."""

    rule = JSONStringField(
        max_length=MAX_RULE_CHARS,
        help_text=f"The draft Sigma rule, YAML text (up to {MAX_RULE_CHARS:,} characters)",
        error_messages=_messages("'rule' must be a string", "invalid", "null", "required")
        | {
            "blank": "'rule' is empty",
            "max_length": f"'rule' is longer than {MAX_RULE_CHARS:,} characters",
        },
    )
    scriptblock = JSONStringField(
        required=False,
        help_text="A PowerShell scriptblock to test the draft on (as the 4104 event)",
    )
    event = serializers.DictField(required=False, help_text="One event to test the draft on")
    events = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Events to test the draft on (any of the sandbox's JSON input shapes)",
    )
    text = JSONStringField(
        required=False, help_text="Events as text in any input shape (XML, JSON lines...)"
    )
    # The sandbox's own field (same validation, same messages): correlations of the draft.
    timestamp_field = timestamp_field_option()
    backtest = JSONBooleanField(
        required=False,
        default=False,
        help_text="Run the draft over every regression sample of the catalog's corpus (and "
        "each draft meta filter over its rules' own samples)",
        error_messages=_messages("'backtest' must be true or false", "invalid", "null"),
    )
    lint = JSONBooleanField(
        required=False,
        default=True,
        help_text="Run pySigma's and SigmaHQ's validators",
        error_messages=_messages("'lint' must be true or false", "invalid", "null"),
    )
    targets = TargetsField(
        required=False,
        default=list,
        help_text='Conversions: "all" (every target, default pipeline) or a list of target '
        'ids or {"target", "pipeline"} objects; none when left out',
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({BODY: ["the body must be a JSON object"]})
        given = [key for key in EVENT_KEYS if key in data]
        if len(given) > 1:
            raise serializers.ValidationError(
                {BODY: ["give at most one of 'scriptblock', 'event', 'events' or 'text'"]}
            )
        # The test input is the sandbox's, checked by the sandbox's own serializer.
        self.test_input = SandboxRequestSerializer(data={key: data[key] for key in given})
        if given:
            self.test_input.is_valid(raise_exception=True)
        return dict(super().to_internal_value(data))

    def events_to_test(self) -> list[Event]:
        """The test events, read exactly as ``POST /api/sandbox/`` reads them."""
        if not self.test_input.initial_data:
            return []
        return self.test_input.events_to_evaluate()


_RESULT_SCHEMA = inline_serializer(
    "WorkbenchResult",
    {
        "parse": serializers.DictField(
            help_text="ok, id, title, logsource, errors [{code, message, line, column, hint}]"
        ),
        "findings": serializers.ListField(
            child=serializers.DictField(), help_text="[{validator, severity, message, line}]"
        ),
        "stages": serializers.ListField(child=serializers.DictField()),
        "exclusions": serializers.ListField(child=serializers.DictField()),
        "indicators": serializers.ListField(
            child=serializers.DictField(),
            help_text="[{field, kind, value, identifier, line, corpus}]: corpus = catalog rules "
            "with the same (field, kind, value)",
        ),
        "attack": serializers.ListField(child=serializers.DictField()),
        "events": serializers.ListField(child=serializers.DictField()),
        "duplicate": serializers.DictField(allow_null=True),
        "similar": serializers.ListField(
            child=serializers.DictField(),
            help_text="[{id, title, score, shared, contains_all, contained_in, duplicate}]",
        ),
        "field_check": serializers.DictField(allow_null=True),
        "tests": serializers.DictField(allow_null=True, help_text="The sandbox's answer shape"),
        "backtest": serializers.DictField(
            allow_null=True,
            help_text="samples, events, hits (other rules' samples it fires on), own, fires_on_own",
        ),
        "backtest_unavailable": serializers.BooleanField(
            help_text="A backtest was asked for but the corpus has no regression_data"
        ),
        "conversions": serializers.ListField(child=serializers.DictField()),
        "documents": serializers.ListField(
            child=serializers.DictField(), help_text="[{kind, line, title}]: the draft's documents"
        ),
        "correlation_rules": serializers.ListField(
            child=serializers.DictField(),
            help_text="The draft's correlations: [{id, title, type, timespan, group_by, "
            "condition, rules [{id, in_draft}], line}]",
        ),
        "filters": serializers.ListField(
            child=serializers.DictField(),
            help_text="The draft's meta filters: [{id, title, logsource, condition, any_rule, "
            "rules [{id, in_draft}], line}]",
        ),
        "references": serializers.ListField(
            child=serializers.DictField(),
            help_text="Catalog rules and correlations the draft names [{kind, id, title}]",
        ),
        "correlations": serializers.ListField(
            child=serializers.DictField(),
            help_text="Correlation matches over the test events [{id, title, type, group, "
            "events, value, ...}] (also in tests.correlations)",
        ),
        "filter_backtest": serializers.DictField(
            allow_null=True,
            help_text="With backtest: each draft filter over its rules' own regression samples "
            "(samples [{filter, rule_id, path, matched, kept, suppressed}], suppressed)",
        ),
        "collection_conversions": serializers.ListField(
            child=serializers.DictField(),
            help_text="With targets, for a draft of several documents: the whole collection "
            "for the backends that convert correlations and filters [{target, label, queries, "
            "error}]",
        ),
        "elapsed_ms": serializers.FloatField(),
    },
)


def parse_error_response(report: WorkbenchReport) -> Response:
    """The 400 of a draft that does not parse: the API's error shape plus ``parse``."""
    first = report.analysis.errors[0]
    body = error_body(f"line {first.line}, column {first.column}: {first.message}", "rule")
    body["parse"] = report.to_dict()["parse"]
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


class WorkbenchAPIView(APIView):
    """Analyse one draft Sigma rule against the catalog."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # no session: no CSRF for this public endpoint
    parser_classes = [SandboxJSONParser]
    throttle_classes = [SandboxRateThrottle]  # the sandbox's limit, counted under its key

    @extend_schema(
        request=WorkbenchRequestSerializer,
        responses={
            200: _RESULT_SCHEMA,
            400: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
        },
        examples=[
            OpenApiExample(
                "Draft with a test and a backtest",
                value={
                    "rule": EXAMPLE_RULE,
                    "events": [
                        {"Image": "C:\\Windows\\System32\\whoami.exe", "CommandLine": "whoami /all"}
                    ],
                    "backtest": True,
                    "targets": ["splunk"],
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        check_body(request, f"the body is over {MAX_BODY_BYTES:,} bytes, the workbench's limit")
        payload = WorkbenchRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        options = payload.validated_data
        events = payload.events_to_test()
        heavy = (
            (events and is_heavy(events))
            or len(options["targets"]) > HEAVY_TARGETS
            # A collection with the catalog rules it names converts for four backends more.
            or (bool(options["targets"]) and is_multi_document(options["rule"]))
        )
        try:
            with heavy_slot(request, "sandbox") if heavy else nullcontext():
                report = run_workbench(
                    options["rule"],
                    events=events,
                    backtest=options["backtest"],
                    targets=options["targets"],
                    lint=options["lint"],
                    timestamp_field=options.get("timestamp_field"),
                )
        except Throttled as refusal:
            raise Busy(refusal) from None
        if not report.ok:
            return parse_error_response(report)
        return Response(report.to_dict())
