"""One evaluator per process, rebuilt when the catalog changes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from rules.evaluate.evaluator import Evaluator
from rules.model import ParsedRule

__all__ = ["clear_evaluator_cache", "get_evaluator"]

_CACHE: dict[str, Evaluator] = {}
_CACHE_LOCK = threading.Lock()


def get_evaluator(fingerprint: str, load_rules: Callable[[], Iterable[ParsedRule]]) -> Evaluator:
    """The process-wide evaluator for the catalog state ``fingerprint``.

    ``load_rules`` is called (and the evaluator rebuilt) only when the fingerprint differs
    from the cached one, e.g. a hash of rule ids and modification times.
    """
    with _CACHE_LOCK:
        current = _CACHE.get("catalog")
        if current is None or current.fingerprint != fingerprint:
            current = Evaluator(load_rules(), fingerprint=fingerprint)
            _CACHE["catalog"] = current
        return current


def clear_evaluator_cache() -> None:
    """Forget the process-wide evaluator (tests, and after a catalog reset)."""
    with _CACHE_LOCK:
        _CACHE.clear()
