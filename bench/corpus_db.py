"""Shared set-up for the Django benchmarks: a PostgreSQL database holding the full corpus.

The database named by ``DATABASE_URL`` is created if missing; if it holds no rules, the
SigmaHQ corpus is imported into it first (about 10 s).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the benchmarks import catalog and rules from the repo
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "sigmahq"

RULE_DIRS = ["rules", "rules-compliance", "rules-dfir", "rules-emerging-threats",
             "rules-placeholder", "rules-threat-hunting"]  # fmt: skip


def ensure_database(url: str) -> None:
    """Create the database named by ``url`` when the server does not have it yet."""
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_corpus(corpus: Path) -> None:
    """Migrate, and import the corpus when the catalog is empty (needs django.setup())."""
    from django.core.management import call_command

    from catalog.models import Rule
    from catalog.services import import_rules

    call_command("migrate", verbosity=0)
    if Rule.objects.exists():
        return
    dirs = [str(corpus / d) for d in RULE_DIRS if (corpus / d).is_dir()]
    if not dirs:
        sys.exit(f"the database is empty and no corpus was found under {corpus}")
    print(f"Importing the corpus from {corpus} ...", flush=True)
    print(f"  {import_rules(dirs, trigger='bench').summary()}", flush=True)


def start_site(default_url: str, corpus: Path, urlconf: Callable[[], str]) -> None:
    """Point Django at PostgreSQL (``DATABASE_URL``, else ``default_url``), set it up, make
    sure the corpus is in, and serve the site behind the URLconf ``urlconf()`` installs."""
    os.environ.setdefault("DATABASE_URL", default_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    os.environ.setdefault("STATIC_MANIFEST", "0")  # no collectstatic needed to render pages
    os.environ["DEBUG"] = "0"
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.urls import clear_url_caches

    ensure_corpus(corpus)
    settings.ROOT_URLCONF = urlconf()
    clear_url_caches()


def register_urlconf(name: str, patterns: list[Any]) -> str:
    """Make ``patterns`` importable as the module ``name`` (a throwaway URLconf)."""
    module = types.ModuleType(name)
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    sys.modules[name] = module
    return name


def report_targets(missed: list[str], *, strict: bool) -> int:
    """Print the verdict line; the exit status (1 for a miss only with ``--strict``)."""
    if missed:
        print("Missed: " + ", ".join(missed))
        return 1 if strict else 0
    print("All targets met.")
    return 0
