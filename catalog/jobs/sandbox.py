"""A large ``.evtx`` / ``.jsonl`` / ``.xml`` sandbox upload evaluated as a job, and its result
files.

The file is streamed (one line, one EVTX record or one ``<Event>`` at a time, never read whole;
its content decides: the EVTX signature, event XML, else JSON lines) through the
engine's bulk matcher (:meth:`rules.evaluate.Evaluator.match_stream`) in batches. Only the
events that matched are kept, compactly, in the job's folder:

- ``matches.jsonl``: one line per matched event ``{"i": index, "t": epoch seconds | null,
  "r": [rule ids], "e": {event fields}}``; ``offsets.bin``: each line's byte offset (int64),
  so a page of matches is read directly;
- ``rules.json``: title, level and match count of every rule that matched;
- the job's ``result``: counts by level, the top rules, a timeline.

Explanations are computed only for the page being viewed (:func:`explain_entries`).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog.jobs.correlations import JobMeta
from catalog.jobs.models import Job
from catalog.jobs.runner import JobFailed
from catalog.jobs.services import JobProgress, job_dir
from catalog.sandbox import catalog_evaluator
from rules.correlate.timestamps import event_time as read_time
from rules.errors import EmptyInputError, EventInputError
from rules.evaluate import Evaluator, EventResult
from rules.events import EVTX_CHUNK_SIZE, EVTX_HEADER_SIZE, EVTX_MAGIC, Event, event_from_mapping
from rules.shapes import iter_xml_events, looks_like_xml_bytes

JOB_SUFFIXES = (".evtx", ".jsonl", ".ndjson", ".xml")
BATCH = 2000
"""Events matched per call of the bulk matcher (and between progress steps)."""
MAX_LINE_BYTES = 2 * 1024 * 1024
"""A JSON line (or an XML event, in characters) longer than this is refused (the synchronous
sandbox's whole-body limit)."""
TOP_RULES = 50
TIMELINE_BUCKETS = 48
MAX_EPOCH = 253_402_300_799
"""9999-12-31T23:59:59Z: a later "time" is not one (and would not fit the timeline's array)."""


def is_job_upload(name: str | None) -> bool:
    return (name or "").lower().endswith(JOB_SUFFIXES)


def match_processes() -> int:
    """Processes the bulk matcher may fork per job (``SANDBOX_JOB_PROCESSES``, default 1: one
    worker process is one core; run more workers to use more). Only the main thread forks."""
    if threading.current_thread() is not threading.main_thread():
        return 1
    return max(1, int(os.environ.get("SANDBOX_JOB_PROCESSES", "1")))


# -- reading the upload --------------------------------------------------------------------


class _Reader:
    """Events from the file, one at a time, with ``done``/``total`` for the progress bar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(EVTX_HEADER_SIZE)
        self.evtx = head.startswith(EVTX_MAGIC)
        self.xml = not self.evtx and looks_like_xml_bytes(head)
        self.done = 0
        self.total = self.size
        if self.evtx:
            _check_evtx(head, self.size)
            self.total = max(1, int.from_bytes(head[24:32], "little") - 1)

    def events(self) -> Iterator[Event]:
        if self.evtx:
            return self._evtx()
        return self._xml() if self.xml else self._jsonl()

    def _xml(self) -> Iterator[Event]:
        """Windows event XML, one ``<Event>`` at a time (:func:`rules.shapes.iter_xml_events`:
        DTDs and entity declarations refused, memory bounded by the largest event). A bad
        event fails the job, as a bad JSON line does."""
        with self.path.open("rb") as handle:
            try:
                for event in iter_xml_events(handle, max_event_chars=MAX_LINE_BYTES):
                    self.done = handle.tell()
                    yield event
            except EmptyInputError:
                raise JobFailed("the file holds no events (no <Event> element)") from None
            except EventInputError as exc:
                raise JobFailed(_xml_failure(exc)) from None

    def _jsonl(self) -> Iterator[Event]:
        index = 0
        with self.path.open("rb") as handle:
            for number, line in enumerate(
                iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1
            ):
                self.done += len(line)
                if len(line) > MAX_LINE_BYTES:
                    raise JobFailed(f"line {number:,} is longer than {MAX_LINE_BYTES:,} bytes")
                if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line.strip():
                    continue
                yield event_from_mapping(_json_object(line, number), index=index, kind="json")
                index += 1

    def _evtx(self) -> Iterator[Event]:
        import evtx

        index = 0
        try:
            for record in evtx.PyEvtxParser(str(self.path)).records_json():
                obj = json.loads(record["data"])
                if not isinstance(obj, dict):
                    raise JobFailed(f"EVTX record {index:,} is not an object")
                self.done = index + 1
                self.total = max(self.total, self.done)
                yield event_from_mapping(obj, index=index, kind="evtx")
                index += 1
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise JobFailed(f"corrupt EVTX data at record {index:,}: {exc}") from None


def _xml_failure(exc: EventInputError) -> str:
    """``invalid XML: mismatched tag (event 3, line 40, column 2)``: the reason, the index of
    the event being read (as many were read before it) and where in the file."""
    where = [
        f"{label} {value:,}"
        for label, value in (
            ("event", exc.record), ("line", exc.line), ("column", exc.column),
            ("byte offset", exc.byte_offset),
        )
        if value is not None
    ]  # fmt: skip
    return f"{exc.reason} ({', '.join(where)})" if where else exc.reason


def _check_evtx(head: bytes, size: int) -> None:
    if len(head) < EVTX_HEADER_SIZE:
        raise JobFailed("truncated EVTX file header")
    if (size - EVTX_HEADER_SIZE) % EVTX_CHUNK_SIZE:
        raise JobFailed("truncated EVTX file: the last chunk is incomplete")


def _json_object(line: bytes, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise JobFailed(f"line {number:,} is not UTF-8 (byte {exc.start + 1})") from None
    except RecursionError:
        raise JobFailed(f"line {number:,}: JSON nested too deeply") from None
    except ValueError as exc:
        raise JobFailed(f"line {number:,} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise JobFailed(f"line {number:,} is a JSON {type(obj).__name__}, not an object")
    return obj


# -- running ---------------------------------------------------------------------------------


@dataclass
class _Tally:
    events: int = 0
    matched_events: int = 0
    matches: int = 0
    untimed: int = 0
    meta: Any = None  # catalog.jobs.correlations.JobMeta: meta filters, then correlations
    timestamp_field: str | None = None  # the job's option: the timeline reads it too

    def __post_init__(self) -> None:
        self.by_rule: Counter[str] = Counter()
        self.times = array("q")


def run_sandbox_file(job: Job, progress: JobProgress) -> tuple[str, str, dict[str, Any]]:
    """Evaluate the uploaded file against every rule (or the scoped ones) and keep the
    matches; the bulk matcher answers yes/no, explanations wait for the result page."""
    reader = _Reader(Path(job.upload_path))
    evaluator = catalog_evaluator()
    # The compiled catalog is about a million long-lived objects: without freezing them every
    # full collection walks them all while the matcher allocates per event (about 15% of the
    # run, measured with bench/bench_jobs.py). Frozen objects are simply never scanned.
    gc.freeze()
    # Timed from here: compiling the catalog is the worker's start-up (cached per process),
    # not the file's evaluation.
    started = time.perf_counter()
    cpu_started = time.process_time()  # on a shared machine, the figure load does not skew
    all_rules = bool(job.options.get("all_rules"))
    processes = match_processes()
    folder = job_dir(job)
    tally = _Tally(meta=JobMeta(evaluator), timestamp_field=_timestamp_field(job))
    offsets = array("q")
    with (folder / "matches.jsonl").open("wb") as out:
        batch: list[Event] = []
        for event in reader.events():
            batch.append(event)
            if len(batch) >= BATCH:
                _match_batch(evaluator, batch, all_rules, processes, out, offsets, tally)
                batch = []
                progress.step(reader.done, reader.total, f"{tally.events:,} events evaluated")
        _match_batch(evaluator, batch, all_rules, processes, out, offsets, tally)
    if tally.events == 0:
        raise JobFailed("the file holds no events")
    with (folder / "offsets.bin").open("wb") as handle:
        offsets.tofile(handle)
    rules = {
        rule_id: _rule_info(evaluator, rule_id, count) for rule_id, count in tally.by_rule.items()
    }
    (folder / "rules.json").write_text(json.dumps(rules))
    seconds = time.perf_counter() - started
    result = _summary(tally, rules, len(evaluator), all_rules, seconds)
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 3)
    # Filters were applied while matching; correlations run over the kept matches now.
    result["suppressed"] = tally.meta.suppressed_summary()
    result["correlations"] = tally.meta.correlate(
        folder,
        lambda done, total: progress.step(done, total, f"correlating {total:,} matches"),
        timestamp_field=_timestamp_field(job),
    )
    message = f"{tally.events:,} events, {tally.matches:,} matches in {seconds:.1f} s"
    return Job.Status.SUCCEEDED, message, result


def _timestamp_field(job: Job) -> str | None:
    """The field the job's correlations order events by (None: detected per event)."""
    value = job.options.get("timestamp_field")
    return value if isinstance(value, str) and value else None


def _match_batch(
    evaluator: Evaluator,
    batch: list[Event],
    all_rules: bool,
    processes: int,
    out: Any,
    offsets: array[int],
    tally: _Tally,
) -> None:
    if not batch:
        return
    tally.events += len(batch)
    for event, ids in zip(
        batch, evaluator.match_stream(batch, all_rules=all_rules, workers=processes), strict=True
    ):
        if not ids:
            continue
        ids = tally.meta.keep(event, ids) if tally.meta is not None else ids
        if not ids:
            continue  # every match suppressed by a meta filter (counted in tally.meta)
        when = event_time(event, tally.timestamp_field)
        if when is None:
            tally.untimed += 1
        else:
            tally.times.append(when)
        tally.matched_events += 1
        tally.matches += len(ids)
        tally.by_rule.update(ids)
        offsets.append(out.tell())
        line = {"i": event.index, "t": when, "r": ids, "e": event.fields}
        out.write(json.dumps(line, separators=(",", ":"), default=str).encode() + b"\n")


def _rule_info(evaluator: Evaluator, rule_id: str, count: int) -> dict[str, Any]:
    rule = evaluator.rule(rule_id)
    return {
        "title": rule.title if rule else rule_id,
        "level": (rule.level if rule else "") or "unknown",
        "count": count,
    }


def _summary(
    tally: _Tally, rules: dict[str, dict[str, Any]], rule_count: int, all_rules: bool,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    by_level: Counter[str] = Counter()
    for info in rules.values():
        by_level[info["level"]] += info["count"]
    top = sorted(rules.items(), key=lambda item: (-item[1]["count"], item[0]))[:TOP_RULES]
    return {
        "events": tally.events,
        "matched_events": tally.matched_events,
        "matches": tally.matches,
        "rules": rule_count,
        "rules_matched": len(rules),
        "all_rules": all_rules,
        "by_level": dict(by_level.most_common()),
        "top_rules": [{"rule_id": rule_id, **info} for rule_id, info in top],
        "timeline": _timeline(tally.times),
        "untimed_matches": tally.untimed,
        "seconds": round(seconds, 3),
        "events_per_second": round(tally.events / seconds, 1) if seconds else None,
    }


def _timeline(times: array[int]) -> dict[str, Any] | None:
    """Matched events per time bucket (first to last matched event, in equal buckets)."""
    if not times:
        return None
    first, last = min(times), max(times)
    width = max(1, -(-(last - first + 1) // TIMELINE_BUCKETS))
    counts = [0] * (((last - first) // width) + 1)
    for value in times:
        counts[(value - first) // width] += 1
    return {"start": first, "bucket_seconds": width, "counts": counts}


def event_time(event: Event, field: str | None = None) -> int | None:
    """The event's time as epoch seconds (UTC), read as the correlation stage reads it (the
    job's ``timestamp_field``, else the usual time fields): the timeline and the correlations
    place an event at the same time."""
    found = read_time(event, field)
    return int(found) if found is not None and 0 <= found <= MAX_EPOCH else None


# -- reading the results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchEntry:
    """One matched event read back from ``matches.jsonl``."""

    index: int
    time: int | None
    rule_ids: list[str]
    fields: dict[str, Any]

    @property
    def when(self) -> datetime.datetime | None:
        return (
            None if self.time is None else datetime.datetime.fromtimestamp(self.time, datetime.UTC)
        )


def matched_event_count(job: Job) -> int:
    path = job_dir(job) / "offsets.bin"
    return path.stat().st_size // 8 if path.exists() else 0


def read_entries(job: Job, start: int, count: int) -> list[MatchEntry]:
    """Matched events ``start`` .. ``start + count`` (in file order)."""
    folder = job_dir(job)
    total = matched_event_count(job)
    if start >= total or count <= 0:
        return []
    offsets = array("q")
    with (folder / "offsets.bin").open("rb") as handle:
        handle.seek(start * 8)
        offsets.fromfile(handle, min(count, total - start))
    entries = []
    with (folder / "matches.jsonl").open("rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            entries.append(_entry(handle.readline()))
    return entries


def iter_entries(job: Job) -> Iterator[MatchEntry]:
    path = job_dir(job) / "matches.jsonl"
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            yield _entry(line)


def _entry(line: bytes) -> MatchEntry:
    data = json.loads(line)
    return MatchEntry(data["i"], data["t"], data["r"], data["e"])


def rule_table(job: Job) -> dict[str, dict[str, Any]]:
    path = job_dir(job) / "rules.json"
    return json.loads(path.read_text()) if path.exists() else {}


def explain_entries(job: Job, entries: list[MatchEntry]) -> list[tuple[MatchEntry, EventResult]]:
    """Explain each entry's matches against the current catalog (only its matched rules)."""
    evaluator = catalog_evaluator()
    all_rules = bool(job.result.get("all_rules"))
    return [
        (
            entry,
            evaluator.evaluate(
                Event(entry.fields, index=entry.index),
                all_rules=all_rules,
                rule_ids=entry.rule_ids,
                near_misses=False,
            ),
        )
        for entry in entries
    ]
