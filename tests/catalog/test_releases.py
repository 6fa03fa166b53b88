"""Releases and rule history (catalog.releases) through the importer and its command."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from catalog.models import Release, Rule, RuleRevision
from catalog.releases import ReleaseSpec, git_release
from catalog.services import ImportAborted, import_rules
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml

pytestmark = pytest.mark.django_db


def rule_id(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def text(n: int, *, level: str = "low", values: tuple[str, ...] = ("a.exe",), status: str = "test",
         filters: tuple[str, ...] = ("C:\\Windows\\",)) -> str:  # fmt: skip
    sel = "\n".join(f"        - '{v}'" for v in values)
    flt = "\n".join(f"        - '{v}'" for v in filters)
    return rule_yaml(
        title=f"Rule {n}",
        id=rule_id(n),
        status=status,
        logsource=WINDOWS_PROCESS_CREATION,
        detection=f"sel:\n    Image|endswith:\n{sel}\nfilter:\n    Image|startswith:\n{flt}\n"
        "condition: sel and not filter",
        level=level,
    )


def write(folder: Path, texts: dict[str, str]) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, body in texts.items():
        (folder / name).write_text(body)
    return folder


def release(paths: list[Path], name: str, **options: object) -> object:
    spec = ReleaseSpec(name=name, **options)  # type: ignore[arg-type]
    return import_rules([str(p) for p in paths], release=spec)


def test_first_release_adds_every_rule_with_one_revision(tmp_path: Path) -> None:
    folder = write(tmp_path / "r1", {"a.yml": text(1), "b.yml": text(2)})
    report = release([folder], "r2026-01-01")
    row = Release.objects.get(name="r2026-01-01")
    assert row.added == [rule_id(1), rule_id(2)]
    assert row.released_at.date().isoformat() == "2026-01-01"  # read from the name
    assert report.release.counts["added"] == 2  # type: ignore[attr-defined]
    revisions = RuleRevision.objects.filter(sigma_id=rule_id(1))
    assert [(r.number, r.release_id, r.level) for r in revisions] == [(1, row.pk, "low")]
    assert revisions[0].indicators == [
        {"field": "Image", "kind": "endswith", "value": "a.exe", "identifier": "sel"}
    ]


def test_second_release_records_added_modified_removed_and_classes(tmp_path: Path) -> None:
    release([write(tmp_path / "r", {"a.yml": text(1), "b.yml": text(2), "c.yml": text(3),
                                    "d.yml": text(4)})], "r1")  # fmt: skip
    second = {
        "a.yml": text(1, level="high"),  # metadata
        "b.yml": text(2, values=("a.exe", "b.exe")),  # detection
        "moved.yml": text(3),  # same bytes, other path: not a modification
        "d.yml": text(4, filters=("C:\\Windows\\", "D:\\")),  # tuning
        "e.yml": text(5),  # added
    }
    release([write(tmp_path / "r", second)], "r2")
    row = Release.objects.get(name="r2")
    assert row.added == [rule_id(5)]
    assert row.modified == [rule_id(1), rule_id(2), rule_id(4)]
    assert row.removed == []
    assert (row.counts["detection"], row.counts["tuning"], row.counts["metadata"]) == (1, 1, 1)
    b = RuleRevision.objects.get(sigma_id=rule_id(2), number=2)
    assert b.change_class == "detection"
    assert b.diff["indicators_added"] == [{"field": "Image", "kind": "endswith", "value": "b.exe"}]
    assert not RuleRevision.objects.filter(sigma_id=rule_id(3), number=2).exists()
    release([write(tmp_path / "r", {"a.yml": text(1, level="high")})], "r3")
    third = Release.objects.get(name="r3")
    assert third.removed == [rule_id(2), rule_id(3), rule_id(4), rule_id(5)]
    # Removed rules leave the live catalog; their history stays.
    assert list(Rule.objects.values_list("rule_id", flat=True)) == [rule_id(1)]
    assert RuleRevision.objects.filter(sigma_id=rule_id(2)).count() == 2


def test_reimporting_the_latest_release_changes_nothing(tmp_path: Path) -> None:
    folder = write(tmp_path / "r", {"a.yml": text(1), "b.yml": text(2)})
    release([folder], "r1")
    write(folder, {"a.yml": text(1, level="high"), "b.yml": text(2)})
    release([folder], "r2")
    before = (RuleRevision.objects.count(), Release.objects.get(name="r2").counts)
    report = release([folder], "r2")
    assert report.release.revisions_written == 0  # type: ignore[attr-defined]
    assert report.created == report.updated == 0
    assert (RuleRevision.objects.count(), Release.objects.get(name="r2").counts) == before


def test_an_older_release_after_a_newer_one_is_refused_unless_forced(tmp_path: Path) -> None:
    folder = write(tmp_path / "r", {"a.yml": text(1)})
    release([folder], "r2026-04-01")
    write(folder, {"a.yml": text(1, level="high")})
    with pytest.raises(ImportAborted, match="older than the latest release r2026-04-01"):
        release([folder], "r2026-01-01")
    assert Rule.objects.get().level == "low"  # nothing changed
    release([folder], "r2026-01-01", force=True)
    assert Rule.objects.get().level == "high"


def test_reimporting_an_earlier_release_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path / "r", {"a.yml": text(1)})
    release([folder], "r1")
    release([folder], "r2")
    with pytest.raises(ImportAborted, match="imported before the latest release r2"):
        release([folder], "r1")


def test_a_rule_that_comes_back_unchanged_gets_no_new_revision(tmp_path: Path) -> None:
    release([write(tmp_path / "r", {"a.yml": text(1), "b.yml": text(2)})], "r1")
    release([write(tmp_path / "r", {"a.yml": text(1)})], "r2")
    release([write(tmp_path / "r", {"a.yml": text(1), "b.yml": text(2)})], "r3")
    assert Release.objects.get(name="r3").added == [rule_id(2)]
    assert RuleRevision.objects.filter(sigma_id=rule_id(2)).count() == 1
    assert Rule.objects.filter(rule_id=rule_id(2)).exists()


def test_deprecation_is_listed(tmp_path: Path) -> None:
    release([write(tmp_path / "r", {"a.yml": text(1)})], "r1")
    release([write(tmp_path / "r", {"a.yml": text(1, status="deprecated")})], "r2")
    row = Release.objects.get(name="r2")
    assert (row.modified, row.deprecated) == ([rule_id(1)], [rule_id(1)])


def test_imports_without_a_release_are_named_by_date_and_remove_nothing(tmp_path: Path) -> None:
    import_rules([str(write(tmp_path / "a", {"a.yml": text(1)}))])
    import_rules([str(write(tmp_path / "b", {"b.yml": text(2)}))])
    row = Release.objects.get(automatic=True, name=timezone.now().date().isoformat())
    assert {rule_id(1), rule_id(2)} <= set(row.rule_ids)
    assert Rule.objects.filter(rule_id__in=[rule_id(1), rule_id(2)]).count() == 2
    # A date-named import never makes a dated release "older".
    release([write(tmp_path / "c", {"c.yml": text(3)})], "r2020-01-01")


def test_a_release_without_any_rule_removes_nothing(tmp_path: Path) -> None:
    release([write(tmp_path / "r", {"a.yml": text(1)})], "r1")
    with pytest.raises(ImportAborted):
        release([write(tmp_path / "empty", {"a.yml": "not: a rule\n"})], "r2")
    assert Rule.objects.count() == 1


def test_command_records_and_refuses_releases(tmp_path: Path) -> None:
    folder = write(tmp_path / "r", {"a.yml": text(1)})
    out = io.StringIO()
    call_command("import_rules", str(folder), "--release", "v2", "--released-at", "2026-05-01",
                 "--no-progress", stdout=out)  # fmt: skip
    assert "Recorded release v2: 1 added" in out.getvalue()
    assert Release.objects.get(name="v2").released_at.date().isoformat() == "2026-05-01"
    with pytest.raises(CommandError, match="older than the latest"):
        call_command("import_rules", str(folder), "--release", "v1", "--released-at",
                     "2026-01-01", "--no-progress", stdout=io.StringIO())  # fmt: skip
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("import_rules", str(folder), "--released-at", "soon", stdout=io.StringIO())


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_git_checkout_names_its_release(tmp_path: Path) -> None:
    repo = tmp_path / "sigma"
    write(repo / "rules", {"a.yml": text(1)})
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_COMMITTER_DATE": "2026-03-04T05:06:07+00:00", "PATH": "/usr/bin:/bin"}  # fmt: skip
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"], ["tag", "r2026-03-04"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    found = git_release([str(repo / "rules")])
    assert found is not None and found[0] == "r2026-03-04"
    assert found[1].isoformat() == "2026-03-04T05:06:07+00:00"
    assert git_release([str(repo / "rules" / "a.yml")]) is None
    import_rules([str(repo / "rules")])
    assert Release.objects.filter(name="r2026-03-04", automatic=False).exists()
