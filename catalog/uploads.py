"""Uploaded files: the one list of accepted rule suffixes, saving an upload to disk, and
importing a saved rule file or archive with a report that names archive members only.

The web never imports in a request: the admin "Import rules…" form and ``POST /api/imports/``
save the upload and enqueue a job (:mod:`catalog.jobs`), whose worker calls
:func:`import_saved`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from catalog.models import ImportRun
from catalog.services import ImportAborted, ImportReport, Progress, import_rules

UPLOAD_SUFFIXES = (".yml", ".yaml", ".zip", ".tar.gz", ".tgz", ".tar")
"""What the importer reads (see :mod:`catalog.sources`): one rule file or an archive."""

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(name: str | None) -> str:
    """The file's own name (no directories), lower-cased, for the suffix check."""
    return PurePosixPath(name or "").name.lower()


def is_rule_upload(name: str | None) -> bool:
    """Whether an upload's name has a suffix the importer reads."""
    return upload_name(name).endswith(UPLOAD_SUFFIXES)


def safe_name(name: str | None) -> str:
    """The upload's own name with anything unusual replaced (it keeps its suffix)."""
    return _UNSAFE_NAME_CHARS.sub("_", PurePosixPath(name or "upload").name)[-120:] or "upload"


def save_upload(upload: Any, folder: Path) -> Path:
    """Write ``upload`` (a Django UploadedFile) into ``folder`` under its sanitised name,
    streaming it (a large upload is copied from the file Django spooled it to)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_name(upload.name)
    spooled = getattr(upload, "temporary_file_path", None)
    if spooled is not None:
        upload.file.flush()
        shutil.copyfile(spooled(), target)
        return target
    with target.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return target


def import_saved(
    target: Path, *, prune: bool, trigger: str, progress: Progress | None = None
) -> ImportReport:
    """Run the importer on a saved upload. The file keeps its name: the importer picks the
    reader by suffix and stores a single file's name as the rule's source path.

    The report and its ImportRun row name archive members (``pack.zip!rules/a.yml``), never
    the folder the upload was saved in, also for an :class:`ImportAborted` (re-raised).
    """
    folder = str(target.parent)
    try:
        report = import_rules([str(target)], prune=prune, trigger=trigger, progress=progress)
    except ImportAborted as exc:
        _strip_folder(exc.report, folder, target.name)
        exc.args = (_strip(str(exc), folder),)
        raise
    _strip_folder(report, folder, target.name)
    return report


def import_upload(upload: Any, *, prune: bool, trigger: str) -> ImportReport:
    """Save and import ``upload`` in this process (for scripts and tests; the web enqueues)."""
    with tempfile.TemporaryDirectory(prefix="sigma-upload-") as folder:
        return import_saved(save_upload(upload, Path(folder)), prune=prune, trigger=trigger)


def _strip(text: str, folder: str) -> str:
    return text.replace(folder + "/", "").replace(folder, "")


def _strip_folder(report: ImportReport, folder: str, name: str) -> None:
    for error in report.errors:
        error.path = _strip(error.path, folder)
        error.error = _strip(error.error, folder)
    if report.run_id is not None:
        run = ImportRun.objects.filter(pk=report.run_id).only("message").first()
        ImportRun.objects.filter(pk=report.run_id).update(
            sources=[name],
            errors=[e.to_dict() for e in report.errors],
            message=_strip(run.message, folder) if run else "",
        )
