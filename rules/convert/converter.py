"""The conversion itself: one rule through one backend, every failure turned into a reason.

* :func:`convert` converts one rule and never raises for a rule the backend cannot handle: the
  reason becomes :attr:`ConversionResult.error`. Only an unknown target, pipeline or format
  (a caller mistake) raises :class:`~rules.convert.registry.ConversionParameterError`.
* :class:`Converter` converts many rules with one backend instance, as ``backend.convert`` does
  for a collection, for the cache warmer, the bulk export and the benchmark.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sigma.conversion.base import Backend
from sigma.exceptions import (
    SigmaConfigurationError,
    SigmaError,
    SigmaFeatureNotSupportedByBackendError,
    SigmaPlaceholderError,
    SigmaTransformationError,
)
from sigma.rule import SigmaRule

from rules.convert.attack_data import needs_attack_data, use_offline_attack_data
from rules.convert.registry import (
    PipelineSpec,
    TargetSpec,
    backend_version,
    resolve_options,
    sigma_cli_command,
)
from rules.errors import RuleError
from rules.model import ParsedRule
from rules.parse import load_document

RuleInput = str | bytes | ParsedRule | Mapping[str, Any] | SigmaRule


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """One rule converted for one (target, pipeline, output format).

    ``query`` is a string for the usual one-query rule, a list when the rule has several
    conditions, and ``""`` when conversion failed (``error`` then says why). ``outputs`` keeps
    the backend's own per-query values (dicts for NDJSON formats) for deployable exports.
    """

    query: str | list[str]
    target: str
    pipeline: str
    backend_version: str
    error: str | None
    sigma_cli_command: str
    output_format: str = "default"
    error_kind: str | None = None
    outputs: tuple[Any, ...] = field(default=(), repr=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def queries(self) -> list[str]:
        """Always a list, for templates and exports."""
        if isinstance(self.query, list):
            return self.query
        return [self.query] if self.query else []


@dataclass(slots=True)
class ConversionStats:
    """Counts backend conversions in this process, so tests and the benchmark can show that
    a cached page view converts nothing."""

    backend_calls: int = 0


stats = ConversionStats()


def output_text(output: Any) -> str:
    """How a query is shown and copied: text as is, structured outputs as one JSON line."""
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, default=str)


def _query(outputs: Iterable[Any]) -> str | list[str]:
    """``ConversionResult.query`` for some outputs: one text, a list of them, or ``""``."""
    texts = [output_text(o) for o in outputs]
    if not texts:
        return ""
    return texts[0] if len(texts) == 1 else texts


# --------------------------------------------------------------------------- errors


_WHILE_SUFFIX = re.compile(r"\s*\(while [^()]*\)\s*$")


def _reason(exc: BaseException) -> str:
    """The first line of an exception, without pySigma's '(while converting rule None)'."""
    text = " ".join(str(exc).strip().split("\n", 1)[0].split())
    text = _WHILE_SUFFIX.sub("", text)
    if text.endswith(":") and ". " in text:
        # "Unable to determine table name from rule. The ... order of priority:" -> keep the
        # sentence, drop the introduction of a list the first line does not contain.
        text = text.split(". ", 1)[0] + "."
    return text or type(exc).__name__


def _logsource(rule: SigmaRule | None) -> str:
    if rule is None:
        return ""
    source = rule.logsource
    parts = [
        f"{key}: {value}"
        for key, value in (
            ("product", source.product),
            ("category", source.category),
            ("service", source.service),
        )
        if value
    ]
    return ", ".join(parts) or "none"


def describe_error(
    exc: BaseException, spec: TargetSpec, pipe: PipelineSpec, rule: SigmaRule | None = None
) -> tuple[str, str]:
    """``(kind, message)`` a user can act on, for any exception a backend raises."""
    reason = _reason(exc)
    if isinstance(exc, RuleError):
        return "invalid", f"The rule is not valid Sigma: {reason}"
    if isinstance(exc, SigmaPlaceholderError):
        return "placeholder", (
            f"{reason} The rule uses a |expand placeholder; {spec.label} needs a pipeline that "
            "defines its values."
        )
    if isinstance(exc, SigmaFeatureNotSupportedByBackendError | NotImplementedError):
        return "unsupported", f"{spec.label} does not support a feature this rule uses: {reason}"
    if isinstance(exc, SigmaTransformationError | SigmaConfigurationError):
        return "pipeline", (
            f"The {pipe.label} pipeline cannot map this rule (log source {_logsource(rule)}): "
            f"{reason}"
        )
    if isinstance(exc, SigmaError):
        return "sigma", f"{spec.label} cannot convert this rule: {reason}"
    return "backend", f"The {spec.label} backend failed ({type(exc).__name__}): {reason}"


def _empty_reason(spec: TargetSpec, pipe: PipelineSpec) -> str:
    if not pipe.sigma_pipelines:
        return f"{spec.label} produced no query for this rule."
    return (
        f"{spec.label} produced no query: the {pipe.label} pipeline left no condition of this "
        "rule (its fields, e.g. EventID, have no equivalent in the target's schema)."
    )


# --------------------------------------------------------------------------- conversion


def _sigma_rule(rule: RuleInput) -> SigmaRule:
    """A fresh SigmaRule: pipelines rewrite the rule in place, so one is never reused."""
    if isinstance(rule, SigmaRule):
        return rule
    if isinstance(rule, ParsedRule):
        return SigmaRule.from_dict(rule.document)
    if isinstance(rule, str | bytes):
        return SigmaRule.from_dict(load_document(rule))
    return SigmaRule.from_dict(dict(rule))


def _filename(rule: RuleInput) -> str:
    if isinstance(rule, ParsedRule) and rule.source_path:
        return PurePath(rule.source_path).name
    return ""


class Converter:
    """Converts rules for one (target, pipeline, output format) with one backend instance.

    Reusing the backend across rules is what ``backend.convert(collection)`` does; it saves
    building the pipeline per rule. Not thread-safe: use one Converter per thread.
    """

    def __init__(
        self, target: str, pipeline: str | None = None, output_format: str | None = None
    ) -> None:
        self.spec, self.pipe, self.output_format = resolve_options(target, pipeline, output_format)
        self.backend_version = backend_version(self.spec.id, self.pipe.id)
        self._backend: Backend | None = None
        if needs_attack_data(self.output_format):
            use_offline_attack_data()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self.spec.backend(self.pipe.build())
        return self._backend

    def command(self, filename: str = "") -> str:
        return sigma_cli_command(self.spec.id, self.pipe.id, self.output_format, filename)

    def convert(self, rule: RuleInput, filename: str = "") -> ConversionResult:
        """Convert one rule; every failure becomes ``error``, nothing is raised."""
        started = time.perf_counter()
        command = self.command(filename or _filename(rule))
        sigma_rule: SigmaRule | None = None
        try:
            sigma_rule = _sigma_rule(rule)
            stats.backend_calls += 1
            backend = self.backend
            # A rule's query must not depend on the rules converted before it with this
            # backend: counters a fresh backend starts at 0 are reset (Loki's label numbers).
            for counter in self.spec.per_rule_counters:
                setattr(backend, counter, 0)
            outputs = backend.convert_rule(sigma_rule, self.output_format)
        except Exception as exc:  # any backend bug must not break a page or a bulk run
            kind, message = describe_error(exc, self.spec, self.pipe, sigma_rule)
            if not isinstance(exc, SigmaError):
                # An unexpected error may leave the backend mid-rule: rebuild it for the next.
                self._backend = None
            return self._result("", command, started, error=message, error_kind=kind)
        if not outputs:
            reason = _empty_reason(self.spec, self.pipe)
            return self._result("", command, started, error=reason, error_kind="empty")
        return self._result(_query(outputs), command, started, outputs=tuple(outputs))

    def convert_many(self, rules: Iterable[RuleInput]) -> Iterator[ConversionResult]:
        """Convert rules in order with the shared backend, one result per rule."""
        for rule in rules:
            yield self.convert(rule)

    def _result(
        self,
        query: str | list[str],
        command: str,
        started: float,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        outputs: tuple[Any, ...] = (),
    ) -> ConversionResult:
        return ConversionResult(
            query=query,
            target=self.spec.id,
            pipeline=self.pipe.id,
            backend_version=self.backend_version,
            error=error,
            sigma_cli_command=command,
            output_format=self.output_format,
            error_kind=error_kind,
            outputs=outputs,
            seconds=time.perf_counter() - started,
        )


def convert(
    rule: RuleInput,
    target: str,
    pipeline: str | None = None,
    output_format: str | None = None,
    *,
    filename: str = "",
) -> ConversionResult:
    """Convert one rule (YAML text, :class:`ParsedRule` or rule mapping) for one target.

    ``pipeline``/``output_format`` default to the target's. A rule the backend cannot convert
    gives a result with ``error`` set; an unknown target/pipeline/format raises
    :class:`~rules.convert.registry.ConversionParameterError`.
    """
    return Converter(target, pipeline, output_format).convert(rule, filename)


def result_from_outputs(
    outputs: Iterable[Any],
    target: str,
    pipeline: str,
    output_format: str = "default",
    *,
    error: str | None = None,
    error_kind: str | None = None,
    filename: str = "",
    version: str | None = None,
) -> ConversionResult:
    """Rebuild a result from stored outputs (the conversion cache) without converting."""
    outputs = tuple(outputs)
    return ConversionResult(
        query="" if error else _query(outputs),
        target=target,
        pipeline=pipeline,
        backend_version=version or backend_version(target, pipeline),
        error=error,
        sigma_cli_command=sigma_cli_command(target, pipeline, output_format, filename),
        output_format=output_format,
        error_kind=error_kind,
        outputs=outputs,
    )
