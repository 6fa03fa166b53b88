"""Uploaded rule files and archives: the one list of accepted suffixes and the one function
that spools an upload to disk and runs the importer on it (admin "Import rules…" and
``POST /api/imports/`` both use it)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from catalog.services import ImportAborted, ImportReport, import_rules

UPLOAD_SUFFIXES = (".yml", ".yaml", ".zip", ".tar.gz", ".tgz", ".tar")
"""What the importer reads (see :mod:`catalog.sources`): one rule file or an archive."""

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(name: str | None) -> str:
    """The file's own name (no directories), lower-cased, for the suffix check."""
    return PurePosixPath(name or "").name.lower()


def is_rule_upload(name: str | None) -> bool:
    """Whether an upload's name has a suffix the importer reads."""
    return upload_name(name).endswith(UPLOAD_SUFFIXES)


def import_upload(upload: Any, *, prune: bool, trigger: str) -> ImportReport:
    """Run the importer on an uploaded file saved under a temporary directory.

    The file keeps its (sanitised) name: the importer picks the reader by suffix and stores
    a single file's name as the rule's source path. Error paths lose the temporary prefix,
    also on the report of an :class:`ImportAborted` (which is re-raised).
    """
    name = _UNSAFE_NAME_CHARS.sub("_", PurePosixPath(upload.name).name)[-120:]
    with tempfile.TemporaryDirectory(prefix="sigma-upload-") as folder:
        target = Path(folder) / name
        with target.open("wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        try:
            report = import_rules([str(target)], prune=prune, trigger=trigger)
        except ImportAborted as exc:
            _strip_folder(exc.report, folder)
            raise
    _strip_folder(report, folder)
    return report


def _strip_folder(report: ImportReport, folder: str) -> None:
    for error in report.errors:
        error.path = error.path.replace(folder + "/", "")
