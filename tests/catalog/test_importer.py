"""The importer (catalog.services.import_rules) and its management commands."""

from __future__ import annotations

import io
import random
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog import import_rows, models
from catalog.models import (
    Correlation,
    Exclusion,
    ImportRun,
    Indicator,
    MetaFilter,
    Rule,
    Stage,
)
from catalog.services import ImportAborted, ImportReport, import_rules
from rules.errors import RuleError
from rules.parse import MAX_RULE_BYTES, parse_rule
from tests.conftest import CORPUS, EXAMPLES, corpus_dirs
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml
from tests.independent import expected_from_files, rule_counts

SUMMARY = re.compile(r"\d+ new, \d+ updated, \d+ unchanged, \d+ failed, \d+ pruned in \d+\.\d\d s")


def rule_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def rule_text(
    n: int,
    *,
    title: str | None = None,
    values: tuple[str, ...] = ("shared.exe",),
    filters: tuple[str, ...] = ("C:\\Windows\\",),
    tags: tuple[str, ...] = ("attack.execution", "attack.t1059.001"),
) -> str:
    detection = [
        "selection:",
        "    Image|endswith:",
        *(f"        - '{v}'" for v in values),
        f"    CommandLine|contains: 'unique-{n}'",
        "filter:",
        "    ParentImage|startswith:",
        *(f"        - '{v}'" for v in filters),
        "condition: selection and not filter",
    ]
    return rule_yaml(
        title=title or f"Test rule {n}",
        id=rule_id(n),
        status="test",
        description="A rule written for the importer tests.",
        author="tests",
        date="2024-01-01",
        tags=tags,
        logsource=WINDOWS_PROCESS_CREATION,
        detection="\n".join(detection) + "\n",
        level="medium",
    )


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    """Five valid rules under tmp/rules/windows (two share an indicator with different case)."""
    root = tmp_path / "rules"
    (root / "windows").mkdir(parents=True)
    for n in range(1, 6):
        values = ("shared.exe",) if n != 5 else ("SHARED.EXE",)
        (root / "windows" / f"rule_{n}.yml").write_text(rule_text(n, values=values))
    return root


def snapshot() -> dict[str, Any]:
    """Everything an import writes, in a comparable form."""
    return {
        "rules": sorted(
            Rule.objects.values_list(
                "rule_id",
                "title",
                "content_hash",
                "revision",
                "updated_at",
                "raw_yaml",
                "source_path",
                "rule_set",
            )
        ),
        "stages": sorted(Stage.objects.values_list("rule__rule_id", "group", "index", "text")),
        "indicators": sorted(Indicator.objects.values_list("identity", "value_key", "rule_count")),
        "rule_indicators": sorted(
            models.RuleIndicator.objects.values_list(
                "rule__rule_id", "indicator__identity", "value"
            )
        ),
        "exclusions": sorted(Exclusion.objects.values_list("identity", "rule_count")),
        "rule_exclusions": sorted(
            models.RuleExclusion.objects.values_list(
                "rule__rule_id", "exclusion__identity", "value"
            )
        ),
        "tags": sorted(Rule.tags.through.objects.values_list("rule__rule_id", "tag__name")),
        "tactics": sorted(
            Rule.tactics.through.objects.values_list("rule__rule_id", "tactic__shortname")
        ),
        "techniques": sorted(
            Rule.techniques.through.objects.values_list("rule__rule_id", "technique__attack_id")
        ),
    }


def assert_counts_consistent() -> None:
    """rule_count of every indicator/exclusion is its number of distinct linked rules."""
    for indicator in Indicator.objects.all():
        linked = set(indicator.rule_indicators.values_list("rule_id", flat=True))
        assert indicator.rule_count == len(linked) > 0, indicator
    for exclusion in Exclusion.objects.all():
        linked = set(exclusion.rule_exclusions.values_list("rule_id", flat=True))
        assert exclusion.rule_count == len(linked) > 0, exclusion


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_rules", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- a first import ----------------------------------------------------------------------------


def example_rule_dir(tmp_path: Path) -> Path:
    folder = EXAMPLES / "rules"
    if folder.is_dir() and any(folder.rglob("*.yml")):
        return folder
    root = tmp_path / "examples" / "rules"
    root.mkdir(parents=True)
    for n in range(1, 4):
        (root / f"example_{n}.yml").write_text(rule_text(100 + n))
    return root


@pytest.mark.django_db
def test_importing_the_examples_folder_creates_every_rule(tmp_path):
    folder = example_rule_dir(tmp_path)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".yml", ".yaml"})
    report = import_rules([str(folder)])
    assert [e.to_dict() for e in report.errors] == []
    assert report.created == len(files) == Rule.objects.count()
    assert Stage.objects.filter(index=0).count() >= len(files)
    assert Indicator.objects.exists()
    assert_counts_consistent()
    again = import_rules([str(folder)])
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, len(files), 0)


@pytest.mark.django_db
def test_first_import_writes_rules_stages_predicates_and_attack_links(rule_dir):
    report = import_rules([str(rule_dir)])
    assert (report.created, report.updated, report.unchanged, report.failed) == (5, 0, 0, 0)
    assert SUMMARY.fullmatch(report.summary())
    rule = Rule.objects.get(rule_id=rule_id(1))
    assert rule.title == "Test rule 1"
    assert rule.revision == 1
    assert rule.source_path == "rules/windows/rule_1.yml"
    assert rule.rule_set == "rules"
    assert rule.raw_yaml == (rule_dir / "windows" / "rule_1.yml").read_text()
    assert list(rule.stages.values_list("group", "index", "text", "negated")) == [
        (0, 0, "selection and not filter", False),
        (0, 1, "selection", False),
        (0, 2, "not filter", True),
    ]
    assert sorted(rule.rule_indicators.values_list("indicator__kind", "value")) == [
        ("contains", "unique-1"),
        ("endswith", "shared.exe"),
    ]
    assert list(rule.rule_exclusions.values_list("exclusion__kind", "value")) == [
        ("startswith", "C:\\Windows\\")
    ]
    assert set(rule.tags.values_list("name", flat=True)) == {"attack.execution", "attack.t1059.001"}
    assert list(rule.techniques.values_list("attack_id", flat=True)) == ["T1059.001"]
    assert list(rule.tactics.values_list("shortname", flat=True)) == ["execution"]
    run = ImportRun.objects.get(pk=report.run_id)
    assert run.status == ImportRun.Status.SUCCEEDED
    assert (run.created, run.updated, run.unchanged, run.failed) == (5, 0, 0, 0)
    assert run.finished_at is not None


@pytest.mark.django_db
def test_an_indicator_shared_by_rules_is_one_row_counting_distinct_rules(rule_dir):
    import_rules([str(rule_dir)])
    shared = Indicator.objects.get(field="Image", kind="endswith", value_key="shared.exe")
    assert shared.rule_count == 5
    # Each rule keeps the value as it wrote it.
    assert sorted(shared.rule_indicators.values_list("value", flat=True)) == [
        "SHARED.EXE",
        "shared.exe",
        "shared.exe",
        "shared.exe",
        "shared.exe",
    ]
    assert Indicator.objects.get(value_key="unique-3").rule_count == 1
    assert Exclusion.objects.get().rule_count == 5
    assert_counts_consistent()


# --- re-imports --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reimport_of_unchanged_files_touches_nothing(rule_dir):
    import_rules([str(rule_dir)])
    before = snapshot()
    report = import_rules([str(rule_dir)])
    assert (report.created, report.updated, report.unchanged, report.failed) == (0, 0, 5, 0)
    assert snapshot() == before


@pytest.mark.django_db
def test_a_modified_rule_is_updated_with_a_new_revision_and_fresh_indicators(rule_dir):
    import_rules([str(rule_dir)])
    untouched = snapshot()["rules"]
    path = rule_dir / "windows" / "rule_2.yml"
    path.write_text(rule_text(2, title="Renamed rule", values=("other.exe",), filters=("D:\\",)))
    report = import_rules([str(rule_dir)])
    assert (report.created, report.updated, report.unchanged, report.failed) == (0, 1, 4, 0)
    rule = Rule.objects.get(rule_id=rule_id(2))
    assert rule.title == "Renamed rule"
    assert rule.revision == 2
    assert rule.raw_yaml == path.read_text()
    assert sorted(rule.rule_indicators.values_list("value", flat=True)) == ["other.exe", "unique-2"]
    assert list(rule.rule_exclusions.values_list("value", flat=True)) == ["D:\\"]
    assert Indicator.objects.get(value_key="shared.exe").rule_count == 4
    assert Indicator.objects.get(value_key="other.exe").rule_count == 1
    assert Exclusion.objects.get(value_key="c:\\windows\\").rule_count == 4
    assert_counts_consistent()
    # The other rules are exactly as before.
    others = [row for row in untouched if row[0] != rule_id(2)]
    assert [row for row in snapshot()["rules"] if row[0] != rule_id(2)] == others
    # A second change bumps the revision again.
    path.write_text(rule_text(2, title="Renamed again", values=("other.exe",)))
    import_rules([str(rule_dir)])
    assert Rule.objects.get(rule_id=rule_id(2)).revision == 3


@pytest.mark.django_db
def test_an_indicator_no_rule_uses_any_more_is_removed(rule_dir):
    import_rules([str(rule_dir)])
    path = rule_dir / "windows" / "rule_3.yml"
    path.write_text(path.read_text().replace("unique-3", "renamed-3"))
    import_rules([str(rule_dir)])
    assert not Indicator.objects.filter(value_key="unique-3").exists()
    assert Indicator.objects.get(value_key="renamed-3").rule_count == 1


@pytest.mark.django_db
def test_prune_removes_rules_no_longer_present_and_their_orphan_indicators(rule_dir):
    import_rules([str(rule_dir)])
    (rule_dir / "windows" / "rule_4.yml").unlink()
    report = import_rules([str(rule_dir)])
    assert report.pruned == 0
    assert Rule.objects.filter(rule_id=rule_id(4)).exists()
    report = import_rules([str(rule_dir)], prune=True)
    assert (report.unchanged, report.pruned) == (4, 1)
    assert not Rule.objects.filter(rule_id=rule_id(4)).exists()
    assert Rule.objects.count() == 4
    assert not Indicator.objects.filter(value_key="unique-4").exists()
    assert Indicator.objects.get(value_key="shared.exe").rule_count == 4
    assert not Stage.objects.filter(rule__rule_id=rule_id(4)).exists()
    assert_counts_consistent()


@pytest.mark.django_db
def test_importing_a_second_folder_adds_to_the_catalog(rule_dir, tmp_path):
    import_rules([str(rule_dir)])
    other = tmp_path / "rules-extra"
    other.mkdir()
    (other / "x.yml").write_text(rule_text(50))
    report = import_rules([str(other)])
    assert (report.created, report.unchanged) == (1, 0)
    assert Rule.objects.count() == 6
    assert Rule.objects.get(rule_id=rule_id(50)).rule_set == "rules-extra"


# --- duplicates and failures -------------------------------------------------------------------


@pytest.mark.django_db
def test_duplicate_ids_across_files_are_reported_and_the_first_file_kept(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a_first.yml").write_text(rule_text(7, title="First copy"))
    (folder / "b_second.yml").write_text(rule_text(7, title="Second copy"))
    report = import_rules([str(folder)])
    assert (report.created, report.failed) == (1, 1)
    (error,) = report.errors
    assert error.path == str(folder / "b_second.yml")
    assert error.code == "duplicate-id"
    assert rule_id(7) in error.error
    assert "a_first.yml" in error.error
    assert Rule.objects.get(rule_id=rule_id(7)).title == "First copy"
    again = import_rules([str(folder)])
    assert (again.unchanged, again.failed) == (1, 1)
    assert again.errors[0].path == str(folder / "b_second.yml")
    assert Rule.objects.get(rule_id=rule_id(7)).title == "First copy"


@pytest.mark.django_db
def test_duplicate_ids_keep_the_first_file_even_when_a_later_copy_has_the_stored_bytes(
    tmp_path,
):
    """Which file wins must not depend on what the catalog held before."""
    folder = tmp_path / "rules"
    folder.mkdir()
    original = folder / "a_original.yml"
    original.write_text(rule_text(8, title="Version 1"))
    import_rules([str(folder)])
    # A stale copy of version 1 appears beside the original, which is edited to version 2.
    (folder / "b_stale_copy.yml").write_text(original.read_text())
    original.write_text(rule_text(8, title="Version 2"))
    report = import_rules([str(folder)])
    assert [(e.path, e.code) for e in report.errors] == [
        (str(folder / "b_stale_copy.yml"), "duplicate-id")
    ]
    assert Rule.objects.get(rule_id=rule_id(8)).title == "Version 2"


@pytest.mark.django_db
def test_the_same_file_given_twice_is_a_duplicate_not_a_second_rule(rule_dir):
    path = str(rule_dir / "windows" / "rule_1.yml")
    report = import_rules([path, path])
    assert (report.created, report.failed) == (1, 1)
    assert report.errors[0].code == "duplicate-id"


BILLION_LAUGHS = "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
)


@pytest.fixture
def mixed_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two good rules and one file per kind of failure; returns the folder and file -> code."""
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "good_1.yml").write_text(rule_text(21))
    (root / "good_2.yaml").write_text(rule_text(22))
    bad = {
        "bad_yaml.yml": ("title: [unclosed\n", "bad-yaml"),
        "not_a_rule.yml": ("foo: bar\n", "not-a-rule"),
        "a_list.yml": ("- a\n- b\n", "not-a-rule"),
        "unknown_modifier.yml": (
            rule_text(23).replace("Image|endswith", "Image|foo"),
            "bad-modifier",
        ),
        "undefined_identifier.yml": (
            rule_text(24).replace("selection and not filter", "selection and not fliter"),
            "bad-condition",
        ),
        "aggregation.yml": (
            rule_text(25).replace("selection and not filter", "selection | count() > 5"),
            "bad-condition",
        ),
        "alias_bomb.yml": (BILLION_LAUGHS, "unsafe-document"),
        "two_docs.yml": (rule_text(26) + "---\n" + rule_text(27), "not-a-rule"),
    }
    for name, (text, _) in bad.items():
        (root / name).write_text(text)
    (root / "binary.yml").write_bytes(b"\x00\x01\x02\x03 binary")
    (root / "latin1.yml").write_bytes("title: caf\xe9\n".encode("latin-1"))
    (root / "huge.yml").write_bytes(b"#" * (MAX_RULE_BYTES + 10))
    (root / "link.yml").symlink_to(root / "good_1.yml")
    codes = {name: code for name, (_, code) in bad.items()}
    codes.update(
        {
            "binary.yml": "bad-yaml",
            "latin1.yml": "bad-yaml",
            "huge.yml": "too-large",
            "link.yml": "symlink",
        }
    )
    return root, codes


@pytest.mark.django_db
def test_every_failed_file_is_listed_with_its_reason_and_the_rest_imports(mixed_dir):
    root, codes = mixed_dir
    report = import_rules([str(root)])
    assert report.created == 2
    assert sorted(Rule.objects.values_list("rule_id", flat=True)) == [rule_id(21), rule_id(22)]
    listed = {Path(e.path).name: e for e in report.errors}
    assert set(listed) == set(codes)
    for name, code in codes.items():
        assert listed[name].code == code, (name, listed[name])
        assert listed[name].error.strip()
    assert report.failed == len(codes)
    run = ImportRun.objects.get(pk=report.run_id)
    assert run.status == ImportRun.Status.SUCCEEDED
    assert run.failed == len(codes)
    assert {Path(e["path"]).name for e in run.errors} == set(codes)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("'unique-41'", '"unique\\0nul"', id="nul-character-in-a-value"),
        pytest.param("title: Test rule 41", 'title: "Title\\0with NUL"', id="nul-in-title"),
        pytest.param(
            "Image|endswith", "Image|endswith" + "|cased" * 20, id="kind-longer-than-its-column"
        ),
    ],
)
def test_a_parsed_rule_the_database_cannot_store_does_not_abort_the_import(tmp_path, old, new):
    """The engine accepts these documents; whatever the database does with them, the other
    files must still be imported and the odd one stored or listed as failed."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a_good.yml").write_text(rule_text(40))
    odd = rule_text(41).replace(old, new, 1)
    assert odd != rule_text(41)
    parse_rule(odd)  # the engine accepts it
    (folder / "b_odd.yml").write_text(odd)
    (folder / "c_good.yml").write_text(rule_text(42))
    report = import_rules([str(folder)])
    assert Rule.objects.filter(rule_id__in=[rule_id(40), rule_id(42)]).count() == 2
    stored = Rule.objects.filter(rule_id=rule_id(41)).exists()
    listed = [e.path for e in report.errors] == [str(folder / "b_odd.yml")]
    assert stored != listed, (stored, report.errors)


@pytest.mark.django_db
def test_archives_import_their_rules_and_refuse_unsafe_entries(tmp_path):
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("rules/one.yml", rule_text(31))
        zf.writestr("rules/two.yml", rule_text(32))
        zf.writestr("../escape.yml", rule_text(33))
        zf.writestr("README.md", "not a rule")
    report = import_rules([str(archive)])
    assert report.created == 2
    assert [e.path for e in report.errors] == [f"{archive}!../escape.yml"]
    assert Rule.objects.get(rule_id=rule_id(31)).source_path == "rules/one.yml"
    assert not Rule.objects.filter(rule_id=rule_id(33)).exists()


@pytest.mark.django_db
def test_a_missing_path_is_reported(tmp_path):
    report = import_rules([str(tmp_path / "nowhere")])
    assert report.created == 0
    assert [e.code for e in report.errors] == ["not-found"]


@pytest.mark.django_db
def test_progress_is_reported_up_to_the_number_of_files(rule_dir):
    calls: list[tuple[int, int]] = []
    import_rules([str(rule_dir)], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (5, 5)
    assert all(total == 5 for _, total in calls)


# --- a failure while writing ---------------------------------------------------------------------


def _fail_after(original):
    def failing(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("disk full (simulated)")

    return failing


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer", ["_write_children", "_write_tags", "_refresh_counts"])
def test_a_failure_mid_write_leaves_the_catalog_exactly_as_before(rule_dir, monkeypatch, writer):
    import_rules([str(rule_dir)])
    before = snapshot()
    runs_before = ImportRun.objects.count()
    (rule_dir / "windows" / "rule_2.yml").write_text(rule_text(2, values=("changed.exe",)))
    (rule_dir / "windows" / "rule_9.yml").write_text(rule_text(9))
    (rule_dir / "windows" / "rule_5.yml").unlink()
    monkeypatch.setattr(import_rows, writer, _fail_after(getattr(import_rows, writer)))
    with pytest.raises(ImportAborted) as caught:
        import_rules([str(rule_dir)], prune=True)
    assert "catalog unchanged" in str(caught.value)
    assert snapshot() == before
    assert ImportRun.objects.count() == runs_before + 1
    run = ImportRun.objects.get(pk=caught.value.report.run_id)
    assert run.status == ImportRun.Status.FAILED
    assert "disk full" in run.message
    assert run.finished_at is not None
    # Once the fault is gone the same import goes through.
    monkeypatch.undo()
    report = import_rules([str(rule_dir)], prune=True)
    assert (report.created, report.updated, report.pruned) == (1, 1, 1)
    assert_counts_consistent()


# --- the management commands ---------------------------------------------------------------------


@pytest.mark.django_db
def test_import_rules_command_prints_the_summary(rule_dir):
    out, err = run_command(str(rule_dir))
    assert re.search(r"^Imported: 5 new, 0 updated, 0 unchanged, 0 failed, 0 pruned in ", out, re.M)
    assert SUMMARY.search(out)
    assert "FAILED" not in err
    out, _ = run_command(str(rule_dir))
    assert "0 new, 0 updated, 5 unchanged, 0 failed" in out


@pytest.mark.django_db
def test_import_rules_command_lists_failed_files_on_stderr(mixed_dir):
    root, codes = mixed_dir
    out, err = run_command(str(root))
    assert f"2 new, 0 updated, 0 unchanged, {len(codes)} failed" in out
    failed_lines = [line for line in err.splitlines() if line.startswith("FAILED ")]
    assert len(failed_lines) == len(codes)
    for name in codes:
        assert any(f"{root / name}: " in line for line in failed_lines), name
    assert "FAILED" not in out


@pytest.mark.django_db
def test_import_rules_command_prune_option(rule_dir):
    run_command(str(rule_dir))
    (rule_dir / "windows" / "rule_1.yml").unlink()
    out, _ = run_command(str(rule_dir), "--prune")
    assert "1 pruned" in out
    assert Rule.objects.count() == 4


@pytest.mark.django_db
def test_import_rules_command_aborts_with_command_error(rule_dir, monkeypatch):
    monkeypatch.setattr(import_rows, "_write_children", _fail_after(import_rows._write_children))
    with pytest.raises(CommandError, match="catalog unchanged"):
        run_command(str(rule_dir))
    assert Rule.objects.count() == 0
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


@pytest.mark.django_db
def test_import_rules_command_needs_a_path():
    with pytest.raises(CommandError):
        call_command("import_rules", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
def test_load_examples_imports_only_into_an_empty_catalog(rule_dir, tmp_path, settings):
    settings.EXAMPLE_RULES_DIR = rule_dir
    out = io.StringIO()
    call_command("load_examples", stdout=out, stderr=io.StringIO())
    assert "5 new" in out.getvalue()
    assert Rule.objects.count() == 5
    assert ImportRun.objects.get().trigger == "examples"
    (rule_dir / "windows" / "rule_6.yml").write_text(rule_text(6))
    out = io.StringIO()
    call_command("load_examples", stdout=out, stderr=io.StringIO())
    assert "already has rules" in out.getvalue()
    assert Rule.objects.count() == 5
    assert ImportRun.objects.count() == 1
    out = io.StringIO()
    call_command("load_examples", "--force", stdout=out, stderr=io.StringIO())
    assert "1 new" in out.getvalue()
    assert Rule.objects.count() == 6


@pytest.mark.django_db
def test_rules_loaded_from_the_examples_folder_are_in_the_examples_rule_set(tmp_path, settings):
    """``rule_set_for`` maps paths under ``examples`` to the "examples" set."""
    folder = tmp_path / "examples" / "rules"
    (folder / "windows").mkdir(parents=True)
    (folder / "windows" / "x.yml").write_text(rule_text(60))
    settings.EXAMPLE_RULES_DIR = folder
    call_command("load_examples", stdout=io.StringIO(), stderr=io.StringIO())
    assert list(Rule.objects.values_list("rule_set", flat=True)) == ["examples"]


@pytest.mark.django_db
def test_load_examples_with_the_bundled_examples(settings):
    folder = Path(settings.EXAMPLE_RULES_DIR)
    if not any(folder.rglob("*.yml")):
        pytest.skip(f"no example rules in {folder} yet")
    out, err = io.StringIO(), io.StringIO()
    call_command("load_examples", stdout=out, stderr=err)
    assert " 0 failed" in out.getvalue(), err.getvalue()
    assert Rule.objects.count() > 0
    # The correlation and filter examples come with them (examples/correlations).
    assert Correlation.objects.count() >= 4 and MetaFilter.objects.count() >= 1


# --- the SigmaHQ corpus ------------------------------------------------------------------------

CORPUS_RULES = 3780


@pytest.mark.corpus
@pytest.mark.django_db
def test_deprecated_and_unsupported_import_what_is_valid_and_name_each_refused_file(corpus):
    folders = [corpus / "deprecated", corpus / "unsupported"]
    files = sorted(p for folder in folders for p in folder.rglob("*.yml"))
    refused: set[str] = set()
    valid_ids: set[str] = set()
    for path in files:
        try:
            valid_ids.add(parse_rule(path.read_bytes()).id)
        except RuleError:
            refused.add(str(path))
    assert refused and valid_ids
    # Every rule still using the deprecated aggregation syntax is among the refused.
    piped = {str(p) for p in files if re.search(r"condition:.*\|\s*(count|near)", p.read_text())}
    assert piped <= refused
    report = import_rules([str(f) for f in folders])
    assert {e.path for e in report.errors} == refused
    assert all(e.error.strip() for e in report.errors)
    assert report.created == len(valid_ids) == Rule.objects.count()
    assert set(Rule.objects.values_list("rule_set", flat=True)) == {"deprecated", "unsupported"}
    out_errors = ImportRun.objects.get(pk=report.run_id).errors
    assert {e["path"] for e in out_errors} == refused


@pytest.fixture(scope="class")
def corpus_catalog(
    django_db_setup, django_db_blocker
) -> Iterator[tuple[ImportReport, ImportReport]]:
    """One full corpus import (and a re-import) shared by the tests of the class below.

    Committed outside the per-test transactions and deleted when the class is done; class
    scope (not module scope) so that the data is gone before pytest-django runs this
    module's transactional tests, which it orders after all others.
    """
    if not (CORPUS / "rules").is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS}")
    paths = [str(d) for d in corpus_dirs()]
    with django_db_blocker.unblock():
        first = import_rules(paths)
        second = import_rules(paths)
        try:
            yield first, second
        finally:
            # Every catalog table, not a list to keep up to date: a release row left behind
            # (named by the day it ran) once broke the release tests that ran after this class.
            for model in reversed(list(apps.get_app_config("catalog").get_models())):
                model.objects.all().delete()


@pytest.mark.corpus
@pytest.mark.django_db
class TestFullCorpusImport:
    def test_full_corpus_imports_every_rule_and_reimports_unchanged(self, corpus_catalog):
        first, second = corpus_catalog
        assert [e.to_dict() for e in first.errors][:5] == []
        assert (first.created, first.updated, first.failed) == (CORPUS_RULES, 0, 0)
        assert (second.created, second.updated, second.unchanged, second.failed) == (
            0,
            0,
            CORPUS_RULES,
            0,
        )
        assert Rule.objects.count() == CORPUS_RULES
        runs = ImportRun.objects.order_by("pk").values_list("status", "created", "unchanged")
        assert list(runs)[-2:] == [("succeeded", CORPUS_RULES, 0), ("succeeded", 0, CORPUS_RULES)]
        assert set(Rule.objects.values_list("rule_set", flat=True)) == {
            d.name for d in corpus_dirs() if any(d.rglob("*.yml"))
        }

    def test_full_corpus_seed_rule_rows(self, corpus_catalog):
        rule = Rule.objects.get(rule_id="adf876b3-f1f8-4aa9-a4e4-a64106feec06")
        assert rule.title == "Testing Usage of Uncommonly Used Port"
        assert rule.source_path.startswith("rules/windows/")
        assert list(rule.stages.values_list("index", "text", "identifiers", "negated")) == [
            (0, "selection and not filter", ["selection", "filter"], False),
            (1, "selection", ["selection"], False),
            (2, "not filter", ["filter"], True),
        ]
        assert list(
            rule.rule_exclusions.values_list("exclusion__field", "exclusion__kind", "value")
        ) == [("ScriptBlockText", "contains", " 443 "), ("ScriptBlockText", "contains", " 80 ")]
        assert list(
            rule.rule_indicators.values_list("indicator__field", "indicator__kind", "value")
        ) == [
            ("ScriptBlockText", "contains", "Test-NetConnection"),
            ("ScriptBlockText", "contains", "-ComputerName "),
            ("ScriptBlockText", "contains", "-port "),
        ]
        assert list(rule.techniques.values_list("attack_id", flat=True)) == ["T1571"]
        assert list(rule.tactics.values_list("shortname", flat=True)) == ["command-and-control"]

    def test_full_corpus_rule_counts_equal_an_independent_count(
        self, corpus_catalog, corpus_rule_files
    ):
        expectations = expected_from_files(corpus_rule_files).values()
        indicator_counts = rule_counts(expectations, "indicators")
        exclusion_counts = rule_counts(expectations, "exclusions")
        assert Indicator.objects.count() == len(indicator_counts)
        assert Exclusion.objects.count() == len(exclusion_counts)
        rows = list(Indicator.objects.values_list("field", "kind", "value_key", "rule_count"))
        sample = random.Random(20240123).sample(rows, 200)
        # Make sure the sample includes the most shared indicators too.
        sample += sorted(rows, key=lambda r: -r[3])[:10]
        wrong = [
            (row, indicator_counts.get(row[:3], 0))
            for row in sample
            if indicator_counts.get(row[:3], 0) != row[3]
        ]
        assert not wrong, wrong[:10]
        exclusion_rows = list(
            Exclusion.objects.values_list("field", "kind", "value_key", "rule_count")
        )
        wrong = [
            (row, exclusion_counts.get(row[:3], 0))
            for row in random.Random(7).sample(exclusion_rows, 100)
            if exclusion_counts.get(row[:3], 0) != row[3]
        ]
        assert not wrong, wrong[:10]


@pytest.mark.django_db
def test_a_run_left_running_by_a_killed_import_is_closed_as_failed_by_the_next(
    tmp_path: Path,
) -> None:
    import datetime

    from django.utils import timezone

    from catalog.models import ImportRun as Run

    stale = Run.objects.create(trigger="command", sources=["gone"])
    Run.objects.filter(pk=stale.pk).update(started_at=timezone.now() - datetime.timedelta(hours=2))
    recent = Run.objects.create(trigger="command", sources=["still going"])
    (tmp_path / "empty").mkdir()
    import_rules([str(tmp_path / "empty")])
    stale.refresh_from_db()
    recent.refresh_from_db()
    assert stale.status == Run.Status.FAILED and "interrupted" in stale.message
    assert recent.status == Run.Status.RUNNING  # a concurrent import is left alone
