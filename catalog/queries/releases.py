"""Reads of releases and rule history, shared by the changelog pages, the feed and the API."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from rest_framework.renderers import JSONRenderer

from catalog.caching import cached
from catalog.models import Release, ReleaseChanges, RuleRevision
from catalog.releases import snapshot_of_revision
from rules.diff import RuleDiff, diff_rules

# The release's big id lists; revisions and timelines do not need them.
_RELEASE_LISTS = tuple(
    f"release__{name}" for name in ("rule_ids", "added", "modified", "removed", "deprecated")
)


# What a changelog reads of each revision; the YAML and extracted rows only for a span's diff.
_BRIEF_REVISION = (
    "sigma_id", "number", "content_hash", "title", "level", "status", "logsource", "tags",
    "change_class", "diff", "release__sequence", "release__name", "release__source",
)  # fmt: skip


def find_release(name: str) -> Release | None:
    """The release with this name (the latest one when several sources share it)."""
    return Release.objects.filter(name=name).order_by("-sequence").first()


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def changed_since_revisions(text: str) -> Q:
    """The revisions ``changed_since=<text>`` selects: those of the releases of a named
    release's source after it, or of the releases dated on or after a ``YYYY-MM-DD`` day.

    Raises ``ValueError`` (with a message for people) for anything else.
    """
    text = text.strip()
    release = find_release(text)
    if release is not None:
        return Q(release__source=release.source, release__sequence__gt=release.sequence)
    if _DAY.fullmatch(text):
        try:
            day = datetime.date.fromisoformat(text)
        except ValueError:
            pass
        else:
            start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
            return Q(release__released_at__gte=start)
    names = list(Release.objects.values_list("name", flat=True)[:10])
    known = f" (one of {', '.join(names)})" if names else " (none is imported yet)"
    raise ValueError(f"changed_since must name a release{known} or be a date YYYY-MM-DD.")


def latest_release_overall() -> Release | None:
    """The newest release of any source (the home page's and the facet's "latest")."""
    return Release.objects.defer(*(n.removeprefix("release__") for n in _RELEASE_LISTS)).first()


def previous_release(release: Release) -> Release | None:
    return (
        Release.objects.filter(source=release.source, sequence__lt=release.sequence)
        .order_by("-sequence")
        .first()
    )


def earlier_releases(release: Release) -> list[str]:
    """Names ``since`` may take for this release (earlier releases of its source)."""
    return list(
        Release.objects.filter(source=release.source, sequence__lt=release.sequence)
        .order_by("-sequence")
        .values_list("name", flat=True)
    )


def revision_diff(old: RuleRevision, new: RuleRevision) -> RuleDiff:
    """The semantic diff between two revisions of a rule."""
    return diff_rules(snapshot_of_revision(old), snapshot_of_revision(new))


@dataclass(slots=True)
class Changes:
    """What changed from ``since`` (default: the release before) to ``release``."""

    release: Release
    since: Release | None
    added: list[str]
    modified: list[str]
    removed: list[str]
    deprecated: list[str]
    changes: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release.name,
            "since": self.since.name if self.since else None,
            "added": self.added,
            "modified": self.modified,
            "removed": self.removed,
            "deprecated": self.deprecated,
            "changes": self.changes,
        }

    @classmethod
    def from_payload(cls, release: Release, payload: str) -> Changes:
        """The changes a stored answer holds (``since`` is the release before: not needed)."""
        data = json.loads(payload)
        lists = {key: data[key] for key in ("added", "modified", "removed", "deprecated")}
        return cls(release=release, since=None, changes=data["changes"], **lists)


def render_changes(changes: Changes) -> str:
    """The changes API's JSON text: DRF's JSON renderer, so a stored answer is byte for byte
    what the view would render from :func:`release_changes`."""
    return JSONRenderer().render(changes.to_dict()).decode()


def stored_payload(release: Release) -> str:
    """The release's stored changes answer (:mod:`catalog.releases` writes it at import).

    A release recorded before answers were stored has none: computed, and stored unless an
    import stored one meanwhile (the import's copy, made in its transaction, wins).
    """
    payload = ReleaseChanges.objects.filter(release=release).values_list("payload", flat=True)
    found = payload.first()
    if found is not None:
        return found
    text = render_changes(release_changes(release))
    try:
        with transaction.atomic():
            ReleaseChanges.objects.create(release=release, payload=text, version=uuid.uuid4().hex)
    except IntegrityError:
        pass
    return text


def stored_changes(release: Release) -> Changes:
    """:func:`release_changes` of one release, read from its stored answer."""
    return Changes.from_payload(release, stored_payload(release))


def since_payload(release: Release, since: Release) -> str:
    """The changes answer from ``since`` to ``release`` (several releases), computed once per
    state of the source's history: every import that changes a release (or reorders them)
    stores its answer again with a new version, so the versions name that state."""
    versions = ReleaseChanges.objects.filter(release__source=release.source).order_by("pk")
    state = hashlib.sha1("".join(versions.values_list("version", flat=True)).encode())
    return cached(
        f"release-changes:{release.pk}:{since.pk}",
        f"history:{state.hexdigest()}",
        lambda: render_changes(release_changes(release, since)),
    )


class _Row(NamedTuple):
    """What a changelog reads of each revision (no YAML, no extracted rows: model instances
    and their JSON columns cost most of the answer's time)."""

    pk: int
    sigma_id: str
    number: int
    content_hash: str
    status: str
    change_class: str
    diff: str | None  # JSON text, decoded when used
    sequence: int


def release_changes(release: Release, since: Release | None = None) -> Changes:
    """The changelog of one release, or of every release after ``since`` up to ``release``.

    Compares the two releases' rule sets; a rule in both is modified when its newest revision
    up to ``release`` differs from its newest up to ``since``. The diff stored on the newer
    revision is used when the two are consecutive (always, for one release), else computed.
    A constant number of queries whatever the release's size.
    """
    older = since if since is not None else previous_release(release)
    before = set(older.rule_ids) if older else set()
    after = set(release.rule_ids)
    low = older.sequence if older else 0
    newest: dict[str, _Row] = {}
    oldest: dict[str, _Row] = {}
    for row in _span_rows(release, low) if before & after else ():
        if row.sigma_id in before and row.sigma_id in after:
            (oldest if row.sequence <= low else newest)[row.sigma_id] = row
    pairs = [(oldest.get(i), newest[i]) for i in sorted(newest)]
    pairs = [(old, new) for old, new in pairs if old and old.content_hash != new.content_hash]
    computed = _computed_diffs([(o, n) for o, n in pairs if not _stored(o, n)])
    changes: list[dict[str, Any]] = []
    deprecated: list[str] = []
    for old, new in pairs:
        entry = json.loads(new.diff) if _stored(old, new) else computed[new.pk]
        changes.append({"id": new.sigma_id, **entry})
        if new.status == "deprecated" and old.status != "deprecated":
            deprecated.append(new.sigma_id)
    return Changes(
        release=release,
        since=since,
        added=sorted(after - before),
        modified=[c["id"] for c in changes],
        removed=sorted(before - after),
        deprecated=deprecated,
        changes=changes,
    )


def _stored(old: _Row, new: _Row) -> bool:
    return new.diff is not None and new.number == old.number + 1


def _span_rows(release: Release, low: int) -> list[_Row]:
    """The revisions of the rules changed after sequence ``low`` up to ``release``, oldest
    first: every one in the span, and each rule's newest before it (without its diff).

    Three queries whatever the size: the source's release ids, then revisions by release id
    (an index scan each; joining releases per row cost more than the rows).
    """
    sequences = dict(
        Release.objects.filter(source=release.source, sequence__lte=release.sequence).values_list(
            "pk", "sequence"
        )
    )
    inside = [pk for pk, sequence in sequences.items() if sequence > low]
    outside = [pk for pk, sequence in sequences.items() if sequence <= low]
    span = RuleRevision.objects.filter(release_id__in=inside)
    # The diff as text, decoded only for the revisions the answer uses (the JSON field's
    # converter would decode every one, and costs twice json.loads).
    rows = [
        _Row(*row[:-2], row[-2] or None, sequences[row[-1]])
        for row in span.annotate(diff_text=Cast("diff", TextField())).values_list(
            *_Row._fields[:-2], "diff_text", "release_id"
        )
    ]
    earlier: dict[str, _Row] = {}
    for row in (
        RuleRevision.objects.filter(release_id__in=outside, sigma_id__in=span.values("sigma_id"))
        .order_by("number")
        .values_list(*_Row._fields[:5], "release_id")
    ):
        earlier[row[1]] = _Row(*row[:5], "", None, sequences[row[-1]])
    return sorted([*earlier.values(), *rows], key=lambda row: row.number)


def _computed_diffs(pairs: list[tuple[_Row, _Row]]) -> dict[int, dict[str, Any]]:
    """The diff of each (older, newer) pair not stored (a span), keyed by the newer's pk."""
    if not pairs:
        return {}
    # The diff reads the extracted columns, never the YAML (the largest one).
    full = RuleRevision.objects.defer("yaml", "source_path").in_bulk(
        [pk for old, new in pairs for pk in (old.pk, new.pk)]
    )
    found: dict[int, dict[str, Any]] = {}
    for old, new in pairs:
        diff = revision_diff(full[old.pk], full[new.pk])
        entry = diff.to_dict()
        entry["class"] = new.change_class if not diff.changed else entry["class"]
        found[new.pk] = entry
    return found


def release_revisions(release: Release) -> dict[str, RuleRevision]:
    """The newest revision of each rule written in this release (brief: no YAML)."""
    revisions = (
        RuleRevision.objects.filter(release=release)
        .select_related("release")
        .only(*_BRIEF_REVISION)
        .order_by("number")
    )
    return {revision.sigma_id: revision for revision in revisions}


def rule_revisions(sigma_id: str) -> list[RuleRevision]:
    """Every revision of a rule, oldest first, with its release."""
    return list(
        RuleRevision.objects.filter(sigma_id=sigma_id)
        .select_related("release")
        .defer(*_RELEASE_LISTS)
        .order_by("number")
    )


def removed_in(sigma_id: str, revisions: list[RuleRevision]) -> Release | None:
    """The release a rule disappeared in: the first after its last revision without it."""
    if not revisions:
        return None
    last = revisions[-1].release
    later = Release.objects.filter(source=last.source, sequence__gt=last.sequence)
    for release in later.only("pk", "name", "removed", "sequence").order_by("sequence"):
        if sigma_id in release.removed:
            return release
    return None
