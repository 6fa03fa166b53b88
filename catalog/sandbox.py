"""The sandbox service: the catalog's rules compiled once per process, evaluated on demand.

The evaluator is rebuilt when :func:`catalog.services.catalog_fingerprint` changes (an
import added, changed or pruned rules), so every worker converges on the new catalog at
its next sandbox request without a restart.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog.models import Rule
from catalog.services import current_fingerprint
from rules.errors import RuleError
from rules.evaluate import Evaluator, EventResult, RuleMatch, get_evaluator
from rules.evaluate.bounds import ResponseBudget, ResponseLimits, bound_result
from rules.events import Event
from rules.model import ParsedRule
from rules.parse import parse_rule

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest API body or page upload the sandbox reads."""
# Evaluation stops (and says so) past this budget, so one request cannot hold a worker.
TIME_BUDGET_SECONDS = 20.0
HEAVY_CHARS = 64 * 1024
NEAR_MISS_MAX_CHARS = 128 * 1024
"""Events with more text than this are not searched for near misses (the costly part)."""
"""An input of more than one event or this much text is heavy: it takes one of the client's
and the process's heavy slots (catalog.throttling.heavy_slot)."""
LARGE_INPUT_HINT = (
    "upload larger files (.jsonl, .evtx, .xml) as a background job from the /sandbox/ page"
)


def is_heavy(events: Sequence[Event]) -> bool:
    """Whether evaluating ``events`` is heavy work (see :data:`HEAVY_CHARS`)."""
    if len(events) > 1:
        return True
    return sum(len(e.haystack) for e in events) >= HEAVY_CHARS


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
    # current_fingerprint: a COUNT/MAX round trip at most every FINGERPRINT_TTL seconds, not on
    # every request (it was a third of a one-scriptblock request's time under load).
    return get_evaluator(current_fingerprint(), lambda: list(_load_rules()))


API_LIMITS = ResponseLimits()
"""What one ``POST /api/sandbox/`` answer may hold (a few MB of JSON at most)."""
PAGE_LIMITS = ResponseLimits(
    explained_matches=25, predicates=20, suppressed=25, near_misses=15, listed=20,
    budget_bytes=400 * 1024, hard_bytes=600 * 1024,
)  # fmt: skip
"""The page renders several times the JSON's bytes as HTML: tighter caps, a few MB of page."""

CUT_LABELS = {
    "events": "events not evaluated",
    "unexplained_events": "events listed without explanations",
    "explanations": "matches listed without explanation",
    "predicates": "predicates left out",
    "event_values": "long event values cut to the text around the match",
    "rule_values": "rule values left out",
    "missing_values": "near-miss values left out",
    "suppressed": "suppressed rules left out",
    "near_misses": "near misses left out",
    "near_miss_searches": "events too large for a near-miss search",
    "unsupported": "unsupported rules left out",
    "out_of_scope": "out-of-scope rule ids left out",
    "unknown_rule_ids": "unknown rule ids left out",
}


@dataclass(slots=True)
class SandboxRun:
    """Results for a batch of events, plus totals for the summary line.

    ``cut`` counts what the response caps left out (see :mod:`rules.evaluate.bounds`);
    ``stopped`` says why events were left unevaluated (``"time"`` or ``"size"``)."""

    results: list[EventResult]
    events: list[Event]
    elapsed_ms: float
    truncated: bool = False
    rule_count: int = 0
    cut: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    read_as: str | None = None
    # Correlations (catalog.correlations.apply_meta): matches as JSON, notes for a person,
    # and per event index the matches a meta filter suppressed.
    correlations: list[dict[str, Any]] = field(default_factory=list)
    correlation_notes: list[str] = field(default_factory=list)
    filtered: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def match_count(self) -> int:
        return sum(len(r.matches) for r in self.results)

    @property
    def cut_notes(self) -> list[str]:
        """What was left out, for a person (the page's note)."""
        return [f"{n:,} {CUT_LABELS.get(k, k)}" for k, n in self.cut.items()]

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "events": len(self.events),
            "events_evaluated": len(self.results),
            "matches": self.match_count,
            "rules": self.rule_count,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "truncated": self.truncated,
            "stopped": self.stopped,
        }
        if self.read_as is not None:
            summary["read_as"] = self.read_as
        if self.correlation_notes:
            summary["correlation_notes"] = self.correlation_notes
        return {
            "events": [
                {
                    "index": event.index,
                    "kind": event.kind,
                    **result.to_dict(),
                    "filtered": self.filtered.get(event.index, []),
                }
                for event, result in zip(self.events, self.results, strict=False)
            ],
            "correlations": self.correlations,
            "summary": summary,
            "truncated": dict(self.cut),
        }


def run_sandbox(
    events: Sequence[Event],
    *,
    all_rules: bool = False,
    rule_ids: Sequence[str] | None = None,
    explain: bool = True,
    evaluator: Evaluator | None = None,
    time_budget: float = TIME_BUDGET_SECONDS,
    limits: ResponseLimits = API_LIMITS,
    timestamp_field: str | None = None,
    meta: Any = None,
) -> SandboxRun:
    """Evaluate events in order within ``limits``; stop at ``time_budget`` seconds or when
    the response budget is spent, and say what was cut.

    With the catalog's evaluator (or an explicit ``meta``, a
    :class:`catalog.correlations.CatalogMeta`), meta filters suppress matches and the
    evaluated events are correlated in timestamp order (``timestamp_field``: detected when
    None)."""
    engine = evaluator or catalog_evaluator()
    started = time.perf_counter()
    results: list[EventResult] = []
    cut: Counter[str] = Counter()
    budget = ResponseBudget(limits)
    stopped = None
    wanted = list(rule_ids) if rule_ids else None
    for event in events:
        if time.perf_counter() - started > time_budget:
            stopped = "time"
        elif budget.full:
            stopped = "size"
        if stopped:
            cut["events"] = len(events) - len(results)
            break
        explaining = explain and budget.explaining
        if explain and not explaining:
            cut["unexplained_events"] += 1
        # Near misses are the costly part: only for small pastes of ordinary-sized events.
        near = explaining and len(events) <= 50
        if near and len(event.haystack) > NEAR_MISS_MAX_CHARS:
            near = False
            cut["near_miss_searches"] += 1
        result = engine.evaluate(
            event,
            all_rules=all_rules,
            rule_ids=wanted,
            explain=explaining,
            near_misses=near,
            near_miss_limit=limits.near_misses,
            explain_limit=limits.explained_matches,
        )
        bound_result(result, limits, cut, explained=explaining)
        budget.add(result.to_dict())
        results.append(result)
    run = SandboxRun(
        results=results,
        events=list(events),
        elapsed_ms=0.0,
        truncated=bool(stopped) or bool(cut),
        rule_count=len(engine),
        cut={k: n for k, n in cut.items() if n},
        stopped=stopped,
    )
    if evaluator is None or meta is not None:
        from catalog.correlations import apply_meta  # it imports this module's types

        apply_meta(run, engine, timestamp_field=timestamp_field, meta=meta)
    run.elapsed_ms = (time.perf_counter() - started) * 1000
    return run


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


def highlighted_values(match: RuleMatch, *, cut: int | None = None) -> list[dict[str, Any]]:
    """The event values a match's predicates matched, each with its spans highlighted: one
    entry per field and value (``{"field", "pieces", "offset", "length"}``). Spans are
    offsets into the matched value (one element when a field is an array). A long value in
    a bounded answer is an excerpt (:mod:`rules.evaluate.bounds`) whose span indexes the
    excerpt; ``offset``/``length`` say where it sits. ``cut`` shortens values past that many
    characters (the job page, whose answers are not bounded)."""
    spans: dict[tuple[str, str, tuple[int, int | None]], list[tuple[int, int]]] = {}
    for identifier in match.identifiers:
        for predicate in identifier.predicates:
            if predicate.span and predicate.matched_field is not None:
                value = predicate.event_value
                text = value if isinstance(value, str) else json.dumps(value)
                where = (predicate.event_value_offset, predicate.event_value_length)
                key = (predicate.matched_field, text[:cut] if cut else text, where)
                spans.setdefault(key, []).append(tuple(predicate.span))
    return [
        {"field": name, "pieces": highlight(text, found), "offset": offset, "length": length}
        for (name, text, (offset, length)), found in spans.items()
    ]
