"""gunicorn settings for `scripts/prod.sh` (override with GUNICORN_* / WEB_* variables)."""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# Threads let one worker overlap database waits; workers use both cores.
workers = int(os.environ.get("WEB_WORKERS", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Workers load the app (and the compiled sandbox rules) before forking.
preload_app = True
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
limit_request_line = 8190
accesslog = os.environ.get("ACCESS_LOG", "-")
errorlog = "-"
