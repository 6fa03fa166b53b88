"""Streaming bulk exports of (filtered) rules as NDJSON or CSV, in constant memory.

Rules are read as plain rows with ``iterator(chunk_size=...)`` (a server-side cursor on
PostgreSQL) and handled one chunk at a time: for each chunk, one query per child table (tags,
indicators, exclusions) fetches the children as tuples. Model instances and ``prefetch_related``
would cost several times more for the ~110,000 child rows of the full corpus.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.db.models import QuerySet

from catalog.models import Rule, RuleExclusion, RuleIndicator

CHUNK_SIZE = 500

RULE_COLUMNS = (
    "pk", "rule_id", "title", "status", "level", "description", "author", "date", "modified",
    "references", "falsepositives", "product", "category", "service", "rule_set",
    "source_path", "revision", "raw_yaml",
)  # fmt: skip

# The columns a CSV row has; NDJSON objects carry these and more (see iter_records).
CSV_COLUMNS = [
    "id",
    "title",
    "status",
    "level",
    "product",
    "category",
    "service",
    "author",
    "date",
    "modified",
    "rule_set",
    "source_path",
    "tags",
    "indicators",
    "exclusions",
]


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _grouped(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[tuple[Any, ...]]]:
    """``(rule_pk, *rest)`` rows -> {rule_pk: [rest, ...]}, keeping row order."""
    grouped: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for rule_pk, *rest in rows:
        grouped[rule_pk].append(tuple(rest))
    return grouped


def _predicates(rows: list[tuple[Any, ...]]) -> list[dict[str, str]]:
    return [
        {"field": field, "kind": kind, "value": value, "identifier": identifier}
        for field, kind, value, identifier in rows
    ]


def iter_records(rules: QuerySet[Rule]) -> Iterator[dict[str, Any]]:
    """One dict per rule: metadata, logsource, tags, indicators/exclusions and the YAML."""
    rows = rules.values(*RULE_COLUMNS).iterator(chunk_size=CHUNK_SIZE)
    for batch in _batches(rows, CHUNK_SIZE):
        pks = [row["pk"] for row in batch]
        tags = _grouped(
            Rule.tags.through.objects.filter(rule_id__in=pks)
            .order_by("tag__name")
            .values_list("rule_id", "tag__name")
        )
        indicators = _grouped(
            RuleIndicator.objects.filter(rule_id__in=pks)
            .order_by("rule_id", "position")
            .values_list("rule_id", "indicator__field", "indicator__kind", "value", "identifier")
        )
        exclusions = _grouped(
            RuleExclusion.objects.filter(rule_id__in=pks)
            .order_by("rule_id", "position")
            .values_list("rule_id", "exclusion__field", "exclusion__kind", "value", "identifier")
        )
        for row in batch:
            pk = row.pop("pk")
            rule_id = row.pop("rule_id")
            raw_yaml = row.pop("raw_yaml")
            yield {
                "id": rule_id,
                **row,
                "tags": [name for (name,) in tags.get(pk, ())],
                "indicators": _predicates(indicators.get(pk, [])),
                "exclusions": _predicates(exclusions.get(pk, [])),
                "raw_yaml": raw_yaml,
            }


def ndjson_lines(rules: QuerySet[Rule]) -> Iterator[str]:
    """One JSON object per line (NDJSON); a line never contains a raw newline."""
    for record in iter_records(rules):
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class _Echo:
    """A file-like object whose write() returns the line csv.writer produced."""

    def write(self, value: str) -> str:
        return value


def _csv_row(record: dict[str, Any]) -> list[str]:
    row = []
    for column in CSV_COLUMNS:
        value = record[column]
        if column == "tags":
            value = " ".join(value)
        elif column in ("indicators", "exclusions"):
            # JSON keeps field, kind and value apart whatever characters the value holds.
            value = json.dumps(
                [[p["field"], p["kind"], p["value"]] for p in value], ensure_ascii=False
            )
        row.append(value)
    return row


def csv_lines(rules: QuerySet[Rule]) -> Iterator[str]:
    """A header line, then one CSV line per rule (tags space-separated, predicates as JSON)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for record in iter_records(rules):
        yield writer.writerow(_csv_row(record))
