# Sourced by serve.sh and prod.sh just before they exec the web server: start JOB_WORKERS
# (default 1; 0 when workers run elsewhere) `manage.py db_worker` processes in the background.
# Each is watched: when the web server (this script's PID, kept by exec) stops, so does it.
web_pid=$$
for _ in $(seq "${JOB_WORKERS:-1}"); do
  (
    .venv/bin/python manage.py db_worker --no-reload -v0 &
    worker=$!
    trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT
    while kill -0 "$web_pid" 2>/dev/null && kill -0 "$worker" 2>/dev/null; do sleep 1; done
  ) &
done
