"""Convert Sigma rules into SIEM queries through pySigma backends and processing pipelines.

Users who outgrow the sandbox run their rules on the engines they already operate; this module
hands them the exact query, produced by the same pySigma backends and pipelines that
``sigma convert`` (sigma-cli) uses, so a query copied from the catalog and one produced by the
printed command line are the same.

* :data:`TARGETS` maps a target id (the sigma-cli ``-t`` name) to its label, backend class,
  output formats, default and allowed pipelines, and deployable export formats.
* :data:`PIPELINES` maps a catalog pipeline id to the sigma-cli pipelines it combines (``-p``
  names, resolved with pySigma's own resolver so ordering is identical) and a factory.
* :func:`convert` converts one rule and never raises for a rule the backend cannot handle: the
  reason becomes :attr:`ConversionResult.error`. Only an unknown target, pipeline or format
  (a caller mistake) raises :class:`ConversionParameterError`.
* :class:`Converter` converts many rules with one backend instance, as ``backend.convert`` does
  for a collection, for the cache warmer, the bulk export and the benchmark.
* :func:`export_chunks` streams converted rules in a target's deployable form (Splunk
  ``savedsearches.conf``, Elastic NDJSON, Loki ruler YAML, plain query lists).

Pure Python: no Django import here.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePath
from typing import Any

import yaml
from sigma.backends.elasticsearch import (
    ElastalertBackend,
    EqlBackend,
    ESQLBackend,
    LuceneBackend,
)
from sigma.backends.kusto import KustoBackend
from sigma.backends.loki import LogQLBackend
from sigma.backends.opensearch import OpensearchLuceneBackend, OpenSearchPPLBackend
from sigma.backends.splunk import SplunkBackend, SplunkSPL2Backend
from sigma.conversion.base import Backend
from sigma.exceptions import (
    SigmaConfigurationError,
    SigmaError,
    SigmaFeatureNotSupportedByBackendError,
    SigmaPlaceholderError,
    SigmaTransformationError,
)
from sigma.pipelines.azuremonitor import azure_monitor_pipeline
from sigma.pipelines.elasticsearch import (
    ecs_kubernetes,
    ecs_macos_esf,
    ecs_windows,
    ecs_windows_old,
    ecs_zeek_beats,
    ecs_zeek_corelight,
)
from sigma.pipelines.loki import (
    loki_grafana_logfmt,
    loki_okta_system_log,
    loki_promtail_sysmon,
)
from sigma.pipelines.microsoftxdr import microsoft_xdr_pipeline
from sigma.pipelines.sentinelasim import sentinel_asim_pipeline
from sigma.pipelines.splunk import (
    splunk_cim_data_model,
    splunk_windows_pipeline,
    splunk_windows_sysmon_acceleration_keywords,
)
from sigma.pipelines.sysmon import sysmon as _sysmon_module
from sigma.pipelines.windows import windows_audit_pipeline, windows_logsource_pipeline
from sigma.processing.pipeline import ProcessingPipeline
from sigma.processing.resolver import ProcessingPipelineResolver
from sigma.rule import SigmaRule

from rules.errors import RuleError
from rules.model import ParsedRule
from rules.parse import load_document

CONVERTER_VERSION = "1"
"""Bumped whenever this registry changes what a (target, pipeline) produces; it is part of
:func:`backend_version`, so cached conversions made by an older registry are not reused."""

# The Loki backend warns about its own regex partitioning for some rules; the warning says
# nothing actionable to a catalog user and would otherwise flood logs on every bulk run.
warnings.filterwarnings("ignore", category=UserWarning, module=r"sigma\.backends\.loki")

RuleInput = str | bytes | ParsedRule | Mapping[str, Any] | SigmaRule


def _sysmon_function() -> Callable[[], ProcessingPipeline]:
    """The real ``sysmon`` pipeline function, captured once.

    pySigma's ``@Pipeline`` decorator keeps ONE shared instance whose ``func`` every decorated
    function overwrites: after ``sigma.pipelines.test`` is imported (``InstalledSigmaPlugins
    .autodiscover()`` does it), ``sysmon_pipeline()`` builds pySigma's dummy test pipeline.
    Holding the undecorated function keeps our Sysmon conversions right whatever is imported
    later; if the function was already replaced, re-running the module restores it.
    """
    func = _sysmon_module.sysmon_pipeline.func
    if getattr(func, "__name__", "") != "sysmon_pipeline":
        importlib.reload(_sysmon_module)
        func = _sysmon_module.sysmon_pipeline.func
    return func


_SYSMON_PIPELINE = _sysmon_function()


# --------------------------------------------------------------------------- pipelines


@dataclass(frozen=True, slots=True)
class SigmaPipeline:
    """One pySigma pipeline as sigma-cli names it (``-p NAME``) and the package shipping it."""

    name: str
    factory: Callable[[], ProcessingPipeline]
    distribution: str


SIGMA_PIPELINES: dict[str, SigmaPipeline] = {
    p.name: p
    for p in (
        SigmaPipeline("windows-logsources", windows_logsource_pipeline, "pySigma-pipeline-windows"),
        SigmaPipeline("windows-audit", windows_audit_pipeline, "pySigma-pipeline-windows"),
        SigmaPipeline("sysmon", _SYSMON_PIPELINE, "pySigma-pipeline-sysmon"),
        SigmaPipeline("splunk_windows", splunk_windows_pipeline, "pySigma-backend-splunk"),
        SigmaPipeline(
            "splunk_sysmon_acceleration",
            splunk_windows_sysmon_acceleration_keywords,
            "pySigma-backend-splunk",
        ),
        SigmaPipeline("splunk_cim", splunk_cim_data_model, "pySigma-backend-splunk"),
        SigmaPipeline("ecs_windows", ecs_windows, "pySigma-backend-elasticsearch"),
        SigmaPipeline("ecs_windows_old", ecs_windows_old, "pySigma-backend-elasticsearch"),
        SigmaPipeline("ecs_zeek_beats", ecs_zeek_beats, "pySigma-backend-elasticsearch"),
        SigmaPipeline("ecs_zeek_corelight", ecs_zeek_corelight, "pySigma-backend-elasticsearch"),
        SigmaPipeline("ecs_kubernetes", ecs_kubernetes, "pySigma-backend-elasticsearch"),
        SigmaPipeline("ecs_macos_esf", ecs_macos_esf, "pySigma-backend-elasticsearch"),
        SigmaPipeline("microsoft_xdr", microsoft_xdr_pipeline, "pySigma-backend-kusto"),
        SigmaPipeline("sentinel_asim", sentinel_asim_pipeline, "pySigma-backend-kusto"),
        SigmaPipeline("azure_monitor", azure_monitor_pipeline, "pySigma-backend-kusto"),
        SigmaPipeline("loki_grafana_logfmt", loki_grafana_logfmt, "pySigma-backend-loki"),
        SigmaPipeline("loki_promtail_sysmon", loki_promtail_sysmon, "pySigma-backend-loki"),
        SigmaPipeline("loki_okta_system_log", loki_okta_system_log, "pySigma-backend-loki"),
    )
}
"""The pySigma pipelines the catalog uses, keyed by their sigma-cli plugin identifier."""

_RESOLVER = ProcessingPipelineResolver({name: p.factory for name, p in SIGMA_PIPELINES.items()})


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
        return _RESOLVER.resolve(list(self.sigma_pipelines))

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(SIGMA_PIPELINES[n].distribution for n in self.sigma_pipelines))


PIPELINES: dict[str, PipelineSpec] = {
    p.id: p
    for p in (
        PipelineSpec(
            "none",
            "No pipeline (Sigma field names)",
            (),
            "Sigma's own field names and no log source conditions: for data already "
            "normalised to the Sigma taxonomy.",
        ),
        PipelineSpec(
            "splunk_windows",
            "Windows event logs",
            ("windows-logsources", "splunk_windows"),
            "Adds the Windows channel/EventID of generic log sources (ps_script -> "
            "PowerShell/Operational 4104) and Splunk's WinEventLog source conditions.",
        ),
        PipelineSpec(
            "splunk_sysmon",
            "Windows with Sysmon",
            ("sysmon", "windows-logsources", "splunk_windows"),
            "Maps generic categories (process_creation, ...) to Sysmon event ids and adds the "
            "Sysmon/Operational source, plus the Windows channels above.",
        ),
        PipelineSpec(
            "splunk_cim",
            "Splunk CIM data model",
            ("splunk_cim",),
            "Maps fields to the Splunk Common Information Model (process, registry, file, "
            "network, web proxy); required by the data_model (tstats) output format.",
        ),
        PipelineSpec(
            "windows_logsources",
            "Windows channels",
            ("windows-logsources",),
            "Adds the Windows channel/EventID conditions of generic Windows log sources.",
        ),
        PipelineSpec(
            "ecs_windows",
            "ECS Windows (Winlogbeat 7+)",
            ("ecs_windows",),
            "Elastic Common Schema field names for Windows logs shipped by Winlogbeat 7+.",
        ),
        PipelineSpec(
            "ecs_windows_old",
            "ECS Windows (Winlogbeat <= 6)",
            ("ecs_windows_old",),
            "Elastic Common Schema field names for Winlogbeat up to version 6.",
        ),
        PipelineSpec(
            "ecs_zeek_beats",
            "ECS Zeek (Filebeat)",
            ("ecs_zeek_beats",),
            "Elastic Common Schema for Zeek logs shipped by Filebeat >= 7.6.1.",
        ),
        PipelineSpec(
            "ecs_zeek_corelight",
            "ECS Zeek (Corelight)",
            ("ecs_zeek_corelight",),
            "Elastic Common Schema mapping of Corelight's Zeek logs.",
        ),
        PipelineSpec(
            "ecs_kubernetes",
            "ECS Kubernetes audit",
            ("ecs_kubernetes",),
            "Elastic Common Schema for Kubernetes audit logs.",
        ),
        PipelineSpec(
            "ecs_macos_esf",
            "ECS macOS ESF",
            ("ecs_macos_esf",),
            "Elastic Common Schema for macOS Endpoint Security Framework events.",
        ),
        PipelineSpec(
            "microsoft_xdr",
            "Microsoft Defender XDR tables",
            ("microsoft_xdr",),
            "Maps log sources to Defender XDR advanced hunting tables (DeviceProcessEvents, "
            "DeviceRegistryEvents, ...) and their fields.",
        ),
        PipelineSpec(
            "sentinel_asim",
            "Microsoft Sentinel ASIM",
            ("sentinel_asim",),
            "Maps log sources to Sentinel ASIM normalised tables (imProcessCreate, ...).",
        ),
        PipelineSpec(
            "azure_monitor",
            "Azure Monitor / Sentinel tables",
            ("azure_monitor",),
            "Maps log sources to Azure Monitor tables (SecurityEvent, ...).",
        ),
        PipelineSpec(
            "loki_grafana_logfmt",
            "Grafana logfmt",
            ("loki_grafana_logfmt",),
            "Field names of Grafana's own logfmt logs.",
        ),
        PipelineSpec(
            "loki_promtail_sysmon",
            "Promtail Sysmon",
            ("loki_promtail_sysmon",),
            "Parses the Message of Windows Sysmon events shipped by Promtail.",
        ),
        PipelineSpec(
            "loki_okta_system_log",
            "Okta System Log",
            ("loki_okta_system_log",),
            "Okta System Log JSON field names.",
        ),
    )
}

_SPLUNK_PIPELINES = ("splunk_windows", "splunk_sysmon", "splunk_cim", "none")
_ELASTIC_PIPELINES = (
    "ecs_windows",
    "ecs_windows_old",
    "ecs_zeek_beats",
    "ecs_zeek_corelight",
    "ecs_kubernetes",
    "ecs_macos_esf",
    "none",
)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A conversion target: one pySigma backend as sigma-cli names it (``-t ID``)."""

    id: str
    label: str
    backend: type[Backend]
    distribution: str
    formats: tuple[str, ...]
    default_pipeline: str
    pipelines: tuple[str, ...]
    description: str
    export_formats: tuple[str, ...] = ("default",)
    language: str = ""
    text_separator: str = "\n"

    @property
    def requires_pipeline(self) -> bool:
        return bool(getattr(self.backend, "requires_pipeline", False))

    def format_label(self, output_format: str) -> str:
        return str(self.backend.formats.get(output_format, output_format))


TARGETS: dict[str, TargetSpec] = {
    t.id: t
    for t in (
        TargetSpec(
            "splunk",
            "Splunk SPL",
            SplunkBackend,
            "pySigma-backend-splunk",
            ("default", "savedsearches", "data_model"),
            "splunk_windows",
            _SPLUNK_PIPELINES,
            "Splunk search processing language; savedsearches.conf stanzas for deployment.",
            export_formats=("savedsearches", "default"),
            language="spl",
        ),
        TargetSpec(
            "splunk_spl2",
            "Splunk SPL2",
            SplunkSPL2Backend,
            "pySigma-backend-splunk",
            ("default", "module"),
            "splunk_windows",
            _SPLUNK_PIPELINES,
            "Splunk SPL2 (FROM ... WHERE ...) queries and SPL2 modules.",
            export_formats=("module", "default"),
            language="spl2",
        ),
        TargetSpec(
            "lucene",
            "Elasticsearch Lucene",
            LuceneBackend,
            "pySigma-backend-elasticsearch",
            ("default", "kibana_ndjson", "dsl_lucene", "siem_rule", "siem_rule_ndjson"),
            "ecs_windows",
            _ELASTIC_PIPELINES,
            "Lucene query strings for Kibana/Elastic Security; detection-rule NDJSON to import.",
            export_formats=("siem_rule_ndjson", "kibana_ndjson", "default"),
            language="lucene",
        ),
        TargetSpec(
            "esql",
            "Elasticsearch ES|QL",
            ESQLBackend,
            "pySigma-backend-elasticsearch",
            ("default", "kibana_ndjson", "siem_rule", "siem_rule_ndjson"),
            "ecs_windows",
            _ELASTIC_PIPELINES,
            "ES|QL piped queries; Elastic Security ES|QL rules as NDJSON.",
            export_formats=("siem_rule_ndjson", "kibana_ndjson", "default"),
            language="esql",
        ),
        TargetSpec(
            "eql",
            "Elasticsearch EQL",
            EqlBackend,
            "pySigma-backend-elasticsearch",
            ("default", "eqlapi", "siem_rule", "siem_rule_ndjson"),
            "ecs_windows",
            _ELASTIC_PIPELINES,
            "Event Query Language; Elastic Security EQL rules as NDJSON.",
            export_formats=("siem_rule_ndjson", "eqlapi", "default"),
            language="eql",
        ),
        TargetSpec(
            "elastalert",
            "ElastAlert",
            ElastalertBackend,
            "pySigma-backend-elasticsearch",
            ("default",),
            "ecs_windows",
            _ELASTIC_PIPELINES,
            "ElastAlert 2 rule files (YAML) with a Lucene filter.",
            language="yaml",
            text_separator="---\n",
        ),
        TargetSpec(
            "opensearch_lucene",
            "OpenSearch Lucene",
            OpensearchLuceneBackend,
            "pySigma-backend-opensearch",
            ("default", "dashboards_ndjson", "monitor_rule", "dsl_lucene"),
            "ecs_windows",
            _ELASTIC_PIPELINES,
            "Lucene query strings for OpenSearch; alerting monitors as NDJSON.",
            export_formats=("monitor_rule", "dashboards_ndjson", "default"),
            language="lucene",
        ),
        TargetSpec(
            "open_search_ppl",
            "OpenSearch PPL",
            OpenSearchPPLBackend,
            "pySigma-backend-opensearch",
            ("default",),
            "none",
            ("none",),
            "OpenSearch Piped Processing Language (source=<index pattern> | where ...).",
            language="ppl",
        ),
        TargetSpec(
            "kusto",
            "Microsoft Defender / Sentinel KQL",
            KustoBackend,
            "pySigma-backend-kusto",
            ("default",),
            "microsoft_xdr",
            ("microsoft_xdr", "sentinel_asim", "azure_monitor", "none"),
            "Kusto Query Language for Defender XDR advanced hunting and Microsoft Sentinel; "
            "the pipeline picks the table from the rule's log source.",
            language="kql",
        ),
        TargetSpec(
            "loki",
            "Grafana Loki LogQL",
            LogQLBackend,
            "pySigma-backend-loki",
            ("default", "ruler", "grafana_alerting"),
            "none",
            (
                "none",
                "windows_logsources",
                "loki_grafana_logfmt",
                "loki_promtail_sysmon",
                "loki_okta_system_log",
            ),
            "LogQL queries; Loki ruler alerting rules (YAML) for deployment.",
            export_formats=("ruler", "default"),
            language="logql",
        ),
    )
}

DEFAULT_TARGET = "splunk"


# --------------------------------------------------------------------------- results


class ConversionParameterError(ValueError):
    """An unknown target, pipeline or output format: a caller mistake, not a rule problem."""

    def __init__(self, parameter: str, message: str, choices: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.choices = list(choices)


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


# --------------------------------------------------------------------------- options


def resolve_options(
    target: str | None, pipeline: str | None = None, output_format: str | None = None
) -> tuple[TargetSpec, PipelineSpec, str]:
    """Validate (target, pipeline, format); empty pipeline/format mean the target's defaults.

    Raises :class:`ConversionParameterError` naming the offending parameter.
    """
    spec = TARGETS.get(target or "")
    if spec is None:
        raise ConversionParameterError(
            "target", f"unknown target {target!r}", choices=TARGETS.keys()
        )
    pipeline_id = pipeline or spec.default_pipeline
    if pipeline_id not in PIPELINES:
        raise ConversionParameterError(
            "pipeline", f"unknown pipeline {pipeline_id!r}", choices=spec.pipelines
        )
    if pipeline_id not in spec.pipelines:
        raise ConversionParameterError(
            "pipeline",
            f"pipeline {pipeline_id!r} is not available for target {spec.id!r}",
            choices=spec.pipelines,
        )
    fmt = output_format or "default"
    if fmt not in spec.formats:
        raise ConversionParameterError(
            "format",
            f"output format {fmt!r} is not available for target {spec.id!r}",
            choices=spec.formats,
        )
    return spec, PIPELINES[pipeline_id], fmt


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


def sigma_cli_command(
    target: str, pipeline: str = "none", output_format: str = "default", filename: str = ""
) -> str:
    """The ``sigma convert`` command line that produces the same query."""
    spec, pipe = TARGETS[target], PIPELINES[pipeline]
    parts = ["sigma", "convert", "-t", spec.id]
    for name in pipe.sigma_pipelines:
        parts += ["-p", name]
    if not pipe.sigma_pipelines and spec.requires_pipeline:
        parts.append("--without-pipeline")
    if not all(_pipeline_allows(name, spec.id) for name in pipe.sigma_pipelines):
        parts.append("--disable-pipeline-check")
    if output_format != "default":
        parts += ["-f", output_format]
    parts.append(filename or "rule.yml")
    return shlex.join(parts)


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


def _text(output: Any) -> str:
    """How a query is shown and copied: text as is, structured outputs as one JSON line."""
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, default=str)


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
        if self.output_format in _ATTACK_FORMATS:
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
            outputs = self.backend.convert_rule(sigma_rule, self.output_format)
        except Exception as exc:  # any backend bug must not break a page or a bulk run
            kind, message = describe_error(exc, self.spec, self.pipe, sigma_rule)
            if not isinstance(exc, SigmaError):
                # An unexpected error may leave the backend mid-rule: rebuild it for the next.
                self._backend = None
            return self._result("", command, started, error=message, error_kind=kind)
        if not outputs:
            return self._result(
                "",
                command,
                started,
                error=_empty_reason(self.spec, self.pipe),
                error_kind="empty",
            )
        texts = [_text(o) for o in outputs]
        query: str | list[str] = texts[0] if len(texts) == 1 else texts
        return self._result(query, command, started, outputs=tuple(outputs))

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
    :class:`ConversionParameterError`.
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
    texts = [_text(o) for o in outputs]
    query: str | list[str] = "" if error or not texts else texts[0] if len(texts) == 1 else texts
    return ConversionResult(
        query=query,
        target=target,
        pipeline=pipeline,
        backend_version=version or backend_version(target, pipeline),
        error=error,
        sigma_cli_command=sigma_cli_command(target, pipeline, output_format, filename),
        output_format=output_format,
        error_kind=error_kind,
        outputs=outputs,
    )


# --------------------------------------------------------------------------- ATT&CK offline

_ATTACK_FORMATS = frozenset({"siem_rule", "siem_rule_ndjson"})


class _TechniqueNames(Mapping[str, str]):
    """ATT&CK technique names from the catalog's offline data (:mod:`rules.attack`).

    Iteration covers top-level techniques only; lookups also resolve sub-techniques.
    """

    def __getitem__(self, key: str) -> str:
        from rules import attack

        found = attack.technique(str(key))
        if found is None:
            raise KeyError(key)
        return found.name

    def _ids(self) -> list[str]:
        from rules import attack

        return sorted(
            {
                t.id
                for tactic in attack.tactics_in_matrix_order()
                for t in attack.techniques_for_tactic(tactic.shortname)
            }
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())


@cache
def use_offline_attack_data() -> None:
    """Give pySigma's ATT&CK data module the catalog's offline ATT&CK names.

    The Elastic ``siem_rule*`` formats name tactics and techniques through
    ``sigma.data.mitre_attack``, which otherwise downloads the STIX bundle from GitHub on
    first use: offline (and on every fresh machine) that fails the whole conversion. Setting
    the module attributes it would lazily load means nothing is fetched.
    """
    from sigma.data import mitre_attack

    from rules import attack

    mitre_attack.mitre_attack_tactics = {  # type: ignore[attr-defined]
        t.id: t.shortname for t in attack.tactics_in_matrix_order()
    }
    mitre_attack.mitre_attack_techniques = _TechniqueNames()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- exports


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """How a format's per-rule outputs are streamed as one deployable file."""

    id: str
    kind: str  # "text", "ndjson", "savedsearches", "loki_ruler"
    extension: str
    content_type: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.id: f
    for f in (
        ExportFormat("default", "text", "txt", "text/plain; charset=utf-8"),
        ExportFormat("module", "text", "spl2", "text/plain; charset=utf-8"),
        ExportFormat("savedsearches", "savedsearches", "conf", "text/plain; charset=utf-8"),
        ExportFormat("siem_rule_ndjson", "ndjson", "ndjson", "application/x-ndjson"),
        ExportFormat("kibana_ndjson", "ndjson", "ndjson", "application/x-ndjson"),
        ExportFormat("dashboards_ndjson", "ndjson", "ndjson", "application/x-ndjson"),
        ExportFormat("monitor_rule", "ndjson", "ndjson", "application/x-ndjson"),
        ExportFormat("eqlapi", "ndjson", "ndjson", "application/x-ndjson"),
        ExportFormat("ruler", "loki_ruler", "yml", "application/yaml; charset=utf-8"),
    )
}


def export_format(target: str, output_format: str | None) -> ExportFormat:
    """The export writer for a target's deployable format (its first one by default)."""
    spec = TARGETS.get(target or "")
    if spec is None:
        raise ConversionParameterError("target", f"unknown target {target!r}", TARGETS.keys())
    fmt = output_format or spec.export_formats[0]
    if fmt not in spec.export_formats:
        raise ConversionParameterError(
            "format",
            f"output format {fmt!r} cannot be exported for target {spec.id!r}",
            choices=spec.export_formats,
        )
    return EXPORT_FORMATS[fmt]


def export_chunks(
    target: str, output_format: str, results: Iterable[tuple[str, ConversionResult]]
) -> Iterator[str]:
    """Stream ``(rule_id, result)`` pairs as one deployable file, chunk by chunk.

    Rules that failed are left out; formats with comments (``.conf``, YAML) list them at the
    end so the file says what it does not contain.
    """
    spec = TARGETS[target]
    writer = export_format(target, output_format)
    skipped: list[str] = []
    first = True
    if writer.kind == "savedsearches":
        yield SplunkBackend().finalize_output_savedsearches([])
    elif writer.kind == "loki_ruler":
        yield "groups:\n- name: Sigma rules\n  rules:\n"
    for rule_id, result in results:
        if not result.ok:
            skipped.append(f"{rule_id}: {result.error}")
            continue
        for output in result.outputs:
            yield _export_item(writer.kind, spec, output, first)
            first = False
    if writer.kind == "loki_ruler" and first:
        yield "    []\n"  # no rule converted: keep the YAML valid
    if skipped and writer.kind in ("savedsearches", "loki_ruler"):
        yield f"\n# {len(skipped)} rule(s) not converted:\n"
        for line in skipped:
            yield "# " + " ".join(line.split()) + "\n"


def _export_item(kind: str, spec: TargetSpec, output: Any, first: bool) -> str:
    if kind == "savedsearches":
        # Same layout as SplunkBackend.finalize_output_savedsearches: stanzas joined by "\n".
        return output if first else "\n" + output
    if kind == "ndjson":
        return json.dumps(output, ensure_ascii=False, default=str) + "\n"
    if kind == "loki_ruler":
        item = yaml.safe_dump([output], default_flow_style=False, allow_unicode=True)
        return "".join("  " + line for line in item.splitlines(keepends=True))
    # Plain lists: a blank line between queries (KQL and SPL queries may span lines).
    return ("" if first else spec.text_separator) + _text(output) + "\n"
