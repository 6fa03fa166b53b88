"""Releases and rule history: what each import changed, kept as revisions.

:func:`resolve_release` names an import before anything is parsed (``--release``, a git
checkout's ``git describe``, or the date) and refuses an older release after a newer one;
:func:`record_release` runs inside the importer's transaction after the rows are written and
keeps one :class:`RuleRevision` per distinct content of a rule (with the semantic diff from
the previous one, :mod:`rules.diff`), the release's id lists and its changes API answer
(one computation, :func:`catalog.queries.releases.release_changes`, stored as JSON in
:class:`~catalog.models.ReleaseChanges`), and removes the rules a full release of the source
no longer has (their history and page stay).
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db.models import Max
from django.utils import timezone

from catalog.import_rows import insert_rows
from catalog.models import Release, ReleaseChanges, Rule, RuleRevision
from rules.diff import (
    CHANGE_CLASSES,
    METADATA,
    FieldChange,
    RuleSnapshot,
    diff_rules,
    snapshot_of,
)
from rules.errors import RuleError
from rules.model import ParsedRule
from rules.parse import parse_rule

if TYPE_CHECKING:
    from catalog.import_rows import ImportPlan

DEFAULT_SOURCE = "default"
_DATE_IN_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_CHUNK = 900
# Revision columns taken from a snapshot as they are; the rest of it goes in ``metadata``.
_COLUMNS = ("title", "level", "status", "logsource", "tags", "stages", "indicators", "exclusions")


class ReleaseRefused(ValueError):
    """The release cannot be imported as asked (older than the latest, already imported)."""


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """What the caller asked for: ``--release``, ``--released-at``, ``--source``, ``--force``."""

    name: str = ""
    released_at: datetime.datetime | None = None
    source: str = DEFAULT_SOURCE
    force: bool = False


@dataclass(slots=True)
class ReleaseTarget:
    """The release an import will be recorded as, decided before parsing."""

    name: str
    released_at: datetime.datetime
    source: str
    # A full snapshot of the source: rules of the previous release it lacks are removed.
    snapshot: bool
    existing: Release | None
    automatic: bool = False


@dataclass(slots=True)
class ReleaseSummary:
    """What one import changed in its release."""

    name: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    revisions_written: int = 0

    def summary(self) -> str:
        c = self.counts
        classes = ", ".join(f"{c.get(k, 0)} {k}" for k in CHANGE_CLASSES)
        return (
            f"release {self.name}: {c.get('added', 0)} added, {c.get('modified', 0)} modified "
            f"({classes}), {c.get('removed', 0)} removed, {c.get('deprecated', 0)} deprecated; "
            f"{self.revisions_written} revisions written"
        )


def parse_released_at(text: str) -> datetime.datetime:
    """``2026-04-01`` or an ISO date-time (naive means UTC)."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReleaseRefused(f"--released-at {text!r} is not an ISO date (YYYY-MM-DD)") from exc
    if timezone.is_naive(value):
        value = value.replace(tzinfo=datetime.UTC)
    return value


def git_release(paths: Sequence[str]) -> tuple[str, datetime.datetime] | None:
    """(``git describe --tags``, commit date) when every path is a git checkout's top folder
    or a folder right under it (``sigma/rules``, ``sigma/rules-*``), else ``None``."""
    if not paths or shutil.which("git") is None:
        return None
    tops: set[Path] = set()
    for item in paths:
        folder = Path(item).resolve()
        top = _git(folder, "rev-parse", "--show-toplevel") if folder.is_dir() else None
        if top is None or Path(top).resolve() not in (folder, folder.parent):
            return None
        tops.add(Path(top).resolve())
    if len(tops) != 1:
        return None
    top = tops.pop()
    name = _git(top, "describe", "--tags", "--always")
    date = _git(top, "log", "-1", "--format=%cI")
    if not name or not date:
        return None
    return name, datetime.datetime.fromisoformat(date)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def latest_release(source: str) -> Release | None:
    return Release.objects.filter(source=source).order_by("-sequence").first()


def resolve_release(
    paths: Sequence[str], spec: ReleaseSpec | None, *, prune: bool
) -> ReleaseTarget:
    """Name the import's release and check it may be imported; raises :class:`ReleaseRefused`."""
    spec = spec or ReleaseSpec()
    latest = latest_release(spec.source)
    name, released_at, named = spec.name, spec.released_at, bool(spec.name)
    if not named and (found := git_release(paths)):
        name, released_at, named = found[0], released_at or found[1], True
    if not named:
        name = _date_name(spec.source, latest)
    released_at = released_at or _date_of(name) or timezone.now()
    existing = Release.objects.filter(source=spec.source, name=name).first()
    if latest is not None and not spec.force:
        _check_order(name, released_at, spec.source, existing, latest, automatic=not named)
    return ReleaseTarget(
        name, released_at, spec.source, named or prune, existing, automatic=not named
    )


def _check_order(
    name: str,
    released_at: datetime.datetime,
    source: str,
    existing: Release | None,
    latest: Release,
    *,
    automatic: bool,
) -> None:
    """An older release after a newer one, or one imported before the latest, is refused.

    Date-named imports (``automatic``) are never refused and never count as newer.
    """
    if automatic:
        return
    if existing is not None and existing.pk != latest.pk and not latest.automatic:
        raise ReleaseRefused(
            f"release {name} was imported before the latest release {latest.name} of "
            f"{source}; importing it again would go back in time (use --force)"
        )
    newest = Release.objects.filter(source=source, automatic=False).order_by("-sequence").first()
    if existing is None and newest is not None and released_at < newest.released_at:
        raise ReleaseRefused(
            f"release {name} ({released_at:%Y-%m-%d}) is older than the latest release "
            f"{newest.name} ({newest.released_at:%Y-%m-%d}) of {source} (use --force)"
        )


def _date_name(source: str, latest: Release | None) -> str:
    """Today's date; ``2026-08-05.2`` when today's release is not the latest any more."""
    name = timezone.now().date().isoformat()
    taken = set(
        Release.objects.filter(source=source, name__startswith=name).values_list("name", flat=True)
    )
    if name not in taken or (latest is not None and latest.name == name):
        return name
    if latest is not None and latest.name.startswith(name + "."):
        return latest.name
    number = 2
    while f"{name}.{number}" in taken:
        number += 1
    return f"{name}.{number}"


def _date_of(name: str) -> datetime.datetime | None:
    """``r2026-04-01`` -> 2026-04-01 00:00 UTC (a release named by its date)."""
    found = _DATE_IN_NAME.search(name)
    if not found:
        return None
    try:
        day = datetime.date(*(int(part) for part in found.groups()))
    except ValueError:
        return None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)


def record_release(target: ReleaseTarget, plan: ImportPlan) -> ReleaseSummary:
    """Record the import as ``target``: revisions, id lists, removals. In the transaction.

    Re-importing a release whose files did not change writes nothing at all.
    """
    release, previous, moved_from = _release_row(target)
    before = set(release.rule_ids if target.existing else previous.rule_ids if previous else [])
    present = set(plan.seen_ids) | _failed_but_present(plan, before)
    if target.snapshot and before and not present:
        # A typo in a path must not remove every rule of the source.
        raise ReleaseRefused(f"release {target.name} has no rule; refusing to remove them all")
    members = present if target.snapshot else before | present
    written = _write_revisions(release, plan)
    if target.snapshot:
        _remove_rules(before - members)
    summary = ReleaseSummary(release.name, release.source, revisions_written=written)
    if target.existing and not written and members == set(release.rule_ids) and not moved_from:
        summary.counts = dict(release.counts)
        return summary
    release.rule_ids = sorted(members)
    rewritten = [release]
    if moved_from:
        # --force moved the release to the end: the releases that followed it now follow
        # the one before it, so their lists and stored answers are computed again.
        rewritten = [*_releases_after(release, moved_from), release]
    for row in rewritten:
        _store_changes(row)
    summary.counts = dict(release.counts)
    return summary


def _releases_after(moved: Release, sequence: int) -> list[Release]:
    """The releases that followed ``moved`` (which was at ``sequence``), in order."""
    later = Release.objects.filter(source=moved.source, sequence__gt=sequence)
    return list(later.exclude(pk=moved.pk).order_by("sequence"))


def _store_changes(release: Release) -> None:
    """The release's changelog against the release before it, computed from its revisions
    once: its id lists and counts, and the changes API's answer stored as JSON with a new
    version (the ``?since=`` answers cached under the old one are not read again)."""
    # catalog.queries.releases reads revisions through this module: imported here.
    from catalog.queries.releases import release_changes, render_changes

    changes = release_changes(release)
    classes = dict.fromkeys(CHANGE_CLASSES, 0)
    for entry in changes.changes:
        if entry["class"] in classes:
            classes[entry["class"]] += 1
    release.added, release.modified = changes.added, changes.modified
    release.removed, release.deprecated = changes.removed, changes.deprecated
    release.counts = {
        "rules": len(release.rule_ids),
        **{key: len(getattr(changes, key)) for key in ("added", "modified", "removed")},
        "deprecated": len(changes.deprecated),
        **classes,
    }
    release.save()
    ReleaseChanges.objects.update_or_create(
        release=release,
        defaults={"payload": render_changes(changes), "version": uuid.uuid4().hex},
    )


def _release_row(target: ReleaseTarget) -> tuple[Release, Release | None, int]:
    """The release row (new, or the existing one), the release before it, and the sequence
    it was moved from (0 when it was not moved)."""
    moved_from = 0
    if target.existing is not None:
        release = target.existing
        latest = latest_release(target.source)
        if latest is not None and latest.pk != release.pk:  # --force: it becomes the latest
            moved_from = release.sequence
            release.sequence = latest.sequence + 1
            release.save(update_fields=["sequence"])
    else:
        top = Release.objects.filter(source=target.source).aggregate(n=Max("sequence"))["n"]
        release = Release.objects.create(
            source=target.source,
            name=target.name,
            released_at=target.released_at,
            sequence=(top or 0) + 1,
            automatic=target.automatic,
        )
    previous = (
        Release.objects.filter(source=target.source, sequence__lt=release.sequence)
        .order_by("-sequence")
        .first()
    )
    return release, previous, moved_from


def _failed_but_present(plan: ImportPlan, before: set[str]) -> set[str]:
    """Rules whose files are present but failed this time: still in the release."""
    failed_ids = set(getattr(plan, "failed_ids", ()))
    failed_paths = list(getattr(plan, "failed_paths", ()))
    if failed_paths:
        for start in range(0, len(failed_paths), _CHUNK):
            chunk = failed_paths[start : start + _CHUNK]
            failed_ids.update(
                Rule.objects.filter(source_path__in=chunk).values_list("rule_id", flat=True)
            )
    return failed_ids & before


def _write_revisions(release: Release, plan: ImportPlan) -> int:
    """A revision for every written rule whose content differs from its latest revision, and
    a first one for present rules that have none yet (catalogs imported before releases)."""
    parsed = [(item.parsed, item.digest) for item in (*plan.new, *plan.changed)]
    latest = _latest_revisions([p.id for p, _ in parsed])
    missing = _without_revision(set(plan.seen_ids) - {p.id for p, _ in parsed})
    parsed += _parse_stored(missing)
    rows = []
    for rule, digest in parsed:
        last = latest.get(rule.id)
        if last is not None and last.content_hash == digest:
            continue  # a rule back with content it had before: no new revision
        snapshot = snapshot_of(rule)
        diff = diff_rules(snapshot_of_revision(last), snapshot) if last else None
        if diff is not None and not diff.changed:
            # Other bytes, same rule (comments, quoting, layout): nothing that matches changed.
            diff.change_class, diff.fields = METADATA, [FieldChange("yaml", None, None)]
        number = last.number + 1 if last else 1
        rows.append(_revision_row(release, rule, digest, number, snapshot, diff))
    insert_rows(RuleRevision, list(_ROW_COLUMNS), rows)
    return len(rows)


_ROW_COLUMNS = (
    "sigma_id", "number", "release_id", "content_hash", "source_path", "yaml", *_COLUMNS,
    "metadata", "change_class", "diff",
)  # fmt: skip
_JSON_COLUMNS = frozenset(
    ("logsource", "tags", "stages", "indicators", "exclusions", "metadata", "diff")
)


def _revision_row(
    release: Release,
    rule: ParsedRule,
    digest: str,
    number: int,
    snapshot: RuleSnapshot,
    diff: Any,
) -> tuple[Any, ...]:
    data = snapshot.to_dict()
    columns = {key: data.pop(key) for key in _COLUMNS}
    data.pop("rule_id")
    values: dict[str, Any] = {
        "sigma_id": rule.id,
        "number": number,
        "release_id": release.pk,
        "content_hash": digest,
        "source_path": rule.source_path[:1000],
        "yaml": rule.raw_yaml,
        **columns,
        "title": columns["title"][:500],
        "level": columns["level"][:30],
        "status": columns["status"][:30],
        "metadata": data,
        "change_class": diff.change_class if diff else "",
        "diff": diff.to_dict() if diff else None,
    }
    # JSON columns as text (COPY and executemany take no Python structures); a NULL diff
    # stays NULL.
    return tuple(
        json.dumps(values[c]) if c in _JSON_COLUMNS and values[c] is not None else values[c]
        for c in _ROW_COLUMNS
    )


def snapshot_of_revision(revision: RuleRevision) -> RuleSnapshot:
    """The :class:`RuleSnapshot` a stored revision holds."""
    data = dict(revision.metadata)
    data.update({key: getattr(revision, key) for key in _COLUMNS})
    data["rule_id"] = revision.sigma_id
    return RuleSnapshot.from_dict(data)


def _latest_revisions(sigma_ids: Iterable[str]) -> dict[str, RuleRevision]:
    ids = list(sigma_ids)
    found: dict[str, RuleRevision] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for revision in RuleRevision.objects.filter(sigma_id__in=chunk).order_by("number"):
            found[revision.sigma_id] = revision
    return found


def _without_revision(sigma_ids: set[str]) -> list[str]:
    if not sigma_ids:
        return []
    have = set(RuleRevision.objects.values_list("sigma_id", flat=True).distinct())
    return sorted(sigma_ids - have)


def _parse_stored(sigma_ids: list[str]) -> list[tuple[ParsedRule, str]]:
    """Rules stored before releases existed: parse their stored YAML once for a first revision."""
    out: list[tuple[ParsedRule, str]] = []
    for start in range(0, len(sigma_ids), _CHUNK):
        chunk = sigma_ids[start : start + _CHUNK]
        for raw, path, digest in Rule.objects.filter(rule_id__in=chunk).values_list(
            "raw_yaml", "source_path", "content_hash"
        ):
            try:
                out.append((parse_rule(raw, path), digest))
            except RuleError:
                continue
    return out


def _remove_rules(sigma_ids: set[str]) -> None:
    """Rules a full release no longer has leave the live catalog; their history stays."""
    from catalog.import_rows import _delete_children, _refresh_counts

    ids = sorted(sigma_ids)
    pks: list[int] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        pks.extend(Rule.objects.filter(rule_id__in=chunk).values_list("pk", flat=True))
    if not pks:
        return
    _delete_children(pks)
    for start in range(0, len(pks), _CHUNK):
        Rule.objects.filter(pk__in=pks[start : start + _CHUNK]).delete()
    _refresh_counts()
