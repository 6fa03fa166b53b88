"""Shared fixtures: where the SigmaHQ corpus lives (../shared beside the repo), example rules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "sigmahq"
EXAMPLES = REPO / "examples"
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
