"""What can be converted to what: targets, pipelines, option checks and version strings.

* :data:`TARGETS` maps a target id (the sigma-cli ``-t`` name) to its label, backend class,
  output formats, default and allowed pipelines, and deployable export formats.
* :data:`PIPELINES` maps a catalog pipeline id to the sigma-cli pipelines it combines (``-p``
  names, resolved with pySigma's own resolver so ordering is identical).

The entries are data, in ``registry.toml`` beside this module. Backends and pipeline functions
are named there by ``module:attribute`` and imported the first time they are used, so importing
:mod:`rules.convert` neither loads every pySigma backend nor touches pySigma's global state.
What pySigma needs set up (a warning filter, the Sysmon pipeline function) is done once, under
a lock, by :func:`prepare_pysigma` when a backend class is first asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shlex
import threading
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, wraps
from importlib.resources import files
from typing import Any, NamedTuple, TypeVar

from sigma.conversion.base import Backend
from sigma.processing.pipeline import ProcessingPipeline
from sigma.processing.resolver import ProcessingPipelineResolver

CONVERTER_VERSION = "3"
"""Bumped whenever this registry changes what a (target, pipeline) produces; it is part of
:func:`backend_version`, so cached conversions made by an older registry are not reused."""

DEFAULT_TARGET = "splunk"

_T = TypeVar("_T")


def once(func: Callable[[], _T]) -> Callable[[], _T]:
    """Run ``func`` on the first call only, under a lock; later calls return its result.

    ``functools.cache`` may run a function twice when two threads call it at once; the set-up
    steps here mutate pySigma's state, so they must run exactly once.
    """
    lock = threading.Lock()
    done: list[_T] = []

    @wraps(func)
    def run_once() -> _T:
        if not done:
            with lock:
                if not done:
                    done.append(func())
        return done[0]

    return run_once


@cache
def _load(ref: str) -> Any:
    """The object ``module:attribute`` names (imports are themselves thread-safe)."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


# --------------------------------------------------------------------------- pySigma set-up


@once
def _sysmon_function() -> Callable[[], ProcessingPipeline]:
    """The real ``sysmon`` pipeline function, captured once.

    pySigma's ``@Pipeline`` decorator keeps ONE shared instance whose ``func`` every decorated
    function overwrites: after ``sigma.pipelines.test`` is imported (``InstalledSigmaPlugins
    .autodiscover()`` does it), ``sysmon_pipeline()`` builds pySigma's dummy test pipeline.
    Holding the undecorated function keeps our Sysmon conversions right whatever is imported
    later; if the function was already replaced, re-running the module restores it.
    """
    from sigma.pipelines.sysmon import sysmon as sysmon_module

    func = sysmon_module.sysmon_pipeline.func
    if getattr(func, "__name__", "") != "sysmon_pipeline":
        importlib.reload(sysmon_module)
        func = sysmon_module.sysmon_pipeline.func
    if func is None:  # pragma: no cover - the decorator always wraps a function here
        raise RuntimeError("pySigma's sysmon pipeline has no function")
    return func


def sysmon_pipeline() -> ProcessingPipeline:
    """pySigma-pipeline-sysmon's pipeline, whatever the shared ``@Pipeline`` holds now."""
    return _sysmon_function()()


@once
def prepare_pysigma() -> None:
    """The process-wide pySigma set-up conversions rely on; runs once, on first backend use."""
    # The Loki backend warns about its own regex partitioning for some rules; the warning
    # says nothing actionable to a catalog user and would otherwise flood logs on bulk runs.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"sigma\.backends\.loki")
    _sysmon_function()


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True, slots=True)
class SigmaPipeline:
    """One pySigma pipeline as sigma-cli names it (``-p NAME``) and the package shipping it.

    ``ref`` is the ``module:function`` that builds it, imported on first use.
    """

    name: str
    ref: str
    distribution: str

    @property
    def factory(self) -> Callable[[], ProcessingPipeline]:
        factory: Callable[[], ProcessingPipeline] = _load(self.ref)
        return factory


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A catalog pipeline choice: one or more sigma-cli pipelines applied together.

    Combining is done by pySigma's resolver (priority order, then name), exactly as
    ``sigma convert -p A -p B`` does, so the printed command line reproduces the query.
    """

    id: str
    label: str
    sigma_pipelines: tuple[str, ...]
    description: str

    def build(self) -> ProcessingPipeline | None:
        """A fresh pipeline (pipelines keep per-conversion state, so never share one)."""
        if not self.sigma_pipelines:
            return None
        return _resolver().resolve(list(self.sigma_pipelines))

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(SIGMA_PIPELINES[n].distribution for n in self.sigma_pipelines))


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A conversion target: one pySigma backend as sigma-cli names it (``-t ID``).

    ``backend_ref`` is the ``module:class`` of the backend; :attr:`backend` imports it.
    ``backend_options`` are passed to the backend as ``sigma convert -O key=value`` does.
    ``verifier`` picks the check of :mod:`rules.convert.verify` ("lucene", "eql",
    "elastalert", "python", "json"; "lexical" by default).
    ``backend_pipeline_ref`` names the factory of a backend's class-level pipeline that keeps
    state between rules (its transformations mutate themselves): each Converter builds its own
    and restores its transformations' state before every rule.
    """

    id: str
    label: str
    backend_ref: str
    distribution: str
    formats: tuple[str, ...]
    default_pipeline: str
    pipelines: tuple[str, ...]
    description: str
    export_formats: tuple[str, ...] = ("default",)
    language: str = ""
    text_separator: str = "\n"
    backend_options: tuple[tuple[str, str], ...] = ()
    backend_pipeline_ref: str = ""
    verifier: str = "lexical"

    @property
    def backend(self) -> type[Backend]:
        """The backend class, imported (and pySigma set up) on first use."""
        prepare_pysigma()
        backend: type[Backend] = _load(self.backend_ref)
        return backend

    def new_backend(self, pipeline: ProcessingPipeline | None) -> Backend:
        """A backend instance with this target's options (as ``sigma convert -O`` passes)."""
        options: dict[str, Any] = dict(self.backend_options)
        # pySigma annotates **backend_options as dicts; sigma-cli passes strings, as here.
        return self.backend(pipeline, **options)

    def fresh_backend_pipeline(self) -> ProcessingPipeline | None:
        """A new instance of the backend's own stateful pipeline, or None if it has none."""
        if not self.backend_pipeline_ref:
            return None
        factory: Callable[[], ProcessingPipeline] = _load(self.backend_pipeline_ref)
        return factory()

    @property
    def requires_pipeline(self) -> bool:
        return bool(getattr(self.backend, "requires_pipeline", False))

    def format_label(self, output_format: str) -> str:
        return str(self.backend.formats.get(output_format, output_format))


# --------------------------------------------------------------------------- the registry


def _read_registry() -> dict[str, Any]:
    text = files(__package__).joinpath("registry.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _target(target_id: str, entry: Mapping[str, Any], sets: Mapping[str, list[str]]) -> TargetSpec:
    pipelines = entry["pipelines"]
    if isinstance(pipelines, str):
        pipelines = sets[pipelines]
    return TargetSpec(
        id=target_id,
        label=entry["label"],
        backend_ref=entry["backend"],
        distribution=entry["distribution"],
        formats=tuple(entry["formats"]),
        default_pipeline=entry["default_pipeline"],
        pipelines=tuple(pipelines),
        description=entry["description"],
        export_formats=tuple(entry.get("export_formats", ("default",))),
        language=entry.get("language", ""),
        text_separator=entry.get("text_separator", "\n"),
        backend_options=tuple((k, str(v)) for k, v in entry.get("backend_options", {}).items()),
        backend_pipeline_ref=entry.get("backend_pipeline", ""),
        verifier=entry.get("verifier", "lexical"),
    )


_REGISTRY = _read_registry()

SIGMA_PIPELINES: dict[str, SigmaPipeline] = {
    name: SigmaPipeline(name, entry["ref"], entry["distribution"])
    for name, entry in _REGISTRY["sigma_pipelines"].items()
}
"""The pySigma pipelines the catalog uses, keyed by their sigma-cli plugin identifier."""

PIPELINES: dict[str, PipelineSpec] = {
    pid: PipelineSpec(pid, entry["label"], tuple(entry["sigma_pipelines"]), entry["description"])
    for pid, entry in _REGISTRY["pipelines"].items()
}
"""The catalog's pipeline choices, in display order."""

TARGETS: dict[str, TargetSpec] = {
    tid: _target(tid, entry, _REGISTRY["pipeline_sets"])
    for tid, entry in _REGISTRY["targets"].items()
}
"""The conversion targets, in display order."""


@once
def _resolver() -> ProcessingPipelineResolver:
    return ProcessingPipelineResolver({name: p.factory for name, p in SIGMA_PIPELINES.items()})


# --------------------------------------------------------------------------- options


class ConversionParameterError(ValueError):
    """An unknown target, pipeline or output format: a caller mistake, not a rule problem."""

    def __init__(self, parameter: str, message: str, choices: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.choices = list(choices)


class ConversionOptions(NamedTuple):
    """A validated (target, pipeline, output format); unpacks as the three."""

    spec: TargetSpec
    pipe: PipelineSpec
    output_format: str


def resolve_options(
    target: str | None, pipeline: str | None = None, output_format: str | None = None
) -> ConversionOptions:
    """Validate (target, pipeline, format); empty pipeline/format mean the target's defaults.

    Raises :class:`ConversionParameterError` naming the offending parameter.
    """
    spec = TARGETS.get(target or "")
    if spec is None:
        raise ConversionParameterError("target", f"unknown target {target!r}", TARGETS.keys())
    pipeline_id = pipeline or spec.default_pipeline
    if pipeline_id not in PIPELINES:
        message = f"unknown pipeline {pipeline_id!r}"
        raise ConversionParameterError("pipeline", message, spec.pipelines)
    if pipeline_id not in spec.pipelines:
        message = f"pipeline {pipeline_id!r} is not available for target {spec.id!r}"
        raise ConversionParameterError("pipeline", message, spec.pipelines)
    fmt = output_format or "default"
    if fmt not in spec.formats:
        message = f"output format {fmt!r} is not available for target {spec.id!r}"
        raise ConversionParameterError("format", message, spec.formats)
    return ConversionOptions(spec, PIPELINES[pipeline_id], fmt)


@cache
def _distribution_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@cache
def backend_version(target: str, pipeline: str = "none") -> str:
    """Versions of every package that shapes this (target, pipeline)'s output.

    It is part of the conversion cache key: upgrading a backend or pipeline package (or this
    registry, :data:`CONVERTER_VERSION`) makes cached queries stale instead of silently wrong.
    """
    spec, pipe = TARGETS[target], PIPELINES[pipeline]
    distributions = dict.fromkeys((spec.distribution, *pipe.distributions))
    packages = " + ".join(f"{d} {_distribution_version(d)}" for d in distributions)
    return f"{packages} (pySigma {_distribution_version('pySigma')}, converter {CONVERTER_VERSION})"


@cache
def _pipeline_allows(sigma_pipeline: str, target: str) -> bool:
    """sigma-cli refuses a pipeline declared for other backends unless told not to check."""
    allowed = SIGMA_PIPELINES[sigma_pipeline].factory().allowed_backends
    return not allowed or target in allowed


CUSTOM_PIPELINE_FILE = "pipeline.yml"
"""The file name a pasted pipeline has in the printed command line (``-p pipeline.yml``)."""


def combine_pipelines(
    named: PipelineSpec, custom: ProcessingPipeline | None
) -> ProcessingPipeline | None:
    """``sigma convert -p A -p pipeline.yml``: ordered by (priority, name or path), summed."""
    if custom is None:
        return named.build()
    parts = [(SIGMA_PIPELINES[n].factory(), n) for n in named.sigma_pipelines]
    parts.append((custom, CUSTOM_PIPELINE_FILE))
    ordered = sorted(parts, key=lambda part: (part[0].priority, part[1]))
    combined: ProcessingPipeline = sum((p for p, _ in ordered), ProcessingPipeline())
    return combined


def sigma_cli_command(
    target: str,
    pipeline: str = "none",
    output_format: str = "default",
    filename: str = "",
    *,
    custom_pipeline: bool = False,
) -> str:
    """The ``sigma convert`` command line that produces the same query."""
    spec, pipe = TARGETS[target], PIPELINES[pipeline]
    parts = ["sigma", "convert", "-t", spec.id]
    for name in pipe.sigma_pipelines:
        parts += ["-p", name]
    if custom_pipeline:
        parts += ["-p", CUSTOM_PIPELINE_FILE]
    elif not pipe.sigma_pipelines and spec.requires_pipeline:
        parts.append("--without-pipeline")
    if not all(_pipeline_allows(name, spec.id) for name in pipe.sigma_pipelines):
        parts.append("--disable-pipeline-check")
    if output_format != "default":
        parts += ["-f", output_format]
    for key, value in spec.backend_options:
        parts += ["-O", f"{key}={value}"]
    parts.append(filename or "rule.yml")
    return shlex.join(parts)
