"""Reads of releases and rule history, shared by the changelog pages, the feed and the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalog.models import Release, RuleRevision
from catalog.releases import snapshot_of_revision
from rules.diff import RuleDiff, diff_rules

_CHUNK = 900
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
    revisions: dict[str, RuleRevision]  # the newer revision of each modified rule

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


def release_changes(release: Release, since: Release | None = None) -> Changes:
    """The changelog of one release, or of every release after ``since`` up to ``release``.

    One release is read from its stored lists and the diffs stored on its revisions; a span
    compares the two releases' rule sets and each modified rule's revision at either end.
    """
    older = since if since is not None else previous_release(release)
    before = set(older.rule_ids) if older else set()
    after = set(release.rule_ids)
    both = before & after
    low = older.sequence if older else 0
    # Every revision of a rule in both releases up to the newer one (few: only those changed
    # in the span are fetched in full).
    changed_ids = (
        set(
            RuleRevision.objects.filter(
                release__source=release.source,
                release__sequence__gt=low,
                release__sequence__lte=release.sequence,
            ).values_list("sigma_id", flat=True)
        )
        & both
    )
    newest: dict[str, RuleRevision] = {}
    oldest: dict[str, RuleRevision] = {}
    for revision in _revisions_of(sorted(changed_ids), release):
        if revision.release.sequence <= low:
            oldest[revision.sigma_id] = revision
        else:
            newest[revision.sigma_id] = revision
    changes: list[dict[str, Any]] = []
    deprecated: list[str] = []
    revisions: dict[str, RuleRevision] = {}
    for sigma_id in sorted(newest):
        new, old = newest[sigma_id], oldest.get(sigma_id)
        if old is None or old.content_hash == new.content_hash:
            continue
        if new.diff is not None and new.number == old.number + 1:
            entry = dict(new.diff)
        else:
            full = RuleRevision.objects.in_bulk([old.pk, new.pk])
            diff = revision_diff(full[old.pk], full[new.pk])
            entry = diff.to_dict()
            entry["class"] = new.change_class if not diff.changed else entry["class"]
        changes.append({"id": sigma_id, **entry})
        revisions[sigma_id] = new
        if new.status == "deprecated" and old.status != "deprecated":
            deprecated.append(sigma_id)
    return Changes(
        release=release,
        since=since,
        added=sorted(after - before),
        modified=[c["id"] for c in changes],
        removed=sorted(before - after),
        deprecated=deprecated,
        changes=changes,
        revisions=revisions,
    )


def _revisions_of(sigma_ids: list[str], release: Release) -> list[RuleRevision]:
    """Revisions of these rules up to ``release`` (its source), oldest first per rule."""
    found: list[RuleRevision] = []
    for start in range(0, len(sigma_ids), _CHUNK):
        found.extend(
            RuleRevision.objects.filter(
                sigma_id__in=sigma_ids[start : start + _CHUNK],
                release__source=release.source,
                release__sequence__lte=release.sequence,
            )
            .select_related("release")
            .only(*_BRIEF_REVISION)
            .order_by("number")
        )
    return found


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
