"""Backtest a rule over every regression sample of a corpus (SigmaHQ ``regression_data``).

SigmaHQ keeps, for some rules, a folder ``regression_data/<rules dir>/.../<rule name>/`` with
an ``info.yml`` (which rule it tests, the expected ``match_count``) and the sample as
``<rule id>.evtx`` plus its ``evtx_dump`` JSON. A rule names its folder with
``regression_tests_path: regression_data/.../info.yml``.

:func:`load_regression_set` reads every sample of a corpus once (the JSON when present, else
the ``.evtx``; a process keeps the set, keyed by the folder and its files' sizes and times);
:func:`backtest` runs one rule over all of them and says which samples of *other* rules it
fires on (likely false positives, or overlap) and whether it fires on its own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rules.errors import EventInputError
from rules.events import Event, load_events_file
from rules.model import ParsedRule

REGRESSION_DIR = "regression_data"
MAX_SAMPLE_FILES = 5000
MAX_SAMPLE_BYTES = 8 * 1024 * 1024
"""Bounds on what one corpus may make a process hold (SigmaHQ has ~100 samples, 5 MB)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One regression test: the events of one sample file and the rule it belongs to."""

    path: str
    """The ``info.yml`` path as rules write it (``regression_data/.../info.yml``)."""
    rule_ids: tuple[str, ...]
    titles: tuple[str, ...]
    name: str
    provider: str
    match_count: int | None
    events: tuple[Event, ...] = field(repr=False)
    file: str = ""
    """The sample file read, relative to the corpus root."""


@dataclass(frozen=True, slots=True)
class RegressionSet:
    """Every sample of one corpus."""

    root: str
    samples: tuple[Sample, ...]
    errors: tuple[str, ...] = ()

    @property
    def event_count(self) -> int:
        return sum(len(s.events) for s in self.samples)

    def by_path(self, path: str) -> list[Sample]:
        wanted = normalise_path(path)
        return [s for s in self.samples if s.path == wanted]


@dataclass(frozen=True, slots=True)
class SampleHit:
    """A sample the rule fired on."""

    sample: Sample
    matched: int
    """How many of the sample's events matched."""
    own: bool

    @property
    def rule_id(self) -> str:
        return self.sample.rule_ids[0] if self.sample.rule_ids else ""

    @property
    def title(self) -> str:
        return self.sample.titles[0] if self.sample.titles else self.sample.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "path": self.sample.path,
            "name": self.sample.name,
            "provider": self.sample.provider,
            "events": len(self.sample.events),
            "matched": self.matched,
            "expected": self.sample.match_count,
            "own": self.own,
        }


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What one rule fired on, over every sample of a corpus."""

    samples: int
    events: int
    hits: tuple[SampleHit, ...]
    """Samples of *other* rules the rule fired on."""
    own: tuple[SampleHit, ...]
    """The rule's own samples (named by its ``regression_tests_path`` or its id), fired or not."""
    elapsed_ms: float

    @property
    def fires_on_own(self) -> bool | None:
        """True when every own sample matched; None when the rule has no sample."""
        if not self.own:
            return None
        return all(hit.matched > 0 for hit in self.own)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "events": self.events,
            "hits": [hit.to_dict() for hit in self.hits],
            "own": [hit.to_dict() for hit in self.own],
            "fires_on_own": self.fires_on_own,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


def normalise_path(path: str) -> str:
    """``./regression_data\\x/info.yml`` -> ``regression_data/x/info.yml``."""
    text = path.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def regression_path(rule: ParsedRule) -> str:
    """The rule's ``regression_tests_path`` ("" when it has none)."""
    value = rule.document.get("regression_tests_path")
    return normalise_path(value) if isinstance(value, str) else ""


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the sample folder's files: the cache key."""
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((path.as_posix(), stat.st_size, stat.st_mtime_ns))
        if len(entries) > MAX_SAMPLE_FILES:
            break
    return tuple(entries)


def _sample_file(info: Path, test: dict[str, Any], root: Path) -> Path | None:
    """The sample's ``evtx_dump`` JSON beside the ``.evtx`` (faster to read), else the evtx."""
    named = test.get("path")
    candidates: list[Path] = []
    if isinstance(named, str) and named:
        evtx = root / normalise_path(named)
        candidates += [evtx.with_suffix(".json"), evtx]
    candidates += sorted(info.parent.glob("*.json")) + sorted(info.parent.glob("*.evtx"))
    # An info.yml names its sample: never one outside the corpus (``../..``, a link out).
    inside = (c for c in candidates if c.resolve().is_relative_to(root.resolve()))
    return next((c for c in inside if c.is_file()), None)


def _read_samples(info: Path, root: Path, budget: list[int]) -> list[Sample]:
    document = yaml.safe_load(info.read_text(encoding="utf-8")) or {}
    metadata = [m for m in document.get("rule_metadata") or [] if isinstance(m, dict)]
    ids = tuple(str(m.get("id", "")) for m in metadata if m.get("id"))
    titles = tuple(str(m.get("title", "")) for m in metadata if m.get("id"))
    relative = info.relative_to(root).as_posix()
    samples = []
    for test in document.get("regression_tests_info") or []:
        if not isinstance(test, dict):
            continue
        path = _sample_file(info, test, root)
        if path is None:
            continue
        budget[0] -= path.stat().st_size
        if budget[0] < 0:
            raise EventInputError(f"regression samples exceed {MAX_SAMPLE_BYTES:,} bytes")
        count = test.get("match_count")
        samples.append(
            Sample(
                path=relative,
                rule_ids=ids,
                titles=titles,
                name=str(test.get("name", "")),
                provider=str(test.get("provider", "")),
                match_count=count if isinstance(count, int) else None,
                events=tuple(load_events_file(str(path))),
                file=path.relative_to(root).as_posix(),
            )
        )
    return samples


@functools.lru_cache(maxsize=4)
def _load(root: str, signature: tuple[tuple[str, int, int], ...]) -> RegressionSet:
    base = Path(root)
    samples: list[Sample] = []
    errors: list[str] = []
    budget = [MAX_SAMPLE_BYTES]
    for info in sorted((base / REGRESSION_DIR).rglob("info.yml")):
        try:
            samples.extend(_read_samples(info, base, budget))
        except (OSError, yaml.YAMLError, EventInputError, ValueError) as exc:
            # One broken sample must not hide the others; the error is reported.
            errors.append(f"{info.relative_to(base).as_posix()}: {exc}")
            if budget[0] < 0:
                break
    return RegressionSet(root, tuple(samples), tuple(errors))


def load_regression_set(root: str | Path) -> RegressionSet:
    """Every regression sample under ``root/regression_data`` (empty when there is none).

    Read once per process per state of the folder: the key is its files' names, sizes and
    modification times, so a changed corpus is re-read and an unchanged one costs one walk.
    """
    base = Path(root).resolve()
    folder = base / REGRESSION_DIR
    if not folder.is_dir():
        return RegressionSet(str(base), ())
    return _load(str(base), _signature(folder))


def backtest(
    rule: ParsedRule,
    regression: RegressionSet,
    match: Callable[[Event], bool],
    *,
    own_paths: Iterable[str] = (),
) -> BacktestResult:
    """Run ``match`` (the rule's compiled test, scoped to its logsource) over every sample.

    A sample is the rule's own when its ``info.yml`` is the rule's ``regression_tests_path``
    (or one of ``own_paths``) or when its metadata names the rule's id.
    """
    started = time.perf_counter()
    own_set = {normalise_path(p) for p in own_paths if p}
    if regression_path(rule):
        own_set.add(regression_path(rule))
    hits: list[SampleHit] = []
    own: list[SampleHit] = []
    for sample in regression.samples:
        matched = sum(1 for event in sample.events if match(event))
        is_own = sample.path in own_set or rule.id in sample.rule_ids
        if is_own:
            own.append(SampleHit(sample, matched, True))
        elif matched:
            hits.append(SampleHit(sample, matched, False))
    return BacktestResult(
        samples=len(regression.samples),
        events=regression.event_count,
        hits=tuple(hits),
        own=tuple(own),
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
