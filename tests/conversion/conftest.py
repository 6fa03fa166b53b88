"""Fixtures for the catalog-side conversion tests: a few rules, the conversion URLs wired in,
plain static files storage (no collectstatic manifest needed to render pages)."""

from __future__ import annotations

import hashlib

import pytest

from tests.conversion.rules_fixtures import (
    FIELDREF_YAML,
    PLACEHOLDER_YAML,
    PROCESS_YAML,
    SEED_YAML,
)


@pytest.fixture
def site(settings):
    """Conversion URLs in front of the site's, and static tags that need no manifest."""
    settings.ROOT_URLCONF = "tests.conversion.urls"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings


def make_rule(text: str, **fields):
    """A catalog Rule row straight from YAML (the importer is tested elsewhere)."""
    import yaml

    from catalog.models import Rule

    document = yaml.safe_load(text)
    logsource = document.get("logsource") or {}
    values = {
        "rule_id": document["id"],
        "title": document["title"],
        "level": document.get("level", ""),
        "status": document.get("status", ""),
        "product": logsource.get("product", ""),
        "category": logsource.get("category", ""),
        "service": logsource.get("service", ""),
        "raw_yaml": text,
        "source_path": f"rules/{document['id']}.yml",
        "content_hash": hashlib.sha256(text.encode()).hexdigest(),
        "search_text": document["title"],
    }
    values.update(fields)
    return Rule.objects.create(**values)


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
