#!/usr/bin/env python
"""Benchmark a background sandbox job's correlation stage (catalog.jobs.correlations).

Writes a job folder's ``matches.jsonl`` as the matching pass does (one line per matched
event, each with a ~400-byte command line, in file order), with the events and the 20
correlation rules of ``bench/bench_correlation.py``, then runs :meth:`JobMeta.correlate`
over it: one sequential read for the times and offsets, the sort, the events read back by
offset in timestamp order, correlation matches streamed to ``correlations.jsonl``.

Printed: matched events/s (CPU and wall), the peak memory of the stage (tracemalloc) against
the size of the matches file (bounded memory: the peak grows by tens of bytes per matched
event, never with the events' size), and a baseline of the same run (one sequential read
and JSON decoding of the same file) with the stage's ratio to it. No database is used.

Usage::

    python bench/bench_job_correlation.py [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")

import django  # noqa: E402

django.setup()

import bench_correlation  # noqa: E402

from catalog.correlations import CatalogMeta  # noqa: E402
from catalog.jobs.correlations import CORRELATIONS_FILE, JobMeta  # noqa: E402

PADDING = "powershell.exe -NoProfile -ExecutionPolicy Bypass " + "x" * 350


def write_matches(folder: Path, count: int) -> int:
    events, matched = bench_correlation.events(count)
    with (folder / "matches.jsonl").open("wb") as out:
        for event, ids in zip(events, matched, strict=True):
            fields = {**event.fields, "CommandLine": PADDING}
            line = {"i": event.index, "t": None, "r": ids, "e": fields}
            out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    return (folder / "matches.jsonl").stat().st_size


def baseline(folder: Path) -> float:
    """CPU seconds of reading and decoding every line once, and nothing else."""
    cpu = time.process_time()
    with (folder / "matches.jsonl").open("rb") as handle:
        for line in handle:
            json.loads(line)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    meta = CatalogMeta(correlations=bench_correlation.correlations())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        size = write_matches(folder, args.events)
        base = baseline(folder)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = JobMeta(None, meta).correlate(folder)  # type: ignore[arg-type]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        tracemalloc.start()
        JobMeta(None, meta).correlate(folder)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        stored = (folder / CORRELATIONS_FILE).stat().st_size
    rate = args.events / cpu
    print(f"matched events: {args.events:,} in a {size / 1e6:.0f} MB matches file")
    print(
        f"job correlation stage: {cpu:.2f} s CPU ({wall:.2f} s wall) -> {rate:,.0f} events/s "
        f"(CPU; {args.events / wall:,.0f} wall)"
    )
    print(
        f"baseline (read + decode each line once): {args.events / base:,.0f} events/s; "
        f"stage/baseline {rate / (args.events / base):.2f}"
    )
    print(f"correlation matches: {summary['count']:,} ({stored / 1e6:.1f} MB stored)")
    print(
        f"peak memory (tracemalloc): {peak / 1e6:.1f} MB; matches file {size / 1e6:.0f} MB; "
        f"{peak / args.events:.0f} bytes per matched event"
    )


if __name__ == "__main__":
    main()
