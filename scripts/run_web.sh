#!/usr/bin/env bash
# Start the web server only (no migrate, no collectstatic): what scripts/prod.sh ends with, and
# what bench/bench_load.py and the multi-node test start. WEB_SERVER picks the server:
#   granian (default, pinned in requirements.txt), gunicorn (catalog/gunicorn.conf.py) or
#   uvicorn (ASGI, requirements-dev.txt: for comparison only).
# BIND=host:port, WEB_WORKERS (processes), WEB_THREADS (blocking threads per process),
# WEB_BACKLOG, WEB_KEEPALIVE (seconds), ACCESS_LOG (- for stdout, empty for none).
set -euo pipefail
cd "$(dirname "$0")/.."
bind="${BIND:-127.0.0.1:8000}"
host="${bind%:*}"
port="${bind##*:}"
workers="${WEB_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
[ "$workers" -ge 2 ] || workers=2
threads="${WEB_THREADS:-8}"
backlog="${WEB_BACKLOG:-2048}"
access_log="${ACCESS_LOG--}"
case "${WEB_SERVER:-granian}" in
  granian)
    args=(--interface wsgi --host "$host" --port "$port" --workers "$workers"
          --blocking-threads "$threads" --backlog "$backlog" --http 1 --no-ws
          --respawn-failed-workers --log-level "${GRANIAN_LOG_LEVEL:-warning}")
    [ -n "$access_log" ] && args+=(--access-log)
    [ -n "${WEB_MAX_RSS_MB:-}" ] && args+=(--workers-max-rss "$WEB_MAX_RSS_MB")
    exec .venv/bin/granian "${args[@]}" catalog.wsgi:application
    ;;
  gunicorn)
    exec .venv/bin/gunicorn catalog.wsgi -c catalog/gunicorn.conf.py
    ;;
  uvicorn)
    args=(--host "$host" --port "$port" --workers "$workers" --backlog "$backlog"
          --no-server-header --timeout-keep-alive "${WEB_KEEPALIVE:-15}" --log-level warning)
    [ -n "$access_log" ] || args+=(--no-access-log)
    exec .venv/bin/uvicorn "${args[@]}" catalog.asgi:application
    ;;
  *)
    echo "WEB_SERVER must be granian, gunicorn or uvicorn (got: $WEB_SERVER)" >&2
    exit 2
    ;;
esac
