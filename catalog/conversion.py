"""The conversion cache: SIEM queries per (rule revision, target, pipeline, format, backend).

Converting costs milliseconds per rule (Loki: tens), a page view should cost none: every
conversion is stored in :class:`catalog.models.Conversion` and read back while the rule's
``revision`` and the backend packages (:func:`rules.convert.backend_version`) are unchanged.
A new revision or an upgraded backend misses the cache and replaces the stale row.

Everything that reads or writes conversions goes through here: the rule page section, the API,
the bulk export, the report page and ``manage.py convert_rules``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet

from catalog.models import Conversion, Rule
from catalog.offload import OverLimit, run_limited
from rules.convert import (
    PIPELINES,
    TARGETS,
    ConversionResult,
    Converter,
    CustomPipeline,
    PipelineSpec,
    TargetSpec,
    Verdict,
    backend_version,
    resolve_options,
    result_from_outputs,
    stats,
)

BATCH = 500
"""Rules converted (and cache rows written) per batch in bulk runs."""

_RULE_FIELDS = ("pk", "rule_id", "title", "revision", "raw_yaml", "source_path")


def rule_filename(rule: Rule) -> str:
    """The rule's file name for the ``sigma convert`` command line (``rule.yml`` if unknown)."""
    name = PurePath(rule.source_path.split("!")[-1]).name if rule.source_path else ""
    return name if name.endswith((".yml", ".yaml")) else ""


def _jsonable(outputs: Sequence[Any]) -> list[Any]:
    """Backend outputs as stored JSON (dict outputs may hold dates or other non-JSON types)."""
    return json.loads(json.dumps(list(outputs), default=str))


def _from_row(row: Conversion, rule: Rule) -> ConversionResult:
    return result_from_outputs(
        row.outputs,
        row.target,
        row.pipeline,
        row.output_format,
        error=row.error or None,
        error_kind=row.error_kind or None,
        filename=rule_filename(rule),
        version=row.backend_version,
        verdict=Verdict(row.verifier, row.problem or None, tuple(row.fixes or ())),
    )


def _row(rule: Rule, result: ConversionResult) -> Conversion:
    return Conversion(
        rule_id=rule.pk,
        revision=rule.revision,
        target=result.target,
        pipeline=result.pipeline,
        output_format=result.output_format,
        backend_version=result.backend_version,
        outputs=_jsonable(result.outputs) if result.ok else [],
        error=result.error or "",
        error_kind=result.error_kind or "",
        seconds=result.seconds,
        verifier=result.verifier,
        problem=result.problem or "",
        fixes=list(result.fixes),
    )


def _store(
    rules: Sequence[Rule], results: Sequence[ConversionResult], *, replace: bool = False
) -> None:
    """Write new cache rows and drop the rows they supersede.

    A row is superseded when it was made for an older revision or backend version (or, with
    ``replace``, always): the cache keeps one row per (rule, target, pipeline, format).
    """
    if not rules:
        return
    first = results[0]
    revisions = {rule.pk: rule.revision for rule in rules}
    existing = Conversion.objects.filter(
        rule_id__in=list(revisions),
        target=first.target,
        pipeline=first.pipeline,
        output_format=first.output_format,
    ).values_list("pk", "rule_id", "revision", "backend_version")
    stale = [
        pk
        for pk, rule_pk, revision, version in existing
        if replace or revision != revisions[rule_pk] or version != first.backend_version
    ]
    if stale:
        Conversion.objects.filter(pk__in=stale).delete()
    Conversion.objects.bulk_create(
        [_row(rule, result) for rule, result in zip(rules, results, strict=True)],
        ignore_conflicts=True,
    )


def get_conversion(
    rule: Rule,
    target: str | None,
    pipeline: str | None = None,
    output_format: str | None = None,
) -> tuple[ConversionResult, bool]:
    """``(result, cached)`` for one rule; converts and stores only on a cache miss.

    Raises :class:`rules.convert.ConversionParameterError` for an unknown target, pipeline or
    format; a rule the backend cannot convert is a result with ``error`` (cached too).
    """
    spec, pipe, fmt = resolve_options(target, pipeline, output_format)
    version = backend_version(spec.id, pipe.id)
    row = Conversion.objects.filter(
        rule_id=rule.pk,
        revision=rule.revision,
        target=spec.id,
        pipeline=pipe.id,
        output_format=fmt,
        backend_version=version,
    ).first()
    if row is not None:
        return _from_row(row, rule), True
    result = Converter(spec.id, pipe.id, fmt).convert(rule.raw_yaml, filename=rule_filename(rule))
    _store([rule], [result])
    return result, False


CUSTOM_PIPELINE_MEMORY = 512 * 1024 * 1024
"""Memory a custom-pipeline conversion may take beyond its parent's (one-to-many mappings and
``\\1\\1`` replacements grow the rule exponentially; the machine's memory is shared)."""
CUSTOM_PIPELINE_RESULT_BYTES = 8 * 1024 * 1024
"""Largest answer of one (pickled): the largest corpus rule's ordinary query is 240 KB."""


def convert_with_pipeline(
    rule: Rule,
    target: str | None,
    pipeline: str | None,
    output_format: str | None,
    custom: CustomPipeline,
) -> ConversionResult:
    """One rule with a user's own pipeline: converted every time, never cached.

    A pasted pipeline decides how much work the conversion is (a regex replacement that
    backtracks over every value, a value doubled per transformation, one field mapped to
    hundreds): it runs in a forked child under ``CUSTOM_PIPELINE_SECONDS`` and
    :data:`CUSTOM_PIPELINE_MEMORY`, killed past either (:func:`catalog.offload.run_limited`,
    in a helper process when ``HEAVY_OFFLOAD`` is on). Raises
    :class:`catalog.offload.OverLimit` then, and ``OffloadFailed`` when no process could run
    it. Why a process: a thread cannot be stopped (a backtracking regex is one long C call),
    and bounding the input alone cannot bound the time (see :mod:`rules.convert.pipelines`).
    Why a fork: a spawned interpreter needs a second or more to import pySigma. Measured, with
    the compiled corpus catalog in memory on 2 shared cores: an ordinary pasted pipeline's
    POST goes from ~15 to ~45 ms on a small rule; on the largest corpus rule (4,433 values,
    ~200 ms) the difference is lost in the noise, as the child skips the parent's GC passes.

    The shipped pipelines (:func:`get_conversion`) never come here: they convert in process.
    """
    spec, pipe, fmt = resolve_options(target, pipeline, output_format)
    result, calls = run_limited(
        _convert_custom,
        (spec.id, pipe.id, fmt, custom, rule.raw_yaml, rule_filename(rule)),
        seconds=float(settings.CUSTOM_PIPELINE_SECONDS),
        memory=CUSTOM_PIPELINE_MEMORY,
        result_bytes=CUSTOM_PIPELINE_RESULT_BYTES,
        before_fork=_prepare_custom,
    )
    stats.backend_calls += calls  # counted in the child
    return result


def over_limit_message(exc: OverLimit) -> str:
    """What the page and the API say when a custom-pipeline conversion was stopped."""
    return (
        f"the conversion with this pipeline was stopped: {exc}. Use fewer or simpler "
        "transformations (regex replacements, one-to-many mappings)"
    )


@cache
def _prepare(target: str, pipeline: str, output_format: str) -> None:
    """Import the backend and the named pipelines once per process (per target, pipeline and
    format), so that children start with them loaded (not each importing them again, nor
    under an import lock another thread held at the fork)."""
    with contextlib.suppress(Exception):  # the child reports what fails, as a result
        Converter(target, pipeline, output_format).backend  # noqa: B018 - built for its imports


def _prepare_custom(target: str, pipeline: str, output_format: str, *_: Any) -> None:
    _prepare(target, pipeline, output_format)


def _convert_custom(
    target: str,
    pipeline: str,
    output_format: str,
    custom: CustomPipeline,
    raw_yaml: str,
    filename: str,
) -> tuple[ConversionResult, int]:
    """The child's work: the result and the backend calls it made."""
    before = stats.backend_calls
    converter = Converter(target, pipeline, output_format, custom=custom)
    result = converter.convert(raw_yaml, filename=filename)
    if result.error_kind == "backend" and "(MemoryError)" in (result.error or ""):
        raise MemoryError  # the converter turns every exception into a result: not this one
    return result, stats.backend_calls - before


def convert_rules(
    rules: QuerySet[Rule],
    target: str,
    pipeline: str | None = None,
    output_format: str | None = None,
    *,
    force: bool = False,
    batch: int = BATCH,
) -> Iterator[tuple[Rule, ConversionResult, bool]]:
    """``(rule, result, cached)`` for every rule of ``rules``, in the queryset's order.

    Cached rows are read per batch; misses are converted with one shared backend (as
    ``backend.convert`` does for a collection) and written per batch. Primary keys are read
    first so no database cursor stays open while a streamed response is being sent.
    """
    converter = Converter(target, pipeline, output_format)
    spec, pipe, fmt = converter.spec, converter.pipe, converter.output_format
    pks = list(rules.values_list("pk", flat=True))
    for start in range(0, len(pks), batch):
        chunk = pks[start : start + batch]
        by_pk = Rule.objects.only(*_RULE_FIELDS).in_bulk(chunk)
        cached: dict[tuple[int, int], Conversion] = {}
        if not force:
            rows = Conversion.objects.filter(
                rule_id__in=chunk,
                target=spec.id,
                pipeline=pipe.id,
                output_format=fmt,
                backend_version=converter.backend_version,
            )
            cached = {(row.rule_id, row.revision): row for row in rows}
        fresh_rules: list[Rule] = []
        fresh_results: list[ConversionResult] = []
        for pk in chunk:
            rule = by_pk.get(pk)
            if rule is None:  # deleted meanwhile
                continue
            row = cached.get((rule.pk, rule.revision))
            if row is not None:
                yield rule, _from_row(row, rule), True
                continue
            result = converter.convert(rule.raw_yaml, filename=rule_filename(rule))
            fresh_rules.append(rule)
            fresh_results.append(result)
            yield rule, result, False
        _store(fresh_rules, fresh_results, replace=force)


# --------------------------------------------------------------------------- warm / report


@dataclass(slots=True)
class Failure:
    rule_id: str
    title: str
    kind: str
    error: str


@dataclass(slots=True)
class TargetSummary:
    """How one (target, pipeline, format) fared over a set of rules."""

    target: TargetSpec
    pipeline: PipelineSpec
    output_format: str
    total: int = 0
    converted: int = 0
    failed: int = 0
    verified: int = 0
    fixed: int = 0
    invalid: int = 0
    from_cache: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    problems: list[Failure] = field(default_factory=list)

    @property
    def unchecked(self) -> int:
        """Converted queries no check applies to (formats other than the query itself)."""
        return self.converted - self.verified - self.fixed - self.invalid

    def count(self, result: ConversionResult) -> None:
        """Add one result to the counts (converted / verified / fixed / invalid / failed)."""
        self.total += 1
        if not result.ok:
            self.failed += 1
            return
        self.converted += 1
        status = result.status
        if status == "verified":
            self.verified += 1
        elif status == "fixed":
            self.fixed += 1
        elif status == "invalid":
            self.invalid += 1

    @property
    def missing(self) -> int:
        """Rules with no cached conversion yet (report only)."""
        return self.total - self.converted - self.failed

    @property
    def failures_by_kind(self) -> list[FailureGroup]:
        """Failures by kind (placeholder, unsupported, pipeline...), then by message."""
        kinds: dict[str, dict[str, list[Failure]]] = defaultdict(lambda: defaultdict(list))
        for failure in self.failures:
            kinds[failure.kind][failure.error].append(failure)
        groups = [
            FailureGroup(
                kind,
                FAILURE_KINDS.get(kind, kind or "other"),
                sorted(reasons.items(), key=lambda item: (-len(item[1]), item[0])),
            )
            for kind, reasons in kinds.items()
        ]
        return sorted(groups, key=lambda g: (-g.count, g.kind))


FAILURE_KINDS = {
    "placeholder": "Needs values for |expand placeholders",
    "unsupported": "Uses a feature the backend does not support",
    "pipeline": "The pipeline cannot map the rule's log source or fields",
    "empty": "The pipeline left no condition",
    "sigma": "Rejected by pySigma",
    "backend": "Backend error",
    "invalid": "Not a valid Sigma rule",
}
"""Headings for :attr:`rules.convert.ConversionResult.error_kind` on the report page."""


@dataclass(slots=True)
class FailureGroup:
    kind: str
    label: str
    reasons: list[tuple[str, list[Failure]]]

    @property
    def count(self) -> int:
        return sum(len(failures) for _, failures in self.reasons)


def warm(
    rules: QuerySet[Rule],
    target: str,
    pipeline: str | None = None,
    output_format: str | None = None,
    *,
    force: bool = False,
) -> TargetSummary:
    """Convert (or read from cache) every rule for one target; counts and failures."""
    spec, pipe, fmt = resolve_options(target, pipeline, output_format)
    summary = TargetSummary(spec, pipe, fmt)
    started = time.perf_counter()
    for rule, result, cached in convert_rules(rules, spec.id, pipe.id, fmt, force=force):
        summary.from_cache += cached
        summary.count(result)
        if not result.ok:
            summary.failures.append(
                Failure(rule.rule_id, rule.title, result.error_kind or "", result.error or "")
            )
        elif result.problem:
            summary.problems.append(Failure(rule.rule_id, rule.title, "invalid", result.problem))
    summary.seconds = time.perf_counter() - started
    return summary


def report(
    target: str | None = None, pipeline: str | None = None, output_format: str = "default"
) -> list[TargetSummary]:
    """Per (target, pipeline) counts from the cache, without converting anything.

    Lists each target's default pipeline and every other pipeline that has cached rows for
    the current backend versions; only rows of the rules' current revisions count.
    """
    total = Rule.objects.count()
    current = Conversion.objects.filter(output_format=output_format, revision=F("rule__revision"))
    counts = {
        (row["target"], row["pipeline"], row["backend_version"]): row
        for row in current.values("target", "pipeline", "backend_version").annotate(
            ok=Count("pk", filter=Q(error="")),
            failed=Count("pk", filter=~Q(error="")),
            invalid=Count("pk", filter=Q(error="") & ~Q(problem="")),
            fixed=Count("pk", filter=Q(error="", problem="") & ~Q(fixes=[])),
            verified=Count("pk", filter=Q(error="", problem="", fixes=[]) & ~Q(verifier="")),
        )
    }
    summaries: list[TargetSummary] = []
    for spec in TARGETS.values():
        if target and spec.id != target:
            continue
        for pipeline_id in spec.pipelines:
            if pipeline and pipeline_id != pipeline:
                continue
            version = backend_version(spec.id, pipeline_id)
            row = counts.get((spec.id, pipeline_id, version))
            if row is None and pipeline_id != spec.default_pipeline and not pipeline:
                continue
            summary = TargetSummary(spec, PIPELINES[pipeline_id], output_format, total=total)
            if row is not None:
                summary.converted, summary.failed = row["ok"], row["failed"]
                summary.verified, summary.fixed = row["verified"], row["fixed"]
                summary.invalid = row["invalid"]
                summary.failures = _failures(current, spec.id, pipeline_id, version)
                summary.problems = _problems(current, spec.id, pipeline_id, version)
            summaries.append(summary)
    return summaries


def _failures(
    rows: QuerySet[Conversion], target: str, pipeline: str, version: str
) -> list[Failure]:
    failed = (
        rows.filter(target=target, pipeline=pipeline, backend_version=version)
        .exclude(error="")
        .order_by("error", "rule__title")
        .values_list("rule__rule_id", "rule__title", "error_kind", "error")
    )
    return [Failure(*values) for values in failed]


def _problems(
    rows: QuerySet[Conversion], target: str, pipeline: str, version: str
) -> list[Failure]:
    """Converted queries that do not parse (the parser's message as the reason)."""
    invalid = (
        rows.filter(target=target, pipeline=pipeline, backend_version=version, error="")
        .exclude(problem="")
        .order_by("problem", "rule__title")
        .values_list("rule__rule_id", "rule__title", "problem")
    )
    return [Failure(rule_id, title, "invalid", problem) for rule_id, title, problem in invalid]
