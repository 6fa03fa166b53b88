"""The importer: the only place where engine dataclasses become catalog rows.

``import_rules`` reads files (see :mod:`catalog.sources`), skips files whose bytes are
unchanged since the last import without parsing them, parses the rest with the engine, and
writes everything in one transaction (:func:`catalog.import_rows.write_plan`): a failure (or a
kill) mid-import leaves the previous catalog intact, and readers see either the old or the new
catalog.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from catalog.correlations import split_sources, write_meta_documents
from catalog.evidence import add_evidence, evidence_enabled, evidence_written, prepare_evidence
from catalog.import_rows import (
    ChangedRule,
    ImportPlan,
    NewRule,
    rule_set_for,
    vacuum,
    write_plan,
)
from catalog.models import ImportRun, Indicator, Rule
from catalog.releases import ReleaseSpec, ReleaseSummary, record_release, resolve_release
from catalog.sources import Refusal, SourceFile, collect
from rules.errors import RuleError
from rules.model import ParsedRule
from rules.parse import parse_rule

__all__ = [
    "INTERRUPTED_AFTER",
    "FileError",
    "ImportAborted",
    "ImportReport",
    "Progress",
    "content_hash",
    "import_rules",
    "rule_set_for",
    "unstorable",
]

Progress = Callable[[int, int], None]
_UNREADABLE_ROOT = frozenset({"not-found", "bad-archive"})
# An import takes seconds; a run still "running" after this long was killed with its process.
INTERRUPTED_AFTER = datetime.timedelta(hours=1)
# Below this many files a worker pool costs more to start than it saves.
_PARALLEL_MIN_FILES = 400
_MAX_KIND = Indicator._meta.get_field("kind").max_length or 100


@dataclass(slots=True)
class FileError:
    """One file the import refused or could not parse, with a stable ``code``."""

    path: str
    error: str
    code: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "error": self.error, "code": self.code}


@dataclass(slots=True)
class ImportReport:
    """What an import did; mirrors the :class:`ImportRun` row it is saved as."""

    run_id: int | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    errors: list[FileError] = field(default_factory=list)
    seconds: float = 0.0
    release: ReleaseSummary | None = None  # what the import changed in its release

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def all_failed(self) -> bool:
        """Files were refused and none imported: a failed import, not a success."""
        return bool(self.errors) and not (self.created or self.updated or self.unchanged)

    def summary(self) -> str:
        return (
            f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed, {self.pruned} pruned in {self.seconds:.2f} s"
        )


class ImportAborted(Exception):
    """The write transaction failed; nothing was changed. Carries the saved report."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


def content_hash(data: bytes) -> str:
    """The digest stored as ``Rule.content_hash``: equal bytes are not parsed again."""
    return hashlib.sha256(data).hexdigest()


def import_rules(
    paths: Sequence[str],
    *,
    prune: bool = False,
    trigger: str = "command",
    progress: Progress | None = None,
    rule_set: str | None = None,
    release: ReleaseSpec | None = None,
) -> ImportReport:
    """Import rule files from ``paths`` (directories, files, archives); upsert by rule id.

    ``rule_set`` names the set the rules belong to; by default it is derived from each path
    (``rules-emerging-threats/...`` -> ``rules-emerging-threats``). ``release`` names the
    release the import is recorded as (:mod:`catalog.releases`; by default, the date).
    """
    started = time.perf_counter()
    _close_interrupted_runs()
    run = ImportRun.objects.create(trigger=trigger, sources=[str(p) for p in paths])
    report = ImportReport(run_id=run.pk)
    try:
        files, refusals = _read_sources(paths)
        report.errors.extend(FileError(r.path, r.reason, r.code) for r in refusals)
        # Correlation and filter documents are set aside; multi-document files are split.
        files, meta_documents, unsplit = split_sources(files)
        report.errors.extend(FileError(path, error, code) for path, error, code in unsplit)
        if prune and (not files or any(r.code in _UNREADABLE_ROOT for r in refusals)):
            # A typo in a path must not empty the catalog.
            raise ValueError("refusing to prune: a path was missing, unreadable or empty")
        target = resolve_release(paths, release, prune=prune)
        plan = _plan(files, report, progress)
        with transaction.atomic():
            write_plan(plan, report, prune=prune, rule_set=rule_set)
            write_meta_documents(meta_documents, report, prune=prune)
            changed = bool(plan.new or plan.changed or report.pruned)
            # Related rules are computed while the release rows are written (mostly waits).
            with evidence_written(plan, catalog_changed=changed):
                report.release = record_release(target, plan)
    except Exception as exc:
        report.seconds = time.perf_counter() - started
        _finish(run, report, ImportRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise ImportAborted(f"import failed, catalog unchanged: {exc}", report) from exc
    report.seconds = time.perf_counter() - started
    if report.all_failed:
        _finish(run, report, ImportRun.Status.FAILED, f"every file failed: {report.summary()}")
    else:
        _finish(run, report, ImportRun.Status.SUCCEEDED, report.summary())
    if report.created or report.updated or report.pruned:
        vacuum()
    return report


def _close_interrupted_runs() -> None:
    """Mark runs whose process died mid-import (their transaction rolled back) as failed."""
    cutoff = timezone.now() - INTERRUPTED_AFTER
    ImportRun.objects.filter(status=ImportRun.Status.RUNNING, started_at__lt=cutoff).update(
        status=ImportRun.Status.FAILED,
        finished_at=timezone.now(),
        message="interrupted: the import process ended before finishing; nothing was changed",
    )


def _finish(run: ImportRun, report: ImportReport, status: str, message: str) -> None:
    run.status = status
    run.finished_at = timezone.now()
    run.created, run.updated, run.unchanged = report.created, report.updated, report.unchanged
    run.failed, run.pruned, run.seconds = report.failed, report.pruned, report.seconds
    run.errors = [e.to_dict() for e in report.errors]
    run.message = message
    run.save()


def _read_sources(paths: Sequence[str]) -> tuple[list[SourceFile], list[Refusal]]:
    files: list[SourceFile] = []
    refusals: list[Refusal] = []
    for item in collect(list(paths)):
        if isinstance(item, SourceFile):
            files.append(item)
        else:
            refusals.append(item)
    return files, refusals


@dataclass(frozen=True, slots=True)
class _Stored:
    pk: int
    digest: str


def _plan(files: list[SourceFile], report: ImportReport, progress: Progress | None) -> ImportPlan:
    """Decide per file, in path order: unchanged, new, changed, duplicate or failed.

    Files whose bytes equal a stored rule's are not parsed at all (that is what makes an
    unchanged re-import cheap); the rest are parsed, possibly in parallel. Duplicate ids are
    resolved afterwards in path order, so the first file always wins whatever was stored.
    """
    existing = {
        rule_id: _Stored(pk, digest)
        for pk, rule_id, digest in Rule.objects.values_list("pk", "rule_id", "content_hash")
    }
    by_hash = {stored.digest: rule_id for rule_id, stored in existing.items()}
    digests = [content_hash(source.data) for source in files]
    parsed_at = _parse_new(files, [d not in by_hash for d in digests], progress)
    plan = ImportPlan()
    first_path: dict[str, str] = {}
    for index, source in enumerate(files):
        digest = digests[index]
        outcome = parsed_at.get(index)
        if isinstance(outcome, RuleError):
            report.errors.append(FileError(source.path, str(outcome), outcome.code))
            plan.keep_failed(source.catalog_path, source.data)
            continue
        rule_id = by_hash[digest] if outcome is None else outcome.id
        if rule_id in plan.seen_ids:
            report.errors.append(_duplicate(source.path, rule_id, first_path[rule_id]))
            continue
        if outcome is not None:
            problem = unstorable(outcome)
            if problem:
                report.errors.append(FileError(source.path, problem, "unstorable"))
                plan.keep_failed(source.catalog_path, source.data)
                continue
        plan.seen_ids.add(rule_id)
        first_path[rule_id] = source.path
        stored = existing.get(rule_id)
        if outcome is None or (stored is not None and stored.digest == digest):
            report.unchanged += 1
        elif stored is not None:
            plan.changed.append(ChangedRule(outcome, digest, stored.pk))
        else:
            plan.new.append(NewRule(outcome, digest))
    return plan


def _duplicate(path: str, rule_id: str, first: str) -> FileError:
    message = f"duplicate rule id {rule_id}: already imported from {first}; this file was skipped"
    return FileError(path, message, "duplicate-id")


def _parse_new(
    files: list[SourceFile], wanted: list[bool], progress: Progress | None
) -> dict[int, ParsedRule | RuleError]:
    """Parse the ``wanted`` files; outcomes by file index. Progress counts skipped files done."""
    to_parse = [i for i, want in enumerate(wanted) if want]
    parsed_at: dict[int, ParsedRule | RuleError] = {}
    total = len(files)
    for done, (index, outcome) in enumerate(
        zip(to_parse, _parse_all([files[i] for i in to_parse]), strict=True), start=1
    ):
        parsed_at[index] = outcome
        if progress:
            progress(total - len(to_parse) + done, total)
    if progress and not to_parse:
        progress(total, total)
    return parsed_at


def unstorable(parsed: ParsedRule) -> str | None:
    """Why a parsed rule cannot be stored (checked per file so one never aborts an import)."""
    texts = [parsed.id, parsed.title, parsed.description, parsed.author, parsed.raw_yaml]
    texts += _strings(parsed.detection)
    texts += [item.value for item in (*parsed.indicators, *parsed.exclusions)]
    # PostgreSQL text (and jsonb) columns cannot hold NUL at all.
    if any("\x00" in text for text in texts):
        return "the rule contains a NUL character, which the catalog cannot store"
    for item in (*parsed.indicators, *parsed.exclusions):
        if len(item.kind) > _MAX_KIND:
            return f"modifier chain {item.kind[:60]!r}... is longer than {_MAX_KIND} characters"
    if len(parsed.id) > 100:
        return "the rule id is longer than 100 characters"
    return None


def _strings(value: Any) -> list[str]:
    """Every key and string value inside a YAML structure."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.append(item)
    return found


def _parse_all(items: list[SourceFile]) -> Iterator[ParsedRule | RuleError]:
    """Parse files in order; on several cores, in a pool of forked worker processes.

    Only a process's main thread forks (a worker or the command line): a child forked from a
    threaded web server inherits other threads' locks and can hang forever, so any other
    thread parses serially.
    """
    evidence = evidence_enabled()
    if evidence and items:
        prepare_evidence()  # before forking: the workers share the validators built once
    jobs = [(source.data, source.catalog_path, source.path, evidence) for source in items]
    workers = min(os.cpu_count() or 1, 4)
    if (
        workers < 2
        or len(jobs) < _PARALLEL_MIN_FILES
        or "fork" not in mp.get_all_start_methods()
        or threading.current_thread() is not threading.main_thread()
    ):
        yield from (_parse_job(job) for job in jobs)
        return
    # Fork: workers inherit the loaded engine and never touch the database connection.
    # Frozen objects are never scanned by the workers' garbage collector, so the inherited
    # engine and validators stay shared pages instead of being copied into each worker.
    gc.freeze()
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_parse_job, jobs, chunksize=64)
    finally:
        gc.unfreeze()


def _parse_job(job: tuple[bytes, str, str, bool]) -> ParsedRule | RuleError:
    data, path, file_path, evidence = job
    try:
        parsed = parse_rule(data, path)
    except RuleError as exc:
        return exc
    if evidence:
        # Validation and the regression replay need the pySigma object dropped below.
        add_evidence(parsed, file_path)
    # The pySigma object and the raw mapping are not needed for writing and cost pickling.
    parsed.sigma = None
    parsed.document = {}
    return parsed
