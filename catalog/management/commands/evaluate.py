"""``manage.py evaluate PATH...``: evaluate event files against the catalog, print matches.

One JSON object per line on standard output for each match (``event`` is the 0-based index
over all inputs, in order; ``suppressed_by`` lists the meta filters that removed it), then one
``{"correlation": ...}`` line per correlation match over the events in timestamp order; a
summary on standard error; exit status 2 for unreadable input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.correlations import CommandMeta
from catalog.management.commands._cli import add_paths_argument, progress_bar
from catalog.sandbox import catalog_evaluator
from rules.events import Event, EventInputError, load_events_file, parse_events
from rules.shapes import SHAPE_LABELS
from rules.text_input import MAX_FILE_BYTES


class Command(BaseCommand):
    help = (
        "Evaluate events (JSON or JSON lines: evtx_dump, Winlogbeat, Hayabusa, Chainsaw; "
        "Windows event XML; .evtx; or '-' for stdin) against "
        "the catalog's rules; print one JSON line per match."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_paths_argument(parser)
        parser.add_argument("--all-rules", action="store_true", help="ignore logsource scoping")
        parser.add_argument(
            "--rule", action="append", default=[], metavar="ID", help="only this rule (repeat)"
        )
        parser.add_argument(
            "--timestamp-field",
            metavar="FIELD",
            help="the field holding each event's time, for correlations (default: detected)",
        )
        parser.add_argument("--no-progress", action="store_true")

    def _match(
        self,
        events: list[Event],
        evaluator: Any,
        options: dict[str, Any],
        rule_ids: list[str] | None,
    ) -> Iterator[tuple[int, list[list[str]]]]:
        """Matching ids per event, in chunks (bulk inputs use every core)."""
        workers = os.cpu_count() or 1
        for start in range(0, len(events), CHUNK):
            chunk = events[start : start + CHUNK]
            if rule_ids:
                results = [
                    evaluator.evaluate(
                        e, all_rules=options["all_rules"], rule_ids=rule_ids, explain=False
                    ).matched_ids
                    for e in chunk
                ]
            else:
                results = evaluator.match_stream(
                    chunk, all_rules=options["all_rules"], workers=workers
                )
            yield start, results

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        events: list[Event] = []
        for path in options["paths"]:
            events.extend(_read_or_fail(path))
        evaluator = catalog_evaluator()
        rule_ids = options["rule"] or None
        unknown = [r for r in rule_ids or [] if evaluator.rule(r) is None]
        if unknown:
            raise CommandError(f"unknown rule id(s): {', '.join(unknown)}", returncode=2)
        matches = 0
        bar = progress_bar(
            total=len(events), unit="event", hidden=options["no_progress"] or len(events) < 200
        )
        meta = CommandMeta(evaluator)  # meta filters and correlations (issue 16)
        for start, ids_per_event in self._match(events, evaluator, options, rule_ids):
            for offset, ids in enumerate(ids_per_event):
                kept = meta.keep(events[start + offset], ids)
                for rule_id in ids:
                    matches += 1
                    rule = evaluator.rule(rule_id)
                    line = {
                        "event": start + offset,
                        "rule_id": rule_id,
                        "title": rule.title if rule else "",
                        "level": rule.level if rule else "",
                    }
                    if rule_id not in kept:
                        line["suppressed_by"] = meta.suppressed_by(events[start + offset], rule_id)
                    self.stdout.write(json.dumps(line))
            bar.update(len(ids_per_event))
        bar.close()
        for correlation in meta.correlate(events, options["timestamp_field"]):
            self.stdout.write(json.dumps({"correlation": correlation}))
        rules = len(rule_ids) if rule_ids else len(evaluator)
        seconds = time.perf_counter() - started
        self.stderr.write(
            f"{len(events)} events ({_shapes(events)}), {rules} rules, {matches} matches, "
            f"{seconds:.2f} s"
        )


CHUNK = 5000


def _shapes(events: list[Event]) -> str:
    """``read as Windows event XML`` (the input shapes, rules.shapes): detect mode says so."""
    counts = Counter(e.kind for e in events)
    names = [SHAPE_LABELS.get(kind, kind) for kind, _ in counts.most_common()]
    return "read as " + (", ".join(names) if names else "nothing")


def _read(path: str) -> list[Event]:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise EventInputError(f"input is over {MAX_FILE_BYTES:,} bytes, the limit")
        return parse_events(data)
    return load_events_file(path)


def _read_or_fail(path: str) -> list[Event]:
    """The file's events, or the one-line error (``error: PATH: reason``) and exit status 2."""
    try:
        return _read(path)
    except EventInputError as exc:
        reason = str(exc)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except (ValueError, UnicodeError, RecursionError, MemoryError) as exc:
        # Anything else the decoders raise on hostile input is still unreadable input.
        reason = f"unreadable input ({type(exc).__name__}: {str(exc)[:200]})"
    raise CommandError(f"{path}: {reason}", returncode=2)
