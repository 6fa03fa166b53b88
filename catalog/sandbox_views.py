"""The sandbox page (``/sandbox/``); its JSON API is :mod:`catalog.api.sandbox`."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from catalog.models import Rule
from catalog.sandbox import MAX_BODY_BYTES, MAX_EVENTS, SandboxRun, highlight, run_sandbox
from rules.events import Event, EventInputError, parse_events


class SandboxInputError(ValueError):
    """A paste or upload the sandbox page cannot evaluate; ``status_code`` is 400 or 413."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


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
