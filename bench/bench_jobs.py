"""A large sandbox upload as a job: a ~100 MB ``.jsonl`` built from the corpus' regression
events (repeated), the whole catalog, one worker process (``manage.py db_worker --batch``).

Prints events/s against the target (>= 2,500 events/s per worker process) and the worker's
peak memory (ru_maxrss). Uses ``DATABASE_URL`` when set (the corpus is imported when the
catalog is empty), else a scratch SQLite database with the corpus imported into it::

    .venv/bin/python bench/bench_jobs.py [--mb 100] [--all-rules] [--corpus DIR] [--baseline REF]

With ``--baseline REF`` the same upload is also run, first, by a worker whose hot path
(``HOT_PATH``) is that of git revision REF (copied to a scratch folder, the working tree is
not touched), and the ratio of the two is printed: the comparison of one run on a shared
machine.

``--micro`` measures the engine alone, in CPU µs per event, on the same events (no Django, no
database): decoding a line into an event, the prefilter, and matching (prefilter included),
every rule on every event. With ``--baseline REF`` it runs the same measurement with the hot
path (``HOT_PATH``: prefilter, evaluator, fastpath, access, literals) of git revision REF in
alternating subprocesses, and prints the ratios of the same run: a fair comparison on a
shared machine::

    .venv/bin/python bench/bench_jobs.py --micro --baseline HEAD [--rounds 5]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# --baseline: the subprocess measuring another revision imports its rules/ from here first.
_ENGINE_ROOT = os.environ.get("BENCH_ENGINE_ROOT")
if _ENGINE_ROOT:
    sys.path.insert(0, _ENGINE_ROOT)
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


# -- the engine alone (--micro) -------------------------------------------------------------

MICRO_COPIES = 10  # the regression events, repeated, per round (fresh Event objects)


def micro_pass(corpus: Path, rounds: int) -> dict[str, float]:
    """CPU µs per event of each engine step (median over rounds), every rule on every event.

    CPU time of this process, not wall time: on a shared machine other processes' load
    then slows both sides of a comparison alike instead of whichever ran during a spike."""
    import gc
    import statistics

    from rules.evaluate import Evaluator
    from rules.events import event_from_mapping
    from rules.parse import parse_rule

    rules = [
        parse_rule(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(corpus.glob("rules*/**/*.yml"))
    ]
    evaluator = Evaluator(rules)
    gc.freeze()  # as the job does (catalog/jobs/sandbox.py)
    lines = [json.dumps(o).encode() for o in regression_objects(corpus)] * MICRO_COPIES
    prefilter = evaluator._all.prefilter  # every rule: the --all-rules job's scope

    def fresh() -> tuple[list[Any], float]:
        started = time.process_time()
        events = [event_from_mapping(json.loads(line), index=i) for i, line in enumerate(lines)]
        return events, time.process_time() - started

    steps: dict[str, list[float]] = {"decode": [], "prefilter": [], "match": []}
    candidates: list[int] = []
    for _ in range(rounds):
        events, decode = fresh()
        started = time.process_time()
        candidates = [len(prefilter.event_candidates(e)) for e in events]
        steps["prefilter"].append(time.process_time() - started)
        events, decode = fresh()
        started = time.process_time()
        for e in events:
            evaluator.match_ids(e, all_rules=True)
        steps["match"].append(time.process_time() - started)
        steps["decode"].append(decode)
    out = {k: statistics.median(v) / len(lines) * 1e6 for k, v in steps.items()}
    out["candidates"] = sum(candidates) / len(candidates)
    return out


def _micro_subprocess(engine_root: Path | None, corpus: Path, rounds: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(engine_root or REPO)}
    if engine_root is not None:
        env["BENCH_ENGINE_ROOT"] = str(engine_root)
    else:
        env.pop("BENCH_ENGINE_ROOT", None)
    command = [sys.executable, __file__, "--micro", "--json", "--rounds", str(rounds),
               "--corpus", str(corpus)]  # fmt: skip
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


HOT_PATH = (
    "rules/evaluate/prefilter.py",
    "rules/evaluate/evaluator.py",
    "rules/compile/fastpath.py",
    "rules/compile/access.py",
    "rules/compile/literals.py",
)
"""The evaluation hot path: what ``--baseline`` takes from the other revision."""


def _baseline_tree(ref: str) -> Path:
    """This tree's ``rules/`` with the hot-path files as they are at ``ref``, in a scratch
    folder (``git show`` only reads the repository). Everything else stays as it is here,
    so the comparison isolates the hot path from other work in the tree."""
    root = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(REPO / "rules", root / "rules", ignore=shutil.ignore_patterns("__pycache__"))
    for path in HOT_PATH:
        text = subprocess.run(
            ["git", "show", f"{ref}:{path}"], cwd=REPO, check=True, capture_output=True
        ).stdout
        (root / path).write_bytes(text)
    return root


def micro(args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(micro_pass(args.corpus, args.rounds)))
        return
    if not args.baseline:
        result = micro_pass(args.corpus, args.rounds)
        print(_micro_line("working tree", result))
        return
    baseline_root = _baseline_tree(args.baseline)
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
    for _ in range(args.repeat):  # alternate, so both sides see the same machine load
        runs["baseline"].append(_micro_subprocess(baseline_root, args.corpus, args.rounds))
        runs["current"].append(_micro_subprocess(None, args.corpus, args.rounds))
    import statistics

    medians = {
        side: {k: statistics.median(r[k] for r in results) for k in results[0]}
        for side, results in runs.items()
    }
    print(_micro_line(f"baseline ({args.baseline})", medians["baseline"]))
    print(_micro_line("working tree", medians["current"]))
    base, cur = medians["baseline"], medians["current"]
    print(
        f"ratio baseline/working tree: prefilter {base['prefilter'] / cur['prefilter']:.2f}x, "
        f"match {base['match'] / cur['match']:.2f}x, "
        f"decode+match {(base['decode'] + base['match']) / (cur['decode'] + cur['match']):.2f}x"
    )


def _micro_line(label: str, r: dict[str, float]) -> str:
    return (
        f"{label}: decode {r['decode']:.1f} µs/event, prefilter {r['prefilter']:.1f} µs/event "
        f"({r['candidates']:.1f} candidates), match (prefilter included) {r['match']:.1f} "
        f"µs/event = {1e6 / (r['decode'] + r['match']):,.0f} events/s decoded and matched"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--all-rules", action="store_true",
        help="evaluate every rule on every event (default: the sandbox's logsource scoping)",
    )  # fmt: skip
    parser.add_argument("--micro", action="store_true", help="the engine alone, µs per event")
    parser.add_argument(
        "--baseline", metavar="REF", help="compare with the engine (rules/) of git revision REF"
    )
    parser.add_argument("--rounds", type=int, default=5, help="--micro: rounds per process")
    parser.add_argument(
        "--repeat", type=int, default=3, help="--baseline: runs per side (alternating)"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro:
        micro(args)
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    # The scratch database, uploads and job files (hundreds of MB): gone when the run ends.
    atexit.register(shutil.rmtree, scratch, True)
    os.environ.setdefault("DATA_DIR", str(scratch / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    os.environ["DEBUG"] = "0"
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from bench.corpus_db import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from bench.corpus_db import ensure_corpus

    ensure_corpus(args.corpus)
    upload_path = scratch / "events.jsonl"
    lines = build_upload(args.corpus, upload_path, args.mb)
    print(f"upload: {upload_path.stat().st_size / 2**20:.1f} MiB, {lines:,} events")
    sides: list[tuple[str, Path | None]] = [("working tree", None)]
    if args.baseline:  # the baseline's engine first, then this tree's, in the same run
        sides.insert(0, (f"baseline ({args.baseline})", _baseline_tree(args.baseline)))
    rounds = args.repeat if args.baseline else 1  # alternate the sides, like --micro
    rates: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in sides}
    for _ in range(rounds):
        for label, root in sides:
            rates[label].append(_run_job(args, scratch, upload_path, label, root))
    upload_path.unlink()
    if args.baseline:
        import statistics

        for n, clock in enumerate(("wall", "CPU")):
            base, current = (statistics.median(r[n] for r in runs) for runs in rates.values())
            print(
                f"median events/s by {clock} time over {rounds} alternating runs: baseline "
                f"{base:,.0f}, working tree {current:,.0f}: {current / base:.2f}x"
            )


def _run_job(
    args: argparse.Namespace, scratch: Path, upload_path: Path, label: str,
    engine_root: Path | None,
) -> tuple[float, float]:  # fmt: skip
    """One job over the upload in a fresh ``db_worker --batch`` process (with the engine at
    ``engine_root`` first on its path, when given); prints and returns its events/s by wall
    and by CPU time."""
    from django.core.files import File

    from catalog.jobs.models import Job
    from catalog.jobs.services import create_job

    with upload_path.open("rb") as handle:
        job = create_job(
            Job.Kind.SANDBOX, File(handle, name="events.jsonl"), user=None,
            options={"all_rules": args.all_rules},
        )  # fmt: skip
    peak_file = scratch / "peak.txt"
    # The worker reports its own peak memory at exit, so each side's figure is its own.
    worker = (
        "import atexit, resource, runpy, sys\n"
        f"sys.path.insert(0, {str(engine_root or REPO)!r})\n"
        f"atexit.register(lambda: open({str(peak_file)!r}, 'w').write("
        "str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
        "sys.argv = ['manage.py', 'db_worker', '--batch', '--no-startup-delay', "
        "'--no-reload', '-v0']\n"
        "runpy.run_path('manage.py', run_name='__main__')\n"
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", worker], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    peak_mib = int(peak_file.read_text()) / 1024
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        sys.exit(f"job {job.status}: {job.message}")
    result = job.result
    rate = float(result["events_per_second"])
    print(f"{label}:")
    print(f"  job: {result['events']:,} events, {result['matches']:,} matches of "
          f"{result['rules_matched']} rules (catalog: {result['rules']} rules, "
          f"{'every rule on every event' if args.all_rules else 'logsource-scoped'})")  # fmt: skip
    print(
        f"  evaluation: {result['seconds']:.1f} s, {rate:,.0f} events/s = "
        f"{1e6 / rate:,.0f} µs/event "
        f"(target >= {TARGET_EVENTS_PER_SECOND:,}: {rate / TARGET_EVENTS_PER_SECOND:.2f}x)"
    )
    cpu = result.get("cpu_seconds")
    cpu_rate = result["events"] / cpu if cpu else rate
    if cpu:  # the worker's own CPU time: what other processes' load does not change
        print(
            f"  by CPU time: {cpu:.1f} s, {cpu_rate:,.0f} events/s = {1e6 / cpu_rate:,.0f} "
            f"µs/event ({cpu_rate / TARGET_EVENTS_PER_SECOND:.2f}x the target)"
        )
    print(
        f"  worker process: {wall:.1f} s wall including start-up and rule compilation, "
        f"peak memory (ru_maxrss) {peak_mib:,.0f} MiB"
    )
    return rate, cpu_rate


if __name__ == "__main__":
    main()
