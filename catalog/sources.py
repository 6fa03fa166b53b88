"""Collect rule files from directories, files, ``.zip`` and ``.tar.gz`` archives, safely.

Every file that cannot be read is reported as a :class:`Refusal` (with the reason) rather than
raising, so that one bad entry never stops an import. Archive entries that would escape the
target (``../``, absolute paths), links, devices and oversized members are refused.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rules.parse import MAX_RULE_BYTES

RULE_SUFFIXES = (".yml", ".yaml")
MAX_ARCHIVE_MEMBERS = 100_000


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One rule file's bytes, the path shown to users (``archive.zip!rules/x.yml``) and the
    path stored in the catalog (relative to the imported folder's parent, or the archive)."""

    path: str
    data: bytes
    name: str = ""

    @property
    def catalog_path(self) -> str:
        return self.name or self.path


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str
    reason: str
    code: str = "refused"


def is_rule_name(name: str) -> bool:
    return name.lower().endswith(RULE_SUFFIXES)


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar.gz", ".tgz", ".tar"))


def collect(paths: list[str]) -> Iterator[SourceFile | Refusal]:
    """Yield every rule file under ``paths`` (or why it was refused), in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_symlink() and not path.exists():
            yield Refusal(raw, "broken symbolic link", "not-found")
        elif not path.exists():
            yield Refusal(raw, "no such file or directory", "not-found")
        elif path.is_dir():
            yield from _walk_directory(path)
        elif is_archive(path):
            yield from read_archive(path)
        elif is_rule_name(path.name):
            yield _read_file(path, str(path))
        else:
            yield Refusal(raw, "not a .yml/.yaml rule file, a directory or a .zip/.tar.gz archive")


def _walk_directory(root: Path) -> Iterator[SourceFile | Refusal]:
    for path in sorted(root.rglob("*")):
        if not is_rule_name(path.name):
            continue
        if path.is_symlink():
            yield Refusal(str(path), "symbolic links are not followed", "symlink")
        elif path.is_file():
            yield _read_file(path, str(path), path.relative_to(root.parent).as_posix())


def _read_file(path: Path, shown: str, name: str = "") -> SourceFile | Refusal:
    try:
        size = path.stat().st_size
        if size > MAX_RULE_BYTES:
            return Refusal(shown, f"file is {size:,} bytes (limit {MAX_RULE_BYTES:,})", "too-large")
        return SourceFile(shown, path.read_bytes(), name or path.name)
    except OSError as exc:
        return Refusal(shown, f"cannot read: {exc.strerror or exc}", "unreadable")


def read_archive(path: Path, shown: str | None = None) -> Iterator[SourceFile | Refusal]:
    """Rule files inside a zip or tar(.gz) archive; anything unsafe is refused, not extracted."""
    label = shown or str(path)
    try:
        if zipfile.is_zipfile(path):
            yield from _read_zip(path, label)
        elif tarfile.is_tarfile(path):
            yield from _read_tar(path, label)
        else:
            yield Refusal(label, "not a readable .zip or .tar.gz archive", "bad-archive")
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        yield Refusal(label, f"corrupt archive: {exc}", "bad-archive")


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is unsafe to use, or None."""
    if not name or "\x00" in name:
        return "empty or NUL in entry name"
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "absolute path in archive"
    if ".." in PurePosixPath(normalized).parts:
        return "path escapes the archive ('..')"
    return None


def _read_zip(path: Path, label: str) -> Iterator[SourceFile | Refusal]:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_ARCHIVE_MEMBERS:
            yield Refusal(label, f"archive has over {MAX_ARCHIVE_MEMBERS:,} entries", "too-large")
            return
        for info in sorted(members, key=lambda m: m.filename):
            if info.is_dir():
                continue
            shown = f"{label}!{info.filename}"
            reason = unsafe_member_name(info.filename)
            mode = info.external_attr >> 16
            if reason is None and stat.S_ISLNK(mode):
                reason = "symbolic link in archive"
            if reason is None and not is_rule_name(info.filename):
                continue
            if reason is None and info.file_size > MAX_RULE_BYTES:
                reason = f"entry is {info.file_size:,} bytes (limit {MAX_RULE_BYTES:,})"
            if reason:
                yield Refusal(shown, reason, "unsafe-entry")
                continue
            with archive.open(info) as handle:
                # Read one byte past the limit: the header's size may lie (zip bomb).
                data = handle.read(MAX_RULE_BYTES + 1)
            if len(data) > MAX_RULE_BYTES:
                yield Refusal(shown, f"entry is larger than {MAX_RULE_BYTES:,} bytes", "too-large")
            else:
                yield SourceFile(shown, data, info.filename)


def _read_tar(path: Path, label: str) -> Iterator[SourceFile | Refusal]:
    with tarfile.open(path, mode="r:*") as archive:
        count = 0
        for member in archive:
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                yield Refusal(
                    label, f"archive has over {MAX_ARCHIVE_MEMBERS:,} entries", "too-large"
                )
                return
            if member.isdir():
                continue
            shown = f"{label}!{member.name}"
            reason = unsafe_member_name(member.name)
            if reason is None and (member.issym() or member.islnk()):
                reason = "link in archive"
            if reason is None and not member.isfile():
                if not is_rule_name(member.name):
                    continue
                reason = "not a regular file (device or fifo)"
            if reason is None and not is_rule_name(member.name):
                continue
            if reason is None and member.size > MAX_RULE_BYTES:
                reason = f"entry is {member.size:,} bytes (limit {MAX_RULE_BYTES:,})"
            if reason:
                yield Refusal(shown, reason, "unsafe-entry")
                continue
            handle = archive.extractfile(member)
            if handle is None:
                yield Refusal(shown, "unreadable entry", "unsafe-entry")
                continue
            data = handle.read(MAX_RULE_BYTES + 1)
            if len(data) > MAX_RULE_BYTES:
                yield Refusal(shown, f"entry is larger than {MAX_RULE_BYTES:,} bytes", "too-large")
            else:
                yield SourceFile(shown, data, member.name)
