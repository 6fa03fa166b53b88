"""Releases in the rule list, the rule API and the home page: ``changed_since``, the
"changed in the latest release" facet, the sort by last change, the latest release box."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
from django.test import Client

from catalog.models import Release
from catalog.releases import ReleaseSpec
from catalog.services import import_rules
from tests.api.conftest import results
from tests.catalog.test_releases import rule_id, text, write

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_releases(tmp_path: Path) -> None:
    """r1: rules 1-3; r2: 1 changed, 3 removed, 4 new; r3: 2 changed, 5 new."""
    # The session's corpus catalog (tests/conftest.py) is a date-named release: these tests
    # need to know which release is the latest (rolled back after each test).
    Release.objects.all().delete()
    folder = tmp_path / "r"
    changed = text(1, values=("a.exe", "z.exe"))
    steps = [
        ("r2026-01-01", {"a.yml": text(1), "b.yml": text(2), "c.yml": text(3)}),
        ("r2026-04-01", {"a.yml": changed, "b.yml": text(2),
                         "d.yml": text(4)}),
        ("r2026-08-05", {"a.yml": changed, "b.yml": text(2, level="high"),
                         "d.yml": text(4), "e.yml": text(5)}),
    ]  # fmt: skip
    for name, files in steps:
        import_rules([str(write(folder, files))], release=ReleaseSpec(name=name))


def ids(client: Client, **params: str) -> list[str]:
    return [item["id"] for item in results(client, "/api/rules/", **params)]


@pytest.mark.usefixtures("three_releases")
@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("r2026-01-01", {1, 2, 4, 5}),  # after the release: not including it
        ("r2026-04-01", {2, 5}),
        ("r2026-08-05", set()),
        ("2026-04-01", {1, 2, 4, 5}),  # a date: releases on or after that day
        ("2026-04-02", {2, 5}),
        ("2025-12-31", {1, 2, 4, 5}),  # every rule present was added since
        ("2027-01-01", set()),
    ],
)
def test_changed_since_in_the_api(client: Client, since: str, expected: set[int]) -> None:
    assert set(ids(client, changed_since=since)) == {rule_id(n) for n in expected}


@pytest.mark.usefixtures("three_releases")
@pytest.mark.parametrize("since", ["r2099-01-01", "2026-02-30", "yesterday", "2026-4-1"])
def test_unknown_changed_since_is_a_400_in_the_one_shape(client: Client, since: str) -> None:
    response = client.get("/api/rules/", {"changed_since": since})
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == "changed_since"
    assert "r2026-04-01" in body["detail"] and "YYYY-MM-DD" in body["detail"]


@pytest.mark.usefixtures("three_releases")
def test_changed_since_on_the_rule_list_page(client: Client) -> None:
    page = client.get("/rules/", {"changed_since": "r2026-04-01"}).content.decode()
    assert "Rule 2" in page and "Rule 5" in page and "Rule 1<" not in page
    bad = client.get("/rules/", {"changed_since": "nope"})
    assert bad.status_code == 200
    html = unescape(bad.content.decode())
    assert "Ignored changed_since=nope" in html
    assert all(f"Rule {n}" in html for n in (1, 2, 4, 5))  # treated as no filter


@pytest.mark.usefixtures("three_releases")
def test_latest_release_facet_links_to_what_it_counts(client: Client) -> None:
    html = unescape(client.get("/rules/").content.decode())
    assert "In the latest release (r2026-08-05)" in html
    assert "?changed_since=r2026-04-01" in html
    assert len(ids(client, changed_since="r2026-04-01")) == 2
    # Counted over the other filters: level=high leaves rule 2 only.
    narrowed = unescape(client.get("/rules/", {"level": "high"}).content.decode())
    facet = narrowed.split("In the latest release (r2026-08-05)", 1)[1][:200]
    assert ">1<" in facet


def test_no_latest_release_facet_with_one_release(client: Client, tmp_path: Path) -> None:
    Release.objects.all().delete()
    import_rules([str(write(tmp_path / "r", {"a.yml": text(1)}))],
                 release=ReleaseSpec(name="r2026-01-01"))  # fmt: skip
    assert "In the latest release" not in client.get("/rules/").content.decode()


@pytest.mark.usefixtures("three_releases")
def test_sort_by_last_change_newest_revision_first(client: Client) -> None:
    # Within the releases (the session corpus, if loaded, has no revision: listed last).
    assert ids(client, sort="-changed", changed_since="2025-01-01") == [
        rule_id(n) for n in (2, 5, 1, 4)
    ]
    page = client.get("/rules/", {"sort": "-changed"}).content.decode()
    assert "Unknown sort" not in page
    positions = [page.index(f"Rule {n}<") for n in (2, 5, 1, 4)]
    assert positions == sorted(positions)
    assert 'value="-changed"' in page


@pytest.mark.usefixtures("three_releases")
def test_home_shows_the_latest_release_changes(client: Client) -> None:
    html = unescape(client.get("/").content.decode())
    box = html.split('id="release-h"', 1)[1].split("</section>", 1)[0]
    assert 'href="/releases/r2026-08-05/"' in box
    assert 'href="/releases/r2026-08-05/#h-added">New</a> <span class="count">1<' in box
    assert (
        'href="/releases/r2026-08-05/#h-detection">Detection changes</a> <span class="count">0<'
        in box
    )
    assert (
        'href="/releases/r2026-08-05/#h-metadata">Metadata only</a> <span class="count">1<' in box
    )


def test_home_without_releases_has_no_release_box(client: Client) -> None:
    Release.objects.all().delete()  # the corpus fixture's import is one (rolled back after)
    assert 'id="release-h"' not in client.get("/").content.decode()
