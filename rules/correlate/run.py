"""One call for a batch: events + their single-event matches -> correlation matches.

The batch is put in timestamp order (a stable sort: equal times keep input order) before it is
fed to a fresh :class:`~rules.correlate.engine.CorrelationEngine`; events without a readable
timestamp take no part and are listed in ``untimed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.correlate.engine import CorrelationEngine, CorrelationStats
from rules.correlate.model import CorrelationMatch, CorrelationRule
from rules.correlate.timestamps import Lookup, event_time

__all__ = ["CorrelationRun", "correlate"]


@dataclass(slots=True)
class CorrelationRun:
    matches: list[CorrelationMatch]
    untimed: list[int] = field(default_factory=list)  # matched events without a timestamp
    stats: CorrelationStats = field(default_factory=CorrelationStats)
    timestamp_field: str | None = None

    def to_list(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.matches]


def correlate(
    correlations: Sequence[CorrelationRule],
    events: Sequence[Lookup],
    matched: Sequence[Sequence[str]],
    *,
    timestamp_field: str | None = None,
    indices: Sequence[int] | None = None,
    max_matches: int = 10_000,
) -> CorrelationRun:
    """Correlate ``events`` (``matched[i]``: the rule ids event ``i`` matched). ``indices``
    gives each event's index as reported (default: its position)."""
    if not correlations:
        return CorrelationRun([], timestamp_field=timestamp_field)
    engine = CorrelationEngine(correlations, max_matches=max_matches)
    wanted = engine.rule_ids
    # Parallel lists of plain numbers, sorted by position: no tuple per event (the garbage
    # collector would track each one), and a stable sort keeps equal times in input order.
    times: list[float] = []
    positions: list[int] = []
    untimed: list[int] = []
    for position, ids in enumerate(matched):
        if wanted.isdisjoint(ids):
            continue  # only events some correlation counts need a time
        when = event_time(events[position], timestamp_field)
        if when is None:
            untimed.append(indices[position] if indices is not None else position)
        else:
            times.append(when)
            positions.append(position)
    feed = engine.feed
    for at in sorted(range(len(times)), key=times.__getitem__):
        position = positions[at]
        index = indices[position] if indices is not None else position
        feed(index, times[at], events[position], matched[position])
    return CorrelationRun(engine.finish(), untimed, engine.stats, timestamp_field)
