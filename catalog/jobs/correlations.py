"""Meta filters and correlations for a background sandbox job (issue 16).

While the file streams through the bulk matcher, :meth:`JobMeta.keep` drops the matches a meta
filter suppresses (counted per filter for the job's result, never written as matches). After
the matching pass, :meth:`JobMeta.correlate` runs the correlation stage over the kept matches
in ``matches.jsonl``, in timestamp order, without holding the events:

1. one sequential read keeps, per matched event some correlation counts, its time (epoch
   float) and its line's offset: 16 bytes an event;
2. a stable sort of those times (equal times keep file order);
3. each line is read back by its offset, in that order, and fed to the engine, whose
   matches go straight to ``correlations.jsonl`` (one ``CorrelationMatch.to_dict()`` a line,
   at most :data:`MAX_STORED` lines); memory is bounded by the engine's windows.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from catalog.correlations import CatalogMeta, catalog_meta, correlation_notes
from rules.correlate import CorrelationEngine, event_time
from rules.correlate.model import CorrelationMatch
from rules.evaluate import Evaluator
from rules.events import Event

__all__ = ["CORRELATIONS_FILE", "JobMeta", "export_row", "iter_correlations"]

CORRELATIONS_FILE = "correlations.jsonl"
MAX_STORED = 10_000
"""Correlation matches written per job; past it they are counted (``dropped_matches``)."""
PROGRESS_EVERY = 5000
SHOWN_SUPPRESSED_EVENTS = 20
"""Event indices listed per filter in the result (the count is complete)."""


class JobMeta:
    """The catalog's filters and correlations, applied to one job's matches."""

    def __init__(self, evaluator: Evaluator, meta: CatalogMeta | None = None) -> None:
        self.evaluator = evaluator
        self.meta = meta or catalog_meta()
        self.suppressed = 0
        self._by_filter: dict[str, dict[str, Any]] = {}

    @property
    def active(self) -> bool:
        return bool(self.meta.filters) or bool(self.meta.correlations)

    def keep(self, event: Event, rule_ids: list[str]) -> list[str]:
        """The rule ids of ``event``'s matches that no meta filter suppresses."""
        filters = self.meta.filters
        if not filters:
            return rule_ids
        kept = []
        for rule_id in rule_ids:
            rule = self.evaluator.rule(rule_id)
            found = filters.suppressing(rule_id, rule.logsource if rule else ("", "", ""), event)
            if not found:
                kept.append(rule_id)
                continue
            self.suppressed += 1
            for flt in found:
                entry = self._by_filter.setdefault(
                    flt.id, {"id": flt.id, "title": flt.title, "count": 0, "rules": Counter(),
                             "events": []},
                )  # fmt: skip
                entry["count"] += 1
                entry["rules"][rule_id] += 1
                if len(entry["events"]) < SHOWN_SUPPRESSED_EVENTS and (
                    not entry["events"] or entry["events"][-1] != event.index
                ):
                    entry["events"].append(event.index)
        return kept

    def suppressed_summary(self) -> dict[str, Any]:
        filters = sorted(self._by_filter.values(), key=lambda f: (-f["count"], f["id"]))
        return {
            "matches": self.suppressed,
            "filters": [
                {**f, "rules": dict(f["rules"].most_common()),
                 "reason": f"suppressed by filter {f['title'] or f['id']}"}
                for f in filters
            ],
        }  # fmt: skip

    def correlate(
        self,
        folder: Path,
        progress: Callable[[int, int], None] | None = None,
        *,
        timestamp_field: str | None = None,
    ) -> dict[str, Any]:
        """Correlate the kept matches in ``folder/matches.jsonl``; the result's summary.
        ``progress(done, total)`` is called every :data:`PROGRESS_EVERY` events (the job's
        heartbeat and cancel check). Events are ordered by ``timestamp_field`` (None: the
        first usual timestamp field each event has, as in the synchronous sandbox)."""
        correlations = self.meta.correlations
        if not correlations:
            return {"count": 0, "rules": [], "notes": [], "stored": 0,
                    "timestamp_field": timestamp_field}  # fmt: skip
        engine = CorrelationEngine(correlations)
        wanted = engine.rule_ids
        times, offsets, untimed = _timed_offsets(folder / "matches.jsonl", wanted, timestamp_field)
        counts: Counter[str] = Counter()
        titles: dict[str, tuple[str, str]] = {}
        with (folder / CORRELATIONS_FILE).open("w", encoding="utf-8") as out:

            def store(match: CorrelationMatch) -> None:
                counts[match.id] += 1
                titles[match.id] = (match.title, match.type)
                if sum(counts.values()) <= MAX_STORED:
                    out.write(json.dumps(match.to_dict(), default=str) + "\n")
                else:
                    engine.stats.dropped_matches += 1

            engine.on_match = store
            with (folder / "matches.jsonl").open("rb") as lines:
                for done, at in enumerate(sorted(range(len(times)), key=times.__getitem__)):
                    if progress is not None and not done % PROGRESS_EVERY:
                        progress(done, len(times))
                    lines.seek(offsets[at])
                    data = json.loads(lines.readline())
                    event = Event(data["e"], index=data["i"])
                    engine.feed(data["i"], times[at], event, tuple(data["r"]))
            engine.finish()
        notes = correlation_notes(untimed, engine.stats, timestamp_field)
        total = sum(counts.values())
        return {
            "count": total,
            "stored": min(total, MAX_STORED),
            "rules": [
                {"id": cid, "title": titles[cid][0], "type": titles[cid][1], "count": n}
                for cid, n in counts.most_common()
            ],
            "notes": notes,
            "timestamp_field": timestamp_field,
        }


def _timed_offsets(
    path: Path, wanted: frozenset[str], timestamp_field: str | None = None
) -> tuple[array[float], array[int], list[int]]:
    """Per matched event some correlation counts: its time and line offset (file order)."""
    times = array("d")
    offsets = array("q")
    untimed: list[int] = []
    with path.open("rb") as handle:
        offset = 0
        for line in handle:
            data = json.loads(line)
            if not wanted.isdisjoint(data["r"]):
                when = event_time(Event(data["e"]), timestamp_field)
                if when is None:
                    untimed.append(data["i"])
                else:
                    times.append(when)
                    offsets.append(offset)
            offset += len(line)
    return times, offsets, untimed


def iter_correlations(folder: Path) -> Iterator[dict[str, Any]]:
    """The stored correlation matches, as ``to_dict()`` gave them, in the order found."""
    path = folder / CORRELATIONS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def export_row(match: dict[str, Any]) -> dict[str, Any]:
    """A stored correlation match as an export row (beside the single-event matches)."""
    window = match.get("window") or {}
    return {
        "event": " ".join(str(i) for i in match["events"]),
        "time": window.get("start", ""),
        "rule_id": match["id"],
        "title": match["title"],
        "level": match.get("level", ""),
        "kind": "correlation",
        "correlation_type": match["type"],
        "group": json.dumps(match["group"], sort_keys=True, default=str),
        "value": match["value"],
    }
