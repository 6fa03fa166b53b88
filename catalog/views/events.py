"""Event pages: every event source feeding catalog rules, and one event."""

from __future__ import annotations

from collections import Counter

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.caching import cached
from catalog.queries import events_data, field_usage
from catalog.services import catalog_fingerprint
from catalog.templatetags.catalog_tags import ChartRow
from catalog.views.common import clean_params, paginate, rules_page


@require_safe
def event_list(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("events", fingerprint, events_data)
    params = clean_params(request)
    provider = params.get("provider", "")
    text = params.get("q", "").strip()[:200]
    providers = Counter(e["provider"] for e in data["events"])
    notices = []
    if provider and provider not in providers:
        notices.append(f"No provider named {provider!r}; the filter was ignored.")
        provider = ""
    events = [e for e in data["events"] if not provider or e["provider"] == provider]
    if text:
        needle = text.casefold()
        events = [
            e for e in events
            if needle in f"{e['provider']} {e['channel']} {e['label']} {e['title']}".casefold()
        ]  # fmt: skip
    page = paginate(request, events, 50)
    chart = [
        ChartRow(f"{e['provider']} {e['label']}" + (f" · {e['title']}" if e["title"] else ""),
                 e["rule_count"], reverse("catalog:event-detail", args=[e["slug"]]))
        for e in events[:12]
    ]  # fmt: skip
    return render(
        request,
        "catalog/event_list.html",
        {"events": page.object_list, "page_obj": page, "unmapped": data["unmapped"],
         "providers": sorted(providers.items()), "provider": provider, "text": text,
         "notices": notices, "chart": chart, "rules_url": reverse("catalog:rule-list"),
         "top_providers": providers.most_common(10), "total_events": len(data["events"]),
         "fingerprint": fingerprint},
    )  # fmt: skip


@require_safe
def event_detail(request: HttpRequest, slug: str) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("events", fingerprint, events_data)
    event = next((e for e in data["events"] if e["slug"] == slug), None)
    if event is None:
        raise Http404("No catalog rule uses this event")
    fields = cached("event-fields", fingerprint,
                    lambda: field_usage(data["events"]))[slug]  # fmt: skip
    return render(
        request,
        "catalog/event_detail.html",
        {
            "event": event,
            "fields": fields,
            **rules_page(request, event["rules"], fingerprint),
        },
    )
