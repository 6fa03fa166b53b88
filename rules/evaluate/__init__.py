"""The sandbox evaluator: which rules match an event, why, and which almost did.

One module per role:

* :mod:`~rules.evaluate.evaluator`: :class:`Evaluator` (scoping, matching, the entry points);
* :mod:`~rules.evaluate.prefilter`: candidate rules by required literals and fields;
* :mod:`~rules.evaluate.explain`: the tracing interpreter (predicates, spans, stages);
* :mod:`~rules.evaluate.analysis` and :mod:`~rules.evaluate.near_miss`: suppressions and
  near misses;
* :mod:`~rules.evaluate.results`: the result dataclasses (the sandbox JSON);
* :mod:`~rules.evaluate.parallel` and :mod:`~rules.evaluate.cache`: fork pool, per-process
  evaluator.
"""

from rules.evaluate.analysis import Polarity, polarity_identifiers
from rules.evaluate.cache import clear_evaluator_cache, get_evaluator
from rules.evaluate.evaluator import Evaluator, LogsourceKey
from rules.evaluate.prefilter import Prefilter
from rules.evaluate.results import (
    ConditionResult,
    EventResult,
    IdentifierResult,
    MissingPredicate,
    NearMiss,
    PredicateResult,
    RuleMatch,
    StageResult,
    Suppression,
    UnsupportedRule,
)

__all__ = [
    "ConditionResult",
    "Evaluator",
    "EventResult",
    "IdentifierResult",
    "LogsourceKey",
    "MissingPredicate",
    "NearMiss",
    "Polarity",
    "Prefilter",
    "PredicateResult",
    "RuleMatch",
    "StageResult",
    "Suppression",
    "UnsupportedRule",
    "clear_evaluator_cache",
    "get_evaluator",
    "polarity_identifiers",
]
