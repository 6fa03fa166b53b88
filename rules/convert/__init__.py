"""Convert Sigma rules into SIEM queries through pySigma backends and processing pipelines.

Users who outgrow the sandbox run their rules on the engines they already operate; this package
hands them the exact query, produced by the same pySigma backends and pipelines that
``sigma convert`` (sigma-cli) uses, so a query copied from the catalog and one produced by the
printed command line are the same.

* :mod:`rules.convert.registry`: targets, pipelines, option checks, versions, command lines.
* :mod:`rules.convert.converter`: :func:`convert`, :class:`Converter` and their results.
* :mod:`rules.convert.exports`: deployable files (:func:`export_chunks`).
* :mod:`rules.convert.verify`: does a query parse (luqum, eql, lexical), certain fixes.
* :mod:`rules.convert.pipelines`: a user's own pipeline YAML, validated (never run as code).
* :mod:`rules.convert.attack_data`: offline ATT&CK names for the Elastic ``siem_rule`` formats.

Importing this package imports no backend and changes no pySigma state; see the registry.
Pure Python: no Django import here.
"""

from rules.convert.attack_data import use_offline_attack_data
from rules.convert.converter import (
    ConversionResult,
    ConversionStats,
    Converter,
    RuleInput,
    convert,
    describe_error,
    output_text,
    result_from_outputs,
    stats,
)
from rules.convert.exports import EXPORT_FORMATS, ExportFormat, export_chunks, export_format
from rules.convert.pipelines import CustomPipeline, PipelineYAMLError, parse_custom_pipeline
from rules.convert.registry import (
    CONVERTER_VERSION,
    DEFAULT_TARGET,
    PIPELINES,
    SIGMA_PIPELINES,
    TARGETS,
    ConversionOptions,
    ConversionParameterError,
    PipelineSpec,
    SigmaPipeline,
    TargetSpec,
    backend_version,
    prepare_pysigma,
    resolve_options,
    sigma_cli_command,
    sysmon_pipeline,
)
from rules.convert.verify import Verdict, verify_outputs

__all__ = [
    "CONVERTER_VERSION",
    "DEFAULT_TARGET",
    "EXPORT_FORMATS",
    "PIPELINES",
    "SIGMA_PIPELINES",
    "TARGETS",
    "ConversionOptions",
    "ConversionParameterError",
    "ConversionResult",
    "ConversionStats",
    "Converter",
    "CustomPipeline",
    "ExportFormat",
    "PipelineSpec",
    "PipelineYAMLError",
    "RuleInput",
    "SigmaPipeline",
    "TargetSpec",
    "Verdict",
    "backend_version",
    "convert",
    "describe_error",
    "export_chunks",
    "export_format",
    "output_text",
    "parse_custom_pipeline",
    "prepare_pysigma",
    "resolve_options",
    "result_from_outputs",
    "sigma_cli_command",
    "stats",
    "sysmon_pipeline",
    "use_offline_attack_data",
    "verify_outputs",
]
