"""Changes API benchmark: the three real releases imported, the changelog answered uncached.

Imports ``sigma_all_rules-r2026-01-01.zip``, ``-r2026-04-01.zip`` (``../shared/corpus/releases``)
and the SigmaHQ corpus (``../shared/corpus/sigmahq/rules*``, as ``main-2026-08-05``) into a
scratch database, then times ``GET /api/releases/<name>/changes/`` for each release, and
``?since=`` over the whole span, past the page cache (each request carries a session cookie,
as a signed-in visitor's would, so the middleware never serves a stored copy). The baselines,
measured in the same run and interleaved with the changelogs: ``/healthz`` and one rule's
detail API (``/api/rules/<id>/``), both uncached the same way. Target (issue 12): the median of
the largest release's changelog under 50 ms. Each stored answer is first checked against
one computed afresh; the ``?since=`` answer's computation (its first request, before it is
cached) is timed on its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/releases_bench \\
        .venv/bin/python bench/bench_releases.py [--rounds 50] [--keep] [--reuse]

``DATABASE_URL`` may name a PostgreSQL database (created, and dropped at the end unless
``--keep``) or ``sqlite:///path`` (a file, removed at the end unless ``--keep``); unset means
PostgreSQL on 127.0.0.1. ``--reuse`` keeps a database that already holds the three releases.
Prints figures; ``--strict`` makes a missed target exit 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "corpus"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/releases_bench"
RELEASES = ("r2026-01-01", "r2026-04-01", "main-2026-08-05")
TARGET_MS = 50.0
# A session cookie: the page cache serves and stores anonymous requests only.
UNCACHED = {"sessionid": "bench-uncached"}


def release_paths(shared: Path) -> list[list[Path]]:
    """The paths each release is imported from, oldest first."""
    zips = [shared / "releases" / f"sigma_all_rules-{name}.zip" for name in RELEASES[:2]]
    folders = sorted(p for p in (shared / "sigmahq").glob("rules*") if p.is_dir())
    missing = [str(z) for z in zips if not z.is_file()] + ([] if folders else ["sigmahq/rules*"])
    if missing:
        sys.exit(f"missing under {shared}: {', '.join(missing)}")
    return [[zips[0]], [zips[1]], folders]


def create_database(url: str, *, reuse: bool) -> None:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists() and not reuse:
            path.unlink()
        return
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not reuse:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or not reuse:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def import_releases(paths: list[list[Path]]) -> None:
    """The three releases, oldest first, unless the database already holds them."""
    from catalog.models import Release
    from catalog.releases import ReleaseSpec
    from catalog.services import import_rules

    have = set(Release.objects.values_list("name", flat=True))
    if have == set(RELEASES):
        print("The database already holds the three releases.", flush=True)
        return
    if have:
        sys.exit(f"the database holds other releases ({', '.join(sorted(have))}); drop it")
    for name, items in zip(RELEASES, paths, strict=True):
        start = time.perf_counter()
        report = import_rules([str(p) for p in items], trigger="bench", release=ReleaseSpec(name))
        took = time.perf_counter() - start
        summary = report.release.summary() if report.release else report.summary()
        print(f"  {took:6.1f} s  {summary}", flush=True)


def urls_to_time() -> dict[str, str]:
    from catalog.models import Rule

    rule_id = Rule.objects.order_by("rule_id").values_list("rule_id", flat=True).first()
    urls = {"/healthz": "/healthz", "rule detail API": f"/api/rules/{rule_id}/"}
    for name in RELEASES:
        urls[f"changes {name}"] = f"/api/releases/{name}/changes/"
    urls[f"changes {RELEASES[-1]} since {RELEASES[0]}"] = (
        f"/api/releases/{RELEASES[-1]}/changes/?since={RELEASES[0]}"
    )
    return urls


def measure(client: Any, urls: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per request (the body read), the URLs interleaved in every round."""
    times: dict[str, list[float]] = {label: [] for label in urls}
    for _ in range(rounds):
        for label, url in urls.items():
            start = time.perf_counter()
            response = client.get(url)
            body = response.content
            times[label].append((time.perf_counter() - start) * 1000)
            if response.status_code != 200 or not body:
                sys.exit(f"{url} answered {response.status_code}")
    return times


def computed(rounds: int) -> list[float]:
    """Milliseconds to compute the ``?since=`` answer over the whole span (what its first
    request costs, before the answer is cached), straight from the query function."""
    from catalog.models import Release
    from catalog.queries.releases import release_changes, render_changes

    release, since = (Release.objects.get(name=name) for name in (RELEASES[-1], RELEASES[0]))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        render_changes(release_changes(release, since))
        times.append((time.perf_counter() - start) * 1000)
    return times


def check_stored(client: Any) -> None:
    """Each stored answer is byte for byte the one computed afresh (a fast stale answer is
    no answer)."""
    from catalog.models import Release
    from catalog.queries.releases import release_changes, render_changes

    for name in RELEASES:
        fresh = render_changes(release_changes(Release.objects.get(name=name)))
        if client.get(f"/api/releases/{name}/changes/").content.decode() != fresh:
            sys.exit(f"the stored changes of {name} differ from a fresh computation")


def sizes(client: Any, urls: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(response bytes, queries) of each URL, uncached."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    found = {}
    for label, url in urls.items():
        with CaptureQueriesContext(connection) as captured:
            body = client.get(url).content
        found[label] = (len(body), len(captured))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--shared", default=str(SHARED), help="the folder holding the corpus")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a database already filled")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()

    paths = release_paths(Path(args.shared))
    url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    os.environ.setdefault("STATIC_MANIFEST", "0")
    os.environ["DEBUG"] = "0"
    create_database(url, reuse=args.reuse)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    try:
        call_command("migrate", verbosity=0)
        print(f"Importing the three releases into {url.rpartition('/')[2]} ...", flush=True)
        import_releases(paths)
        client = Client()
        client.cookies.load(UNCACHED)
        check_stored(client)
        urls = urls_to_time()
        measure(client, urls, args.warmup)
        times = measure(client, urls, args.rounds)
        facts = sizes(client, urls)
        since_computed = computed(max(5, args.rounds // 5))
    finally:
        if not args.keep:
            drop_database(url)
    return report(times, facts, since_computed, url, args)


def report(
    times: dict[str, list[float]],
    facts: dict[str, tuple[int, int]],
    since_computed: list[float],
    url: str,
    args: argparse.Namespace,
) -> int:
    engine = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    print(f"\n{engine}, {args.rounds} rounds, uncached (session cookie), URLs interleaved\n")
    medians = {label: statistics.median(values) for label, values in times.items()}
    health, detail = medians["/healthz"], medians["rule detail API"]
    header = (
        f"{'endpoint':<42} {'median ms':>9} {'p95 ms':>8} {'x healthz':>9} {'x detail':>8}"
        f" {'KB':>7} {'queries':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, values in times.items():
        p95 = statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]
        size, queries = facts[label]
        print(
            f"{label:<42} {medians[label]:>9.2f} {p95:>8.2f} {medians[label] / health:>9.1f}"
            f" {medians[label] / detail:>8.2f} {size / 1024:>7.1f} {queries:>7}"
        )
    first = statistics.median(since_computed)
    print(
        f"{'  since: computed (its first request)':<42} {first:>9.2f} {'':>8} "
        f"{first / health:>9.1f} {first / detail:>8.2f}"
    )
    largest = max(
        (label for label in times if label.startswith("changes") and " since " not in label),
        key=lambda label: facts[label][0],
    )
    ok = medians[largest] < TARGET_MS
    verdict = "ok" if ok else "MISSED"
    print(f"\nLargest release changelog: {largest}, median {medians[largest]:.2f} ms ", end="")
    print(f"(target < {TARGET_MS:g} ms): {verdict}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Load average during the run: {load:.2f} on {os.cpu_count()} CPUs")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
