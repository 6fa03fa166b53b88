"""Deployable files: converted rules streamed in a target's export format.

:func:`export_chunks` writes Splunk ``savedsearches.conf``, Elastic/OpenSearch NDJSON, Loki
ruler YAML or plain query lists, chunk by chunk, so a bulk export never holds the whole file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from rules.convert.converter import ConversionResult, output_text
from rules.convert.registry import TARGETS, ConversionParameterError, TargetSpec


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """How a format's per-rule outputs are streamed as one deployable file."""

    id: str
    kind: str  # "text", "ndjson", "savedsearches", "loki_ruler"
    extension: str
    content_type: str


_TEXT = "text/plain; charset=utf-8"
_NDJSON = "application/x-ndjson"

EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.id: f
    for f in (
        ExportFormat("default", "text", "txt", _TEXT),
        ExportFormat("module", "text", "spl2", _TEXT),
        ExportFormat("savedsearches", "savedsearches", "conf", _TEXT),
        *(
            ExportFormat(name, "ndjson", "ndjson", _NDJSON)
            for name in (
                "siem_rule_ndjson",
                "kibana_ndjson",
                "dashboards_ndjson",
                "monitor_rule",
                "eqlapi",
            )
        ),
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


def _header(kind: str) -> str:
    if kind == "savedsearches":
        # The backend's own file header (its default stanza settings), as sigma-cli writes it.
        splunk: Any = TARGETS["splunk"].backend()
        return str(splunk.finalize_output_savedsearches([]))
    if kind == "loki_ruler":
        return "groups:\n- name: Sigma rules\n  rules:\n"
    return ""


def export_chunks(
    target: str, output_format: str, results: Iterable[tuple[str, ConversionResult]]
) -> Iterator[str]:
    """Stream ``(rule_id, result)`` pairs as one deployable file, chunk by chunk.

    Rules that failed, and queries that do not parse (:mod:`rules.convert.verify`), are left
    out and listed at the end with the reason: as comments in the text, ``.conf`` and YAML
    files, and in NDJSON as one last summary line (the shape of Kibana's own export summary,
    ``{"exportedCount": ..., "notExported": [...]}``).
    """
    spec = TARGETS[target]
    writer = export_format(target, output_format)
    skipped: list[tuple[str, str, str]] = []
    first = True
    exported = 0
    header = _header(writer.kind)
    if header:
        yield header
    for rule_id, result in results:
        if not result.ok:
            skipped.append((rule_id, "failed", result.error or ""))
            continue
        if result.problem is not None:
            skipped.append((rule_id, "invalid", f"does not parse: {result.problem}"))
            continue
        exported += 1
        for output in result.outputs:
            yield _export_item(writer.kind, spec, output, first)
            first = False
    if writer.kind == "loki_ruler" and first:
        yield "    []\n"  # no rule converted: keep the YAML valid
    if writer.kind == "ndjson":
        if skipped:
            yield _ndjson_summary(exported, skipped)
    elif skipped:
        yield f"\n# {len(skipped)} rule(s) not exported:\n"
        for rule_id, _, reason in skipped:
            yield "# " + " ".join(f"{rule_id}: {reason}".split()) + "\n"


def _ndjson_summary(exported: int, skipped: list[tuple[str, str, str]]) -> str:
    """Kibana ends its own exports with such a line (``exportedCount``); importers skip it."""
    summary = {
        "exportedCount": exported,
        "missingRefCount": 0,
        "missingReferences": [],
        "notExported": [
            {"rule_id": rule_id, "status": status, "reason": reason}
            for rule_id, status, reason in skipped
        ],
    }
    return json.dumps(summary, ensure_ascii=False) + "\n"


def _export_item(kind: str, spec: TargetSpec, output: Any, first: bool) -> str:
    if kind == "savedsearches":
        # Same layout as SplunkBackend.finalize_output_savedsearches: stanzas joined by "\n".
        return str(output) if first else "\n" + str(output)
    if kind == "ndjson":
        return json.dumps(output, ensure_ascii=False, default=str) + "\n"
    if kind == "loki_ruler":
        item = yaml.safe_dump([output], default_flow_style=False, allow_unicode=True)
        return "".join("  " + line for line in item.splitlines(keepends=True))
    # Plain lists: a blank line between queries (KQL and SPL queries may span lines).
    return ("" if first else spec.text_separator) + output_text(output) + "\n"
