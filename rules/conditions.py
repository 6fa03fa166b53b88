"""The Sigma condition tree: one parse per condition, with source spans.

pySigma validates conditions (and is the reference for their meaning), but its tree does not
keep the text each sub-expression was written as. This module parses a condition into a tree
of :class:`Node` with ``start``/``end`` offsets into the original string, and that one tree
serves everything downstream: the stored stages (:mod:`rules.extract`, conjuncts as written),
compilation and evaluation (:mod:`rules.compile`), and the sandbox's explanations
(:mod:`rules.evaluate`, which show stages in pySigma's canonical spelling, see
:func:`canonical_text` and :func:`flat_conjuncts`). Grammar (precedence ``or`` < ``and`` <
``not``)::

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | quant "of" (pattern | "them") | identifier
    quant  := "1" | "any" | "all"
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

from rules.errors import ConditionError

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_KEYWORDS = {"and", "or", "not", "of", "them"}


@dataclass(frozen=True, slots=True)
class Node:
    """``op`` is one of ``and``, ``or``, ``not``, ``ref`` (an identifier), ``of``.

    Frozen: parsed trees are shared (see :func:`parse_condition`).
    """

    op: str
    start: int
    end: int
    args: tuple[Node, ...] = ()
    name: str = ""  # identifier for ``ref``; pattern (or ``them``) for ``of``
    quantifier: str = ""  # ``1`` (for ``1``/``any``) or ``all`` for ``of``
    written_quantifier: str = ""  # ``1`` / ``any`` / ``all`` as written, for ``of``


@dataclass(slots=True)
class _Token:
    text: str
    start: int
    end: int


def _tokenize(condition: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(condition):
        m = _TOKEN.match(condition, pos)
        if m is None:  # only trailing whitespace is left
            break
        tokens.append(_Token(m.group(1), m.start(1), m.end(1)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, condition: str) -> None:
        self.condition = condition
        self.tokens = _tokenize(condition)
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos].text.lower() if self.pos < len(self.tokens) else None

    def _take(self) -> _Token:
        if self.pos >= len(self.tokens):
            raise ConditionError(f"condition {self.condition!r} ends unexpectedly")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise ConditionError("condition is empty")
        node = self._expr()
        if self.pos != len(self.tokens):
            token = self.tokens[self.pos]
            if token.text == "|":
                raise ConditionError(
                    "aggregation expressions ('| count() ...') are deprecated Sigma syntax "
                    "and are not supported; use a correlation rule"
                )
            raise ConditionError(
                f"unexpected {token.text!r} at position {token.start} in condition "
                f"{self.condition!r}"
            )
        return node

    def _binary(self, op: str, operand: str) -> Node:
        parse_operand = self._term if operand == "term" else self._factor
        first = parse_operand()
        args = [first]
        while self._peek() == op:
            self._take()
            args.append(parse_operand())
        if len(args) == 1:
            return first
        return Node(op, args[0].start, args[-1].end, tuple(args))

    def _expr(self) -> Node:
        return self._binary("or", "term")

    def _term(self) -> Node:
        return self._binary("and", "factor")

    def _factor(self) -> Node:
        token = self._take()
        word = token.text.lower()
        if word == "not":
            inner = self._factor()
            return Node("not", token.start, inner.end, (inner,))
        if token.text == "(":
            inner = self._expr()
            close = self._take()
            if close.text != ")":
                raise ConditionError(f"missing ')' in condition {self.condition!r}")
            # Keep the parenthesised span so the stage text is exactly as written.
            return replace(inner, start=token.start, end=close.end)
        if word in {"1", "any", "all"} and self._peek() == "of":
            self._take()
            target = self._take()
            if target.text in {"(", ")"} or target.text.lower() in _KEYWORDS - {"them"}:
                raise ConditionError(
                    f"'{token.text} of' must be followed by a pattern or 'them' in "
                    f"{self.condition!r}"
                )
            quantifier = "all" if word == "all" else "1"
            name = "them" if target.text.lower() == "them" else target.text
            return Node(
                "of",
                token.start,
                target.end,
                name=name,
                quantifier=quantifier,
                written_quantifier=token.text,
            )
        if token.text == ")" or word in _KEYWORDS or token.text == "|":
            raise ConditionError(
                f"unexpected {token.text!r} at position {token.start} in condition "
                f"{self.condition!r}"
            )
        return Node("ref", token.start, token.end, name=token.text)


def parse_condition(condition: str) -> Node:
    """Parse a condition string into a :class:`Node` tree with source spans.

    Memoised: importing a rule parses its conditions for the stored stages, and compiling it
    for the sandbox asks again for the same strings; trees are frozen, so sharing is safe.
    """
    return _parse_memo(condition)


@lru_cache(maxsize=8192)
def _parse_memo(condition: str) -> Node:
    return _Parser(condition).parse()


def resolve_pattern(pattern: str, identifiers: Iterable[str]) -> list[str]:
    """Identifiers an ``x of pattern`` refers to, as pySigma resolves them.

    ``them`` and ordinary patterns skip ``_``-names; a pattern that itself starts with ``_``
    may select them. Like pySigma, ``*`` is the only wildcard.
    """
    names = [name for name in identifiers if name != "condition"]
    if pattern == "them":
        return [name for name in names if not name.startswith("_")]
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
    allow_private = pattern.startswith("_")
    return [
        name
        for name in names
        if regex.fullmatch(name) and (allow_private or not name.startswith("_"))
    ]


def referenced(node: Node, identifiers: Iterable[str]) -> list[str]:
    """Search identifiers referenced anywhere in ``node``, in order of first appearance."""
    defined = list(identifiers)
    seen: dict[str, None] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if current.op == "ref":
            seen.setdefault(current.name, None)
        elif current.op == "of":
            for name in resolve_pattern(current.name, defined):
                seen.setdefault(name, None)
        else:
            stack.extend(reversed(current.args))
    return list(seen)


def conjuncts(node: Node) -> list[Node]:
    """Top-level AND conjuncts of a condition (the whole condition when its root is not AND)."""
    return list(node.args) if node.op == "and" else [node]


def flat_conjuncts(node: Node) -> list[Node]:
    """Top-level AND conjuncts with nested ANDs flattened (``a and (b and c)``: three).

    The sandbox's stages (pySigma's tree flattens nested ANDs); stored stages keep the
    parenthesised group as written (:func:`conjuncts`).
    """
    if node.op != "and":
        return [node]
    out: list[Node] = []
    for arg in node.args:
        out.extend(flat_conjuncts(arg) if arg.op == "and" else [arg])
    return out


def canonical_text(node: Node, parent: str = "") -> str:
    """The condition as pySigma spells it: single spaces, nested same-operator groups
    flattened, parentheses only where precedence needs them (under ``not``, ``or`` under
    ``and``). The sandbox shows stages in this spelling."""
    if node.op == "ref":
        return node.name
    if node.op == "of":
        return f"{node.written_quantifier} of {node.name}"
    if node.op == "not":
        return "not " + canonical_text(node.args[0], "not")
    text = f" {node.op} ".join(canonical_text(arg, node.op) for arg in _flat_args(node))
    if parent == "not" or (parent == "and" and node.op == "or"):
        return f"({text})"
    return text


def _flat_args(node: Node) -> list[Node]:
    """The operands of an ``and``/``or`` node with nested nodes of the same operator lifted."""
    out: list[Node] = []
    for arg in node.args:
        out.extend(_flat_args(arg) if arg.op == node.op else [arg])
    return out


def resolve_selectors(node: Node, identifiers: Iterable[str]) -> Node:
    """``node`` with every ``x of pattern`` given the identifiers it selects as ``ref`` args
    (spanning the selector), so evaluation walks one tree. A selector that matches nothing
    keeps no args; compilation reports it."""
    names = list(identifiers)
    if node.op == "of":
        refs = tuple(
            Node("ref", node.start, node.end, name=name)
            for name in resolve_pattern(node.name, names)
        )
        return replace(node, args=refs)
    if not node.args:
        return node
    return replace(node, args=tuple(resolve_selectors(arg, names) for arg in node.args))


def boolean_op(node: Node) -> str:
    """``and``/``or``/``not``/``ref``: an ``of`` node is an AND (``all``) or OR of its refs."""
    if node.op == "of":
        return "and" if node.quantifier == "all" else "or"
    return node.op


def operands(node: Node) -> list[Node]:
    """The operands of a boolean node: nested groups of the same operator are lifted (as
    pySigma's tree has them); a resolved selector's refs."""
    if node.op in ("and", "or"):
        return _flat_args(node)
    return list(node.args)
