"""catalog.sources: collecting rule files from folders and archives, refusing anything unsafe."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from catalog.sources import Refusal, SourceFile, collect, read_archive, unsafe_member_name
from rules.parse import MAX_RULE_BYTES

RULE = b"title: t\nid: 11111111-2222-3333-4444-555555555555\n"
BIG = b"#" * (MAX_RULE_BYTES + 1)


def split(items) -> tuple[dict[str, SourceFile], dict[str, Refusal]]:
    files: dict[str, SourceFile] = {}
    refusals: dict[str, Refusal] = {}
    for item in items:
        if isinstance(item, SourceFile):
            files[item.path] = item
        else:
            assert isinstance(item, Refusal)
            assert item.reason.strip()
            refusals[item.path] = item
    return files, refusals


# --- zip ---------------------------------------------------------------------------------------


def _zip_symlink(archive: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so external_attr carries the file mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, target)


@pytest.fixture
def unsafe_zip(tmp_path: Path) -> Path:
    path = tmp_path / "pack.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rules/", b"")  # a directory entry
        archive.writestr("rules/a.yml", RULE + b"# a\n")
        archive.writestr("rules/sub/b.yaml", RULE + b"# b\n")
        archive.writestr("rules/UPPER.YML", RULE + b"# upper\n")
        archive.writestr("README.md", b"# not a rule\n")
        archive.writestr("rules/notes.txt", b"ignored\n")
        archive.writestr("../evil.yml", RULE)
        archive.writestr("rules/../../evil2.yml", RULE)
        archive.writestr("..\\evil3.yml", RULE)
        archive.writestr("/etc/x.yml", RULE)
        archive.writestr("C:/windows/x.yml", RULE)
        _zip_symlink(archive, "rules/link.yml", "/etc/passwd")
        archive.writestr("rules/big.yml", BIG)
    return path


def test_zip_yields_safe_rule_entries_with_archive_paths(unsafe_zip: Path):
    files, _ = split(collect([str(unsafe_zip)]))
    label = str(unsafe_zip)
    assert sorted(files) == [
        f"{label}!rules/UPPER.YML",
        f"{label}!rules/a.yml",
        f"{label}!rules/sub/b.yaml",
    ]
    entry = files[f"{label}!rules/a.yml"]
    assert entry.data == RULE + b"# a\n"
    assert entry.catalog_path == "rules/a.yml"


def test_zip_refuses_escaping_absolute_symlink_and_oversized_entries(unsafe_zip: Path):
    _, refusals = split(collect([str(unsafe_zip)]))
    label = str(unsafe_zip)
    reasons = {path.removeprefix(f"{label}!"): r.reason for path, r in refusals.items()}
    assert set(reasons) == {
        "../evil.yml",
        "rules/../../evil2.yml",
        "..\\evil3.yml",
        "/etc/x.yml",
        "C:/windows/x.yml",
        "rules/link.yml",
        "rules/big.yml",
    }
    assert "escapes" in reasons["../evil.yml"]
    assert "escapes" in reasons["rules/../../evil2.yml"]
    assert "escapes" in reasons["..\\evil3.yml"]
    assert "absolute" in reasons["/etc/x.yml"]
    assert "absolute" in reasons["C:/windows/x.yml"]
    assert "link" in reasons["rules/link.yml"]
    assert "bytes" in reasons["rules/big.yml"]


def test_zip_non_rule_entries_are_silently_ignored(unsafe_zip: Path):
    items = list(collect([str(unsafe_zip)]))
    assert not any(item.path.endswith(("README.md", "notes.txt", "rules/")) for item in items)


def test_zip_entry_whose_header_understates_its_size_is_refused(tmp_path: Path):
    """A zip bomb can declare a small size; its content must never be returned."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rules/liar.yml", BIG)
    raw = bytearray(path.read_bytes())
    small = (100).to_bytes(4, "little")
    central = raw.find(b"PK\x01\x02")
    raw[22:26] = small  # uncompressed size in the local header
    raw[central + 24 : central + 28] = small  # ... and in the central directory
    path.write_bytes(bytes(raw))
    assert zipfile.ZipFile(path).infolist()[0].file_size == 100
    files, refusals = split(collect([str(path)]))
    assert not files
    assert len(refusals) == 1


# --- tar.gz ------------------------------------------------------------------------------------


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes = RULE, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if not attrs.get("type") else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if info.size else None)


@pytest.fixture
def unsafe_tar(tmp_path: Path) -> Path:
    path = tmp_path / "pack.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        _tar_add(archive, "rules", type=tarfile.DIRTYPE)
        _tar_add(archive, "rules/a.yml", RULE + b"# a\n")
        _tar_add(archive, "rules/sub/b.yaml", RULE + b"# b\n")
        _tar_add(archive, "README.md", b"not a rule\n")
        _tar_add(archive, "../evil.yml")
        _tar_add(archive, "rules/../../evil2.yml")
        _tar_add(archive, "/etc/x.yml")
        _tar_add(archive, "rules/link.yml", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _tar_add(archive, "rules/hard.yml", type=tarfile.LNKTYPE, linkname="rules/a.yml")
        _tar_add(archive, "rules/fifo.yml", type=tarfile.FIFOTYPE)
        _tar_add(archive, "rules/dev.yml", type=tarfile.CHRTYPE)
        _tar_add(archive, "rules/big.yml", BIG)
    return path


def test_tar_gz_yields_safe_rule_entries(unsafe_tar: Path):
    files, _ = split(collect([str(unsafe_tar)]))
    label = str(unsafe_tar)
    assert sorted(files) == [f"{label}!rules/a.yml", f"{label}!rules/sub/b.yaml"]
    assert files[f"{label}!rules/sub/b.yaml"].data == RULE + b"# b\n"
    assert files[f"{label}!rules/sub/b.yaml"].catalog_path == "rules/sub/b.yaml"


def test_tar_gz_refuses_escaping_absolute_link_special_and_oversized_entries(unsafe_tar: Path):
    _, refusals = split(collect([str(unsafe_tar)]))
    label = str(unsafe_tar)
    reasons = {path.removeprefix(f"{label}!"): r.reason for path, r in refusals.items()}
    assert set(reasons) == {
        "../evil.yml",
        "rules/../../evil2.yml",
        "/etc/x.yml",
        "rules/link.yml",
        "rules/hard.yml",
        "rules/fifo.yml",
        "rules/dev.yml",
        "rules/big.yml",
    }
    assert "escapes" in reasons["../evil.yml"]
    assert "absolute" in reasons["/etc/x.yml"]
    assert "link" in reasons["rules/link.yml"]
    assert "link" in reasons["rules/hard.yml"]
    assert "regular file" in reasons["rules/fifo.yml"]
    assert "bytes" in reasons["rules/big.yml"]


@pytest.mark.parametrize(("suffix", "mode"), [(".tgz", "w:gz"), (".tar", "w")])
def test_tgz_and_plain_tar_are_read_too(tmp_path: Path, suffix: str, mode: str):
    path = tmp_path / f"pack{suffix}"
    with tarfile.open(path, mode) as archive:
        _tar_add(archive, "x/one.yml")
    files, refusals = split(collect([str(path)]))
    assert list(files) == [f"{path}!x/one.yml"]
    assert not refusals


# --- corrupt archives --------------------------------------------------------------------------


def test_garbage_named_zip_is_refused(tmp_path: Path):
    path = tmp_path / "garbage.zip"
    path.write_bytes(os.urandom(2048))
    files, refusals = split(collect([str(path)]))
    assert not files
    assert list(refusals) == [str(path)]
    assert refusals[str(path)].code == "bad-archive"


def test_truncated_zip_is_refused(tmp_path: Path, unsafe_zip: Path):
    path = tmp_path / "truncated.zip"
    path.write_bytes(unsafe_zip.read_bytes()[:-200])
    files, refusals = split(collect([str(path)]))
    assert not files
    assert [r.code for r in refusals.values()] == ["bad-archive"]


def test_truncated_tar_gz_is_refused_without_raising(tmp_path: Path):
    path = tmp_path / "truncated.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for i in range(30):
            _tar_add(archive, f"rules/r{i}.yml", os.urandom(20_000).hex().encode())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    items = list(read_archive(path))
    refusals = [item for item in items if isinstance(item, Refusal)]
    assert refusals, "a truncated archive must be reported"
    assert refusals[-1].code == "bad-archive"
    assert all(len(item.data) == 40_000 for item in items if isinstance(item, SourceFile))


def test_tar_gz_with_corrupt_compressed_data_is_refused(tmp_path: Path):
    path = tmp_path / "corrupt.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        _tar_add(archive, "rules/a.yml", b"x" * 50_000)
    raw = bytearray(path.read_bytes())
    for i in range(20, len(raw) - 10):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    files, refusals = split(collect([str(path)]))
    assert not files
    assert refusals


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("rules/a.yml", False),
        ("a.yml", False),
        ("./rules/a.yml", False),
        ("rules/..a.yml", False),
        ("../a.yml", True),
        ("rules/../../a.yml", True),
        ("..\\a.yml", True),
        ("/a.yml", True),
        ("\\a.yml", True),
        ("C:\\a.yml", True),
        ("", True),
        ("a\x00.yml", True),
    ],
)
def test_unsafe_member_names(name: str, unsafe: bool):
    assert (unsafe_member_name(name) is not None) == unsafe


# --- directories and plain paths ---------------------------------------------------------------


@pytest.fixture
def rule_folder(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    (root / "windows" / "deep").mkdir(parents=True)
    (root / "linux").mkdir()
    (root / "windows" / "a.yml").write_bytes(RULE + b"# a\n")
    (root / "windows" / "deep" / "b.yaml").write_bytes(RULE + b"# b\n")
    (root / "linux" / "C.YML").write_bytes(RULE + b"# c\n")
    (root / "linux" / "notes.md").write_text("ignored")
    (root / "linux" / "big.yml").write_bytes(BIG)
    outside = tmp_path / "outside.yml"
    outside.write_bytes(RULE + b"# outside\n")
    (root / "windows" / "link.yml").symlink_to(outside)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "hidden.yml").write_bytes(RULE)
    (root / "linked_dir").symlink_to(other, target_is_directory=True)
    return root


def test_directory_walk_is_recursive_sorted_and_names_paths_from_the_folder(rule_folder: Path):
    items = list(collect([str(rule_folder)]))
    files = [i for i in items if isinstance(i, SourceFile)]
    assert [f.catalog_path for f in files] == [
        "rules/linux/C.YML",
        "rules/windows/a.yml",
        "rules/windows/deep/b.yaml",
    ]
    assert files[1].data == RULE + b"# a\n"
    assert files[1].path == str(rule_folder / "windows" / "a.yml")


def test_directory_walk_refuses_a_symlinked_file(rule_folder: Path):
    _, refusals = split(collect([str(rule_folder)]))
    link = str(rule_folder / "windows" / "link.yml")
    assert link in refusals
    assert refusals[link].code == "symlink"
    assert "symbolic link" in refusals[link].reason


def test_directory_walk_refuses_oversized_files(rule_folder: Path):
    _, refusals = split(collect([str(rule_folder)]))
    big = str(rule_folder / "linux" / "big.yml")
    assert refusals[big].code == "too-large"


def test_directory_walk_does_not_follow_a_symlinked_directory(rule_folder: Path):
    items = list(collect([str(rule_folder)]))
    assert not any(isinstance(i, SourceFile) and "hidden.yml" in i.path for i in items)


def test_single_files_missing_paths_and_other_files(tmp_path: Path, rule_folder: Path):
    rule = rule_folder / "windows" / "a.yml"
    text = tmp_path / "notes.txt"
    text.write_text("x")
    broken = tmp_path / "broken.yml"
    broken.symlink_to(tmp_path / "missing-target.yml")
    files, refusals = split(
        collect([str(rule), str(tmp_path / "nope.yml"), str(text), str(broken)])
    )
    assert list(files) == [str(rule)]
    assert files[str(rule)].catalog_path == "a.yml"
    assert refusals[str(tmp_path / "nope.yml")].code == "not-found"
    assert refusals[str(broken)].code == "not-found"
    assert str(text) in refusals
