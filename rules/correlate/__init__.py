"""Sigma correlation rules: parsing (pySigma), timestamps, and the streaming engine.

``parse_correlation`` -> ``resolve_references`` -> ``CorrelationEngine`` (or the one-call
:func:`rules.correlate.run.correlate` over a batch of events and their matches).
"""

from rules.correlate.engine import CorrelationEngine, CorrelationStats
from rules.correlate.model import (
    CorrelationError,
    CorrelationMatch,
    CorrelationRule,
    UnresolvedReferenceError,
)
from rules.correlate.parse import is_correlation, parse_correlation, resolve_references
from rules.correlate.run import CorrelationRun, correlate
from rules.correlate.timestamps import TIMESTAMP_FIELDS, event_time, parse_time

__all__ = [
    "TIMESTAMP_FIELDS",
    "CorrelationEngine",
    "CorrelationError",
    "CorrelationMatch",
    "CorrelationRule",
    "CorrelationRun",
    "CorrelationStats",
    "UnresolvedReferenceError",
    "correlate",
    "event_time",
    "is_correlation",
    "parse_correlation",
    "parse_time",
    "resolve_references",
]
