"""The one settings module, driven by environment variables (see .env.example).

DATABASE_URL unset -> an embedded SQLite file under var/; set -> that database (PostgreSQL
in production, through psycopg 3).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import dj_database_url

from catalog.cache_backends import cache_from_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    # A fixed development key keeps `runserver` zero-setup; production must set SECRET_KEY.
    # The "django-insecure-" prefix makes `check --deploy` flag it (security.W009).
    "django-insecure-dev-key-set-SECRET_KEY-in-production-0123456789abcdefghijklmnop"
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_filters",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (no CDN)
    "catalog",
    # Background jobs (catalog/jobs): before django_tasks_db so that our `db_worker` (which
    # first sweeps jobs whose worker was lost) overrides the package's command.
    "catalog.jobs",
    "django_tasks",
    "django_tasks_db",
]

# The task queue is the database (django-tasks + django-tasks-db): no broker to run, queued
# jobs survive restarts, workers anywhere reach it through DATABASE_URL (`manage.py db_worker`).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

MIDDLEWARE = [
    # Outermost: sees every 429/503, including the throttles' and the busy sandbox's.
    "catalog.middleware.DrainRefusedBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "catalog.middleware.NulPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Whole cached pages before sessions, CSRF and auth (catalog/caching.py).
    "catalog.caching.PageCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "catalog.throttling.AdminLoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "catalog.middleware.SecurityHeadersMiddleware",
    "catalog.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "catalog.urls"
WSGI_APPLICATION = "catalog.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var"))
if "DATABASE_URL" not in os.environ:
    # The embedded default must work on a fresh clone with no setup step.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'catalog.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # A bounded psycopg 3 pool per process instead of one persistent connection per thread:
    # runserver (a new thread per client connection) and thread-pool servers would otherwise
    # leave a connection behind per thread (finding 13). Requests return theirs to the pool;
    # at most DB_POOL_MAX_SIZE stay open per process, idle ones close after DB_POOL_MAX_IDLE.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # pooling replaces persistent connections
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "0")),
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "8")),
        "max_idle": float(os.environ.get("DB_POOL_MAX_IDLE", "60")),
        # Waiting longer than this for a free connection answers 503 (a PoolTimeout).
        "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the site read while an import writes; the timeout rides out the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", False)
# Without collected files (development, tests) whitenoise serves straight from the finders.
STATIC_ROOT = (
    Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles")) if STATIC_MANIFEST else None
)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            # Hashed, compressed files need `collectstatic` first: production (scripts/prod.sh)
            # turns this on; development and tests serve the source files as they are.
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Uploads (rule archives in the admin, files in the sandbox) and request bodies.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
RULE_ARCHIVE_MAX_BYTES = int(os.environ.get("RULE_ARCHIVE_MAX_BYTES", 200 * 1024 * 1024))

# The one cache behind the page cache, throttles and conversion counts: shared by every worker.
# CACHE_URL unset -> files under CACHE_DIR (one machine, no extra service); redis://... or
# rediss://... -> Redis or Valkey (several machines); locmem:// -> this process only.
CACHE_URL = os.environ.get("CACHE_URL", "").strip()
CACHE_DIR = Path(os.environ.get("CACHE_DIR", DATA_DIR / "cache"))
if not CACHE_URL and "CACHE_DIR" not in os.environ and "PYTEST_VERSION" in os.environ:
    # A test run keeps its own directory (servers it starts inherit it), so concurrent runs
    # never share throttle counts; the run that made it removes it.
    CACHE_DIR = Path(tempfile.mkdtemp(prefix="catalog-test-cache-"))
    os.environ["CACHE_DIR"] = str(CACHE_DIR)
    atexit.register(shutil.rmtree, CACHE_DIR, True)
CACHES = {
    "default": cache_from_url(CACHE_URL, CACHE_DIR, os.environ.get("CACHE_KEY_PREFIX", "catalog"))
}
# /healthz reuses a database check this long per process (catalog/health.py).
HEALTHZ_REUSE_SECONDS = float(os.environ.get("HEALTHZ_REUSE_SECONDS", "1"))

REST_FRAMEWORK = {
    # JSON only in production: the browsable API (HTML forms, every endpoint listed) is a
    # development aid (finding 12).
    "DEFAULT_RENDERER_CLASSES": (
        ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
        if DEBUG
        else ["rest_framework.renderers.JSONRenderer"]
    ),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "catalog.api.pagination.CatalogPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_THROTTLE_RATES": {"sandbox": os.environ.get("SANDBOX_THROTTLE", "120/min")},
    # Every /api/ error as {"detail", "parameter"[, "choices"]} (see catalog/api/errors.py).
    "EXCEPTION_HANDLER": "catalog.api.errors.api_exception_handler",
}

# Throttles (catalog/throttling.py), counted in the shared cache per client address.
# TRUSTED_PROXIES: how many proxies in front of the site append to X-Forwarded-For; 0 (the
# default) ignores that header, so a client cannot pick its own address.
TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
# Heavy requests (sandbox events/uploads/large bodies, conversion export): in flight per client
# (a counter that expires after HEAVY_SLOT_SECONDS, so a crashed request frees it) and heavy
# sandbox evaluations per process (the excess is refused at once with Retry-After).
HEAVY_PER_CLIENT = int(os.environ.get("HEAVY_PER_CLIENT", "2"))
HEAVY_PER_PROCESS = int(os.environ.get("HEAVY_PER_PROCESS", "1"))
HEAVY_SLOT_SECONDS = int(os.environ.get("HEAVY_SLOT_SECONDS", "120"))
# HEAVY_OFFLOAD: run heavy sandbox evaluations in helper processes (catalog/offload.py), one per
# heavy slot per web process, spawned at start, at a lower CPU priority (HEAVY_OFFLOAD_NICE), so
# cheap requests served by the same process never wait behind them. scripts/prod.sh turns it
# on; off, they run in the request thread (runserver, tests, commands).
HEAVY_OFFLOAD = env_bool("HEAVY_OFFLOAD", False)
HEAVY_OFFLOAD_NICE = int(os.environ.get("HEAVY_OFFLOAD_NICE", "5"))
HEAVY_OFFLOAD_TIMEOUT = float(os.environ.get("HEAVY_OFFLOAD_TIMEOUT", "60"))
# A conversion with a pasted pipeline (catalog.conversion.convert_with_pipeline) runs in a forked
# child that is killed after this many seconds (the request gets a 422); an ordinary one takes
# well under a second, even for the largest corpus rule.
CUSTOM_PIPELINE_SECONDS = float(os.environ.get("CUSTOM_PIPELINE_SECONDS", "5"))
# /admin/ sign-in: this many failures per address or username per window, then 429.
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_SECONDS = int(os.environ.get("LOGIN_FAILURE_SECONDS", "300"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Sigma Catalog API",
    "DESCRIPTION": "Sigma detection rules, indicator counts, ATT&CK coverage and a sandbox.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# Security headers; HSTS is opt-in because it must only be sent over HTTPS.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

# Example rules imported by `manage.py load_examples` when the catalog is empty.
EXAMPLE_RULES_DIR = BASE_DIR / "examples" / "rules"
