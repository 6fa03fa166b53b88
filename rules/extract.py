"""Extract stages, exclusions and indicators from a rule's detection, as written.

Definitions (the catalog's contract, also used by tests that recompute them independently):

- **Stages**: stage 0 is a condition as written; then one stage per top-level AND conjunct.
- **Exclusions**: values of search identifiers referenced *only* inside top-level ``not``
  conjuncts (``not filter``, ``not 1 of filter_*``).
- **Indicators**: values of every other referenced identifier, one per (field, kind, value).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any, NamedTuple, TypeVar

import yaml

from rules.conditions import Node, conjuncts, parse_condition, referenced, resolve_pattern
from rules.errors import ConditionError, DetectionError
from rules.model import Exclusion, Indicator, Predicate, Stage

# The modifier that decides how a value is compared; everything else transforms the value.
# (``neq`` is not in the catalog's list: ``Field|neq: x`` has kind ``equals|neq``.)
OPERATOR_MODIFIERS = frozenset(
    ("contains", "startswith", "endswith", "re", "cidr", "gt", "gte", "lt", "lte")
    + ("exists", "fieldref")
)


class DetectionValue(NamedTuple):
    """One value of one detection item: ``Image|endswith: '\\x.exe'`` -> field, kind, value."""

    field: str
    kind: str
    value: str


def written_text(value: Any) -> str:
    """A detection value as text: ``null``, ``true``/``false``, numbers as YAML wrote them.

    Not :func:`rules.events.value_text`, which is how an *event* value is matched.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    written = getattr(value, "written", None)  # numbers loaded by rules.parse keep their text
    if isinstance(written, str):
        return written
    return str(value)


def kind_of(modifiers: list[str]) -> str:
    """``contains|all|windash`` -> ``contains|windash``: operator first, then the rest in order."""
    operator = next((m for m in modifiers if m in OPERATOR_MODIFIERS), "equals")
    rest = [m for m in modifiers if m != "all" and m != operator]
    return "|".join([operator, *rest])


def _unescaped_wildcards(text: str) -> list[int]:
    """Positions of ``*``/``?`` that are wildcards (not escaped by a backslash)."""
    positions: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "*?\\":
            i += 2
            continue
        if char in "*?":
            positions.append(i)
        i += 1
    return positions


def simplify_wildcards(kind: str, value: str) -> tuple[str, str]:
    """``equals *x*``/``*x``/``x*`` (no other wildcard in x) -> ``contains``/``endswith``/
    ``startswith x``; anything else is returned unchanged."""
    if kind != "equals" or len(value) < 2:
        return kind, value
    wildcards = _unescaped_wildcards(value)
    if any(value[p] == "?" for p in wildcards):
        return kind, value
    last = len(value) - 1
    if wildcards == [0, last] and len(value) > 2:
        return "contains", value[1:-1]
    if wildcards == [0]:
        return "endswith", value[1:]
    if wildcards == [last]:
        return "startswith", value[:-1]
    return kind, value


def iter_predicates(identifier: str, definition: Any) -> Iterator[DetectionValue]:
    """Yield (field, kind, value) for every value of every detection item of an identifier."""
    if isinstance(definition, dict):
        yield from _map_predicates(identifier, definition)
    elif isinstance(definition, list):
        for element in definition:
            if isinstance(element, dict):
                yield from _map_predicates(identifier, element)
            elif isinstance(element, list):
                raise DetectionError(f"search identifier {identifier!r} has a nested list")
            else:
                yield _predicate("", [], element)
    elif definition is None:
        raise DetectionError(f"search identifier {identifier!r} is empty")
    else:
        yield _predicate("", [], definition)


def _map_predicates(identifier: str, mapping: dict[Any, Any]) -> Iterator[DetectionValue]:
    for key, values in mapping.items():
        field, *modifiers = str(key).split("|")
        if isinstance(values, dict):
            raise DetectionError(
                f"search identifier {identifier!r}: field {field!r} has a map as its value"
            )
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, dict | list):
                raise DetectionError(
                    f"search identifier {identifier!r}: field {field!r} has a nested value"
                )
            yield _predicate(field, modifiers, value)


def _predicate(field: str, modifiers: list[str], value: Any) -> DetectionValue:
    kind = kind_of(modifiers)
    text = written_text(value)
    if isinstance(value, str):
        kind, text = simplify_wildcards(kind, text)
    return DetectionValue(field, kind, text)


def identifier_blocks(raw: str) -> dict[str, str]:
    """The source text of each search identifier under ``detection:``, exactly as written.

    Slicing the source is faster than dumping YAML again and keeps comments, quoting and
    order. Returns {} when the layout is unusual (flow style...), and callers fall back.
    """
    lines = raw.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "detection:")
    except StopIteration:
        return {}
    blocks: dict[str, list[str]] = {}
    indent = -1
    current: list[str] | None = None
    for line in lines[start + 1 :]:
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            if current is not None and stripped:
                current.append(line[min(indent, len(line) - len(stripped)) :])
            continue
        depth = len(line) - len(stripped)
        if depth == 0:
            break
        if indent < 0:
            indent = depth
        if depth == indent and current is not None and (stripped == "-" or stripped[:2] == "- "):
            # A block sequence may sit at its key's indentation: ``sel:`` then ``- F: a``.
            current.append(line[indent:])
        elif depth == indent:
            name = stripped.split(":", 1)[0].strip().strip("'\"")
            current = blocks.setdefault(name, [])
            current.append(line[indent:])
        elif depth > indent and current is not None:
            current.append(line[indent:])
        else:
            return {}
    return {name: "\n".join(body) + "\n" for name, body in blocks.items()}


class _Dumper(yaml.CSafeDumper):
    """Safe dumper that also writes int/float subclasses (numbers that keep their text)."""


_Dumper.add_multi_representer(int, yaml.representer.SafeRepresenter.represent_int)
_Dumper.add_multi_representer(float, yaml.representer.SafeRepresenter.represent_float)


def dump_identifiers(
    detection: dict[str, Any], names: list[str], blocks: dict[str, str] | None = None
) -> str:
    """The YAML of some search identifiers, in the shape they were written."""
    if blocks and all(name in blocks for name in names):
        return "".join(blocks[name] for name in names)
    subset = {name: detection[name] for name in names if name in detection}
    if not subset:
        return ""
    return yaml.dump(
        subset,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1000,
    )


def parse_conditions(conditions: list[str], detection: dict[str, Any]) -> list[Node]:
    """Parse every condition and check that each identifier and pattern is defined."""
    names = [name for name in detection if name != "condition"]
    trees = [parse_condition(text) for text in conditions]
    for text, tree in zip(conditions, trees, strict=True):
        _check_defined(text, tree, names)
    return trees


def _check_defined(text: str, tree: Node, names: list[str]) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.op == "ref" and node.name not in names:
            raise ConditionError(
                f"condition {text!r} references {node.name!r}, which the detection does not "
                f"define (defined: {', '.join(names) or 'none'})"
            )
        if node.op == "of" and not resolve_pattern(node.name, names):
            raise ConditionError(
                f"'{node.quantifier} of {node.name}' in condition {text!r} matches no search "
                "identifier"
            )
        stack.extend(node.args)


def extract_stages(
    detection: dict[str, Any], conditions: list[str], trees: list[Node], raw: str = ""
) -> list[Stage]:
    """Stage 0 per condition, then one stage per top-level AND conjunct."""
    blocks = identifier_blocks(raw) if raw else {}
    stages: list[Stage] = []
    names = [name for name in detection if name != "condition"]
    for group, (text, tree) in enumerate(zip(conditions, trees, strict=True)):
        stages.append(Stage(group, 0, text, referenced(tree, names), ""))
        for index, node in enumerate(conjuncts(tree), start=1):
            used = referenced(node, names)
            stages.append(
                Stage(
                    group=group,
                    index=index,
                    text=text[node.start : node.end],
                    identifiers=used,
                    yaml=dump_identifiers(detection, used, blocks),
                    negated=node.op == "not",
                )
            )
    return stages


def split_identifiers(detection: dict[str, Any], trees: list[Node]) -> tuple[list[str], list[str]]:
    """(indicator identifiers, exclusion identifiers) over all conditions of a rule."""
    names = [name for name in detection if name != "condition"]
    negated: dict[str, None] = {}
    positive: dict[str, None] = {}
    for tree in trees:
        for node in conjuncts(tree):
            target = negated if node.op == "not" else positive
            for name in referenced(node, names):
                target.setdefault(name, None)
    exclusion_names = [name for name in negated if name not in positive]
    return list(positive), exclusion_names


_P = TypeVar("_P", bound=Predicate)


def _distinct_predicates(
    detection: dict[str, Any], identifiers: list[str], make: type[_P]
) -> list[_P]:
    """One ``make`` per distinct (field, kind, value) of the identifiers, in written order."""
    seen: dict[DetectionValue, _P] = {}
    for name in identifiers:
        for item in iter_predicates(name, detection[name]):
            seen.setdefault(item, make(item.field, item.kind, item.value, name))
    return list(seen.values())


def extract_indicators(detection: dict[str, Any], identifiers: list[str]) -> list[Indicator]:
    """One indicator per distinct (field, kind, value) of the identifiers, in written order."""
    return _distinct_predicates(detection, identifiers, Indicator)


def extract_exclusions(detection: dict[str, Any], identifiers: list[str]) -> list[Exclusion]:
    """One exclusion per distinct (field, kind, value) of the exclusion identifiers."""
    return _distinct_predicates(detection, identifiers, Exclusion)
