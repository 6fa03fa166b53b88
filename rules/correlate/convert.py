"""Correlations (and rules with meta filters applied) as SIEM queries, through pySigma.

The queries are what ``sigma convert -t <target> --without-pipeline <files>`` prints for the
same documents: a :class:`sigma.collection.SigmaCollection` of the correlation, the rules it
references (and, for chains, their correlations and rules) and the filters that apply, given
to the backend's ``convert``. pySigma resolves the references, applies the filters and, unless
``generate: true``, leaves the referenced rules out of the output.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError

__all__ = ["CORRELATION_TARGETS", "ConvertedCollection", "convert_documents"]

# target -> (module, backend class, label): the backends that convert correlations.
CORRELATION_TARGETS: dict[str, tuple[str, str, str]] = {
    "splunk": ("sigma.backends.splunk", "SplunkBackend", "Splunk SPL"),
    "esql": ("sigma.backends.elasticsearch", "ESQLBackend", "Elasticsearch ES|QL"),
    "loki": ("sigma.backends.loki", "LogQLBackend", "Grafana Loki LogQL"),
    "sqlite": ("sigma.backends.sqlite", "sqliteBackend", "SQLite"),
}


@dataclass(slots=True)
class ConvertedCollection:
    target: str
    label: str
    queries: list[str] = field(default_factory=list)
    error: str = ""


def _backend(target: str) -> Any:
    module, name, _ = CORRELATION_TARGETS[target]
    return getattr(importlib.import_module(module), name)()


@overload
def convert_documents(
    texts: Sequence[str], targets: Sequence[str] = ..., *, budget: None = None
) -> list[ConvertedCollection]: ...


@overload
def convert_documents(
    texts: Sequence[str], targets: Sequence[str] = ..., *, budget: float
) -> tuple[list[ConvertedCollection], list[str]]: ...


def convert_documents(
    texts: Sequence[str],
    targets: Sequence[str] = tuple(CORRELATION_TARGETS),
    *,
    budget: float | None = None,
) -> list[ConvertedCollection] | tuple[list[ConvertedCollection], list[str]]:
    """Convert the YAML documents (one collection) for each target; a target that cannot
    convert them says why instead of failing the rest. With ``budget`` (seconds), targets
    are converted until it is spent (the first always), and the ones left are returned too."""
    out: list[ConvertedCollection] = []
    source = "\n---\n".join(text.strip().removeprefix("---").strip() for text in texts)
    started = time.perf_counter()
    for position, target in enumerate(targets):
        if budget is not None and out and time.perf_counter() - started > budget:
            return out, list(targets[position:])
        label = CORRELATION_TARGETS[target][2]
        try:
            collection = SigmaCollection.from_yaml(source)
            queries = _backend(target).convert(collection)
            out.append(ConvertedCollection(target, label, [str(q) for q in queries]))
        except ImportError as exc:
            out.append(ConvertedCollection(target, label, error=f"backend not installed: {exc}"))
        except (SigmaError, NotImplementedError, ValueError, TypeError, KeyError) as exc:
            message = str(exc) or type(exc).__name__
            out.append(ConvertedCollection(target, label, error=message))
    return (out, []) if budget is not None else out
