"""Query counts of the release pages and the changes API stay constant as releases grow."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from catalog.releases import ReleaseSpec
from catalog.services import import_rules
from tests.api.test_query_counts import queries
from tests.catalog.test_releases import rule_id, text, write

pytestmark = pytest.mark.django_db


def import_release(folder: Path, name: str, rules: int, variant: int) -> None:
    """``rules`` rules, each with ``variant`` extra values (a new variant changes them all)."""
    values = tuple(f"v{n}.exe" for n in range(variant + 1))
    files = {f"r{n}.yml": text(n, values=values) for n in range(1, rules + 1)}
    import_rules([str(write(folder, files))], release=ReleaseSpec(name=name))


def counts(client: Client, release: str, revision: int) -> dict[str, int]:
    return {
        "list": queries(client, "/releases/"),
        "detail": queries(client, f"/releases/{release}/"),
        "filtered": queries(client, f"/releases/{release}/?level=low&tactic=execution"),
        "revision": queries(client, f"/rules/{rule_id(1)}/revisions/{revision}/"),
        "revision-from": queries(client, f"/rules/{rule_id(1)}/revisions/{revision}/?from=1"),
        "changes": queries(client, f"/api/releases/{release}/changes/"),
        "changes-since": queries(client, f"/api/releases/{release}/changes/?since=r2026-01-01"),
        "rule-list": queries(client, "/rules/?sort=-changed&changed_since=r2026-01-01"),
    }


def test_release_pages_queries_do_not_grow(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    import_release(folder, "r2026-01-01", 3, 0)
    import_release(folder, "r2026-02-01", 3, 1)
    import_release(folder, "r2026-03-01", 3, 2)  # a span for ``since``: its diffs computed
    small = counts(client, "r2026-03-01", 3)
    # More releases, ten times the rules, every one of them modified, more revisions.
    for month, name in enumerate(["r2026-04-01", "r2026-05-01", "r2026-06-01"], start=3):
        import_release(folder, name, 30, month)
    large = counts(client, "r2026-06-01", 6)
    assert large == small
    assert small["detail"] <= 8, small  # the release, the one before, its rows: no N+1
