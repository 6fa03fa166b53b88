"""The sandbox service: the catalog's rules compiled once per process, evaluated on demand.

The evaluator is rebuilt when :func:`catalog.services.catalog_fingerprint` changes (an
import added, changed or pruned rules), so every worker converges on the new catalog at
its next sandbox request without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from catalog.models import Rule
from catalog.services import catalog_fingerprint
from rules.errors import RuleError
from rules.evaluate import Evaluator, EventResult, get_evaluator
from rules.events import Event
from rules.model import ParsedRule
from rules.parse import parse_rule

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest API body or page upload the sandbox reads."""
# Evaluation stops (and says so) past this budget, so one request cannot hold a worker.
TIME_BUDGET_SECONDS = 20.0


def _load_rules() -> Iterable[ParsedRule]:
    for rule_id, raw in Rule.objects.order_by("rule_id").values_list("rule_id", "raw_yaml"):
        try:
            yield parse_rule(raw, rule_id)
        except RuleError:
            # Rows come from the importer, which parsed them already; a rule that no longer
            # parses (engine change) is simply not evaluable until re-imported.
            continue


def catalog_evaluator() -> Evaluator:
    """The process-wide evaluator for the current catalog (built on first use)."""
    return get_evaluator(catalog_fingerprint(), lambda: list(_load_rules()))


@dataclass(slots=True)
class SandboxRun:
    """Results for a batch of events, plus totals for the summary line."""

    results: list[EventResult]
    events: list[Event]
    elapsed_ms: float
    truncated: bool = False
    rule_count: int = 0

    @property
    def match_count(self) -> int:
        return sum(len(r.matches) for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": [
                {"index": event.index, "kind": event.kind, **result.to_dict()}
                for event, result in zip(self.events, self.results, strict=False)
            ],
            "summary": {
                "events": len(self.events),
                "events_evaluated": len(self.results),
                "matches": self.match_count,
                "rules": self.rule_count,
                "elapsed_ms": round(self.elapsed_ms, 3),
                "truncated": self.truncated,
            },
        }


def run_sandbox(
    events: Sequence[Event],
    *,
    all_rules: bool = False,
    rule_ids: Sequence[str] | None = None,
    explain: bool = True,
    evaluator: Evaluator | None = None,
    time_budget: float = TIME_BUDGET_SECONDS,
) -> SandboxRun:
    """Evaluate events in order; stop at ``time_budget`` seconds and mark the run truncated."""
    engine = evaluator or catalog_evaluator()
    started = time.perf_counter()
    results: list[EventResult] = []
    truncated = False
    for event in events:
        if time.perf_counter() - started > time_budget:
            truncated = True
            break
        results.append(
            engine.evaluate(
                event,
                all_rules=all_rules,
                rule_ids=list(rule_ids) if rule_ids else None,
                explain=explain,
                # Near misses are the costly part; only worth it for small pastes.
                near_misses=explain and len(events) <= 50,
            )
        )
    return SandboxRun(
        results=results,
        events=list(events),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        truncated=truncated,
        rule_count=len(engine),
    )


def highlight(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, highlighted) pieces for the given [start, end) spans."""
    pieces: list[tuple[str, bool]] = []
    position = 0
    for start, end in sorted({(max(0, s), min(len(text), e)) for s, e in spans}):
        if end <= position or start >= len(text):
            continue
        start = max(start, position)
        if start > position:
            pieces.append((text[position:start], False))
        pieces.append((text[start:end], True))
        position = end
    if position < len(text):
        pieces.append((text[position:], False))
    return pieces
