"""``manage.py evaluate PATH...``: evaluate event files against the catalog, print matches.

One JSON object per line on standard output for each match (``event`` is the 0-based index
over all inputs, in order); a summary on standard error; exit status 2 for unreadable input.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from catalog.sandbox import catalog_evaluator
from rules.events import Event, EventInputError, load_events_file, parse_events


class Command(BaseCommand):
    help = (
        "Evaluate events (JSON, JSON lines, evtx_dump JSON, .evtx, or '-' for stdin) against "
        "the catalog's rules; print one JSON line per match."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--all-rules", action="store_true", help="ignore logsource scoping"
        )
        parser.add_argument(
            "--rule", action="append", default=[], metavar="ID", help="only this rule (repeat)"
        )
        parser.add_argument("--no-progress", action="store_true")

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
        out = self.stdout
        bar = tqdm(
            events, unit="event", file=sys.stderr, leave=False,
            disable=options["no_progress"] or len(events) < 200 or None,
        )
        for index, event in enumerate(bar):
            result = evaluator.evaluate(
                event, all_rules=options["all_rules"], rule_ids=rule_ids, explain=False
            )
            for match in result.matches:
                matches += 1
                out.write(
                    json.dumps(
                        {"event": index, "rule_id": match.rule_id, "title": match.title,
                         "level": match.level}
                    )
                )
        bar.close()
        rules = len(rule_ids) if rule_ids else len(evaluator)
        seconds = time.perf_counter() - started
        self.stderr.write(
            f"{len(events)} events, {rules} rules, {matches} matches, {seconds:.2f} s"
        )


def _read(path: str) -> list[Event]:
    if path == "-":
        return parse_events(sys.stdin.buffer.read())
    return load_events_file(path)
