"""The stored changes answers (catalog.releases.store_changes): always what a fresh computation
gives, rebuilt when an import changes a release or ``--force`` reorders them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from catalog.models import Release, ReleaseChanges
from catalog.queries.releases import release_changes, render_changes
from tests.catalog.test_releases import release, rule_id, text, write

pytestmark = pytest.mark.django_db
LISTS = ("added", "modified", "removed", "deprecated")


def assert_stored_is_fresh(client: Client) -> None:
    """Every release's stored answer, its lists and what the API serves equal a computation
    from the revisions made now."""
    for row in Release.objects.all():
        served = client.get(f"/api/releases/{row.name}/changes/")
        assert served["Content-Type"] == "application/json"
        fresh = release_changes(row)
        stored = ReleaseChanges.objects.get(release=row).payload
        assert stored == render_changes(fresh), row.name
        assert served.content.decode() == stored
        assert [getattr(row, key) for key in LISTS] == [getattr(fresh, key) for key in LISTS]
        classes = [c["class"] for c in fresh.changes]
        assert row.counts == {
            "rules": len(row.rule_ids),
            **{key: len(getattr(fresh, key)) for key in LISTS},
            **{name: classes.count(name) for name in ("detection", "tuning", "metadata")},
        }


def three_releases(folder: Path) -> None:
    release([write(folder, {"a.yml": text(1), "b.yml": text(2), "c.yml": text(3),
                            "d.yml": text(4)})], "r2026-01-01")  # fmt: skip
    second = {
        "a.yml": text(1, level="high"),  # metadata
        "b.yml": text(2, values=("a.exe", "b.exe")),  # detection
        "d.yml": text(4, filters=("C:\\Windows\\", "D:\\")),  # tuning
        "e.yml": text(5),  # added; c.yml removed
    }
    release([write(folder, second)], "r2026-02-01")
    third = {**second, "b.yml": text(2, values=("c.exe",)), "e.yml": text(5, status="deprecated")}
    release([write(folder, third)], "r2026-03-01")


def test_stored_answers_equal_fresh_ones(client: Client, tmp_path: Path) -> None:
    three_releases(tmp_path / "r")
    assert ReleaseChanges.objects.count() == 3
    assert_stored_is_fresh(client)
    body = json.loads(ReleaseChanges.objects.get(release__name="r2026-03-01").payload)
    assert (body["release"], body["since"], body["deprecated"]) == (
        "r2026-03-01", None, [rule_id(5)],
    )  # fmt: skip
    assert [c["id"] for c in body["changes"]] == [rule_id(2), rule_id(5)]


def test_reimporting_a_release_that_changed_rewrites_its_answer(
    client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "r"
    three_releases(folder)
    before = ReleaseChanges.objects.get(release__name="r2026-03-01")
    release([write(folder, {"a.yml": text(1, level="medium"), "f.yml": text(6)})], "r2026-03-01")
    after = ReleaseChanges.objects.get(release__name="r2026-03-01")
    assert after.version != before.version and after.payload != before.payload
    assert rule_id(6) in json.loads(after.payload)["added"]
    assert_stored_is_fresh(client)
    # Unchanged files: nothing written, not even the answer.
    release([write(folder, {"a.yml": text(1, level="medium"), "f.yml": text(6)})], "r2026-03-01")
    assert ReleaseChanges.objects.get(release__name="r2026-03-01").version == after.version


def test_forced_reimport_of_an_earlier_release_rebuilds_the_answers_after_it(
    client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "r"
    three_releases(folder)
    versions = dict(ReleaseChanges.objects.values_list("release__name", "version"))
    # r2026-02-01 again, forced: it becomes the latest; r2026-03-01 now follows r2026-01-01.
    release([write(folder, {"a.yml": text(1, level="high"), "g.yml": text(7)})], "r2026-02-01",
            force=True)  # fmt: skip
    order = list(Release.objects.order_by("sequence").values_list("name", flat=True))
    assert order == ["r2026-01-01", "r2026-03-01", "r2026-02-01"]
    now = dict(ReleaseChanges.objects.values_list("release__name", "version"))
    assert now["r2026-01-01"] == versions["r2026-01-01"]  # before the moved one: untouched
    assert now["r2026-03-01"] != versions["r2026-03-01"]
    assert now["r2026-02-01"] != versions["r2026-02-01"]
    assert_stored_is_fresh(client)
    third = Release.objects.get(name="r2026-03-01")
    assert third.removed == [rule_id(3)] and rule_id(5) in third.added  # against r2026-01-01


def test_forced_reimport_with_the_same_files_still_rebuilds(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    release([write(folder, {"a.yml": text(1)})], "r1")
    release([write(folder, {"a.yml": text(1)})], "r2")
    release([write(folder, {"a.yml": text(1)})], "r1", force=True)  # no revision written
    first = Release.objects.get(name="r1")
    assert first.added == [] and first.counts["added"] == 0  # now after r2: nothing new
    assert Release.objects.get(name="r2").added == [rule_id(1)]  # now the first one
    assert_stored_is_fresh(client)


def test_since_answers_follow_a_reimport(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    three_releases(folder)
    url = "/api/releases/r2026-03-01/changes/?since=r2026-01-01"
    first = client.get(url, HTTP_COOKIE="sessionid=x").json()  # past the page cache
    newest, oldest = (Release.objects.get(name=n) for n in ("r2026-03-01", "r2026-01-01"))
    assert first == release_changes(newest, oldest).to_dict()
    assert client.get(url, HTTP_COOKIE="sessionid=x").json() == first  # from the cache
    release([write(folder, {"a.yml": text(1), "h.yml": text(8)})], "r2026-03-01")
    again = client.get(url, HTTP_COOKIE="sessionid=x").json()
    assert rule_id(8) in again["added"] and again != first


def test_a_release_without_a_stored_answer_is_answered_and_stored(
    client: Client, tmp_path: Path
) -> None:
    three_releases(tmp_path / "r")
    ReleaseChanges.objects.all().delete()  # as recorded before answers were stored
    body = client.get("/api/releases/r2026-02-01/changes/", HTTP_COOKIE="sessionid=x")
    assert body.status_code == 200
    assert ReleaseChanges.objects.filter(release__name="r2026-02-01").count() == 1
    page = client.get("/releases/r2026-01-01/", HTTP_COOKIE="sessionid=x")
    assert page.status_code == 200 and ReleaseChanges.objects.count() == 2
    assert_stored_is_fresh(client)


def test_other_renderings_parse_the_stored_answer(client: Client, tmp_path: Path) -> None:
    three_releases(tmp_path / "r")
    url = "/api/releases/r2026-02-01/changes/"
    plain = client.get(url).json()
    indented = client.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented["Content-Type"] == "application/json"
    assert b'\n  "release"' in indented.content and indented.json() == plain
    assert client.get(url + "?format=json").json() == plain
