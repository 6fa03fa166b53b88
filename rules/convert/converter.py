"""The conversion itself: one rule through one backend, every failure turned into a reason.

* :func:`convert` converts one rule and never raises for a rule the backend cannot handle: the
  reason becomes :attr:`ConversionResult.error`. Only an unknown target, pipeline or format
  (a caller mistake) raises :class:`~rules.convert.registry.ConversionParameterError`.
* :class:`Converter` converts many rules with one backend instance, as ``backend.convert`` does
  for a collection, for the cache warmer, the bulk export and the benchmark.
"""

from __future__ import annotations

import copy
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
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import Placeholder, SigmaString

from rules.convert.attack_data import needs_attack_data, use_offline_attack_data
from rules.convert.pipelines import CustomPipeline
from rules.convert.registry import (
    PipelineSpec,
    TargetSpec,
    backend_version,
    combine_pipelines,
    resolve_options,
    sigma_cli_command,
)
from rules.convert.verify import Verdict, backslash_parts, checks_backslashes, verify_outputs
from rules.errors import RuleError
from rules.model import ParsedRule
from rules.modifiers import conversion_problems, sigma_rule_from_document
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
    verifier: str = ""
    problem: str | None = None
    fixes: tuple[str, ...] = ()
    custom_pipeline: str = ""  # digest of a pasted pipeline YAML, "" for none

    @property
    def ok(self) -> bool:
        """The backend produced a query (whether it parses is :attr:`valid`)."""
        return self.error is None

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.verifier, self.problem, self.fixes)

    @property
    def valid(self) -> bool | None:
        """True: the query parses (:attr:`verifier` says with what); False: it does not
        (:attr:`problem` has the parser's message); None: failed or not checked."""
        return self.verdict.valid if self.ok else None

    @property
    def status(self) -> str:
        """'failed', or the verdict: 'verified', 'fixed', 'invalid' or 'unchecked'."""
        return self.verdict.status if self.ok else "failed"

    @property
    def usable(self) -> bool:
        """Converted and not known to be broken: what exports deploy."""
        return self.ok and self.problem is None

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
        if not pipe.sigma_pipelines:  # the backend's own built-in pipeline refused it
            return "pipeline", (
                f"{spec.label} cannot map this rule (log source {_logsource(rule)}): {reason}"
            )
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
    # rules.modifiers: the specification's modifiers, read as the engine reads them.
    if isinstance(rule, ParsedRule):
        return sigma_rule_from_document(rule.document)
    if isinstance(rule, str | bytes):
        return sigma_rule_from_document(load_document(rule))
    return sigma_rule_from_document(dict(rule))


def string_values(rule: SigmaRule) -> Iterator[SigmaString]:
    """Every string value of the rule's detections (as they are now: a pipeline applied to the
    rule rewrites them in place)."""

    def walk(item: SigmaDetection | SigmaDetectionItem) -> Iterator[SigmaString]:
        if isinstance(item, SigmaDetection):
            for child in item.detection_items:
                yield from walk(child)
            return
        yield from (value for value in item.value if isinstance(value, SigmaString))

    for detection in rule.detection.detections.values():
        yield from walk(detection)


def placeholders(rule: SigmaRule) -> frozenset[str]:
    """Names of the rule's ``|expand`` placeholders (read before a pipeline replaces them)."""
    return frozenset(
        part.name
        for value in string_values(rule)
        for part in value.s
        if isinstance(part, Placeholder)
    )


def _filename(rule: RuleInput) -> str:
    if isinstance(rule, ParsedRule) and rule.source_path:
        return PurePath(rule.source_path).name
    return ""


_KEPT_STATE = frozenset({"last_processing_pipeline"})
"""Backend attributes not restored per rule: the combined pipeline, which pySigma builds on the
first rule from the backend's unchanged pipelines and resets itself in ``apply``."""


def _copied(value: Any) -> Any:
    return copy.copy(value) if isinstance(value, list | dict | set) else value


class _BackendState:
    """A fresh backend's state, restored before each rule.

    Backends keep per-conversion state on the instance (Loki's label counter, Sumo Logic's
    rule list, collected errors), and several pipelines' failure transformations prepend to
    their own ``message`` on every failure (Cortex XDR, SentinelOne, Carbon Black, the Kusto
    pipelines), which makes later errors longer and slower to build. Restoring what a freshly
    built backend held makes each rule's result the one ``sigma convert`` gives for that rule
    alone, at the cost of a dict copy instead of rebuilding the backend and its pipelines.
    """

    def __init__(self, backend: Backend) -> None:
        self.values = {k: _copied(v) for k, v in vars(backend).items() if k not in _KEPT_STATE}
        pipeline = getattr(backend, "last_processing_pipeline", None)
        self.messages = [
            (t, t.message) for t in _transformations(pipeline) if isinstance(t.message, str)
        ]

    def restore(self, backend: Backend) -> None:
        current = vars(backend)
        for name in [n for n in current if n not in self.values and n not in _KEPT_STATE]:
            del current[name]
        for name, value in self.values.items():
            current[name] = _copied(value)
        for transformation, message in self.messages:
            transformation.message = message


def _transformations(pipeline: ProcessingPipeline | None) -> list[Any]:
    """The pipeline's transformations that carry a failure ``message``."""
    if pipeline is None:
        return []
    items = [*pipeline.items, *pipeline.postprocessing_items]
    found = (getattr(item, "transformation", None) for item in items)
    return [t for t in found if t is not None and hasattr(t, "message")]


class Converter:
    """Converts rules for one (target, pipeline, output format) with one backend instance.

    Reusing the backend across rules is what ``backend.convert(collection)`` does; it saves
    building the pipeline per rule. Each rule still converts as with a fresh backend: its
    instance state is restored before every rule (:class:`_BackendState`). Not thread-safe:
    use one Converter per thread.
    """

    def __init__(
        self,
        target: str,
        pipeline: str | None = None,
        output_format: str | None = None,
        *,
        custom: CustomPipeline | None = None,
    ) -> None:
        self.spec, self.pipe, self.output_format = resolve_options(target, pipeline, output_format)
        self.custom = custom
        self.backend_version = backend_version(self.spec.id, self.pipe.id)
        self._backend: Backend | None = None
        self._state: _BackendState | None = None
        if needs_attack_data(self.output_format):
            use_offline_attack_data()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            custom = self.custom.build() if self.custom is not None else None
            backend = self.spec.new_backend(combine_pipelines(self.pipe, custom))
            own = self.spec.fresh_backend_pipeline()
            if own is not None:
                # A class-level pipeline that mutates itself: this instance gets its own copy
                # (an instance attribute shadowing the class one; setattr says so to mypy).
                setattr(backend, "backend_processing_pipeline", own)  # noqa: B010
            # Combined now (pySigma would on the first rule), so the snapshot sees every
            # transformation the rules will go through.
            backend.init_processing_pipeline(self.output_format)
            self._backend, self._state = backend, _BackendState(backend)
        return self._backend

    def _fresh_backend(self) -> Backend:
        """The backend, in the state a freshly built one has (see :class:`_BackendState`)."""
        backend = self.backend
        if self._state is not None:
            self._state.restore(backend)
        return backend

    def command(self, filename: str = "") -> str:
        return sigma_cli_command(
            self.spec.id,
            self.pipe.id,
            self.output_format,
            filename,
            custom_pipeline=self.custom is not None,
        )

    def convert(self, rule: RuleInput, filename: str = "") -> ConversionResult:
        """Convert one rule; every failure becomes ``error``, nothing is raised."""
        started = time.perf_counter()
        command = self.command(filename or _filename(rule))
        sigma_rule: SigmaRule | None = None
        try:
            sigma_rule = _sigma_rule(rule)
            problems = conversion_problems(sigma_rule)
            if problems:  # a query that silently drops a modifier would be wrong
                message = f"{self.spec.label} cannot convert this rule: {problems[0]}"
                return self._result("", command, started, error=message, error_kind="sigma")
            names = placeholders(sigma_rule)
            stats.backend_calls += 1
            # A rule's query must not depend on the rules converted before it.
            backend = self._fresh_backend()
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
        # Values after the pipeline (convert_rule applied it to the rule in place).
        backslashes = (
            backslash_parts(string_values(sigma_rule))
            if checks_backslashes(self.spec.verifier, self.spec.language)
            else ()
        )
        checked, verdict = self.verify(outputs, names, backslashes)
        return self._result(_query(checked), command, started, outputs=checked, verdict=verdict)

    def verify(
        self, outputs: Iterable[Any], names: Iterable[str] = (), backslashes: Iterable[str] = ()
    ) -> tuple[tuple[Any, ...], Verdict]:
        """Check the outputs with the target's grammar (fixing what is certain)."""
        spec = self.spec
        return verify_outputs(
            spec.verifier, spec.language, self.output_format, outputs, names, backslashes
        )

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
        verdict: Verdict | None = None,
    ) -> ConversionResult:
        verdict = verdict or Verdict()
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
            verifier=verdict.verifier,
            problem=verdict.problem,
            fixes=verdict.fixes,
            custom_pipeline=self.custom.digest if self.custom is not None else "",
        )


def convert(
    rule: RuleInput,
    target: str,
    pipeline: str | None = None,
    output_format: str | None = None,
    *,
    filename: str = "",
    custom: CustomPipeline | None = None,
) -> ConversionResult:
    """Convert one rule (YAML text, :class:`ParsedRule` or rule mapping) for one target.

    ``pipeline``/``output_format`` default to the target's. A rule the backend cannot convert
    gives a result with ``error`` set; an unknown target/pipeline/format raises
    :class:`~rules.convert.registry.ConversionParameterError`.
    """
    return Converter(target, pipeline, output_format, custom=custom).convert(rule, filename)


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
    verdict: Verdict | None = None,
) -> ConversionResult:
    """Rebuild a result from stored outputs (the conversion cache) without converting."""
    outputs = tuple(outputs)
    verdict = verdict or Verdict()
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
        verifier=verdict.verifier,
        problem=verdict.problem,
        fixes=verdict.fixes,
    )
