"""Shared fixtures: where the SigmaHQ corpus lives (../shared beside the repo), example rules.

Builders (rule texts, rule rows, module-wide imports) are in :mod:`tests.factories`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "sigmahq"
EXAMPLES = REPO / "examples"
EXAMPLE_RULES = EXAMPLES / "rules"
CORPUS_RULE_DIRS = [
    "rules",
    "rules-compliance",
    "rules-dfir",
    "rules-emerging-threats",
    "rules-placeholder",
    "rules-threat-hunting",
]


def corpus_dirs() -> list[Path]:
    return [CORPUS / name for name in CORPUS_RULE_DIRS if (CORPUS / name).is_dir()]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The SigmaHQ corpus folder; tests that need it skip with a reason when it is absent."""
    if not (CORPUS / "rules").is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS} (clone with ../shared beside the repo)")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_rule_files(corpus: Path) -> list[Path]:
    return sorted(p for d in corpus_dirs() for p in d.rglob("*.yml"))


@pytest.fixture(scope="module")
def example_catalog(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The example rules, imported once for the module and rolled back after it."""
    from tests.factories import imported_for_module

    with imported_for_module(django_db_blocker, [EXAMPLE_RULES], trigger="examples"):
        yield


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point DATA_DIR (job uploads and results) at a temporary folder for the whole run.

    Without it, tests that post imports or large sandbox files leave their uploads under the
    developer's own ``var/jobs/`` even though their database rows roll back.
    """
    from django.conf import settings

    saved = settings.DATA_DIR
    settings.DATA_DIR = tmp_path_factory.mktemp("data")
    try:
        yield
    finally:
        settings.DATA_DIR = saved
