"""API benchmark: an indicator lookup by identity and a rule detail against a bare DRF view.

The floor is a DRF ``APIView`` defined here, in a throwaway URLconf in front of the site's
URLs, returning a constant (same middleware, authentication and JSON renderer as the API,
no database). Requests go through Django's test Client (full stack, no network), the three
kinds interleaved per round so drift hits all alike; each lookup/detail round uses another
indicator or rule, drawn at random from the catalog. Targets: the lookup under 5x the
floor's median, the rule detail under 10x. The API reuses the catalog fingerprint (its
ETag source) for up to ``FINGERPRINT_TTL`` seconds, so steady-state requests, as measured
here, do not pay for it; ``--cold-fingerprint`` measures with that reuse turned off.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/api_bench \\
        .venv/bin/python bench/bench_api.py [--rounds 300] [--corpus ../shared/corpus/sigmahq]

``bench/corpus_db.py`` creates the database and imports the corpus when needed. Prints the
table; with ``--strict``, exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# bench/ is on sys.path when a benchmark runs as a script.
from corpus_db import DEFAULT_CORPUS, register_urlconf, report_targets, start_site

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/api_bench"
FLOOR_URL = "/bench/floor/"
TARGETS = {"indicator lookup by identity": 5.0, "rule detail": 10.0}


def install_urlconf() -> str:
    """A throwaway URLconf: the bare DRF view in front of the site's own URLs."""
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from catalog.urls import urlpatterns as site

    class FloorView(APIView):
        """The least a DRF endpoint does: authenticate, negotiate, render a constant."""

        permission_classes = [AllowAny]

        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    floor = path(FLOOR_URL.strip("/") + "/", FloorView.as_view())
    return register_urlconf("bench_api_urls", [floor, *site])


def sample_urls(rounds: int, seed: int) -> dict[str, list[str]]:
    """Per endpoint, one URL per round: random indicators (by identity) and rules."""
    from catalog.models import Indicator, Rule

    rng = random.Random(seed)
    indicator_pks = list(Indicator.objects.values_list("pk", flat=True))
    picked = Indicator.objects.filter(pk__in=rng.sample(indicator_pks, min(rounds, 2000)))
    lookups = [
        "/api/indicators/?" + urlencode({"field": i.field, "kind": i.kind, "value": i.value})
        for i in picked
    ]
    rule_ids = list(Rule.objects.values_list("rule_id", flat=True))
    details = [f"/api/rules/{rule_id}/" for rule_id in rng.sample(rule_ids, min(rounds, 2000))]
    return {
        "floor (bare DRF view)": [FLOOR_URL],
        "indicator lookup by identity": lookups,
        "rule detail": details,
    }


Timings = dict[str, list[tuple[float, float]]]


def measure(client: Any, urls: dict[str, list[str]], rounds: int) -> Timings:
    """(wall, CPU) milliseconds per request (response fully read), endpoints interleaved per
    round. CPU time is this process's alone: the part of a request that is our code, not
    waiting for PostgreSQL (which on a busy machine also waits to be scheduled)."""
    timings: Timings = {label: [] for label in urls}
    for round_number in range(rounds):
        for label, choices in urls.items():
            url = choices[round_number % len(choices)]
            start, cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            body = response.content
            elapsed = (time.perf_counter() - start) * 1000
            cpu_elapsed = (time.process_time() - cpu) * 1000
            if response.status_code != 200 or not body:
                sys.exit(f"{url} answered {response.status_code}")
            timings[label].append((elapsed, cpu_elapsed))
    return timings


def check_answers(client: Any, urls: dict[str, list[str]]) -> None:
    """Each lookup must find exactly its one indicator (a fast wrong answer is no answer)."""
    for url in urls["indicator lookup by identity"][:50]:
        body = client.get(url).json()
        if body["count"] != 1:
            sys.exit(f"{url} found {body['count']} indicators")


def query_counts(client: Any, urls: dict[str, list[str]]) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for label, choices in urls.items():
        with CaptureQueriesContext(connection) as captured:
            client.get(choices[0])
        counts[label] = len(captured)
    return counts


def print_table(timings: Timings, queries: dict[str, int], say: Callable[[str], None]) -> list[str]:
    floor_label = next(iter(timings))
    floor = statistics.median(wall for wall, _ in timings[floor_label])
    floor_cpu = statistics.median(cpu for _, cpu in timings[floor_label])
    header = (
        f"{'endpoint':<30} {'median ms':>9} {'p90 ms':>7} {'queries':>7} {'x floor':>7}"
        f" {'cpu ms':>7} {'cpu x':>6}  target (wall x floor)"
    )
    say(header)
    say("-" * len(header))
    missed = []
    for label, values in timings.items():
        walls = [wall for wall, _ in values]
        median, p90 = statistics.median(walls), statistics.quantiles(walls, n=10)[-1]
        cpu = statistics.median(cpu for _, cpu in values)
        ratio = median / floor
        verdict = ""
        if label in TARGETS:
            ok = ratio < TARGETS[label]
            verdict = f"< {TARGETS[label]:g}x: " + ("ok" if ok else "MISSED")
            if not ok:
                missed.append(label)
        say(
            f"{label:<30} {median:>9.3f} {p90:>7.3f} {queries[label]:>7} {ratio:>7.2f}"
            f" {cpu:>7.3f} {cpu / floor_cpu:>6.2f}  {verdict}"
        )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--cold-fingerprint",
        action="store_true",
        help="recompute the catalog fingerprint on every request (no reuse)",
    )
    args = parser.parse_args()

    start_site(DEFAULT_URL, Path(args.corpus), install_urlconf)
    from django.test import Client

    from catalog import services
    from catalog.models import Indicator, Rule

    if args.cold_fingerprint:
        services.FINGERPRINT_TTL = 0.0
    client = Client()
    urls = sample_urls(args.rounds, args.seed)
    check_answers(client, urls)
    measure(client, urls, args.warmup)
    timings = measure(client, urls, args.rounds)
    queries = query_counts(client, urls)

    print(
        f"\n{Rule.objects.count():,} rules, {Indicator.objects.count():,} indicators, "
        f"PostgreSQL, {args.rounds} rounds (a different indicator / rule each round), "
        f"fingerprint reuse {services.FINGERPRINT_TTL:g} s\n"
    )
    missed = print_table(timings, queries, print)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nLoad average during the run: {load:.2f} on {os.cpu_count()} CPUs", end="")
    print(" (a busy machine inflates the database round trips the floor does not make)")
    return report_targets(missed, strict=args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
