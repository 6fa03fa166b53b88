"""A large sandbox upload as a job: a ~100 MB ``.jsonl`` built from the corpus' regression
events (repeated), the whole catalog, one worker process (``manage.py db_worker --batch``).

Prints events/s against the target (>= 2,500 events/s per worker process) and the worker's
peak memory (ru_maxrss). Uses ``DATABASE_URL`` when set (the corpus is imported when the
catalog is empty), else a scratch SQLite database with the corpus imported into it::

    .venv/bin/python bench/bench_jobs.py [--mb 100] [--all-rules] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "sigmahq"
TARGET_EVENTS_PER_SECOND = 2500


def regression_objects(corpus: Path) -> list[dict[str, object]]:
    """Every event object of the regression data (files hold one object or JSON lines)."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, object]] = []
    for path in sorted((corpus / "regression_data").rglob("*.json")):
        text, position = path.read_text(), 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            obj, position = decoder.raw_decode(text, position)
            objects.extend(obj if isinstance(obj, list) else [obj])
    return objects


def build_upload(corpus: Path, target: Path, megabytes: int) -> int:
    lines = [json.dumps(o).encode() + b"\n" for o in regression_objects(corpus)]
    size, count = 0, 0
    with target.open("wb") as handle:
        while size < megabytes * 1024 * 1024:
            for line in lines:
                handle.write(line)
                size += len(line)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--all-rules", action="store_true",
        help="evaluate every rule on every event (default: the sandbox's logsource scoping)",
    )  # fmt: skip
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    os.environ.setdefault("DATA_DIR", str(scratch / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    os.environ["DEBUG"] = "0"
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from bench.corpus_db import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.files import File

    from bench.corpus_db import ensure_corpus
    from catalog.jobs.models import Job
    from catalog.jobs.services import create_job

    ensure_corpus(args.corpus)
    upload_path = scratch / "events.jsonl"
    lines = build_upload(args.corpus, upload_path, args.mb)
    print(f"upload: {upload_path.stat().st_size / 2**20:.1f} MiB, {lines:,} events")
    with upload_path.open("rb") as handle:
        job = create_job(
            Job.Kind.SANDBOX, File(handle, name="events.jsonl"), user=None,
            options={"all_rules": args.all_rules},
        )  # fmt: skip
    upload_path.unlink()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay",
         "--no-reload", "-v0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        sys.exit(f"job {job.status}: {job.message}")
    result = job.result
    rate = result["events_per_second"]
    print(f"job: {result['events']:,} events, {result['matches']:,} matches of "
          f"{result['rules_matched']} rules (catalog: {result['rules']} rules, "
          f"{'every rule on every event' if args.all_rules else 'logsource-scoped'})")  # fmt: skip
    print(
        f"evaluation: {result['seconds']:.1f} s, {rate:,.0f} events/s "
        f"(target >= {TARGET_EVENTS_PER_SECOND:,}: {rate / TARGET_EVENTS_PER_SECOND:.2f}x)"
    )
    print(
        f"worker process: {wall:.1f} s wall including start-up and rule compilation, "
        f"peak memory (ru_maxrss) {peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
