"""Run pySigma's core validators and SigmaHQ's validators over one rule; typed findings out.

Both validator sets read data the first time they need it: SigmaHQ's from four JSON files on
GitHub, pySigma's ATT&CK tag check from the MITRE STIX bundle, also on GitHub. Nothing here
may touch the network (the catalog runs offline), so :func:`_use_offline_data` points every
loader at data shipped inside the project, once per process, before any validator runs:

* ``rules/data/sigmahq/*.json``: SigmaHQ's own files (taxonomy, file names, Windows facts),
  taken from SigmaHQ/pySigma-validators-sigmaHQ (``README.md`` there says which commit).
* ATT&CK: the catalog's offline dataset (:mod:`rules.attack`, Enterprise v19).

Validators left out, and why (:data:`SKIPPED`): the three that compare rules with each other
(``duplicate_title``, ``duplicate_filename``, ``identifier_uniqueness``) only report at the end
of a whole run, never for one rule (the importer already reports duplicate ids), and the
D3FEND tag check has no offline data to check against.

A finding's ``line`` is the 1-based YAML line it concerns, best effort: the issue's own fields
(a tag, a field name, a detection name, a value) are looked up in the document's node tree;
otherwise the metadata key the validator is named after (``title``, ``tags``, ...).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from sigma.exceptions import SigmaRuleLocation
from sigma.rule import SigmaLogSource, SigmaRule, SigmaRuleTag
from sigma.rule.detection import SigmaDetectionItem
from sigma.types import SigmaString
from sigma.validators.base import SigmaRuleValidator, SigmaValidationIssue
from sigma.validators.sigmahq.modifier import (
    SigmahqFieldDuplicateValueIssue,
    SigmahqFieldDuplicateValueValidator,
)

from rules import attack

__all__ = [
    "DATA_DIR",
    "SKIPPED",
    "Finding",
    "validate_rule",
    "validate_text",
    "validator_names",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "sigmahq"

SKIPPED: dict[str, str] = {
    "duplicate_title": "compares rules with each other; reports only at the end of a run",
    "duplicate_filename": "compares rules with each other; reports only at the end of a run",
    "identifier_uniqueness": "compares rules with each other; the importer reports duplicates",
    "d3_fendtag": "needs the MITRE D3FEND ontology, which has no offline copy",
}
"""Validators never run, by identifier, with the reason shown on the quality page."""

# SigmaHQ's Windows event-ID and provider loaders read two files upstream has since merged
# into one (``sigmahq_windows_validator.json`` holds both keys).
_SIGMAHQ_FILES = {
    "data_taxonomy": "sigmahq_taxonomy.json",
    "data_filename": "sigmahq_filename.json",
    "data_windows_eventid": "sigmahq_windows_validator.json",
    "data_windows_provider": "sigmahq_windows_validator.json",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One validator's complaint about one rule."""

    validator: str  # identifier, e.g. ``attacktag`` or ``sigmahq_title_length``
    severity: str  # ``low``, ``medium`` or ``high`` (pySigma's scale)
    message: str  # the issue's description, plus the detail it names (tag, field, ...)
    line: int | None  # 1-based YAML line it concerns; None when no line applies

    def to_dict(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "severity": self.severity,
            "message": self.message,
            "line": self.line,
        }


# --------------------------------------------------------------------------------------------
# Offline data and the validator set (once per process)
# --------------------------------------------------------------------------------------------

_lock = threading.Lock()
_validators: list[tuple[str, SigmaRuleValidator]] | None = None


def _use_offline_data() -> None:
    """Point SigmaHQ's loaders and pySigma's ATT&CK module at the shipped data."""
    from importlib import import_module

    for module_name, filename in _SIGMAHQ_FILES.items():
        module = import_module(f"sigma.validators.sigmahq.data.{module_name}")
        # ``make_module_api`` exposes the loader only through its bound methods.
        loader = module.set_url.__self__
        with (DATA_DIR / filename).open(encoding="utf-8") as handle:
            parsed = loader._parse(json.load(handle))
        # Replacing the loader's cached read skips both its disk cache (under $HOME) and the
        # download; its ``get_attr`` keeps working unchanged.
        loader._load_cached = lambda parsed=parsed: parsed

    from sigma.data import mitre_attack

    techniques = attack.current_techniques()
    mitre_attack.mitre_attack_version = attack.ATTACK_VERSION
    mitre_attack.mitre_attack_tactics = {
        t.id: t.shortname for t in attack.tactics_in_matrix_order()
    }
    mitre_attack.mitre_attack_techniques = {t.id: t.name for t in techniques}
    mitre_attack.mitre_attack_techniques_tactics_mapping = {
        t.id: list(t.tactics) for t in techniques
    }
    for attribute, kind in (
        ("mitre_attack_intrusion_sets", "group"),
        ("mitre_attack_software", "software"),
        ("mitre_attack_datasources", "datasource"),
        ("mitre_attack_mitigations", "mitigation"),
    ):
        entities = attack.current_entities(kind)  # type: ignore[arg-type]
        setattr(mitre_attack, attribute, {e.id: e.name for e in entities})


CONFIG: dict[str, dict[str, Any]] = {
    # SigmaHQ's rule conventions (and its own CI's title check) cap titles at 110 characters;
    # pysigma-validators-sigmahq 0.21.0 defaults to 120. No corpus title is 111-120 long, so the
    # totals equal a default run's. The same setting as `sigma check --validation-config`.
    "sigmahq_title_length": {"max_length": 110},
}
"""Validator settings, by identifier, where ours differ from the package's defaults."""


def _build_validators() -> list[tuple[str, SigmaRuleValidator]]:
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq

    _use_offline_data()
    built: list[tuple[str, SigmaRuleValidator]] = []
    for name, cls in sorted({**core, **sigmahq}.items()):
        if name in SKIPPED:
            continue
        validator = _FASTER.get(name, cls)(**CONFIG.get(name, {}))
        # The ATT&CK tag check reads its allowed set lazily; read it now, from the data just
        # set, so a later change of pySigma's module attributes (the conversion code sets
        # top-level techniques only) cannot alter it.
        loader = getattr(validator, "_load_allowed_tags", None)
        if callable(loader) and hasattr(validator, "allowed_tags"):
            validator.allowed_tags = loader()
        built.append((name, validator))
    return built


class _FieldDuplicateValue(SigmahqFieldDuplicateValueValidator):
    """SigmaHQ's duplicate-value check, the same issues in the same order: values compared
    case-insensitively are looked up in a set rather than a list (quadratic on long lists)."""

    def validate_detection_item(
        self, detection_item: SigmaDetectionItem
    ) -> list[SigmaValidationIssue]:
        if any(modifier in detection_item.modifiers for modifier in self.CaseSensitiveModifierList):
            return super().validate_detection_item(detection_item)
        issues: list[SigmaValidationIssue] = []
        seen: set[str] = set()
        for value in detection_item.value:
            text = str(value)
            folded = text.lower()
            if folded not in seen:
                seen.add(folded)
            elif detection_item.field is not None:
                issues.append(
                    SigmahqFieldDuplicateValueIssue([self.rule], detection_item.field, text)
                )
        return issues


_FASTER: dict[str, type[SigmaRuleValidator]] = {
    "sigmahq_field_duplicate_value": _FieldDuplicateValue,
}
"""Drop-in replacements, by identifier, giving the same findings faster."""


class _Location(SigmaRuleLocation):
    """pySigma's rule location, its text computed once: ``str()`` resolves the path on the
    disk at every call, and SigmaHQ's folder-tag check asks up to three times per rule."""

    def __str__(self) -> str:
        text: str | None = self.__dict__.get("_text")
        if text is None:
            text = self.__dict__["_text"] = super().__str__()
        return text


@contextmanager
def _conditions_parsed_once(rule: SigmaRule) -> Iterator[None]:
    """Both dangling-reference validators parse every condition (``parse(False)``: a deep
    copy of pySigma's cached parse tree each time); they only read the tree, so for the
    duration of one validation each condition hands the same copy to both."""
    patched = []
    for condition in rule.detection.parsed_condition:
        try:
            tree = condition.parse(False)
        except Exception:  # noqa: BLE001 - the validators report it themselves
            continue
        condition.parse = _parse_once(condition.parse, tree)  # type: ignore[method-assign,assignment]
        patched.append(condition)
    try:
        yield
    finally:
        for condition in patched:
            del condition.parse


def _parse_once(parse: Callable[[bool], Any], tree: Any) -> Callable[[bool], Any]:
    def parsed(postprocess: bool = True) -> Any:
        return parse(postprocess) if postprocess else tree

    return parsed


def _all_validators() -> list[tuple[str, SigmaRuleValidator]]:
    global _validators
    if _validators is None:
        with _lock:
            if _validators is None:
                _validators = _build_validators()
    return _validators


def validator_names() -> tuple[str, ...]:
    """Identifiers of every validator that runs, sorted."""
    return tuple(name for name, _ in _all_validators())


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_rule(rule: SigmaRule, raw_yaml: str, source_path: str = "") -> list[Finding]:
    """Every finding of every validator for a parsed pySigma rule, in validator order.

    ``raw_yaml`` is the file's text (for lines); ``source_path`` its path, which the file-name
    validators check (only its last component matters). A validator that crashes on a strange
    rule becomes a ``high`` finding of its own rather than failing the import.
    """
    if source_path:
        rule.source = _Location(Path(PurePosixPath(source_path).name))
    raised: list[tuple[str, SigmaValidationIssue | Exception]] = []
    with _conditions_parsed_once(rule):
        for name, validator in _all_validators():
            try:
                issues = validator.validate(rule)
            except Exception as exc:  # noqa: BLE001 - third-party code on hostile input
                raised.append((name, exc))
                continue
            if issues:  # rare: most validators find nothing in most rules
                raised.extend((name, issue) for issue in issues)
    if not raised:
        return []
    # Most rules have no finding: the YAML node tree is only composed for those that do.
    lines = _LineIndex(raw_yaml)
    return [
        _finding(name, item, lines)
        if isinstance(item, SigmaValidationIssue)
        else Finding(name, "high", f"validator crashed: {type(item).__name__}", None)
        for name, item in raised
    ]


def validate_text(raw_yaml: str, source_path: str = "") -> list[Finding]:
    """Parse ``raw_yaml`` with pySigma and validate it (tests, scripts; the importer calls
    :func:`validate_rule` with the rule it already parsed)."""
    rule = SigmaRule.from_yaml(raw_yaml)
    return validate_rule(rule, raw_yaml, source_path)


def _finding(name: str, issue: SigmaValidationIssue, lines: _LineIndex) -> Finding:
    details = list(_details(issue))
    message = issue.description
    if details:
        message += ": " + ", ".join(f"{key}={text}" for key, text, _ in details)
    line = next((lines.of_detail(key, value) for key, _, value in details), None)
    if line is None:
        line = lines.of_validator(name)
    return Finding(name, issue.severity.name.lower(), message, line)


def _details(issue: SigmaValidationIssue) -> Iterator[tuple[str, str, Any]]:
    """(field name, shown text, raw value) of the issue's own fields, in declaration order."""
    for item in fields(issue):
        if item.name in ("rules", "severity", "description"):
            continue
        value = getattr(issue, item.name)
        yield item.name, _shown(value), value


def _shown(value: Any) -> str:
    if isinstance(value, SigmaDetectionItem):
        return str(value.field or "(keyword)")
    if isinstance(value, set | frozenset | list | tuple):
        return "[" + ", ".join(sorted(_shown(v) for v in value)) + "]"
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, SigmaLogSource):
        parts = (value.product, value.category, value.service)
        return "/".join(part or "-" for part in parts)
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


# --------------------------------------------------------------------------------------------
# YAML lines
# --------------------------------------------------------------------------------------------

# Validator identifier words -> the top-level key its findings concern.
_KEY_WORDS = (
    ("title", "title"),
    ("description", "description"),
    ("link_in_description", "description"),
    ("modified", "modified"),
    ("date", "date"),
    ("author", "author"),
    ("reference", "references"),
    ("github_link", "references"),
    ("mitre_link", "references"),
    ("falsepositive", "falsepositives"),
    ("level", "level"),
    ("status", "status"),
    ("tag", "tags"),
    ("logsource", "logsource"),
    ("sysmon_missing_eventid", "logsource"),
    ("condition", "condition"),
    ("identifier", "id"),
    ("fields_existence", "fields"),
    ("unknown_field", "fields"),
    ("custom_attributes", "title"),
)


class _LineIndex:
    """Where keys and values sit in one YAML document (1-based lines), from its node tree."""

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.detection_keys: dict[str, int] = {}
        self.field_names: dict[str, int] = {}
        self.values: dict[str, int] = {}
        try:
            root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            return
        if isinstance(root, yaml.MappingNode):
            self._index(root)

    def _index(self, root: yaml.MappingNode) -> None:
        for key, value in root.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            self.top.setdefault(str(key.value), key.start_mark.line + 1)
            if key.value == "detection" and isinstance(value, yaml.MappingNode):
                for name, body in value.value:
                    if isinstance(name, yaml.ScalarNode):
                        self.detection_keys.setdefault(str(name.value), name.start_mark.line + 1)
                    self._index_fields(body)
            for node in _walk(value):
                if isinstance(node, yaml.ScalarNode):
                    self.values.setdefault(str(node.value).casefold(), node.start_mark.line + 1)

    def _index_fields(self, body: yaml.Node) -> None:
        for node in _walk(body):
            if isinstance(node, yaml.MappingNode):
                for key, _ in node.value:
                    if isinstance(key, yaml.ScalarNode):
                        name = str(key.value).split("|", 1)[0].casefold()
                        self.field_names.setdefault(name, key.start_mark.line + 1)

    def of_detail(self, key: str, value: Any) -> int | None:
        """The line of one issue field's value, when it can be found."""
        if isinstance(value, SigmaRuleTag):
            return self.values.get(str(value).casefold())
        if isinstance(value, SigmaDetectionItem):
            return self.field_names.get((value.field or "").casefold())
        if isinstance(value, SigmaString):
            return self._value_line(str(value))
        if isinstance(value, str):
            if key in ("field", "fieldname"):
                return self.field_names.get(value.casefold())
            if key in ("detection_name", "selection", "condition_name"):
                return self.detection_keys.get(value) or self.top.get("detection")
            if key == "filename":
                return None
            return self._value_line(value)
        return None

    def _value_line(self, text: str) -> int | None:
        folded = text.casefold()
        if folded in self.values:
            return self.values[folded]
        # A word inside a longer value (``falsepositives: Unknown``): the first value holding it.
        for value, line in self.values.items():
            if folded and folded in value:
                return line
        return None

    def of_validator(self, name: str) -> int | None:
        """The line of the metadata key a validator is about, else ``detection`` for the
        detection checks; None for file-name checks and missing keys."""
        if "filename" in name:
            return None
        bare = name.removeprefix("sigmahq_")
        for word, key in _KEY_WORDS:
            if re.search(rf"(^|_){word}", bare):
                if key == "condition":
                    return self.detection_keys.get("condition") or self.top.get("detection")
                return self.top.get(key)
        return self.top.get("detection")


def _walk(node: yaml.Node) -> Iterable[yaml.Node]:
    """Every node under ``node`` (itself included), without recursion."""
    stack = [node]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, yaml.MappingNode):
            for key, value in reversed(item.value):
                stack.extend((value, key))
        elif isinstance(item, yaml.SequenceNode):
            stack.extend(reversed(item.value))
