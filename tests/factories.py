"""Shared test factories: the one way tests build a Sigma rule, write rule files, put a rule
row in the catalog, or import a catalog once per module.

``rule_yaml`` writes the top-level keys in the order they are given, with the 4-space layout
SigmaHQ uses, so a test can build exactly the text it needs::

    rule_yaml(title="T", id=RULE_ID, logsource={"product": "windows"},
              detection="sel:\\n    Image: x.exe\\ncondition: sel", level="low")
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import textwrap
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import CORPUS

# The seed rule's detection (SigmaHQ posh_ps_test_netconnection.yml, DRL 1.1), at column 0.
SEED_DETECTION = """
selection:
    ScriptBlockText|contains|all:
        - Test-NetConnection
        - '-ComputerName '
        - '-port '
filter:
    ScriptBlockText|contains:
        - ' 443 '
        - ' 80 '
condition: selection and not filter
"""

WINDOWS_PROCESS_CREATION = {"product": "windows", "category": "process_creation"}


def rule_yaml(*, extra: str = "", **fields: Any) -> str:
    """A Sigma rule's text: one top-level key per keyword argument, in argument order.

    Values: ``None`` leaves the key out; a mapping becomes a nested block (``logsource``); a
    list or tuple a block list (``tags``); ``detection``, or any string with a newline, a
    nested YAML block given at column 0; anything else ``key: value`` as written. ``extra`` is raw
    YAML appended at the end.
    """
    lines: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines.append(f"{key}:")
            lines.extend(f"    {k}: {v}" for k, v in value.items())
        elif isinstance(value, list | tuple):
            lines.append(f"{key}:")
            lines.extend(f"    - {item}" for item in value)
        elif isinstance(value, str) and ("\n" in value or key == "detection"):
            lines.append(f"{key}:")
            lines.append(textwrap.indent(textwrap.dedent(value).strip("\n"), "    "))
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n" + extra


def rule_document_yaml(detection: Mapping[str, Any], **fields: Any) -> str:
    """A rule's text from Python values: ``fields`` (in order) then ``detection``, as YAML.

    For engine tests whose detections are data (lists, numbers, nulls) rather than text;
    ``rule_yaml`` is the text-first builder. Keys whose value is ``None`` are left out.
    """
    document = {key: value for key, value in fields.items() if value is not None}
    document["detection"] = dict(detection)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def upload(name: str, data: bytes) -> Any:
    """An uploaded file for a multipart form or API request."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def zip_of(files: Mapping[str, str]) -> bytes:
    """A zip archive holding ``{member name: text}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def write_rule_files(folder: Path, texts: Mapping[str, str]) -> Path:
    """Write ``{file name: rule text}`` into ``folder`` (created if missing); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


def make_rule(text: str, **fields: Any) -> Any:
    """A catalog Rule row straight from YAML, without the importer (tested elsewhere)."""
    from catalog.models import Rule

    document = yaml.safe_load(text)
    logsource = document.get("logsource") or {}
    values = {
        "rule_id": document["id"],
        "title": document["title"],
        "level": document.get("level", ""),
        "status": document.get("status", ""),
        "product": logsource.get("product", ""),
        "category": logsource.get("category", ""),
        "service": logsource.get("service", ""),
        "raw_yaml": text,
        "source_path": f"rules/{document['id']}.yml",
        "content_hash": hashlib.sha256(text.encode()).hexdigest(),
        "search_text": document["title"],
    }
    values.update(fields)
    return Rule.objects.create(**values)


@contextlib.contextmanager
def imported_for_module(
    django_db_blocker: Any, paths: Iterable[Path | str], **options: Any
) -> Iterator[Any]:
    """Import ``paths`` once for a module-scoped fixture, inside an outer transaction that is
    rolled back afterwards, so other modules still start from an empty database. Yields the
    import report; each test then runs in its own savepoint on top (pytest-django's ``db``).
    """
    from django.db import transaction

    from catalog.services import import_rules

    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        report = import_rules([str(p) for p in paths], **options)
    yield report
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


def corpus_documents() -> Iterator[dict[str, Any]]:
    """Every mapping document of the SigmaHQ corpus's ``rules*`` folders, in path order."""
    for folder in sorted(CORPUS.glob("rules*")):
        for path in sorted(folder.rglob("*.yml")):
            text = path.read_text(encoding="utf-8")
            for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
                if isinstance(doc, dict):
                    yield doc


def use_plain_static_storage(settings: Any) -> None:
    """The manifest storage needs ``collectstatic`` first; tests need no hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def never_reuse_fingerprint(monkeypatch: Any) -> None:
    """Tests change or roll back the catalog behind the caches' back: read the fingerprint
    afresh every time (this also keeps query counts deterministic)."""
    from catalog import services

    monkeypatch.setattr(services, "FINGERPRINT_TTL", 0.0)
    services.forget_fingerprint()


def isolate_site(settings: Any, monkeypatch: Any) -> None:
    """What every test that requests pages or the API needs: plain static files storage and
    a fingerprint never reused across a rolled-back catalog."""
    use_plain_static_storage(settings)
    never_reuse_fingerprint(monkeypatch)


# --- Regression samples (issue 13, the workbench's backtest) ---------------------------------


def write_regression_sample(
    root: Path, name: str, rule_id: str, title: str, events: list[dict[str, Any]]
) -> str:
    """A SigmaHQ-shaped regression folder under ``root/regression_data/rules/<name>/``: an
    ``info.yml`` naming the rule and ``<rule_id>.json`` holding the events (JSON lines).
    Returns the ``regression_tests_path`` a rule would write."""
    import json

    folder = root / "regression_data" / "rules" / name
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "id": str(rule_id),
        "rule_metadata": [{"id": str(rule_id), "title": title}],
        "regression_tests_info": [
            {
                "name": "Positive Detection Test",
                "type": "evtx",
                "provider": "Microsoft-Windows-Sysmon",
                "match_count": len(events),
                "path": f"regression_data/rules/{name}/{rule_id}.evtx",
            }
        ],
    }
    (folder / "info.yml").write_text(yaml.safe_dump(info, sort_keys=False))
    (folder / f"{rule_id}.json").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return f"regression_data/rules/{name}/info.yml"


@contextlib.contextmanager
def imported_rules_for_module(
    django_db_blocker: Any, root: Path, texts: Mapping[str, str]
) -> Iterator[Path]:
    """Write ``texts`` under ``root/rules`` and import them once for a module (see
    :func:`imported_for_module`); yields ``root`` (where regression samples may sit too).
    The workbench's process-wide index and samples are forgotten before and after."""
    from catalog.workbench import clear_workbench_cache

    folder = write_rule_files(root / "rules", texts)
    with imported_for_module(django_db_blocker, [folder]):
        clear_workbench_cache()
        yield root
    clear_workbench_cache()


def fresh_workbench() -> Iterator[None]:
    """For an autouse fixture: each test builds the workbench's index from its own catalog."""
    from catalog.workbench import clear_workbench_cache

    clear_workbench_cache()
    yield
    clear_workbench_cache()
