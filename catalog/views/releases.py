"""The changelog pages: releases, one release's changes, past revisions, the Atom feeds."""

from __future__ import annotations

from typing import Any

from django.contrib.syndication.views import Feed
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.views.decorators.http import require_safe

from catalog.models import Release, Rule, RuleRevision
from catalog.queries.releases import (
    find_release,
    release_revisions,
    removed_in,
    revision_diff,
    rule_revisions,
    stored_changes,
)
from rules.diff import CHANGE_CLASSES, side_by_side

_LISTS = ("rule_ids", "added", "modified", "removed", "deprecated")
# Rows of added or removed rules shown on a release page (a first release adds thousands).
ROW_LIMIT = 500


@require_safe
def release_list(request: HttpRequest) -> HttpResponse:
    releases = list(Release.objects.defer(*_LISTS))
    return render(request, "releases/release_list.html", {"releases": releases})


def _tactics(tags: list[str]) -> list[str]:
    return [t.split(".", 1)[1] for t in tags if t.startswith("attack.") and t[7:8] != "t"]


@require_safe
def release_detail(request: HttpRequest, name: str) -> HttpResponse:
    release = find_release(name)
    if release is None:
        raise Http404("No release has this name.")
    changes = stored_changes(release)
    wanted = {key: request.GET.get(key, "") for key in ("level", "product", "tactic")}

    def keep(revision: RuleRevision | None) -> bool:
        if revision is None:
            return not any(wanted.values())
        return (
            (not wanted["level"] or revision.level == wanted["level"])
            and (not wanted["product"] or revision.logsource.get("product") == wanted["product"])
            and (not wanted["tactic"] or wanted["tactic"] in _tactics(revision.tags))
        )

    # The newest revision of every rule this release wrote: one query, the modified and the
    # added rules' rows (a rule only added or changed in the release has one there).
    written = release_revisions(release)
    added = {i: written[i] for i in changes.added[:ROW_LIMIT] if i in written}
    rows = [
        {"change": c, "revision": written[c["id"]]}
        for c in changes.changes
        if keep(written[c["id"]])
    ]
    by_class = {
        name: [row for row in rows if row["change"]["class"] == name] for name in CHANGE_CLASSES
    }
    context: dict[str, Any] = {
        "release": release,
        "changes": changes,
        "by_class": by_class,
        "added": [added[i] for i in changes.added[:ROW_LIMIT] if i in added and keep(added[i])],
        "removed": changes.removed[:ROW_LIMIT],
        "deprecated": set(changes.deprecated),
        "wanted": wanted,
        "row_limit": ROW_LIMIT,
    }
    return render(request, "releases/release_detail.html", context)


def history_context(rule_id: str) -> dict[str, Any]:
    """The rule page's History section: every revision with its release."""
    revisions = rule_revisions(rule_id)
    return {"revisions": revisions, "latest": revisions[-1] if revisions else None}


@require_safe
def rule_revision(request: HttpRequest, rule_id: str, number: int) -> HttpResponse:
    """A past revision (permalink), with the side-by-side YAML and semantic diff to another."""
    revisions = {r.number: r for r in rule_revisions(rule_id)}
    revision = revisions.get(number)
    if revision is None:
        raise Http404("This rule has no such revision.")
    try:
        other_number = int(request.GET.get("from", number - 1))
    except ValueError:
        other_number = number - 1
    other = revisions.get(other_number)
    context = {
        "rule_id": rule_id,
        "revision": revision,
        "revisions": list(revisions.values()),
        "other": other,
        "diff": revision_diff(other, revision) if other else None,
        "rows": side_by_side(other.yaml, revision.yaml) if other else [],
    }
    return render(request, "releases/rule_revision.html", context)


def removed_rule(request: HttpRequest, rule_id: str) -> HttpResponse:
    """The page of a rule no longer in the catalog: its last revision, marked removed."""
    revisions = rule_revisions(rule_id)
    if not revisions:
        raise Http404("No rule has this id.")
    last = revisions[-1]
    # Sigma's ``related`` is written by the newer rule: ``{id: <this rule>, type: obsolete}``.
    replacing = Rule.objects.filter(related__icontains=rule_id).values_list("rule_id", "title")
    context = {
        "rule_id": rule_id,
        "revision": last,
        "revisions": revisions,
        "removed_in": removed_in(rule_id, revisions),
        "replacing": list(replacing),
        "history": {"revisions": revisions},
    }
    return render(request, "releases/removed_rule.html", context, status=200)


class ReleaseFeed(Feed):  # type: ignore[type-arg]
    """Atom: one entry per release (counts and a link), all rule sets or one ``source``."""

    feed_type = Atom1Feed

    def get_object(self, request: HttpRequest, source: str = "") -> str:
        return source

    def title(self, source: str) -> str:
        return f"Sigma catalog releases{f' of {source}' if source else ''}"

    def link(self, source: str) -> str:
        return reverse("catalog:release-list")

    def subtitle(self, source: str) -> str:
        return "New, modified, removed and deprecated rules per release"

    def items(self, source: str) -> Any:
        releases = Release.objects.defer(*_LISTS)
        return (releases.filter(source=source) if source else releases)[:50]

    def item_title(self, item: Release) -> str:
        return f"Release {item}"

    def item_description(self, item: Release) -> str:
        c = item.counts
        return (
            f"{c.get('added', 0)} added, {c.get('modified', 0)} modified "
            f"({c.get('detection', 0)} detection, {c.get('tuning', 0)} tuning, "
            f"{c.get('metadata', 0)} metadata), {c.get('removed', 0)} removed, "
            f"{c.get('deprecated', 0)} deprecated; {c.get('rules', 0)} rules"
        )

    def item_link(self, item: Release) -> str:
        return item.get_absolute_url()

    def item_guid(self, item: Release) -> str:
        return f"release:{item.source}:{item.name}"

    def item_pubdate(self, item: Release) -> Any:
        return item.released_at

    def item_updateddate(self, item: Release) -> Any:
        return item.imported_at
