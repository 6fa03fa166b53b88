#!/usr/bin/env python
"""Workbench benchmark: ``POST /api/workbench/`` over the full corpus, and lint versus
``sigma check``.

(a) ``POST /api/workbench/`` for a typical rule (a copy of a random catalog rule with a new
    id: parse, lint, corpus counts, similar rules, field check, seed sections) without and
    with the backtest over every regression sample; targets: median < 50 ms and < 300 ms.
    A bare DRF view in front of the site's URLs is the floor, measured in the same rounds.
(b) Lint alone (:func:`rules.validate.validate_rule` on the parsed rule, what the workbench
    runs) versus sigma-cli's ``sigma check`` run in-process (its click command on the same
    rule file, through click's test runner, the same validators) and versus pySigma's
    ``SigmaValidator`` with those validators prebuilt, on the parsed rule (the validators' own
    work). Target: not slower than ``sigma check`` (ratio <= 1).

Requests go through Django's test Client (full stack, no network), the kinds interleaved per
round so drift hits all alike.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/workbench_bench \\
        .venv/bin/python bench/bench_workbench.py [--rounds 100] [--corpus ../shared/corpus/sigmahq]

``bench/corpus_db.py`` creates the database and imports the corpus when needed. With
``--strict``, exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/ is on sys.path when a benchmark runs as a script.
from corpus_db import DEFAULT_CORPUS, register_urlconf, report_targets, start_site

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/workbench_bench"
FLOOR_URL = "/bench/floor/"
API_URL = "/api/workbench/"
TARGET_MS = {"workbench": 50.0, "workbench + backtest": 300.0}


def install_urlconf() -> str:
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from catalog.urls import urlpatterns as site

    class FloorView(APIView):
        """The least a DRF POST endpoint does: parse the JSON body, render a constant."""

        permission_classes = [AllowAny]
        authentication_classes: list[Any] = []

        def post(self, request: Request) -> Response:
            return Response({"ok": bool(request.data)})

    floor = path(FLOOR_URL.strip("/") + "/", FloorView.as_view())
    return register_urlconf("bench_workbench_urls", [floor, *site])


def sample_drafts(rounds: int, seed: int) -> list[str]:
    """Copies of random catalog rules, each with a new id (the duplicate case)."""
    from catalog.models import Rule

    rng = random.Random(seed)
    rows = list(Rule.objects.values_list("rule_id", "raw_yaml"))
    picked = rng.sample(rows, min(rounds, len(rows)))
    return [raw.replace(rule_id, str(uuid.UUID(int=rng.getrandbits(128), version=4)), 1)
            for rule_id, raw in picked]  # fmt: skip


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def bench_api(rounds: int, seed: int) -> dict[str, list[float]]:
    from django.test import Client

    client = Client()
    drafts = sample_drafts(rounds, seed)

    def post(url: str, body: dict[str, Any]) -> Callable[[], Any]:
        def call() -> None:
            response = client.post(url, json.dumps(body), content_type="application/json")
            assert response.status_code in (200, 400), response.content[:300]

        return call

    # Warm-up: the similarity index, the regression samples, the validators' data.
    for draft in drafts[:3]:
        post(API_URL, {"rule": draft, "backtest": True})()
    times: dict[str, list[float]] = {"floor (bare DRF view)": [], **{k: [] for k in TARGET_MS}}
    for draft in drafts:
        times["floor (bare DRF view)"].append(timed(post(FLOOR_URL, {"rule": draft})))
        times["workbench"].append(timed(post(API_URL, {"rule": draft})))
        times["workbench + backtest"].append(
            timed(post(API_URL, {"rule": draft, "backtest": True}))
        )
    return times


def bench_lint(rounds: int, seed: int) -> dict[str, list[float]]:
    """Per rule: our lint, ``sigma check`` in-process, pySigma's prebuilt SigmaValidator."""
    import io

    import sigma.cli.check as sigma_check
    import sigma.cli.rules as sigma_rules
    from click.testing import CliRunner
    from sigma.cli.check import check
    from sigma.plugins import InstalledSigmaPlugins
    from sigma.rule import SigmaRule
    from sigma.validation import SigmaValidator

    from rules.parse import parse_rule
    from rules.validate import SKIPPED, validate_rule

    drafts = sample_drafts(max(10, rounds // 4), seed + 1)
    validate_rule(parse_rule(drafts[0]).sigma, drafts[0], "")  # offline data, set up once
    # The same validator set everywhere: the workbench skips the cross-rule checks and D3FEND
    # (no offline data; sigma check would download it).
    installed = InstalledSigmaPlugins.autodiscover().validators
    validator = SigmaValidator([v for name, v in installed.items() if name not in SKIPPED])
    excluded = [arg for name in SKIPPED for arg in ("--exclude", name)]
    runner = CliRunner()
    # Its progress bars write to the real stderr (bound at import), not the runner's.
    sigma_check.stderr = sigma_rules.stderr = io.StringIO()
    times: dict[str, list[float]] = {
        "lint (workbench)": [],
        "sigma check": [],
        "SigmaValidator": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        for index, draft in enumerate(drafts):
            path = Path(folder) / f"rule_{index}.yml"
            path.write_text(draft, encoding="utf-8")
            parsed, sigma_rule = parse_rule(draft), SigmaRule.from_yaml(draft)
            arguments = [*excluded, str(path)]
            lint = functools.partial(validate_rule, parsed.sigma, draft, "")
            cli = functools.partial(runner.invoke, check, arguments, catch_exceptions=False)
            times["lint (workbench)"].append(timed(lint))
            times["sigma check"].append(timed(cli))
            times["SigmaValidator"].append(
                timed(functools.partial(validator.validate_rule, sigma_rule))
            )
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    start_site(DEFAULT_URL, args.corpus, install_urlconf)

    from django.conf import settings

    # The sandbox rate limit would throttle a benchmark: it is not what is measured.
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["sandbox"] = None
    from catalog.workbench import regression_set, similarity_index

    index, samples = similarity_index(), regression_set()
    print(
        f"Catalog: {len(index):,} rules, {len(index.postings):,} indicator identities; "
        f"regression samples: {len(samples.samples) if samples else 0} "
        f"({samples.event_count if samples else 0} events)"
    )
    missed: list[str] = []
    api = bench_api(args.rounds, args.seed)
    floor = statistics.median(api["floor (bare DRF view)"])
    print(f"\n(a) POST {API_URL}, {args.rounds} rounds (median / p90 ms, x floor)")
    for name, values in api.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        target = TARGET_MS.get(name)
        verdict = (
            f"target < {target:.0f} ms: {'met' if median < target else 'MISSED'}" if target else ""
        )
        print(f"  {name:<26} {median:8.2f} {p90:8.2f}  {median / floor:6.1f}x  {verdict}")
        if target and median >= target:
            missed.append(name)
    lint = bench_lint(args.rounds, args.seed)
    ours = statistics.median(lint["lint (workbench)"])
    print(f"\n(b) Lint, {len(lint['sigma check'])} rules (median ms; ratio = lint / other)")
    for name, values in lint.items():
        median = statistics.median(values)
        print(f"  {name:<26} {median:8.3f}  ratio {ours / median:6.3f}")
    if ours > statistics.median(lint["sigma check"]):
        missed.append("lint not slower than sigma check")
    print("\nThe machine may be shared with other work: figures are of this run only.")
    return report_targets(missed, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
