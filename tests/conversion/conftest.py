"""Fixtures for the catalog-side conversion tests: a few rules, the conversion URLs wired in,
plain static files storage (no collectstatic manifest needed to render pages)."""

from __future__ import annotations

import pytest

from tests.conversion.rules_fixtures import (
    FIELDREF_YAML,
    PLACEHOLDER_YAML,
    PROCESS_YAML,
    SEED_YAML,
)
from tests.factories import make_rule


@pytest.fixture
def site(settings):
    """Conversion URLs in front of the site's, and static tags that need no manifest."""
    settings.ROOT_URLCONF = "tests.conversion.urls"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings


@pytest.fixture
def seed_rule(db):
    return make_rule(SEED_YAML, source_path="rules/windows/posh_ps_test_netconnection.yml")


@pytest.fixture
def catalog_rules(db, seed_rule):
    return [
        seed_rule,
        make_rule(PROCESS_YAML),
        make_rule(PLACEHOLDER_YAML),
        make_rule(FIELDREF_YAML),
    ]
