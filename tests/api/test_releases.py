"""The releases API, changelog pages and Atom feed; the three-release corpus import."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from django.test import Client

from catalog.models import Release, ReleaseChanges, RuleRevision
from catalog.queries.releases import release_changes, render_changes
from catalog.releases import ReleaseSpec
from catalog.services import import_rules
from rules.model import identity_value
from tests.catalog.test_releases import rule_id, text, write
from tests.conftest import CORPUS, SHARED

pytestmark = pytest.mark.django_db
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def two_releases(tmp_path: Path) -> None:
    folder = write(tmp_path / "r", {"a.yml": text(1), "b.yml": text(2), "c.yml": text(3)})
    import_rules([str(folder)], release=ReleaseSpec(name="r2026-01-01"))
    write(folder, {"a.yml": text(1, values=("a.exe", "z.exe")), "b.yml": text(2), "d.yml": text(4)})
    import_rules([str(folder)], release=ReleaseSpec(name="r2026-04-01"))


def test_changes_api_has_the_issue_shape(client: Client, two_releases: None) -> None:
    body = client.get("/api/releases/r2026-04-01/changes/").json()
    assert (body["added"], body["modified"], body["removed"], body["deprecated"]) == (
        [rule_id(4)], [rule_id(1)], [rule_id(3)], [],
    )  # fmt: skip
    (change,) = body["changes"]
    assert change == {
        "id": rule_id(1),
        "class": "detection",
        "fields": ["detection"],
        "indicators_added": [{"field": "Image", "kind": "endswith", "value": "z.exe"}],
        "indicators_removed": [],
        "exclusions_added": [],
        "exclusions_removed": [],
    }
    since = client.get("/api/releases/r2026-04-01/changes/?since=r2026-01-01").json()
    assert since["modified"] == body["modified"]


def test_release_errors_use_the_one_shape(client: Client, two_releases: None) -> None:
    assert client.get("/api/releases/nope/changes/").json() == {
        "detail": "No release is named 'nope'.", "parameter": None,
    }  # fmt: skip
    bad = client.get("/api/releases/r2026-04-01/changes/?since=r2026-04-01")
    assert bad.status_code == 400
    assert bad.json()["parameter"] == "since" and bad.json()["choices"] == ["r2026-01-01"]
    assert client.get("/api/releases/?bogus=1").json()["parameter"] == "bogus"
    wrong = client.get(f"/api/rules/{rule_id(1)}/diff/?to=7")
    assert (wrong.status_code, wrong.json()["choices"]) == (400, ["1", "2"])
    assert client.get("/api/rules/nope/revisions/").status_code == 404


def test_release_list_revisions_and_diff(client: Client, two_releases: None) -> None:
    releases = client.get("/api/releases/").json()
    assert [r["name"] for r in releases] == ["r2026-04-01", "r2026-01-01"]
    assert releases[0]["counts"]["added"] == 1 and releases[0]["counts"]["detection"] == 1
    revisions = client.get(f"/api/rules/{rule_id(1)}/revisions/").json()
    assert [(r["number"], r["release"], r["class"]) for r in revisions] == [
        (1, "r2026-01-01", None), (2, "r2026-04-01", "detection"),
    ]  # fmt: skip
    diff = client.get(f"/api/rules/{rule_id(1)}/diff/?from=1&to=2").json()
    assert diff["indicators_added"][0]["value"] == "z.exe"
    assert diff["changes"][0]["field"] == "detection"


def test_pages_history_and_removed_rule(client: Client, two_releases: None) -> None:
    assert b"r2026-04-01" in client.get("/releases/").content
    page = client.get("/releases/r2026-04-01/").content.decode()
    assert "Modified: detection" in page and "z.exe" in page
    assert f"/rules/{rule_id(1)}/revisions/2/" in page
    rule_page = client.get(f"/rules/{rule_id(1)}/").content.decode()
    assert 'id="history"' in rule_page and "r2026-01-01" in rule_page
    revision = client.get(f"/rules/{rule_id(1)}/revisions/2/?from=1").content.decode()
    assert "Semantic diff r1" in revision and "z.exe" in revision
    removed = client.get(f"/rules/{rule_id(3)}/")
    assert removed.status_code == 200
    assert "Removed in release" in removed.content.decode()
    assert client.get(f"/rules/{rule_id(1)}/revisions/9/").status_code == 404


def test_atom_feed_is_atom(client: Client, two_releases: None) -> None:
    response = client.get("/releases/feed.atom")
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = ElementTree.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert feed.find(f"{ATOM}{required}") is not None
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 2
    for entry in entries:
        for required in ("id", "title", "updated", "link", "summary"):
            assert entry.find(f"{ATOM}{required}") is not None, required
    assert "1 added" in entries[0].find(f"{ATOM}summary").text  # type: ignore[union-attr]
    assert client.get("/releases/feed/default.atom").status_code == 200


# ------------------------------------------------------------------ the three-release corpus

RELEASES = SHARED / "corpus" / "releases"


def _tree_from_zip(path: Path) -> dict[str, tuple[str, str]]:
    """{rule id: (sha256 of the file's bytes, path)} for every rule file of a release zip."""
    found: dict[str, tuple[str, str]] = {}
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if name.startswith("rules") and name.endswith((".yml", ".yaml")):
                _add(found, archive.read(name), name)
    return found


def _tree_from_dirs(folders: list[Path]) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".yml", ".yaml") and path.is_file():
                _add(found, path.read_bytes(), str(path))
    return found


def _add(found: dict[str, tuple[str, str]], data: bytes, name: str) -> None:
    try:
        document = yaml.load(io.BytesIO(data), Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        found.setdefault(document["id"], (hashlib.sha256(data).hexdigest(), name))


def _indicator_sets(sigma_id: str, name: str) -> tuple[set[tuple[str, str, str]], ...]:
    """Indicator identities of a rule's revision before ``name`` and its last one in it."""
    revisions = list(RuleRevision.objects.filter(sigma_id=sigma_id).select_related("release"))
    new = [r for r in revisions if r.release.name == name][-1]
    old = [r for r in revisions if r.release.sequence < new.release.sequence][-1]
    return tuple(
        {(p["field"], p["kind"], identity_value(p["kind"], p["value"])) for p in r.indicators}
        for r in (old, new)
    )


@pytest.mark.corpus
def test_three_releases_match_the_file_trees(client: Client) -> None:
    zips = [RELEASES / f"sigma_all_rules-{n}.zip" for n in ("r2026-01-01", "r2026-04-01")]
    if not all(z.is_file() for z in zips) or not (CORPUS / "rules").is_dir():
        pytest.skip("the release archives or the SigmaHQ corpus are not in ../shared")
    folders = sorted(CORPUS.glob("rules*"))
    trees = [_tree_from_zip(zips[0]), _tree_from_zip(zips[1]), _tree_from_dirs(folders)]
    names = ["r2026-01-01", "r2026-04-01", "main-2026-08-05"]
    for paths, name in zip([[zips[0]], [zips[1]], folders], names, strict=True):
        import_rules([str(p) for p in paths], release=ReleaseSpec(name=name))
    stored = set(client.get("/api/releases/r2026-01-01/changes/").json()["added"])
    for older, newer, name in ((trees[0], trees[1], names[1]), (trees[1], trees[2], names[2])):
        # Files the catalog refused (not a rule it can store) are in neither list.
        older = {k: v for k, v in older.items() if k in stored or k in newer}
        body = client.get(f"/api/releases/{name}/changes/").json()
        imported = set(body["added"]) | set(body["modified"]) | stored
        assert set(body["removed"]) == {i for i in older if i not in newer} & stored
        assert set(body["added"]) == {i for i in newer if i not in older} & imported
        assert (
            set(body["modified"])
            == {i for i in newer if i in older and newer[i][0] != older[i][0]} & imported
        )
        moved = [i for i in newer if i in older and newer[i][0] == older[i][0]]
        assert not set(moved) & set(body["modified"])
        for change in body["changes"]:
            old, new = _indicator_sets(change["id"], name)
            added = {(p["field"], p["kind"], identity_value(p["kind"], p["value"]))
                     for p in change["indicators_added"]}  # fmt: skip
            removed = {(p["field"], p["kind"], identity_value(p["kind"], p["value"]))
                       for p in change["indicators_removed"]}  # fmt: skip
            assert (added, removed) == (new - old, old - new), change["id"]
        stored = (stored - set(body["removed"])) | set(body["added"])
    for name in names:  # the stored answers are what a computation from the revisions gives
        row = Release.objects.get(name=name)
        assert ReleaseChanges.objects.get(release=row).payload == render_changes(
            release_changes(row)
        ), name
    again = import_rules([str(p) for p in folders], release=ReleaseSpec(name=names[2]))
    assert again.release is not None and again.release.revisions_written == 0
    assert (again.created, again.updated) == (0, 0)
