"""Collect rule files from directories, files, ``.zip`` and ``.tar.gz`` archives, safely.

Every file that cannot be read is reported as a :class:`Refusal` (with the reason) rather than
raising, so that one bad entry never stops an import. Archive entries that would escape the
target (``../``, absolute paths), links, devices and oversized members are refused.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

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
            with zipfile.ZipFile(path) as zip_archive:
                yield from _read_entries(label, _zip_entries(zip_archive, label))
        elif tarfile.is_tarfile(path):
            with tarfile.open(path, mode="r:*") as tar_archive:
                yield from _read_entries(label, _tar_entries(tar_archive, label))
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


@dataclass(frozen=True, slots=True)
class _Entry:
    """One archive member (not a directory), whatever the archive format."""

    name: str
    size: int  # as the header says: it may lie, so reads stop one byte past the limit
    link: str | None  # why a link member is refused; None for other members
    regular: bool  # False for devices and fifos
    open: Callable[[], IO[bytes] | None]


def _too_many(label: str) -> Refusal:
    return Refusal(label, f"archive has over {MAX_ARCHIVE_MEMBERS:,} entries", "too-large")


def _zip_entries(archive: zipfile.ZipFile, label: str) -> Iterator[_Entry | Refusal]:
    members = archive.infolist()
    if len(members) > MAX_ARCHIVE_MEMBERS:
        yield _too_many(label)
        return
    for info in sorted(members, key=lambda m: m.filename):
        if info.is_dir():
            continue
        symlink = stat.S_ISLNK(info.external_attr >> 16)
        link = "symbolic link in archive" if symlink else None
        yield _Entry(info.filename, info.file_size, link, True, partial(archive.open, info))


def _tar_entries(archive: tarfile.TarFile, label: str) -> Iterator[_Entry | Refusal]:
    # Counted while streaming: a tar has no index to count up front.
    for count, member in enumerate(archive, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            yield _too_many(label)
            return
        if member.isdir():
            continue
        link = "link in archive" if member.issym() or member.islnk() else None
        opener = partial(archive.extractfile, member)
        yield _Entry(member.name, member.size, link, member.isfile(), opener)


def _read_entries(
    label: str, entries: Iterable[_Entry | Refusal]
) -> Iterator[SourceFile | Refusal]:
    for entry in entries:
        if isinstance(entry, Refusal):
            yield entry
            continue
        outcome = _read_entry(label, entry)
        if outcome is not None:
            yield outcome


def _read_entry(label: str, entry: _Entry) -> SourceFile | Refusal | None:
    """The member's bytes, why it is refused, or None when it is not a rule file."""
    shown = f"{label}!{entry.name}"
    reason = unsafe_member_name(entry.name) or entry.link
    if reason is None and not is_rule_name(entry.name):
        return None
    if reason is None and not entry.regular:
        reason = "not a regular file (device or fifo)"
    if reason is None and entry.size > MAX_RULE_BYTES:
        reason = f"entry is {entry.size:,} bytes (limit {MAX_RULE_BYTES:,})"
    if reason:
        return Refusal(shown, reason, "unsafe-entry")
    handle = entry.open()
    if handle is None:
        return Refusal(shown, "unreadable entry", "unsafe-entry")
    with handle:
        # Read one byte past the limit: the header's size may lie (zip bomb).
        data = handle.read(MAX_RULE_BYTES + 1)
    if len(data) > MAX_RULE_BYTES:
        return Refusal(shown, f"entry is larger than {MAX_RULE_BYTES:,} bytes", "too-large")
    return SourceFile(shown, data, entry.name)
