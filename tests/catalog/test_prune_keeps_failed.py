"""Finding 8: ``import_rules --prune`` never removes a rule whose file is still present but no
longer parses; the file is reported as failed and the rule stays."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from catalog.models import Rule
from catalog.services import import_rules
from tests.factories import rule_yaml

KEPT = "7d3c9a10-1b2c-4d5e-8f90-a1b2c3d4e5f6"
OTHER = "8e4dab21-2c3d-4e5f-9a01-b2c3d4e5f6a7"
GONE = "9f5ebc32-3d4e-4f60-ab12-c3d4e5f6a7b8"


def text(rule_id: str, title: str) -> str:
    return rule_yaml(
        title=title,
        id=rule_id,
        status="test",
        logsource={"product": "windows", "category": "process_creation"},
        detection="sel:\n    Image|endswith: '\\x.exe'\ncondition: sel",
        level="low",
    )


BROKEN_KEEPS_ID = f"title: Broken\nid: {KEPT}\ndetection:\n    sel: [\n"  # bad YAML, id readable
BROKEN_NO_ID = "title: [unclosed\n"  # not even the id can be read: the stored path keeps it


def files(broken: str) -> dict[str, str]:
    return {"kept.yml": broken, "other.yml": text(OTHER, "Other")}


def write_dir(folder: Path, contents: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yml"):
        old.unlink()
    for name, body in contents.items():
        (folder / name).write_text(body)
    return folder


def write_zip(path: Path, contents: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in contents.items():
            archive.writestr(f"rules/{name}", body)
    return path


def write_tar(path: Path, contents: dict[str, str]) -> Path:
    folder = path.parent / "tar-src" / "rules"
    write_dir(folder, contents)
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname="rules")
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("broken", [BROKEN_KEEPS_ID, BROKEN_NO_ID], ids=["id-readable", "no-id"])
@pytest.mark.parametrize("layout", ["directory", "zip", "tar.gz"])
def test_prune_keeps_a_rule_whose_file_no_longer_parses(tmp_path: Path, layout: str, broken: str):
    first = {"kept.yml": text(KEPT, "Kept"), "other.yml": text(OTHER, "Other"),
             "gone.yml": text(GONE, "Gone")}  # fmt: skip
    make = {
        "directory": lambda c: write_dir(tmp_path / "rules", c),
        "zip": lambda c: write_zip(tmp_path / "rules.zip", c),
        "tar.gz": lambda c: write_tar(tmp_path / "rules.tar.gz", c),
    }[layout]
    report = import_rules([str(make(first))])
    assert report.created == 3, report.errors
    report = import_rules([str(make(files(broken)))], prune=True)
    assert report.failed == 1 and "kept.yml" in report.errors[0].path
    assert report.pruned == 1, "only the rule whose file is gone is pruned"
    assert set(Rule.objects.values_list("rule_id", flat=True)) == {KEPT, OTHER}
    assert Rule.objects.get(rule_id=KEPT).title == "Kept", "the stored rule is kept as it was"
