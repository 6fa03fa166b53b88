"""The sandbox page (``/sandbox/``); its JSON API is :mod:`catalog.api.sandbox`."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import ValidationError

from catalog.api.jobs import checked_timestamp_field, sandbox_job_options
from catalog.jobs.models import Job
from catalog.jobs.sandbox import is_job_upload
from catalog.jobs.services import create_job, sandbox_job_max_bytes
from catalog.models import Rule
from catalog.offload import OffloadFailed, run_heavy
from catalog.sandbox import (
    LARGE_INPUT_HINT,
    MAX_BODY_BYTES,
    MAX_EVENTS,
    PAGE_LIMITS,
    SandboxRun,
    highlighted_values,
    is_heavy,
    run_sandbox,
)
from catalog.throttling import Throttled, busy_refusal, check_sandbox_rate, heavy_slot
from catalog.workbench import event_json, exclusion_value
from rules.events import EventInputError, EventReading, read_events


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
        "timestamp_field": request.POST.get("timestamp_field", "").strip()[:200],
        "rule": rule,
        "example": EXAMPLE_SCRIPTBLOCK,
        "max_events": MAX_EVENTS,
    }
    if request.method != "POST":
        return render(request, "sandbox/sandbox.html", context)
    # The same limit, counted under the same key, as POST /api/sandbox/.
    wait = check_sandbox_rate(request)
    if wait is not None:
        return _refused(request, context, "Too many evaluations from this address.", wait, 429)
    upload = request.FILES.get("file")
    if upload is not None and upload.size > MAX_BODY_BYTES and is_job_upload(upload.name):
        return _start_job(request, upload, context)
    status_code = 200
    try:
        reading = _page_events(request)
        heavy = is_heavy(reading.events)
        arguments: dict[str, Any] = {
            "all_rules": context["all_rules"] or rule is not None,
            "rule_ids": [rule.rule_id] if rule else None,
            "limits": PAGE_LIMITS,
            "timestamp_field": context["timestamp_field"] or None,
        }
        with heavy_slot(request, "sandbox") if heavy else nullcontext():
            run = (
                # In a helper process when HEAVY_OFFLOAD is on (catalog.offload).
                run_heavy(run_sandbox, reading.events, **arguments)
                if heavy
                else run_sandbox(reading.events, **arguments)
            )
        run.read_as = reading.label
        context["run"] = run
        context["rows"] = _result_rows(run)
    except Throttled as refusal:
        return _refused(request, context, str(refusal), refusal.wait, refusal.status_code)
    except OffloadFailed:
        refusal = busy_refusal()
        return _refused(request, context, str(refusal), refusal.wait, refusal.status_code)
    except (SandboxInputError, EventInputError) as exc:
        context["error"] = str(exc)
        status_code = getattr(exc, "status_code", 400)
    return render(request, "sandbox/sandbox.html", context, status=status_code)


def _start_job(request: HttpRequest, upload: Any, context: dict[str, Any]) -> HttpResponse:
    """A large .evtx/.jsonl/.xml upload runs as a background job: 303 to its progress page."""
    limit = sandbox_job_max_bytes()
    if upload.size > limit:
        context["error"] = f"the file is {upload.size:,} bytes; the limit is {limit:,}"
        return render(request, "sandbox/sandbox.html", context, status=413)
    timestamp_field = request.POST.get("timestamp_field", "").strip()  # "": detected
    try:
        timestamp_field = checked_timestamp_field(timestamp_field) if timestamp_field else ""
    except ValidationError as exc:
        context["error"] = " ".join(str(message) for message in exc.detail)
        return render(request, "sandbox/sandbox.html", context, status=400)
    job = create_job(
        Job.Kind.SANDBOX,
        upload,
        user=request.user,
        options=sandbox_job_options(context["all_rules"], timestamp_field),
    )
    return HttpResponseRedirect(reverse("jobs:job-detail", args=[job.pk]), status=303)


def _refused(
    request: HttpRequest, context: dict[str, Any], message: str, wait: int, status_code: int
) -> HttpResponse:
    context["error"] = f"{message} Try again in {wait} second{'s' if wait != 1 else ''}."
    response = render(request, "sandbox/sandbox.html", context, status=status_code)
    response["Retry-After"] = str(wait)
    return response


def _page_events(request: HttpRequest) -> EventReading:
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > MAX_BODY_BYTES:
            raise SandboxInputError(
                f"the file is {upload.size:,} bytes; the limit here is {MAX_BODY_BYTES:,}: "
                f"{LARGE_INPUT_HINT}",
                status_code=413,
            )
        data = upload.read()
        kind = "evtx" if upload.name.lower().endswith(".evtx") else "auto"
        return read_events(data, kind=kind, max_events=MAX_EVENTS)
    text = request.POST.get("text", "")
    if not text.strip():
        raise SandboxInputError("paste a scriptblock, JSON events or event XML, or choose a file")
    kind = request.POST.get("kind", "auto")
    if kind not in {"auto", "json", "xml", "scriptblock"}:
        kind = "auto"
    return read_events(text, kind=kind, max_events=MAX_EVENTS)


def _result_rows(run: SandboxRun) -> list[dict[str, Any]]:
    """Per event: the result plus highlighted event values for each matched predicate."""
    rows = []
    for event, result in zip(run.events, run.results, strict=False):
        matches = []
        for match in result.matches:
            highlighted = highlighted_values(match)
            for value in highlighted:
                # The whole value, for the workbench's "Exclude this…" (catalog.workbench).
                value["exclude"] = exclusion_value(event, value["field"])
            matches.append({"match": match, "highlighted": highlighted})
        rows.append(
            {"event": event, "result": result, "matches": matches, "event_json": event_json(event)}
        )
    return rows
