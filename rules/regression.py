"""Replay a rule's regression samples (SigmaHQ ``regression_data``) through the engine.

SigmaHQ rules that have recorded events name them in their YAML::

    regression_tests_path: regression_data/rules/windows/.../info.yml

That path is relative to the repository root (the folder holding ``rules/`` and
``regression_data/``). ``info.yml`` lists the tests: ``type`` (``evtx``), ``provider``,
``path`` of the event file (also repository-relative) and, optionally, ``match_count``. A test
passes when the rule matches exactly ``match_count`` events, or at least one event when no
count is given (SigmaHQ's own runner checks the same). Beside each ``.evtx`` SigmaHQ keeps the
same events as evtx_dump JSON; the JSON is read when the ``.evtx`` is missing, and its text is
kept (capped) so a page can replay the sample in the sandbox.

The rule is evaluated by :class:`rules.evaluate.Evaluator`, the sandbox's engine, with its
logsource scoping: a sample only counts when the engine would pick the rule for that event.

Hostile input (a rule's text chooses the paths): paths must be relative, without ``..``, start
with ``regression_data/`` and resolve inside the repository root; files are size-capped and the
number of tests and events is bounded. Rules read from archives are not replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from rules.evaluate import Evaluator
from rules.events import Event, parse_evtx, parse_json_events
from rules.model import ParsedRule
from rules.text_input import read_file_bytes

__all__ = [
    "MAX_EVENTS",
    "Regression",
    "RegressionTest",
    "declared_path",
    "replay",
    "replay_events",
]

DATA_FOLDER = "regression_data"
MAX_INFO_BYTES = 64 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024
MAX_EVENTS = 10_000
MAX_TESTS = 20
MAX_SAMPLE_CHARS = 512 * 1024  # JSON text kept for "replay in sandbox"
_MAX_DEPTH = 16  # folders walked up from the rule file looking for the repository root


@dataclass(frozen=True, slots=True)
class RegressionTest:
    """One entry of ``regression_tests_info`` and what the replay found."""

    name: str
    type: str
    provider: str
    path: str  # the event file as the info names it (repository-relative)
    expected: int | None  # ``match_count``; None: at least one match
    samples: int  # events read
    matches: int  # events the rule matched
    error: str = ""  # why the file could not be replayed

    @property
    def passed(self) -> bool:
        if self.error:
            return False
        if self.expected is None:
            return self.matches >= 1
        return self.matches == self.expected


@dataclass(frozen=True, slots=True)
class Regression:
    """A rule's regression evidence: the declared path, and each test's outcome.

    ``tested`` is False when the declared data is absent (``error`` says why): SigmaHQ names
    more tests than a corpus may ship.
    """

    declared: str
    tests: tuple[RegressionTest, ...] = ()
    error: str = ""
    sample_json: str = field(default="", repr=False)  # events as JSON text, for the sandbox

    @property
    def tested(self) -> bool:
        return not self.error and bool(self.tests)

    @property
    def passed(self) -> bool:
        return self.tested and all(t.passed for t in self.tests)

    @property
    def samples(self) -> int:
        return sum(t.samples for t in self.tests)

    @property
    def matches(self) -> int:
        return sum(t.matches for t in self.tests)

    @property
    def provider(self) -> str:
        return next((t.provider for t in self.tests if t.provider), "")

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: ``{"tested", "passed", "samples", "matches"}`` plus detail."""
        return {
            "tested": self.tested,
            "passed": self.passed,
            "samples": self.samples,
            "matches": self.matches,
            "provider": self.provider,
            "declared": self.declared,
            "error": self.error,
            "tests": [
                {
                    "name": t.name,
                    "type": t.type,
                    "provider": t.provider,
                    "path": t.path,
                    "expected": t.expected,
                    "samples": t.samples,
                    "matches": t.matches,
                    "passed": t.passed,
                    "error": t.error,
                }
                for t in self.tests
            ],
        }


def declared_path(document: Mapping[str, Any]) -> str | None:
    """The rule's ``regression_tests_path``, or None when it names none."""
    value = document.get("regression_tests_path")
    return value.strip() if isinstance(value, str) and value.strip() else None


def replay(rule: ParsedRule, rule_file: str) -> Regression | None:
    """Replay the samples ``rule`` declares; ``rule_file`` is where its YAML was read.

    None when the rule declares no ``regression_tests_path``. ``rule.document`` (the YAML
    mapping) and ``rule.sigma`` must still be set (the importer's parse step has both).
    """
    declared = declared_path(rule.document)
    if declared is None:
        return None
    problem = _unsafe(declared)
    if problem:
        return Regression(declared, error=problem)
    if "!" in rule_file or not rule_file:
        return Regression(declared, error="rules read from an archive are not replayed")
    root = _repository_root(Path(rule_file), declared)
    if root is None:
        return Regression(declared, error=f"{declared} is not in this corpus")
    try:
        info = _read_info(root / declared)
    except ValueError as exc:
        return Regression(declared, error=str(exc))
    entries = info.get("regression_tests_info")
    if not isinstance(entries, list) or not entries:
        return Regression(declared, error="info.yml lists no regression_tests_info")
    evaluator = Evaluator([rule])
    tests: list[RegressionTest] = []
    samples: list[str] = []
    for entry in entries[:MAX_TESTS]:
        test, sample = _run_test(evaluator, rule.id, root, entry)
        tests.append(test)
        if sample:
            samples.append(sample)
    return Regression(declared, tuple(tests), sample_json=_joined(samples))


def replay_events(evaluator: Evaluator, rule_id: str, events: Sequence[Event]) -> int:
    """How many of ``events`` the engine matches ``rule_id`` on (logsource-scoped)."""
    return sum(1 for ev in events if rule_id in evaluator.match_ids(ev))


def _unsafe(path: str) -> str:
    posix = PurePosixPath(path)
    if posix.is_absolute() or "\\" in path or ".." in posix.parts:
        return f"regression path {path!r} must be relative, without '..'"
    if not posix.parts or posix.parts[0] != DATA_FOLDER:
        return f"regression path {path!r} must start with {DATA_FOLDER}/"
    return ""


def _repository_root(rule_file: Path, declared: str) -> Path | None:
    """The nearest folder above the rule file that holds ``declared`` (inside it, for real)."""
    for depth, folder in enumerate(rule_file.resolve().parents):
        if depth >= _MAX_DEPTH:
            break
        if (folder / DATA_FOLDER).is_dir() and _inside(folder, folder / declared):
            return folder
    return None


def _inside(root: Path, candidate: Path) -> bool:
    """``candidate`` is a regular file whose real path is under ``root`` (no symlink escape)."""
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.is_file() and real.is_relative_to(root.resolve())


def _read_info(path: Path) -> dict[str, Any]:
    try:
        data = read_file_bytes(str(path), max_bytes=MAX_INFO_BYTES)
        loaded = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"info.yml unreadable: {type(exc).__name__}") from exc
    if not isinstance(loaded, dict):
        raise ValueError("info.yml is not a mapping")
    return loaded


def _run_test(
    evaluator: Evaluator, rule_id: str, root: Path, entry: Any
) -> tuple[RegressionTest, str]:
    """One test's outcome, and the events' JSON text (for the sandbox)."""
    entry = entry if isinstance(entry, dict) else {}
    path = str(entry.get("path") or "")
    expected = entry.get("match_count")
    test = RegressionTest(
        name=str(entry.get("name") or "")[:200],
        type=str(entry.get("type") or "")[:30],
        provider=str(entry.get("provider") or "")[:200],
        path=path[:1000],
        expected=expected if isinstance(expected, int) and expected >= 0 else None,
        samples=0,
        matches=0,
    )
    problem = _unsafe(path) if path else "the test names no event file"
    if problem:
        return replace(test, error=problem), ""
    try:
        events, sample = _load_events(root, path)
    except (OSError, ValueError) as exc:
        return replace(test, error=f"events unreadable: {exc}"[:300]), ""
    matches = replay_events(evaluator, rule_id, events)
    return replace(test, samples=len(events), matches=matches), sample


def _load_events(root: Path, path: str) -> tuple[list[Event], str]:
    """The test's events (the ``.evtx`` if present, else its ``.json`` rendering) and the
    JSON text kept for the sandbox ('' when too large or absent)."""
    target = root / path
    json_file = target.with_suffix(".json")
    sample = ""
    if _inside(root, json_file):
        text = read_file_bytes(str(json_file), max_bytes=MAX_EVENT_BYTES).decode("utf-8")
        sample = text if len(text) <= MAX_SAMPLE_CHARS else ""
    if _inside(root, target) and target.suffix.lower() == ".evtx":
        data = read_file_bytes(str(target), max_bytes=MAX_EVENT_BYTES)
        return parse_evtx(data, max_events=MAX_EVENTS), sample
    if sample or _inside(root, json_file):
        text = sample or read_file_bytes(str(json_file), max_bytes=MAX_EVENT_BYTES).decode()
        return parse_json_events(text, max_events=MAX_EVENTS), sample
    if _inside(root, target):
        text = read_file_bytes(str(target), max_bytes=MAX_EVENT_BYTES).decode("utf-8")
        return parse_json_events(text, max_events=MAX_EVENTS), sample
    raise ValueError(f"{path} is not in this corpus")


def _joined(samples: list[str]) -> str:
    """Several tests' JSON texts as one input the sandbox reads (concatenated objects)."""
    text = "\n".join(s.strip() for s in samples)
    return text if len(text) <= MAX_SAMPLE_CHARS else ""
