"""Load benchmark: the production server (gunicorn, DEBUG=0) under concurrent load.

Starts gunicorn with ``catalog/gunicorn.conf.py`` on a free loopback port (DEBUG=0, hashed
static files collected into a temporary STATIC_ROOT, SANDBOX_PRELOAD=1, the sandbox throttle
raised), against a PostgreSQL database holding the full SigmaHQ corpus (created and imported
if empty), then drives each endpoint from a second process: ``wrk`` when installed, else a
Python load generator (threads + keep-alive http.client). A static file served by the same
server in the same run is the baseline: each endpoint's throughput is printed as a ratio of it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prod_bench \\
        .venv/bin/python bench/bench_load.py [--duration 10] [--connections 50] [--python]

Targets: no socket errors, no 5xx and no non-2xx, and the rule page p99 under 100 ms at 50
connections. Exits 1 when a target is missed with --strict. Stops the server on exit.
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
# (label, method, path, body)
ENDPOINTS: list[tuple[str, str, str, str | None]] = [
    ("static file (baseline)", "GET", "/static/css/site.css", None),
    ("rule page", "GET", f"/rules/{SEED_RULE}/", None),
    ("rule list ?q=powershell", "GET", "/rules/?q=powershell", None),
    (
        "indicator API lookup",
        "GET",
        "/api/indicators/?field=ScriptBlockText&kind=contains&value=Test-NetConnection",
        None,
    ),
    ("sandbox API POST", "POST", "/api/sandbox/", SANDBOX_BODY),
]
RULE_PAGE_P99_TARGET_MS = 100.0


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


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = open(env["BENCH_SERVER_LOG"], "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(Path(PYTHON).with_name("gunicorn")), "catalog.wsgi", "-c", "catalog/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited with {proc.returncode}; see {env['BENCH_SERVER_LOG']}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    sys.exit("gunicorn did not answer /healthz within 120 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # gunicorn's graceful shutdown of master and workers
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


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


def report(results: list[Result], connections: int, duration: int) -> list[str]:
    baseline = results[0].rps or 1.0
    lines = [
        f"{len(results)} endpoints, {connections} connections, {duration} s each "
        f"(tool: {results[0].tool}); ratio = req/s / static file req/s",
        f"{'endpoint':<26} {'req/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>9} {'non-2xx':>8} {'5xx':>5} {'sock err':>8}  statuses",
    ]
    for r in results:
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"{r.label:<26} {r.rps:>9.1f} {r.rps / baseline:>6.3f} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>8.1f} {r.requests:>9} {r.non_2xx:>8} {r.status_5xx:>5} "
            f"{r.socket_errors:>8}  {statuses}"
        )
    return lines


# Long on purpose: one benchmark run, its phases in the order they print.
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--python", action="store_true", help="use the Python generator")
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
    use_wrk = shutil.which("wrk") is not None and not args.python
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_load_"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=url,
        DEBUG="0",
        STATIC_MANIFEST="1",
        STATIC_ROOT=str(tmp / "static"),
        SANDBOX_PRELOAD="1",
        SANDBOX_THROTTLE=os.environ.get("SANDBOX_THROTTLE", "100000000/min"),
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        BIND=f"127.0.0.1:{port}",
        ACCESS_LOG="/dev/null",
        LOG_LEVEL="ERROR",
        BENCH_SERVER_LOG=str(tmp / "server.log"),
    )
    rules = prepare_database(env, url)
    manage(env, "collectstatic", "--noinput", "-v0")
    proc = start_server(env, port)
    results: list[Result] = []
    try:
        base = f"http://127.0.0.1:{port}"
        print(
            f"gunicorn on {base} (pid {proc.pid}), {rules} rules, "
            f"load generator: {'wrk' if use_wrk else 'python'}",
            flush=True,
        )
        for endpoint in ENDPOINTS:
            label, method, path, body = endpoint
            # Warm up (caches, compiled sandbox, connections) outside the measurement.
            for _ in range(5):
                request = urllib.request.Request(
                    base + path,
                    data=body.encode() if body else None,
                    method=method,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
            if use_wrk:
                result = run_wrk(
                    base,
                    label,
                    method,
                    path,
                    body,
                    args.duration,
                    args.connections,
                    args.threads,
                    tmp,
                )
            else:
                result = run_python_subprocess(args, port, endpoint)
            results.append(result)
            print(f"  {label}: {result.rps:.1f} req/s, p99 {result.p99_ms:.1f} ms", flush=True)
    finally:
        stop_server(proc)
    server_log = (tmp / "server.log").read_text(errors="replace")
    tracebacks = server_log.count("Traceback")
    shutil.rmtree(tmp, ignore_errors=True)

    lines = report(results, args.connections, args.duration)
    print("\n".join(lines))
    rule_page = next(r for r in results if r.label == "rule page")
    misses = []
    for r in results:
        if r.socket_errors or r.non_2xx or r.status_5xx:
            misses.append(
                f"{r.label}: {r.non_2xx} non-2xx, {r.status_5xx} 5xx, "
                f"{r.socket_errors} socket errors"
            )
    if rule_page.p99_ms >= RULE_PAGE_P99_TARGET_MS:
        misses.append(
            f"rule page p99 {rule_page.p99_ms:.1f} ms >= {RULE_PAGE_P99_TARGET_MS:.0f} ms"
        )
    if tracebacks:
        misses.append(f"{tracebacks} tracebacks in the server log")
    print("targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))
    return 1 if misses and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
