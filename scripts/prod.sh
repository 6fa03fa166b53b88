#!/usr/bin/env bash
# Production-like start: DEBUG off, static files collected and served by whitenoise, gunicorn.
# Uses DATABASE_URL when set (PostgreSQL in production), else the embedded SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DEBUG=0
export STATIC_MANIFEST=1
export SANDBOX_PRELOAD="${SANDBOX_PRELOAD:-1}"
# Heavy sandbox evaluations in helper processes (catalog/offload.py): the tail of cheap requests.
export HEAVY_OFFLOAD="${HEAVY_OFFLOAD:-1}"
if [ -z "${SECRET_KEY:-}" ]; then
  # Local trial only: a random key per data directory. Production sets SECRET_KEY itself.
  keyfile="${DATA_DIR:-var}/secret_key"
  mkdir -p "$(dirname "$keyfile")"
  [ -s "$keyfile" ] || .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(50))" > "$keyfile"
  SECRET_KEY="$(cat "$keyfile")"
  export SECRET_KEY
fi
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py load_examples
. scripts/start_worker.sh  # background job worker(s), stopped with the web server
exec bash scripts/run_web.sh
