#!/usr/bin/env python
"""Benchmark the correlation stage (after single-event matching), standalone: no Django.

100,000 timestamped events (ISO 8601 ``@timestamp``, one per 50 ms, 500 users, 50 hosts),
each already matched by one or two of 10 rules, go through 20 correlation rules of every
type (with and without group-by, one chained) via :func:`rules.correlate.correlate`, which
reads and parses each event's timestamp, sorts, and runs the engine.

Printed: matched events/s (target >= 50,000) by CPU time of the process (wall time too: on a
shared machine it mostly measures the other processes), the ratio to the target and to a
baseline measured in the same run (the same loop reading each event's timestamp only),
the matches found (the setup's garbage is collected before each timed run), and the peak
memory of the stage (tracemalloc) against the memory of the input events themselves:
bounded memory means the stage's peak stays a small fraction of it.

Usage::

    python bench/bench_correlation.py [--events 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rules.correlate import (  # noqa: E402
    CorrelationRule,
    correlate,
    event_time,
    parse_correlation,
    resolve_references,
)
from rules.events import Event  # noqa: E402

TARGET_EVENTS_PER_SECOND = 50_000
RULES = [f"rule-{i}" for i in range(10)]


def _uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _correlation(n: int, kind: str, refs: list[str], condition: str, group: str, span: str):
    return {
        "title": f"bench {n} {kind}",
        "id": _uid(f"bench-{n}"),
        "name": f"bench_{n}",
        "correlation": {
            "type": kind,
            "rules": refs,
            **({"group-by": [g for g in group.split(",") if g]} if group else {}),
            "timespan": span,
            **({"condition": _condition(condition)} if condition else {}),
        },
    }


def _condition(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, value = part.split("=")
        out[key] = value if key == "field" else int(value)
    return out


def correlations() -> list[CorrelationRule]:
    specs = [
        ("event_count", [RULES[0]], "gte=20", "User", "5m"),
        ("event_count", [RULES[1]], "gte=50", "Host", "1m"),
        ("event_count", [RULES[2], RULES[3]], "gte=100", "", "30s"),
        ("event_count", [RULES[4]], "lt=3", "User", "10m"),
        ("event_count", [RULES[5]], "gt=5,lte=30", "Host", "2m"),
        ("value_count", [RULES[0]], "field=Host,gte=5", "User", "10m"),
        ("value_count", [RULES[6]], "field=User,gte=30", "Host", "5m"),
        ("value_count", [RULES[7]], "field=Image,lt=2", "User", "1m"),
        ("temporal", [RULES[1], RULES[2]], "", "User", "1m"),
        ("temporal", [RULES[3], RULES[4], RULES[5]], "", "Host", "2m"),
        ("temporal", [RULES[6], RULES[8]], "", "User,Host", "10m"),
        ("temporal_ordered", [RULES[7], RULES[8]], "", "User", "5m"),
        ("temporal_ordered", [RULES[0], RULES[1], RULES[9]], "", "Host", "1m"),
        ("value_sum", [RULES[2]], "field=Bytes,gte=100000", "Host", "5m"),
        ("value_sum", [RULES[9]], "field=Bytes,gt=50000", "User", "1h"),
        ("value_avg", [RULES[3]], "field=Bytes,gte=900", "Host", "5m"),
        ("value_avg", [RULES[8]], "field=Bytes,lt=100", "User", "10m"),
        ("value_percentile", [RULES[4]], "field=Bytes,percentile=95,gte=990", "Host", "5m"),
        ("value_median", [RULES[5]], "field=Bytes,gte=500", "", "1m"),
    ]
    docs = [_correlation(n, *spec) for n, spec in enumerate(specs)]
    # The 20th: chained on the first (many events per user, then rule-9 by the same user).
    docs.append(_correlation(19, "temporal_ordered", ["bench_0", RULES[9]], "", "User", "10m"))
    names = {d["name"]: d["id"] for d in docs}
    out = []
    for doc in docs:
        rule = parse_correlation(doc)
        out.append(resolve_references(rule, lambda ref: names.get(ref, ref)))
    return out


def events(count: int) -> tuple[list[Event], list[list[str]]]:
    start = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    out: list[Event] = []
    matched: list[list[str]] = []
    for i in range(count):
        moment = start + datetime.timedelta(milliseconds=50 * i)
        fields = {
            "@timestamp": moment.isoformat().replace("+00:00", "Z"),
            "User": f"user{(i * 7) % 500}",
            "Host": f"host{(i * 13) % 50}",
            "Image": f"C:\\tools\\t{i % 17}.exe",
            "Bytes": (i * 37) % 1000,
        }
        out.append(Event(fields, index=i))
        ids = [RULES[i % 10]]
        if i % 3 == 0:
            ids.append(RULES[(i // 3) % 10])
        matched.append(sorted(set(ids)))
    return out, matched


def baseline(evs: list[Event]) -> tuple[float, float]:
    """Wall and CPU seconds of reading every event's timestamp and nothing else."""
    wall, cpu = time.perf_counter(), time.process_time()
    for event in evs:
        event_time(event)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rules = correlations()
    tracemalloc.start()
    evs, matched = events(args.events)
    input_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    times: list[float] = []
    cpu_times: list[float] = []
    base: list[float] = []
    result = None
    for _ in range(args.repeat):
        fresh = [Event(e.fields, index=e.index) for e in evs]  # no lookup caches carried over
        base.append(baseline([Event(e.fields) for e in evs])[1])
        # The setup's garbage (the fresh events) is collected before the clock starts, so a
        # full collection it made due is not charged to the stage.
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        result = correlate(rules, fresh, matched)
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
    assert result is not None
    seconds = statistics.median(times)
    cpu_seconds = statistics.median(cpu_times)
    # CPU time: on a shared machine wall time mostly measures the other processes.
    rate = args.events / cpu_seconds
    base_rate = args.events / statistics.median(base)
    fresh = [Event(e.fields, index=e.index) for e in evs]
    tracemalloc.start()
    correlate(rules, fresh, matched)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    by_type: dict[str, int] = {}
    for match in result.matches:
        by_type[match.type] = by_type.get(match.type, 0) + 1
    print(f"correlation rules: {len(rules)}; events: {args.events:,} (all matched)")
    print(
        f"correlation stage: {cpu_seconds:.3f} s CPU ({seconds:.3f} s wall), median of "
        f"{args.repeat} -> {rate:,.0f} events/s (CPU; {args.events / seconds:,.0f} wall)"
    )
    print(
        f"target {TARGET_EVENTS_PER_SECOND:,} events/s: ratio {rate / TARGET_EVENTS_PER_SECOND:.2f}"
    )
    print(
        f"baseline (timestamp read only): {base_rate:,.0f} events/s; "
        f"stage/baseline {rate / base_rate:.2f}"
    )
    print(
        f"matches: {len(result.matches):,} "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
    )
    print(f"stats: {result.stats.to_dict()}")
    print(
        f"peak memory of the stage (tracemalloc): {peak / 1e6:.1f} MB; "
        f"input events: {input_bytes / 1e6:.1f} MB; ratio {peak / max(input_bytes, 1):.2f}"
    )


if __name__ == "__main__":
    main()
