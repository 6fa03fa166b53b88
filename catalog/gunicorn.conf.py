"""gunicorn settings, used when ``WEB_SERVER=gunicorn`` (the default server is granian: see
``scripts/run_web.sh`` and the README's "Production" section for the figures behind it).

Tuned for the benchmark in ``bench/bench_load.py``: gthread workers with enough threads that a
slow request never blocks the cheap ones queued behind it, a deep listen backlog and
keep-alive long enough for a load balancer's pooled connections.
"""

import multiprocessing
import os

import gunicorn.http.wsgi

# No "Server: gunicorn" (finding 12): the name gunicorn writes on every response.
gunicorn.http.wsgi.SERVER = "sigma-catalog"

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = "gthread"
backlog = int(os.environ.get("WEB_BACKLOG", "2048"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = int(os.environ.get("WEB_KEEPALIVE", "15"))
# gthread holds at most this many connections per worker; past it, accepts wait in the backlog.
worker_connections = 1000
# Workers load the app (and the compiled sandbox rules) before forking.
preload_app = True
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = 500
limit_request_line = 8190
accesslog = os.environ.get("ACCESS_LOG", "-") or None
errorlog = "-"


def post_fork(server: object, worker: object) -> None:
    """Each worker starts its own heavy-evaluation helpers (catalog.offload), never the
    master's: a helper's pipe serves one process."""
    from catalog import offload

    offload.start()
