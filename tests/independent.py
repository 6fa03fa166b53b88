"""An independent implementation of the catalog's indicator and exclusion definitions.

Written from the issue text only, to cross-check :mod:`rules.extract`; it must never import
anything from ``rules``. It works on the YAML *node graph* (``yaml.compose``) so that scalars
keep the text they were written as, and it handles conditions with a regex tokenizer and a
depth counter instead of a parse tree.

- Conditions: top-level conjuncts are the pieces between depth-0 ``and`` tokens (the whole
  condition when it has a depth-0 ``or``); a conjunct is negated when, without enclosing
  parentheses, it is ``not <factor>``.
- Exclusions: identifiers referenced only inside negated conjuncts (over all conditions).
- Indicators: every value of every detection item of the other referenced identifiers, as
  (field, kind, value); kind = operator modifier (or ``equals``) then the other modifiers
  except ``all``; ``equals`` strings ``*x*``/``*x``/``x*`` become contains/endswith/startswith.
- Identity: (field, kind, casefolded value), case kept for ``re`` and ``cased`` kinds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OPERATORS = frozenset(
    {
        "contains",
        "startswith",
        "endswith",
        "re",
        "cidr",
        "gt",
        "gte",
        "lt",
        "lte",
        "exists",
        "fieldref",
    }
)
_CONDITION_TOKEN = re.compile(r"\(|\)|[^\s()]+")
# An escape (backslash before *, ? or backslash) or a bare wildcard.
_WILDCARD_OR_ESCAPE = re.compile(r"\\[*?\\]|[*?]")
_TRUE = frozenset({"yes", "true", "on"})

Row = tuple[str, str, str]


@dataclass
class Expected:
    """What the definition says a rule yields."""

    rule_id: str
    indicator_rows: set[Row] = field(default_factory=set)
    exclusion_rows: set[Row] = field(default_factory=set)

    @property
    def indicators(self) -> set[Row]:
        return {identity(*row) for row in self.indicator_rows}

    @property
    def exclusions(self) -> set[Row]:
        return {identity(*row) for row in self.exclusion_rows}


def identity(field_name: str, kind: str, value: str) -> Row:
    parts = kind.split("|")
    keep_case = parts[0] == "re" or "cased" in parts
    return (field_name, kind, value if keep_case else value.casefold())


def _mapping_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def _scalar_text(node: yaml.ScalarNode) -> str:
    tag = node.tag.rsplit(":", 1)[-1]
    if tag == "null":
        return "null"
    if tag == "bool":
        return "true" if node.value.lower() in _TRUE else "false"
    return node.value  # strings, and numbers exactly as written


def _simplify(kind: str, value: str) -> tuple[str, str]:
    if kind != "equals":
        return kind, value
    wildcards = [m.start() for m in _WILDCARD_OR_ESCAPE.finditer(value) if len(m.group()) == 1]
    if any(value[i] == "?" for i in wildcards):
        return kind, value
    end = len(value) - 1
    if wildcards == [0, end] and len(value) >= 3:
        return "contains", value[1:-1]
    if wildcards == [0] and len(value) >= 2:
        return "endswith", value[1:]
    if wildcards == [end] and len(value) >= 2:
        return "startswith", value[:-1]
    return kind, value


def _kind(modifiers: list[str]) -> str:
    operators = [m for m in modifiers if m in OPERATORS]
    operator = operators[0] if operators else None
    rest = [m for m in modifiers if m != "all" and m != operator]
    return "|".join([operator or "equals", *rest])


def _row(field_name: str, modifiers: list[str], node: yaml.Node) -> Row:
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(f"nested value under {field_name!r}")
    kind = _kind(modifiers)
    text = _scalar_text(node)
    if node.tag.endswith(":str"):
        kind, text = _simplify(kind, text)
    return field_name, kind, text


def _rows_of_map(node: yaml.MappingNode) -> Iterator[Row]:
    for key_node, value_node in node.value:
        field_name, *modifiers = str(key_node.value).split("|")
        values = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for value in values:
            yield _row(field_name, modifiers, value)


def rows_of_identifier(node: yaml.Node) -> Iterator[Row]:
    if isinstance(node, yaml.MappingNode):
        yield from _rows_of_map(node)
    elif isinstance(node, yaml.SequenceNode):
        for element in node.value:
            if isinstance(element, yaml.MappingNode):
                yield from _rows_of_map(element)
            else:
                yield _row("", [], element)
    else:
        yield _row("", [], node)


def _matching(pattern: str, names: list[str]) -> list[str]:
    if pattern.lower() == "them":
        return [n for n in names if not n.startswith("_")]
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
    return [
        n
        for n in names
        if regex.fullmatch(n) and (pattern.startswith("_") or not n.startswith("_"))
    ]


def _depth_zero(tokens: list[str]) -> Iterator[tuple[int, str]]:
    depth = 0
    for i, token in enumerate(tokens):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            yield i, token.lower()


def _strip_parens(tokens: list[str]) -> list[str]:
    while len(tokens) >= 2 and tokens[0] == "(" and tokens[-1] == ")":
        depth = 0
        for i, token in enumerate(tokens):
            depth += token == "("
            depth -= token == ")"
            if depth == 0 and i < len(tokens) - 1:
                return tokens  # the first "(" closes before the end: not enclosing
        tokens = tokens[1:-1]
    return tokens


def top_level_conjuncts(condition: str) -> list[tuple[list[str], bool]]:
    """(tokens, negated) per top-level AND conjunct."""
    tokens = _CONDITION_TOKEN.findall(condition)
    level0 = list(_depth_zero(tokens))
    if any(word == "or" for _, word in level0):
        pieces = [tokens]
    else:
        cuts = [i for i, word in level0 if word == "and"]
        bounds = [-1, *cuts, len(tokens)]
        pieces = [tokens[a + 1 : b] for a, b in zip(bounds, bounds[1:], strict=False)]
    result = []
    for piece in pieces:
        inner = _strip_parens(piece)
        words = {word for _, word in _depth_zero(inner)}
        negated = bool(inner) and inner[0].lower() == "not" and not words & {"and", "or"}
        result.append((piece, negated))
    return result


def referenced_names(tokens: list[str], names: list[str]) -> list[str]:
    found: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i].lower()
        if word in {"1", "any", "all"} and i + 2 < len(tokens) and tokens[i + 1].lower() == "of":
            found.extend(_matching(tokens[i + 2], names))
            i += 3
            continue
        if word not in {"and", "or", "not", "(", ")"}:
            found.append(tokens[i])
        i += 1
    return found


def expected_from_text(text: str) -> Expected:
    document = yaml.compose(text, Loader=yaml.CSafeLoader)
    detection = _mapping_get(document, "detection")
    rule_id = _mapping_get(document, "id")
    assert isinstance(detection, yaml.MappingNode), "no detection mapping"
    assert isinstance(rule_id, yaml.ScalarNode), "no id"
    definitions = {str(k.value): v for k, v in detection.value if str(k.value) != "condition"}
    names = list(definitions)
    condition_node = _mapping_get(detection, "condition")
    assert condition_node is not None, "no condition"
    conditions = (
        [c.value for c in condition_node.value]
        if isinstance(condition_node, yaml.SequenceNode)
        else [condition_node.value]
    )
    positive: set[str] = set()
    negative: set[str] = set()
    for condition in conditions:
        for tokens, negated in top_level_conjuncts(condition):
            (negative if negated else positive).update(referenced_names(tokens, names))
    expected = Expected(rule_id=rule_id.value)
    for name in positive:
        expected.indicator_rows.update(rows_of_identifier(definitions[name]))
    for name in negative - positive:
        expected.exclusion_rows.update(rows_of_identifier(definitions[name]))
    return expected


def expected_from_files(paths: Iterable[Path]) -> dict[Path, Expected]:
    return {path: expected_from_text(path.read_text(encoding="utf-8-sig")) for path in paths}


def rule_counts(expectations: Iterable[Expected], attribute: str = "indicators") -> Counter[Row]:
    """Number of distinct rules per identity."""
    counts: Counter[Row] = Counter()
    for expected in expectations:
        counts.update(getattr(expected, attribute))
    return counts
