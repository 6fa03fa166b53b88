"""``manage.py evaluate PATH...``: evaluate event files against the catalog, print matches.

One JSON object per line on standard output for each match (``event`` is the 0-based index
over all inputs, in order); a summary on standard error; exit status 2 for unreadable input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.management.commands._cli import add_paths_argument, progress_bar
from catalog.sandbox import catalog_evaluator
from rules.events import Event, EventInputError, load_events_file, parse_events


class Command(BaseCommand):
    help = (
        "Evaluate events (JSON, JSON lines, evtx_dump JSON, .evtx, or '-' for stdin) against "
        "the catalog's rules; print one JSON line per match."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_paths_argument(parser)
        parser.add_argument("--all-rules", action="store_true", help="ignore logsource scoping")
        parser.add_argument(
            "--rule", action="append", default=[], metavar="ID", help="only this rule (repeat)"
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
            try:
                batch = _read(path)
            except EventInputError as exc:
                self.stderr.write(f"error: {path}: {exc}")
                sys.exit(2)
            except OSError as exc:
                self.stderr.write(f"error: {path}: {exc.strerror or exc}")
                sys.exit(2)
            events.extend(batch)
        evaluator = catalog_evaluator()
        rule_ids = options["rule"] or None
        unknown = [r for r in rule_ids or [] if evaluator.rule(r) is None]
        if unknown:
            self.stderr.write(f"error: unknown rule id(s): {', '.join(unknown)}")
            sys.exit(2)
        matches = 0
        bar = progress_bar(
            total=len(events), unit="event", hidden=options["no_progress"] or len(events) < 200
        )
        for start, ids_per_event in self._match(events, evaluator, options, rule_ids):
            for offset, ids in enumerate(ids_per_event):
                for rule_id in ids:
                    matches += 1
                    rule = evaluator.rule(rule_id)
                    self.stdout.write(
                        json.dumps(
                            {
                                "event": start + offset,
                                "rule_id": rule_id,
                                "title": rule.title if rule else "",
                                "level": rule.level if rule else "",
                            }
                        )
                    )
            bar.update(len(ids_per_event))
        bar.close()
        rules = len(rule_ids) if rule_ids else len(evaluator)
        seconds = time.perf_counter() - started
        self.stderr.write(
            f"{len(events)} events, {rules} rules, {matches} matches, {seconds:.2f} s"
        )


CHUNK = 5000


def _read(path: str) -> list[Event]:
    if path == "-":
        return parse_events(sys.stdin.buffer.read())
    return load_events_file(path)
