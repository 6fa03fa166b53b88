"""Shared set-up for the Django benchmarks: a PostgreSQL database holding the full corpus."""

from __future__ import annotations

import sys
from pathlib import Path

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
