"""Import benchmark: the catalog importer against pySigma's own parse, in one run.

1. pySigma's ``SigmaCollection.from_yaml`` over every corpus file (the obvious way to parse).
2. A full import of the same files into an empty PostgreSQL database.
3. A re-import with nothing changed.
3b. The full import again without the evidence (validation, regression replay, related rules:
   ``IMPORT_EVIDENCE`` off); prints what the evidence adds (target <= 30%).

Prints both ratios against (1). Targets: full import <= 0.8x, unchanged re-import <= 0.25x.
4. Releases (``../shared/corpus/releases``): r2026-04-01 on top of r2026-01-01 against the same
   archive into an empty database (target <= 1.2x), and the changes API's median (< 50 ms).

    .venv/bin/python bench/bench_import.py [--corpus ../shared/corpus/sigmahq] [--pg URL]

``--pg`` is a server URL (default postgres://postgres@127.0.0.1:5432); a scratch database is
created there and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase (best kept)")
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

        from catalog.models import Rule
        from catalog.services import import_rules

        call_command("migrate", verbosity=0)
        full = unchanged = bare = float("inf")
        for _ in range(args.repeat):
            Rule.objects.all().delete()
            start = time.perf_counter()
            report = import_rules([str(d) for d in dirs], trigger="bench")
            full = min(full, time.perf_counter() - start)
            assert report.created == len(files) and not report.errors, report.summary()
            start = time.perf_counter()
            report = import_rules([str(d) for d in dirs], trigger="bench")
            unchanged = min(unchanged, time.perf_counter() - start)
            assert report.unchanged == len(files), report.summary()
            bare = min(bare, _bare_import(dirs))
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
    extra = full / bare - 1
    print(
        f"full import without evidence      {bare:8.2f} s   validation + regression replay + "
        f"related rules add {extra:6.1%} (target <= 30%) {'OK' if extra <= 0.3 else 'MISSED'}"
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


def _bare_import(dirs: list[Path]) -> float:
    """Issue 14: the same full import without validation, regression replay and related rules
    (``IMPORT_EVIDENCE`` off), run in the same round as the full one so both see the same load."""
    from django.conf import settings

    from catalog.models import Rule
    from catalog.services import import_rules

    Rule.objects.all().delete()
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
    import statistics

    from django.test import Client

    from catalog.models import Release, Rule, RuleRevision
    from catalog.releases import ReleaseSpec
    from catalog.services import import_rules

    def empty() -> None:
        Rule.objects.all().delete()
        RuleRevision.objects.all().delete()
        Release.objects.all().delete()

    plain = on_top = float("inf")
    for _ in range(repeat):
        empty()
        start = time.perf_counter()
        import_rules([str(second)], trigger="bench", release=ReleaseSpec(name="r2026-04-01"))
        plain = min(plain, time.perf_counter() - start)
        empty()
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
