"""The job page (``/jobs/<id>/``: progress, then the result) and the match exports.

Access: the job's owner and staff; a sandbox job submitted anonymously is open to whoever
holds its id (a random UUID). Anyone else gets a 404, as if the job did not exist.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from catalog.jobs import sandbox as results
from catalog.jobs.correlations import export_row, iter_correlations
from catalog.jobs.models import Job
from catalog.jobs.services import (
    FILES_REMOVED,
    can_view,
    effective_status,
    job_dir,
    request_cancel,
    retention,
)
from catalog.sandbox import highlighted_values
from rules.evaluate import EventResult

PAGE_SIZE = 20
VALUE_CHARS = 4000  # of an event value shown highlighted
REFRESH_SECONDS = 2


def viewable_job(request: HttpRequest, job_id: Any) -> Job:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not can_view(job, request.user):
        raise Http404("No job has this id.")
    return job


@require_GET
def job_page(request: HttpRequest, job_id: Any) -> HttpResponse:
    """Progress while the job runs (refreshing itself), then its result."""
    job = viewable_job(request, job_id)
    status, message = effective_status(job)
    finished = status in Job.FINISHED
    context: dict[str, Any] = {
        "job": job,
        "status": status,
        "message": message,
        "finished": finished,
        "refresh": REFRESH_SECONDS,
    }
    if job.kind == Job.Kind.SANDBOX and status == Job.Status.SUCCEEDED:
        context.update(_sandbox_context(request, job))
    response = render(request, "jobs/job.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _sandbox_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    summary = job.result
    removed = _files_removed(job)
    paginator = Paginator(range(results.matched_event_count(job)), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    entries = []
    if page and not removed:
        entries = results.read_entries(job, page.start_index() - 1, PAGE_SIZE)
    level_max = max(summary.get("by_level", {}).values(), default=1)
    rule_max = max((r["count"] for r in summary.get("top_rules", [])), default=1)
    timeline = summary.get("timeline")
    return {
        "summary": summary,
        "levels": [
            (level, count, _pct(count, level_max))
            for level, count in summary.get("by_level", {}).items()
        ],
        "top_rules": [(r, _pct(r["count"], rule_max)) for r in summary.get("top_rules", [])],
        "timeline": _timeline_rows(timeline) if timeline else [],
        "page": page,
        "explained": [_explained(e, r) for e, r in results.explain_entries(job, entries)],
        "correlation_matches": _correlation_rows(job) if not removed else [],
        "files_removed": removed,
        "retention_days": f"{retention().total_seconds() / 86400:g}",
    }


def _files_removed(job: Job) -> datetime.datetime | None:
    """When :func:`catalog.jobs.services.prune_job_files` removed the job's matches."""
    stamp = job.result.get(FILES_REMOVED) if isinstance(job.result, dict) else None
    return datetime.datetime.fromisoformat(stamp) if isinstance(stamp, str) else None


def _pct(count: int, most: int) -> int:
    return max(1, round(count * 100 / most)) if most else 0


def _timeline_rows(timeline: dict[str, Any]) -> list[tuple[str, int, int]]:
    counts = timeline["counts"]
    most = max(counts, default=1)
    rows = []
    for i, count in enumerate(counts):
        moment = timeline["start"] + i * timeline["bucket_seconds"]
        label = datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((label, count, _pct(count, most) if count else 0))
    return rows


def _explained(entry: results.MatchEntry, result: EventResult) -> dict[str, Any]:
    """An entry with its matches explained: highlighted values and deciding predicates."""
    # Values are cut, not excerpted: a job's explanations are not bounded like the sandbox's.
    matches = [
        {"match": match, "highlighted": highlighted_values(match, cut=VALUE_CHARS)}
        for match in result.matches
    ]
    missing = sorted(set(entry.rule_ids) - {m.rule_id for m in result.matches})
    return {"entry": entry, "matches": matches, "missing": missing}


CORRELATIONS_SHOWN = 100  # correlation matches listed on the page (exports hold them all)


def _correlation_rows(job: Job) -> list[dict[str, Any]]:
    rows = itertools.islice(iter_correlations(job_dir(job)), CORRELATIONS_SHOWN)
    return [{**m, "group_text": _group_text(m["group"])} for m in rows]


def _group_text(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all events"


# -- exports ----------------------------------------------------------------------------------

# Single-event matches first (kind "match"), then the correlation matches (kind
# "correlation": ``event`` lists the events that formed it, ``time`` is the window's start).
EXPORT_COLUMNS = [
    "event", "time", "rule_id", "title", "level", "kind", "correlation_type", "group", "value",
]  # fmt: skip


def _export_rows(job: Job) -> Iterator[list[Any]]:
    rules = results.rule_table(job)
    for entry in results.iter_entries(job):
        when = entry.when.isoformat() if entry.when else ""
        for rule_id in entry.rule_ids:
            info = rules.get(rule_id, {})
            yield [entry.index, when, rule_id, info.get("title", ""), info.get("level", ""),
                   "match", "", "", ""]  # fmt: skip
    for match in iter_correlations(job_dir(job)):
        row = export_row(match)
        yield [row[column] for column in EXPORT_COLUMNS]


def _finished_sandbox_job(request: HttpRequest, job_id: Any) -> Job:
    job = viewable_job(request, job_id)
    if job.kind != Job.Kind.SANDBOX or effective_status(job)[0] != Job.Status.SUCCEEDED:
        raise Http404("This job has no matches to export.")
    if _files_removed(job):
        raise Http404("The matched events of this job were removed (JOBS_RETENTION_DAYS).")
    return job


@require_GET
def export_csv(request: HttpRequest, job_id: Any) -> StreamingHttpResponse:
    """Every match, one row per (event, rule), streamed."""
    job = _finished_sandbox_job(request, job_id)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in _with_header(job):
            writer.writerow(row)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-matches.csv"'
    return response


def _with_header(job: Job) -> Iterator[list[Any]]:
    yield EXPORT_COLUMNS
    yield from _export_rows(job)


@require_GET
def export_json(request: HttpRequest, job_id: Any) -> StreamingHttpResponse:
    """Every match as a JSON array of objects, streamed."""
    job = _finished_sandbox_job(request, job_id)

    def chunks() -> Iterator[str]:
        yield "["
        for n, row in enumerate(_export_rows(job)):
            yield ("," if n else "") + json.dumps(dict(zip(EXPORT_COLUMNS, row, strict=True)))
        yield "]\n"

    response = StreamingHttpResponse(chunks(), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-matches.json"'
    return response


@require_POST
def cancel_page(request: HttpRequest, job_id: Any) -> HttpResponseRedirect:
    """The page's Cancel button (the API has ``POST /api/jobs/<id>/cancel/``)."""
    job = viewable_job(request, job_id)
    request_cancel(job)
    return HttpResponseRedirect(reverse("jobs:job-detail", args=[job.pk]))
