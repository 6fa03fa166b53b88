#!/usr/bin/env bash
# One command: install, migrate, load the example rules if the catalog is empty, run the site
# on http://127.0.0.1:8000 (embedded SQLite unless DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DEBUG="${DEBUG:-1}"
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py load_examples
. scripts/start_worker.sh  # background job worker(s), stopped with the web server
exec .venv/bin/python manage.py runserver "${ADDRESS:-127.0.0.1:8000}"
