"""Import benchmark: the catalog importer against pySigma's own parse, in one run.

1. pySigma's ``SigmaCollection.from_yaml`` over every corpus file (the obvious way to parse).
2. A full import of the same files into an empty PostgreSQL database.
3. A re-import with nothing changed.
3b. The full import again without the evidence (validation, regression replay, related rules:
   ``IMPORT_EVIDENCE`` off); prints what the evidence adds (target <= 30%): the median over the
   rounds of each round's ratio, both imports of a round run back to back (which one goes
   first alternates between rounds) into an emptied database, so they see the same load, after
   one untimed import without the evidence (the first import of a process is slower).

Prints both ratios against (1). Targets: full import <= 0.8x, unchanged re-import <= 0.25x.
4. Releases (``../shared/corpus/releases``): r2026-04-01 on top of r2026-01-01 against the same
   archive into an empty database (target <= 1.2x), and the changes API's median (< 50 ms).

    .venv/bin/python bench/bench_import.py [--corpus ../shared/corpus/sigmahq] [--pg URL]
        [--repeat N] [--no-releases]

``--pg`` is a server URL (default postgres://postgres@127.0.0.1:5432); a scratch database is
created there and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus_db import RULE_DIRS  # noqa: E402  (bench/ is on sys.path)


# Long on purpose: one benchmark run, its phases in the order they print.
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "sigmahq"))
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each phase")
    parser.add_argument("--no-releases", action="store_true", help="skip phase 4")
    args = parser.parse_args()

    corpus = Path(args.corpus)
    dirs = [corpus / d for d in RULE_DIRS if (corpus / d).is_dir()]
    files = sorted(p for d in dirs for p in d.rglob("*.yml"))
    if not files:
        print(f"no rules under {corpus}", file=sys.stderr)
        return 2
    texts = [p.read_text(encoding="utf-8") for p in files]

    from sigma.collection import SigmaCollection

    baseline = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        for text in texts:
            SigmaCollection.from_yaml(text)
        baseline = min(baseline, time.perf_counter() - start)

    import psycopg

    scratch = f"bench_import_{os.getpid()}"
    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    try:
        os.environ["DATABASE_URL"] = f"{args.pg}/{scratch}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from catalog.services import import_rules

        call_command("migrate", verbosity=0)
        fulls: list[float] = []
        bares: list[float] = []
        unchanged = float("inf")
        # Untimed: the process's and the new database's first import is slower whatever it
        # does, which would count against whichever import the first round runs first. Bare,
        # so the validators' one-time set-up (~0.2 s) still counts in the first full import.
        _bare_import(dirs)
        for round_ in range(args.repeat):
            # Alternate the order so a change of the machine's load favours neither import.
            if round_ % 2:
                bares.append(_bare_import(dirs))
            _empty_catalog()
            start = time.perf_counter()
            report = import_rules([str(d) for d in dirs], trigger="bench")
            fulls.append(time.perf_counter() - start)
            assert report.created == len(files) and not report.errors, report.summary()
            start = time.perf_counter()
            report = import_rules([str(d) for d in dirs], trigger="bench")
            unchanged = min(unchanged, time.perf_counter() - start)
            assert report.unchanged == len(files), report.summary()
            if not round_ % 2:
                bares.append(_bare_import(dirs))
        full = min(fulls)
        releases = None
        if not args.no_releases:
            releases = _bench_releases(Path(args.corpus).parent / "releases", args.repeat)
        from django.db import connections

        connections.close_all()
    finally:
        with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')

    print(f"corpus files                      {len(files):>8}")
    print(f"pySigma from_yaml (baseline)      {baseline:8.2f} s")
    print(
        f"full import into PostgreSQL       {full:8.2f} s   ratio {full / baseline:5.2f}x "
        f"(target <= 0.80x) {'OK' if full / baseline <= 0.8 else 'MISSED'}"
    )
    print(
        f"re-import, nothing changed        {unchanged:8.2f} s   ratio "
        f"{unchanged / baseline:5.2f}x (target <= 0.25x) "
        f"{'OK' if unchanged / baseline <= 0.25 else 'MISSED'}"
    )
    extra = statistics.median(f / b for f, b in zip(fulls, bares, strict=True)) - 1
    print(
        f"full import without evidence      {min(bares):8.2f} s   validation + regression "
        f"replay + related rules add {extra:6.1%} (target <= 30%) "
        f"{'OK' if extra <= 0.3 else 'MISSED'}"
    )
    print(
        "  per round, with / without evidence: "
        + ", ".join(f"{f:.2f}/{b:.2f} s" for f, b in zip(fulls, bares, strict=True))
        + f"; median of the {len(fulls)} ratios"
    )
    if releases:
        plain, on_top, api_ms = releases
        print(f"r2026-04-01 into an empty database {plain:8.2f} s")
        print(
            f"r2026-04-01 on top of r2026-01-01 {on_top:8.2f} s   ratio {on_top / plain:5.2f}x "
            f"(target <= 1.20x) {'OK' if on_top / plain <= 1.2 else 'MISSED'}"
        )
        print(
            f"changes API, median             {api_ms:8.1f} ms  (target < 50 ms) "
            f"{'OK' if api_ms < 50 else 'MISSED'}"
        )
    return 0


def _empty_catalog() -> None:
    """No rule, revision or release: every full import writes the same rows (a release's
    revisions left by an earlier round would spare the next import writing them)."""
    from catalog.models import Release, Rule, RuleRevision

    Rule.objects.all().delete()
    RuleRevision.objects.all().delete()
    Release.objects.all().delete()


def _bare_import(dirs: list[Path]) -> float:
    """Issue 14: the same full import without validation, regression replay and related rules
    (``IMPORT_EVIDENCE`` off), run in the same round as the full one so both see the same load."""
    from django.conf import settings

    from catalog.services import import_rules

    _empty_catalog()
    settings.IMPORT_EVIDENCE = False
    try:
        start = time.perf_counter()
        import_rules([str(d) for d in dirs], trigger="bench")
        return time.perf_counter() - start
    finally:
        settings.IMPORT_EVIDENCE = True


def _bench_releases(folder: Path, repeat: int) -> tuple[float, float, float] | None:
    """A release imported on top of the previous one vs into an empty database, and the
    changes API's median answer time (the two release archives of ../shared/corpus/releases)."""
    first, second = (folder / f"sigma_all_rules-{n}.zip" for n in ("r2026-01-01", "r2026-04-01"))
    if not (first.is_file() and second.is_file()):
        return None
    from django.test import Client

    from catalog.releases import ReleaseSpec
    from catalog.services import import_rules

    plain = on_top = float("inf")
    for _ in range(repeat):
        _empty_catalog()
        start = time.perf_counter()
        import_rules([str(second)], trigger="bench", release=ReleaseSpec(name="r2026-04-01"))
        plain = min(plain, time.perf_counter() - start)
        _empty_catalog()
        import_rules([str(first)], trigger="bench", release=ReleaseSpec(name="r2026-01-01"))
        start = time.perf_counter()
        import_rules([str(second)], trigger="bench", release=ReleaseSpec(name="r2026-04-01"))
        on_top = min(on_top, time.perf_counter() - start)
    client = Client()
    client.cookies.load({"sessionid": "bench"})  # past the page cache: the view's own time
    times = []
    for _ in range(30):
        start = time.perf_counter()
        response = client.get("/api/releases/r2026-04-01/changes/")
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return plain, on_top, statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
