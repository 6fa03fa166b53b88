"""The workbench page (``/workbench/``): write or tune one rule against the whole catalog.

Works without JavaScript: the form posts the draft and the page renders the results beside
it. ``static/workbench/workbench.js`` adds line numbers, live (debounced) updates that fetch
only the results fragment (``?fragment=1``), and the share link kept in the URL fragment.
Its JSON twin is ``POST /api/workbench/`` (:mod:`catalog.api.workbench`).
"""

from __future__ import annotations

import re
import uuid
from contextlib import nullcontext
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from catalog.models import Correlation, Draft, MetaFilter, Rule
from catalog.sandbox import MAX_BODY_BYTES, MAX_EVENTS, PAGE_LIMITS, is_heavy
from catalog.sandbox_views import _result_rows
from catalog.throttling import Throttled, check_sandbox_rate, heavy_slot
from catalog.views.rule_detail import PREDICATE_ROWS
from catalog.workbench import (
    MAX_RULE_CHARS,
    PAGE_CONVERT_SECONDS,
    TargetChoice,
    WorkbenchReport,
    draft_rarity,
    every_target,
    run_workbench,
)
from rules.convert import PIPELINES, TARGETS, ConversionParameterError, resolve_options
from rules.drafts import filter_from_event
from rules.errors import EventInputError, RuleError
from rules.events import Event, read_events
from rules.parse import parse_rule
from rules.workbench import add_exclusion

MAX_TIMESTAMP_FIELD = 200
"""As ``POST /api/sandbox/`` limits ``timestamp_field``."""
MAX_DRAFTS = 200
"""Saved drafts per user; the oldest must be deleted before more are saved."""
_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_rule_template() -> str:
    """The empty workbench: a SigmaHQ-shaped rule with a fresh id, ready to edit."""
    return f"""title: Suspicious Whoami Execution With All Switches
id: {uuid.uuid4()}
status: experimental
description: |
    Detects whoami.exe run with /all, which lists the current user's groups and privileges.
references:
    - https://learn.microsoft.com/en-us/windows-server/administration/windows-commands/whoami
author: Your Name
date: 2026-01-01
tags:
    - attack.discovery
    - attack.t1033
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        - Image|endswith: '\\whoami.exe'
        - OriginalFileName: 'whoami.exe'
    selection_cli:
        CommandLine|contains: ' /all'
    condition: all of selection_*
falsepositives:
    - Administrators troubleshooting group membership
level: medium
"""


class PageInputError(ValueError):
    """A form value the page cannot use (too large, unreadable events); a 400 or 413."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def _drafts(request: HttpRequest) -> list[Draft]:
    if not request.user.is_authenticated:
        return []
    return list(Draft.objects.filter(owner=request.user).only("pk", "title", "updated_at")[:50])


def _initial_text(request: HttpRequest, context: dict[str, Any]) -> str:
    """The draft a GET opens: a saved draft, a copy of a catalog rule (tuned or not), or the
    template."""
    draft_pk = request.GET.get("draft", "")
    if draft_pk.isdigit() and request.user.is_authenticated:
        draft = Draft.objects.filter(pk=int(draft_pk), owner=request.user).first()
        if draft is not None:
            context["draft"] = draft
            return draft.text
    # No id holds NUL, and PostgreSQL refuses it in a query: dropped, as clean_params does.
    rule_id = (request.GET.get("rule") or "").replace("\x00", "").strip()
    if rule_id:
        rule = Rule.objects.filter(rule_id=rule_id).only("rule_id", "title", "raw_yaml").first()
        if rule is not None:
            context["opened"] = rule
            return rule.raw_yaml
        context["error"] = f"No catalog rule has the id {rule_id!r}; starting from the template."
    for key, model, field in (
        ("correlation", Correlation, "correlation_id"),
        ("filter", MetaFilter, "filter_id"),
    ):
        wanted = (request.GET.get(key) or "").replace("\x00", "").strip()[:200]
        if not wanted:
            continue
        row = model.objects.filter(**{field: wanted}).only(field, "title", "raw_yaml").first()
        if row is not None:
            # The whole file it came from: a correlation's rules travel with it when they do.
            context["opened_meta"] = {"kind": key, "row": row}
            return str(row.raw_yaml)
        context["error"] = f"No catalog {key} has the id {wanted!r}; starting from the template."
    return new_rule_template()


def _tuned(request: HttpRequest, context: dict[str, Any]) -> str | None:
    """The "Exclude this…" flow: the catalog rule with a filter for the posted value."""
    rule_id = (request.POST.get("tune_rule") or "").replace("\x00", "").strip()
    if not rule_id:
        return None
    rule = Rule.objects.filter(rule_id=rule_id).only("rule_id", "title", "raw_yaml").first()
    if rule is None:
        raise PageInputError(f"No catalog rule has the id {rule_id!r}")
    field = request.POST.get("exclude_field", "")[:200]
    value = request.POST.get("exclude_value", "")[:4096]
    as_filter = request.POST.get("tune_as") == "filter"
    try:
        if as_filter:
            # A meta filter leaves the rule as it is: the draft is the filter document alone,
            # naming the catalog rule, which the workbench evaluates with it.
            text = filter_from_event(parse_rule(rule.raw_yaml, rule.rule_id), field, value)
        else:
            text = add_exclusion(rule.raw_yaml, field, value)
    except RuleError as exc:
        raise PageInputError(f"the rule cannot be tuned here: {exc}") from exc
    context["opened"] = rule
    context["tune"] = {"field": field, "value": value, "as_filter": as_filter}
    return text


def _events(text: str, kind: str) -> list[Event]:
    if not text.strip():
        return []
    if kind not in {"auto", "json", "scriptblock"}:
        kind = "auto"
    return read_events(text, kind=kind, max_events=MAX_EVENTS).events


def _targets(request: HttpRequest) -> list[TargetChoice]:
    """Every target with its default pipeline, plus the one chosen in the conversion form."""
    choices = every_target()
    chosen = request.POST.get("convert", "")
    if ":" in chosen:
        target, pipeline = chosen.split(":", 1)
        try:
            spec, pipe, _ = resolve_options(target, pipeline)
        except ConversionParameterError:
            return choices
        # First, so that it is converted whatever the time budget leaves of the others.
        extra = TargetChoice(spec.id, pipe.id)
        same = TargetChoice(spec.id) if pipe.id == spec.default_pipeline else None
        return [extra, *(c for c in choices if c != same)]
    return choices


def _tune_outcome(report: WorkbenchReport) -> dict[str, Any]:
    """For a tuned rule: does the excluded event (if one was posted) still match, and do the
    rule's own regression samples? For a new meta filter, the samples are those of the rules
    it applies to, with the filter (``kept``: sample events it lets through)."""
    backtest = report.analysis.backtest
    tests = report.tests
    checks = report.analysis.filter_backtest
    return {
        "event_matches": any(r.matches for r in tests.results) if tests is not None else None,
        "suppressed": sum(len(v) for v in tests.filtered.values()) if tests is not None else 0,
        "own": list(backtest.own) if backtest else [],
        "own_matching": sum(1 for hit in backtest.own if hit.matched) if backtest else 0,
        "filter_checks": list(checks.checks) if checks else [],
        "filter_checks_kept": sum(1 for c in checks.checks if c.kept) if checks else 0,
    }


def _results_context(report: WorkbenchReport, tuned: bool = False) -> dict[str, Any]:
    indicator_rows = [
        (p, report.indicator_ids.get(p.identity), draft_rarity(p.corpus))
        for p in report.analysis.indicators[:PREDICATE_ROWS]
    ]
    return {
        "report": report,
        "indicator_rows": indicator_rows,
        "indicators_cut": max(0, len(report.analysis.indicators) - PREDICATE_ROWS),
        "analysis": report.analysis,
        "rows": _result_rows(report.tests) if report.tests is not None else [],
        "tune_outcome": _tune_outcome(report) if tuned else None,
        "in_workbench": True,
        "draft_rule_ids": {r.id for r in report.analysis.rules},
        "run": report.tests,
        "meta_rows": _meta_rows(report) if report.analysis.meta is not None else None,
    }


def _named(report: WorkbenchReport) -> Any:
    """Reference id -> (label, link or "", note) for what a draft's documents name."""
    analysis = report.analysis
    assert analysis.meta is not None
    table: dict[str, tuple[str, str, str]] = {}
    for rule in analysis.rules:
        table[rule.id] = (rule.title, "", "the draft")
    for corr in analysis.meta.correlations:
        table[corr.id] = (corr.title, "", "a correlation of the draft")
    for kind, ref_id, title in report.catalog_refs:
        name = "catalog:rule-detail" if kind == "rule" else "catalog:correlation-detail"
        table[ref_id] = (title, reverse(name, args=[ref_id]), "" if kind == "rule" else kind)

    def refs(ids: Any) -> list[dict[str, str]]:
        return [
            dict(zip(("label", "url", "note"), table.get(i, (i, "", "")), strict=True), id=i)
            for i in ids
        ]

    return refs


def _meta_rows(report: WorkbenchReport) -> dict[str, Any]:
    """The draft's correlations and filters with what each names, linked when the catalog has
    it (the template does no lookups)."""
    meta = report.analysis.meta
    assert meta is not None
    refs = _named(report)
    return {
        "correlations": [{"item": c, "refs": refs(c.rules)} for c in meta.correlations],
        "filters": [{"item": f, "refs": refs(f.rules)} for f in meta.filters],
        "catalog": refs([ref_id for _, ref_id, _ in report.catalog_refs]),
    }


def _pipeline_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (spec.label, [(f"{spec.id}:{p}", PIPELINES[p].label) for p in spec.pipelines])
        for spec in TARGETS.values()
    ]


@csrf_exempt  # analysing a draft changes nothing; saving has its own CSRF-protected view
@require_http_methods(["GET", "POST"])
def workbench_page(request: HttpRequest) -> HttpResponse:
    """GET opens a draft (template, ``?rule=``, ``?draft=``) and analyses it; POST analyses
    the posted draft (``action=download`` returns it as a file instead)."""
    context: dict[str, Any] = {
        "drafts": _drafts(request),
        "max_rule_chars": MAX_RULE_CHARS,
        "pipeline_choices": _pipeline_choices(),
        "backtest": True,
    }
    fragment = request.GET.get("fragment") == "1"
    status_code = 200
    try:
        if request.method == "POST":
            if request.POST.get("action") == "download":
                return _download(request.POST.get("rule", ""))
            wait = check_sandbox_rate(request)
            if wait is not None:
                return _refused(request, context, wait, fragment)
            tuned = _tuned(request, context)
            text = tuned if tuned is not None else request.POST.get("rule", "")
            events_text = request.POST.get("events", "")
            context["backtest"] = tuned is not None or request.POST.get("backtest") == "on"
            context["timestamp_field"] = request.POST.get("timestamp_field", "").strip()
            live = request.POST.get("live") == "1"
            targets = [] if live else _targets(request)
            context["converted"] = not live
        else:
            text = _initial_text(request, context)
            events_text, targets = "", []
        context["text"], context["events_text"] = text, events_text
        context["kind"] = request.POST.get("kind", "auto")
        if len(text) > MAX_RULE_CHARS or len(events_text) > MAX_BODY_BYTES:
            raise PageInputError(
                f"the draft is limited to {MAX_RULE_CHARS:,} characters and the events to "
                f"{MAX_BODY_BYTES:,}",
                status_code=413,
            )
        if not text.strip():
            raise PageInputError("the draft is empty: write a rule or open one from the catalog")
        events = _events(events_text, context["kind"])
        timestamp_field = context.get("timestamp_field") or None
        if timestamp_field is not None and len(timestamp_field) > MAX_TIMESTAMP_FIELD:
            raise PageInputError(
                f"the timestamp field is limited to {MAX_TIMESTAMP_FIELD} characters"
            )
        with heavy_slot(request, "sandbox") if is_heavy(events) else nullcontext():
            report = run_workbench(
                text,
                events=events,
                backtest=context["backtest"],
                targets=targets,
                limits=PAGE_LIMITS,
                convert_budget=PAGE_CONVERT_SECONDS,
                timestamp_field=timestamp_field,
            )
        context.update(_results_context(report, tuned="tune" in context))
        if not report.ok:
            status_code = 400 if request.method == "POST" else 200
    except Throttled as refusal:
        return _refused(request, context, refusal.wait, fragment, str(refusal), refusal.status_code)
    except (PageInputError, EventInputError) as exc:
        context["error"] = str(exc)
        status_code = getattr(exc, "status_code", 400)
    template = "workbench/_results.html" if fragment else "workbench/workbench.html"
    return render(request, template, context, status=status_code)


def _refused(
    request: HttpRequest,
    context: dict[str, Any],
    wait: int,
    fragment: bool,
    message: str = "Too many evaluations from this address.",
    status_code: int = 429,
) -> HttpResponse:
    context["text"] = request.POST.get("rule", "")
    context["events_text"] = request.POST.get("events", "")
    context["error"] = f"{message} Try again in {wait} second{'s' if wait != 1 else ''}."
    template = "workbench/_results.html" if fragment else "workbench/workbench.html"
    response = render(request, template, context, status=status_code)
    response["Retry-After"] = str(wait)
    return response


def draft_filename(text: str) -> str:
    """``suspicious_whoami_execution.yml`` from the draft's title (``rule.yml`` without one)."""
    match = re.search(r"^title:\s*(.+)$", text, re.MULTILINE)
    title = match.group(1).strip().strip("'\"") if match else ""
    stem = _FILENAME.sub("_", title.lower()).strip("_")[:80] or "rule"
    return f"{stem}.yml"


def _download(text: str) -> HttpResponse:
    if len(text) > MAX_RULE_CHARS:
        return HttpResponse("the draft is too large", status=413, content_type="text/plain")
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{draft_filename(text)}"'
    return response


@login_required
@require_POST
def save_draft(request: HttpRequest) -> HttpResponse:
    """Save the posted draft (a new one, or the owner's ``draft`` given) and reopen it."""
    text = request.POST.get("rule", "")
    if "\x00" in text:
        return HttpResponse(
            "a draft cannot hold a NUL character", status=400, content_type="text/plain"
        )
    if not text.strip() or len(text) > MAX_RULE_CHARS:
        return HttpResponse(
            f"a draft must be 1 to {MAX_RULE_CHARS:,} characters",
            status=400,
            content_type="text/plain",
        )
    match = re.search(r"^title:\s*(.+)$", text, re.MULTILINE)
    title = (match.group(1).strip().strip("'\"") if match else "")[:500]
    pk = request.POST.get("draft", "")
    draft = Draft.objects.filter(pk=int(pk), owner=request.user).first() if pk.isdigit() else None
    if draft is None:
        if Draft.objects.filter(owner=request.user).count() >= MAX_DRAFTS:
            return HttpResponse(
                f"you have {MAX_DRAFTS} saved drafts; delete some first",
                status=400,
                content_type="text/plain",
            )
        draft = Draft(owner=request.user)
    draft.title, draft.text = title, text
    draft.save()
    return HttpResponseRedirect(f"{reverse('workbench')}?draft={draft.pk}", status=303)


@login_required
@require_POST
def delete_draft(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one of the user's drafts (another user's draft is a 404)."""
    get_object_or_404(Draft, pk=pk, owner=request.user).delete()
    return HttpResponseRedirect(reverse("workbench"), status=303)
