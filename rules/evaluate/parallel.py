"""Bulk matching in forked worker processes (``manage.py evaluate`` over large files).

Workers are forked, so they share the parent's compiled rules copy-on-write and nothing is
pickled but events and rule ids. The evaluator reaches the workers through a module global
set just before forking (a fork copies it; nothing else does).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rules.events import Event

if TYPE_CHECKING:
    from rules.evaluate.evaluator import Evaluator

__all__ = ["match_in_workers"]

PARALLEL_MIN_EVENTS = 2000  # below this, forking costs more than it saves
_FORKED: tuple[Evaluator, bool] | None = None  # (evaluator, all_rules) for the workers


def _can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def _match_batch(batch: list[Event | Mapping[str, Any]]) -> list[list[str]]:
    assert _FORKED is not None  # set by the parent before forking
    evaluator, all_rules = _FORKED
    return [evaluator.match_ids(e, all_rules=all_rules) for e in batch]


def match_in_workers(
    evaluator: Evaluator,
    events: Sequence[Event | Mapping[str, Any]],
    *,
    all_rules: bool,
    workers: int,
) -> list[list[str]] | None:
    """Matching rule ids per event computed by ``workers`` forked processes, or None when
    the batch is too small (or fork is unavailable) and the caller should match in-process."""
    if workers < 2 or len(events) < PARALLEL_MIN_EVENTS or not _can_fork():
        return None
    global _FORKED
    _FORKED = (evaluator, all_rules)
    try:
        chunk = max(64, len(events) // (workers * 8))
        batches = [list(events[i : i + chunk]) for i in range(0, len(events), chunk)]
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_match_batch, batches)
    finally:
        _FORKED = None
    return [ids for part in parts for ids in part]
