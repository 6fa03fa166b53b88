#!/usr/bin/env python
"""Benchmark what input-shape detection (rules.shapes) adds to a sandbox request.

A sandbox request reads its input and evaluates each event against the catalog (explained,
with near misses, as the page does). This measures, interleaved in the same run, the median
of that request

* with shape detection: ``rules.events.read_events`` (detects JSON / XML / scriptblock and
  the JSON shape, normalises), and
* the baseline before shapes: JSON objects checked and evtx_dump records flattened,

for one Sysmon event in evtx_dump JSON and a PowerShell scriptblock, and the reading alone
(many more times, so its difference is not lost in the noise of a busy machine). The ratio
printed is (request before + what detection adds to the reading) / request before (target:
under 1.05); the plain ratio of the two request medians is printed beside it. The same event
as Windows event XML and as Winlogbeat JSON has no baseline (it could not be read before):
their medians are printed too.

Usage::

    python bench/bench_shapes.py [--corpus ../shared/corpus/sigmahq] [--repeat 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_sandbox import load_corpus, scriptblock  # noqa: E402
from rules.evaluate import Evaluator  # noqa: E402
from rules.events import (  # noqa: E402
    Event,
    _looks_like_json,
    flatten_evtx,
    is_evtx_shape,
    read_events,
    scriptblock_event,
)
from rules.text_input import lone_surrogate_error  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "shapes"
TARGET_RATIO = 1.05


def _baseline_events(text: str) -> list[Event]:
    """How the sandbox read input before shapes (rules.events before rules.shapes): JSON
    objects checked for lone surrogates, evtx_dump records flattened, else a scriptblock."""
    if not _looks_like_json(text):
        if lone_surrogate_error(text) is not None:
            raise ValueError("lone surrogate")
        return [scriptblock_event(text)]
    value = json.loads(text)
    items = value if isinstance(value, list) else [value]
    events = []
    for item in items:
        if lone_surrogate_error(item) is not None:
            raise ValueError("lone surrogate")
        fields = flatten_evtx(item) if is_evtx_shape(item) else dict(item)
        events.append(Event(fields, index=len(events)))
    return events


def _request(evaluator: Evaluator, read: Callable[[str], list[Event]], text: str) -> None:
    for event in read(text):
        evaluator.evaluate(event, explain=True, near_misses=True)


def interleaved(
    fns: dict[str, Callable[[], Any]], repeat: int, collect_every: int = 1
) -> dict[str, float]:
    """Median milliseconds of each function, run in turn so load changes hit them alike."""
    for fn in fns.values():
        fn()  # warm-up: scopes, automata, caches built on first use
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for round_ in range(repeat):
        # Each round in another order, with the collector paused (and run between rounds):
        # no case pays for the garbage of the one before it.
        if round_ % collect_every == 0:
            gc.collect()  # a full collection over the compiled corpus takes a while
        gc.disable()
        try:
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                start = time.perf_counter()
                fns[name]()
                times[name].append((time.perf_counter() - start) * 1000)
        finally:
            gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "sigmahq"
    )
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    evaluator = Evaluator(load_corpus(args.corpus))
    print(f"{len(evaluator):,} rules loaded in {time.perf_counter() - started:.1f} s")
    sysmon = json.dumps(json.loads((FIXTURES / "evtx_dump.jsonl").read_text().splitlines()[0]))
    xml = (FIXTURES / "wevtutil.xml").read_text().split("</Event>")[0] + "</Event>"
    beat = (FIXTURES / "winlogbeat.ndjson").read_text().splitlines()[0]
    script = scriptblock()

    def with_shapes(text: str) -> Callable[[], None]:
        return lambda: _request(evaluator, lambda t: read_events(t).events, text)

    def before(text: str) -> Callable[[], None]:
        return lambda: _request(evaluator, _baseline_events, text)

    medians = interleaved(
        {
            "json, shapes": with_shapes(sysmon),
            "json, baseline": before(sysmon),
            "scriptblock, shapes": with_shapes(script),
            "scriptblock, baseline": before(script),
            "xml, shapes": with_shapes(xml),
            "winlogbeat, shapes": with_shapes(beat),
        },
        args.repeat,
    )
    # The reading alone, many times: what detection adds to a request in absolute terms,
    # which a busy machine's noise on the whole request would hide.
    reads = interleaved(
        {
            "json, shapes": lambda: read_events(sysmon),
            "json, baseline": lambda: _baseline_events(sysmon),
            "scriptblock, shapes": lambda: read_events(script),
            "scriptblock, baseline": lambda: _baseline_events(script),
        },
        args.repeat * 20,
        collect_every=100,
    )
    worst = 0.0
    for kind in ("json", "scriptblock"):
        shaped, before_ms = medians[f"{kind}, shapes"], medians[f"{kind}, baseline"]
        added = reads[f"{kind}, shapes"] - reads[f"{kind}, baseline"]
        ratio = (before_ms + added) / before_ms
        worst = max(worst, ratio)
        print(
            f"{kind:12} request median {shaped:.3f} ms with shape detection, {before_ms:.3f} ms "
            f"before (ratio {shaped / before_ms:.3f}); reading alone "
            f"{reads[f'{kind}, shapes'] * 1000:.1f} us vs {reads[f'{kind}, baseline'] * 1000:.1f} "
            f"us: detection adds {added * 1000:+.1f} us, ratio {ratio:.4f}"
        )
    for kind in ("xml", "winlogbeat"):
        print(f"{kind:12} median {medians[f'{kind}, shapes']:.3f} ms (no baseline: new shape)")
    verdict = "meets" if worst < TARGET_RATIO else "misses"
    print(f"worst ratio (request + added reading) {worst:.4f}: {verdict} < {TARGET_RATIO:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
