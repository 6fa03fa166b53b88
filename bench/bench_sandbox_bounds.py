#!/usr/bin/env python
"""Finding 2 replayed on the full corpus: one event holding many catalog literals.

Builds an event whose fields hold the corpus' indicator values (about 430 KB), evaluates it
with ``all_rules`` through the sandbox service (``catalog.sandbox.run_sandbox``, the API's
caps) and renders the page's rows, then prints the JSON and HTML sizes, the seconds, what was
cut, and the ratio against the issue's measurement (375 MB of JSON from 431 KB). No database:
the evaluator is built from the corpus files.

Usage::

    python bench/bench_sandbox_bounds.py [--corpus ../shared/corpus/sigmahq] [--size 430000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")

import django  # noqa: E402

django.setup()

from django.template.loader import render_to_string  # noqa: E402

from catalog.sandbox import API_LIMITS, PAGE_LIMITS, run_sandbox  # noqa: E402
from catalog.sandbox_views import _result_rows  # noqa: E402
from rules.errors import RuleError  # noqa: E402
from rules.evaluate import Evaluator  # noqa: E402
from rules.events import event_from_mapping  # noqa: E402
from rules.parse import parse_rule  # noqa: E402

ISSUE_JSON_BYTES = 375 * 1024 * 1024
TARGET_BYTES = 4 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "sigmahq"))
    parser.add_argument("--size", type=int, default=430_000)
    args = parser.parse_args()
    parsed = []
    for path in sorted((Path(args.corpus) / "rules").rglob("*.yml")):
        try:
            parsed.append(parse_rule(path.read_bytes(), str(path)))
        except RuleError:
            continue
    evaluator = Evaluator(parsed)
    values = list(dict.fromkeys(
        ind.value for rule in parsed for ind in rule.indicators
        if isinstance(ind.value, str) and 3 <= len(ind.value) < 80
    ))  # fmt: skip
    text = " ".join(values)
    while len(text) < args.size:
        text += " " + text
    text = text[: args.size]
    fields = {"CommandLine": text, "ScriptBlockText": text, "Image": text[:20_000]}
    print(f"{len(parsed)} rules, {len(values)} distinct literals, event {len(text):,} chars")
    for name, limits in (("API", API_LIMITS), ("page", PAGE_LIMITS)):
        started = time.perf_counter()
        run = run_sandbox([event_from_mapping(fields)], all_rules=True, evaluator=evaluator,
                          limits=limits)  # fmt: skip
        if name == "API":
            size = len(json.dumps(run.to_dict()).encode())
        else:
            html = render_to_string(
                "sandbox/sandbox.html", {"run": run, "rows": _result_rows(run), "text": ""}
            )
            size = len(html.encode())
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        met = "met" if size < TARGET_BYTES else "MISSED"
        print(f"{name}: {run.match_count} matches, {size:,} bytes ({met}: < {TARGET_BYTES:,}),"
              f" {seconds:.2f} s, process peak RSS {peak_mb:.0f} MB, cut {run.cut}")  # fmt: skip
        if name == "API":
            print(f"  vs the issue's 375 MB: {ISSUE_JSON_BYTES / size:,.0f}x smaller")


if __name__ == "__main__":
    main()
