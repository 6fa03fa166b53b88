"""Load benchmark: gunicorn, granian and uvicorn serving the site (DEBUG=0), in one run.

Each server is started the way ``scripts/prod.sh`` starts it (``scripts/run_web.sh`` with
``WEB_SERVER=...``) on a free loopback port: DEBUG=0, hashed static files collected into a
temporary STATIC_ROOT served by whitenoise, SANDBOX_PRELOAD=1, the rate throttles disabled,
against a PostgreSQL database holding the full SigmaHQ corpus (created and imported if empty).
Each endpoint is then driven from a second process: ``wrk`` when installed, else a Python
load generator (threads + keep-alive http.client). The static file served by the same server
in the same run is the baseline for the throughput ratio. Last, ``/healthz`` is measured while
``--heavy`` clients post large sandbox bodies back to back.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prod_bench \\
        .venv/bin/python bench/bench_load.py [--servers granian,gunicorn,uvicorn] \\
        [--duration 10] [--connections 50] [--heavy 8] [--python] [--strict]

Targets (printed as met/missed per server): rule page p99 < 50 ms and >= 0.9x the static
file's req/s; rule list ``?q=`` and indicator API p99 < 150 ms; sandbox API (one scriptblock)
p99 < 300 ms; ``/healthz`` p99 < 100 ms under the heavy load; 0 socket errors and 0 non-2xx
on every measured endpoint. The load average is printed before and after. With --strict,
exits 1 when the shipped server (the first of --servers) misses a target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prod_bench"
CORPUS = REPO.parent / "shared" / "corpus" / "sigmahq"
SEED_RULE = "adf876b3-f1f8-4aa9-a4e4-a64106feec06"
SANDBOX_BODY = json.dumps(
    {"scriptblock": "Test-NetConnection -ComputerName example.org -port 8088 "}
)
STATIC = "static file (baseline)"
RULE_PAGE = "rule page"
HEALTHZ = "/healthz under heavy load"
# (label, method, path, body)
ENDPOINTS: list[tuple[str, str, str, str | None]] = [
    (STATIC, "GET", "/static/css/site.css", None),
    (RULE_PAGE, "GET", f"/rules/{SEED_RULE}/", None),
    ("rule list ?q=powershell", "GET", "/rules/?q=powershell", None),
    (
        "indicator API lookup",
        "GET",
        "/api/indicators/?field=ScriptBlockText&kind=contains&value=Test-NetConnection",
        None,
    ),
    ("sandbox API POST", "POST", "/api/sandbox/", SANDBOX_BODY),
]
# label -> p99 target in ms (the table).
P99_TARGETS_MS = {
    RULE_PAGE: 50.0,
    "rule list ?q=powershell": 150.0,
    "indicator API lookup": 150.0,
    "sandbox API POST": 300.0,
    HEALTHZ: 100.0,
}
RULE_PAGE_MIN_RATIO = 0.9
SERVERS = ["granian", "gunicorn", "uvicorn"]


def heavy_body() -> bytes:
    """About 1.5 MB of process-creation events full of catalog literals: the kind of body
    that took 12-41 s per request before the sandbox bounded its work (finding 4)."""
    line = (
        "powershell.exe -nop -w hidden -enc JAB mimikatz sekurlsa::logonpasswords "
        "Invoke-Expression DownloadString http://example.org/a.ps1 rundll32 comsvcs.dll "
        "MiniDump vssadmin delete shadows /all /quiet certutil -urlcache -split -f "
    )
    events = [
        {
            "EventID": 1,
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "ParentImage": "C:\\Windows\\System32\\cmd.exe",
            "CommandLine": f"{line} {i}",
        }
        for i in range(4000)
    ]
    return json.dumps({"events": events}).encode()


@dataclass
class Result:
    label: str
    tool: str
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    non_2xx: int = 0
    status_5xx: int = 0
    socket_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


# -- server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True)


def prepare_database(env: dict[str, str], url: str) -> int:
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    manage(env, "migrate", "--noinput", "-v0")
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM catalog_rule").fetchone()[0]
    if count < 1000:
        if not (CORPUS / "rules").is_dir():
            sys.exit(f"the catalog is empty and the corpus is missing at {CORPUS}")
        dirs = [str(p) for p in sorted(CORPUS.glob("rules*")) if p.is_dir()]
        print(f"importing the corpus into {name} ...", flush=True)
        manage(env, "import_rules", "--no-progress", *dirs)
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT count(*) FROM catalog_rule").fetchone()[0]
    return int(count)


def _session_cpu_seconds(session: int) -> float:
    """CPU seconds used so far by every live process of the server's session."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def wait_until_idle(session: int, limit: float = 120.0) -> float:
    """Seconds until the server's processes (workers and their heavy-evaluation helpers, which
    compile the catalog after /healthz first answers) use under 10% of a core over 1 s, so
    the measurements see the server in its steady state, not finishing its start."""
    started = time.monotonic()
    last = _session_cpu_seconds(session)
    while time.monotonic() - started < limit:
        time.sleep(1.0)
        now = _session_cpu_seconds(session)
        if now - last < 0.1:
            break
        last = now
    return time.monotonic() - started


def start_server(env: dict[str, str], port: int, name: str) -> subprocess.Popen[bytes]:
    log = open(env["BENCH_SERVER_LOG"], "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        ["bash", "scripts/run_web.sh"],
        cwd=REPO,
        env={**env, "WEB_SERVER": name},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}; see {env['BENCH_SERVER_LOG']}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    settled = wait_until_idle(proc.pid)
                    print(f"  {name} answered /healthz; idle after {settled:.1f} s", flush=True)
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    sys.exit(f"{name} did not answer /healthz within 180 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (master and workers), SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# -- wrk -----------------------------------------------------------------------------------------

WRK_LUA = """
wrk.method = "%(method)s"
%(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "127.0.0.1"
local counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s2 = 0; s3 = 0; s4 = 0; s5 = 0; s429 = 0 end
function response(status, headers, body)
  if status >= 500 then s5 = s5 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status >= 400 then s4 = s4 + 1
  elseif status >= 300 then s3 = s3 + 1
  else s2 = s2 + 1 end
end
function done(summary, latency, requests)
  local t = {s2 = 0, s3 = 0, s4 = 0, s5 = 0, s429 = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  io.write(string.format("STATUS 2xx=%%d 3xx=%%d 4xx=%%d 429=%%d 5xx=%%d\\n",
    t.s2, t.s3, t.s4, t.s429, t.s5))
  io.write(string.format("PCTL p50=%%d p99=%%d\\n",
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    base: str,
    label: str,
    method: str,
    path: str,
    body: str | None,
    duration: int,
    connections: int,
    threads: int,
    tmp: Path,
) -> Result:
    script = tmp / "bench.lua"
    body_line = f"wrk.body = {json.dumps(body)}" if body else ""
    script.write_text(WRK_LUA % {"method": method, "body": body_line})
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base + path,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    result = Result(label, "wrk")
    if m := re.search(r"(\d+) requests in", out):
        result.requests = int(m.group(1))
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result.rps = float(m.group(1))
    if m := re.search(r"PCTL p50=(\d+) p99=(\d+)", out):
        result.p50_ms, result.p99_ms = int(m.group(1)) / 1000, int(m.group(2)) / 1000
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result.non_2xx = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result.socket_errors = sum(int(g) for g in m.groups())
    if m := re.search(r"STATUS 2xx=(\d+) 3xx=(\d+) 4xx=(\d+) 429=(\d+) 5xx=(\d+)", out):
        keys = ["2xx", "3xx", "4xx", "429", "5xx"]
        result.statuses = {k: int(v) for k, v in zip(keys, m.groups(), strict=True) if int(v)}
        result.status_5xx = int(m.group(5))
        result.non_2xx = max(result.non_2xx, sum(int(g) for g in m.groups()[1:]))
    return result


# -- Python fallback --------------------------------------------------------------------------


def run_python(
    host: str,
    port: int,
    label: str,
    method: str,
    path: str,
    body: str | None,
    duration: int,
    connections: int,
) -> Result:
    """One thread per connection, keep-alive, closed-loop (like wrk). Runs in this process,
    which is separate from the server's."""
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    socket_errors = 0
    payload = body.encode() if body else None
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def worker() -> None:
        nonlocal socket_errors
        conn = http.client.HTTPConnection(host, port, timeout=10)
        mine: list[float] = []
        counts: dict[str, int] = {}
        errors = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            mine.append(time.perf_counter() - started)
            key = str(response.status)
            counts[key] = counts.get(key, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            socket_errors += errors
            for key, n in counts.items():
                statuses[key] = statuses.get(key, 0) + n

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    result = Result(label, "python", statuses=statuses, socket_errors=socket_errors)
    result.requests = len(latencies)
    result.rps = result.requests / elapsed if elapsed else 0.0
    if latencies:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        result.p50_ms, result.p99_ms = cuts[49] * 1000, cuts[98] * 1000
    result.non_2xx = sum(n for k, n in statuses.items() if not k.startswith("2"))
    result.status_5xx = sum(n for k, n in statuses.items() if k.startswith("5"))
    return result


def run_python_subprocess(args: argparse.Namespace, port: int, endpoint: tuple[Any, ...]) -> Result:
    """The Python generator in its own process, so it never shares a GIL with anything."""
    label, method, path, body = endpoint
    spec = json.dumps(
        {
            "port": port,
            "label": label,
            "method": method,
            "path": path,
            "body": body,
            "duration": args.duration,
            "connections": args.connections,
        }
    )
    out = subprocess.run(
        [PYTHON, __file__, "--generate", spec],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + 120,
    ).stdout
    return Result(**json.loads(out.strip().splitlines()[-1]))


# -- main ----------------------------------------------------------------------------------------


class HeavyLoad:
    """``clients`` threads posting the heavy body back to back until stopped; a refused one
    (503/429, the per-process heavy limit) retries after its Retry-After, at most 2 s."""

    def __init__(self, port: int, clients: int) -> None:
        self.port, self.body = port, heavy_body()
        self.stop = threading.Event()
        self.statuses: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            wait = 0.0
            try:
                conn.request("POST", "/api/sandbox/", body=self.body, headers=headers)
                response = conn.getresponse()
                response.read()
                key = str(response.status)
                retry_after = response.getheader("Retry-After") or "0"
                wait = min(2.0, float(retry_after)) if retry_after.isdigit() else 0.0
            except (OSError, http.client.HTTPException):
                key, wait = "error", 0.5
            finally:
                conn.close()
            with self.lock:
                self.statuses[key] = self.statuses.get(key, 0) + 1
            # Refused (busy): come back when told to, at most 2 s later, as a script would.
            self.stop.wait(wait)

    def __enter__(self) -> HeavyLoad:
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # let every heavy request reach the server first
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=150)


def measure(args: argparse.Namespace, port: int, endpoint: tuple[Any, ...], tmp: Path) -> Result:
    label, method, path, body = endpoint
    base = f"http://127.0.0.1:{port}"
    # Warm up (caches, compiled sandbox, connections) outside the measurement.
    for _ in range(5):
        request = urllib.request.Request(
            base + path,
            data=body.encode() if body else None,
            method=method,
            # The Host the load generators send: the page cache keys on it, and a warm-up
            # under another Host (urllib adds the port) left wrk's 50 connections to render
            # the first requests all at once, which was the rule page's measured tail.
            headers={"Content-Type": "application/json", "Host": "127.0.0.1"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
    if args.use_wrk:
        return run_wrk(
            base, label, method, path, body, args.duration, args.connections, args.threads, tmp
        )
    return run_python_subprocess(args, port, endpoint)


def bench_server(
    args: argparse.Namespace, env: dict[str, str], name: str, tmp: Path
) -> tuple[list[Result], dict[str, int]]:
    """Every endpoint, then /healthz under heavy load, on one freshly started server."""
    port = free_port()
    server_env = {**env, "BIND": f"127.0.0.1:{port}"}
    proc = start_server(server_env, port, name)
    results: list[Result] = []
    try:
        print(f"{name} on 127.0.0.1:{port} (pid {proc.pid})", flush=True)
        for endpoint in ENDPOINTS:
            if args.only and args.only not in endpoint[0] and endpoint[0] != STATIC:
                continue
            result = measure(args, port, endpoint, tmp)
            results.append(result)
            print(
                f"  {result.label}: {result.rps:.1f} req/s, p99 {result.p99_ms:.1f} ms", flush=True
            )
        heavy_statuses: dict[str, int] = {}
        if not args.only or args.only in HEALTHZ:
            with HeavyLoad(port, args.heavy) as heavy:
                result = measure(args, port, (HEALTHZ, "GET", "/healthz", None), tmp)
            results.append(result)
            heavy_statuses = heavy.statuses
            print(f"  {result.label}: p99 {result.p99_ms:.1f} ms; heavy: {heavy_statuses}")
    finally:
        stop_server(proc)
    return results, heavy_statuses


def report(name: str, results: list[Result], args: argparse.Namespace) -> list[str]:
    baseline = results[0].rps or 1.0
    lines = [
        f"== {name}: {args.connections} connections, {args.duration} s per endpoint "
        f"(tool: {results[0].tool}); ratio = req/s / static file req/s",
        f"{'endpoint':<27} {'req/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>9} {'non-2xx':>8} {'5xx':>5} {'sock err':>8}  statuses",
    ]
    for r in results:
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"{r.label:<27} {r.rps:>9.1f} {r.rps / baseline:>6.3f} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>8.1f} {r.requests:>9} {r.non_2xx:>8} {r.status_5xx:>5} "
            f"{r.socket_errors:>8}  {statuses}"
        )
    return lines


def targets(results: list[Result]) -> list[tuple[str, bool]]:
    """(description, met) for every target of the issue's table."""
    by_label = {r.label: r for r in results}
    out = []
    if RULE_PAGE in by_label:
        ratio = by_label[RULE_PAGE].rps / (by_label[STATIC].rps or 1.0)
        out.append((f"rule page >= {RULE_PAGE_MIN_RATIO}x static req/s ({ratio:.2f}x)",
                    ratio >= RULE_PAGE_MIN_RATIO))  # fmt: skip
    for label, limit in P99_TARGETS_MS.items():
        if label not in by_label:
            continue  # --only
        p99 = by_label[label].p99_ms
        out.append((f"{label} p99 < {limit:.0f} ms ({p99:.1f} ms)", p99 < limit))
    bad = {r.label: r.non_2xx + r.socket_errors for r in results if r.non_2xx or r.socket_errors}
    out.append((f"0 errors and 0 non-2xx ({bad or 'none'})", not bad))
    return out


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


def server_env(url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=url,
        DEBUG="0",
        STATIC_MANIFEST="1",
        STATIC_ROOT=str(tmp / "static"),
        CACHE_DIR=str(tmp / "cache"),
        SANDBOX_PRELOAD="1",
        # As scripts/prod.sh ships it: heavy evaluations in helper processes (catalog/offload.py).
        HEAVY_OFFLOAD=os.environ.get("HEAVY_OFFLOAD", "1"),
        # Rate throttles off for the run (the targets count every non-2xx); the per-process
        # heavy-work limit stays as shipped unless set in the environment.
        SANDBOX_THROTTLE=os.environ.get("SANDBOX_THROTTLE", "100000000/min"),
        # The heavy clients stand for 8 people, not one: the per-client cap would refuse 6.
        HEAVY_PER_CLIENT=os.environ.get("HEAVY_PER_CLIENT", "1000"),
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ACCESS_LOG="",
        LOG_LEVEL="ERROR",
        BENCH_SERVER_LOG=str(tmp / "server.log"),
    )
    return env


# Long on purpose: one benchmark run, its phases in the order they print.
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="first = the shipped one")
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--heavy", type=int, default=8, help="heavy sandbox clients")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--python", action="store_true", help="use the Python generator")
    parser.add_argument("--only", help="tuning: measure only endpoints whose label has this")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate:  # child process of the Python generator
        spec = json.loads(args.generate)
        result = run_python(
            "127.0.0.1",
            spec["port"],
            spec["label"],
            spec["method"],
            spec["path"],
            spec["body"],
            spec["duration"],
            spec["connections"],
        )
        print(json.dumps(result.__dict__))
        return 0

    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench_load needs PostgreSQL: set DATABASE_URL=postgres://...")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(servers) - set(SERVERS):
        sys.exit(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    args.use_wrk = shutil.which("wrk") is not None and not args.python
    tmp = Path(tempfile.mkdtemp(prefix="bench_load_"))
    env = server_env(url, tmp)
    try:
        rules = prepare_database(env, url)
        manage(env, "collectstatic", "--noinput", "-v0")
        print(
            f"{rules} rules; load generator: {'wrk' if args.use_wrk else 'python'}; "
            f"load average before: {load_average()}",
            flush=True,
        )
        runs = {name: bench_server(args, env, name, tmp) for name in servers}
        log = (tmp / "server.log").read_text(errors="replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nload average after: {load_average()}")
    verdicts: dict[str, list[tuple[str, bool]]] = {}
    for name, (results, heavy) in runs.items():
        print("\n".join(report(name, results, args)))
        print(f"heavy sandbox requests during /healthz (status: count): {heavy}")
        verdicts[name] = targets(results)
        for text, met in verdicts[name]:
            print(f"  {'met   ' if met else 'MISSED'}  {text}")
    if tracebacks := log.count("Traceback"):
        print(f"{tracebacks} tracebacks in the server logs")
    print("\nsummary: " + "; ".join(
        f"{name} {sum(met for _, met in v)}/{len(v)} targets met" for name, v in verdicts.items()
    ))  # fmt: skip
    shipped = verdicts[servers[0]]
    return 1 if args.strict and (tracebacks or not all(met for _, met in shipped)) else 0


if __name__ == "__main__":
    sys.exit(main())
