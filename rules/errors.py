"""Typed errors for everything that can be wrong with a rule document or with event input.

Each carries a message a user can act on and a stable ``code``; the importer stores
``str(error)`` and the code per file, the sandbox returns :meth:`EventInputError.to_dict`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CodedError(Exception):
    """An error with a stable machine-readable ``code``, given as a class keyword.

    ``class YamlSyntaxError(RuleError, code="bad-yaml")`` sets ``YamlSyntaxError.code``;
    a subclass without the keyword keeps its parent's code.
    """

    code: ClassVar[str] = "error"

    def __init_subclass__(cls, *, code: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code:
            cls.code = code


# --------------------------------------------------------------------------------------------
# Rule documents


class RuleError(CodedError, code="invalid-rule"):
    """Base class: a document could not be turned into a rule."""


class YamlSyntaxError(RuleError, code="bad-yaml"):
    """The text is not valid YAML (or not valid UTF-8)."""


class UnsafeDocumentError(RuleError, code="unsafe-document"):
    """The document is too large or expands too much (YAML alias bomb)."""


class NotASigmaRuleError(RuleError, code="not-a-rule"):
    """Valid YAML, but not a Sigma detection rule (missing title/detection, wrong types)."""


class ConditionError(RuleError, code="bad-condition"):
    """The condition cannot be parsed or references an undefined search identifier."""


class ModifierError(RuleError, code="bad-modifier"):
    """A detection item uses an unknown or unsupported value modifier."""


class DetectionError(RuleError, code="bad-detection"):
    """The detection section is malformed (wrong value types, empty identifiers...)."""


# --------------------------------------------------------------------------------------------
# Event input (rules.events)


class EventInputError(CodedError, ValueError, code="bad-event-input"):
    """The input could not be read as events. ``position`` is a human-readable location."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        offset: int | None = None,
        record: int | None = None,
        byte_offset: int | None = None,
    ) -> None:
        self.line = line
        self.column = column
        self.offset = offset
        self.record = record
        self.byte_offset = byte_offset
        self.reason = message
        pos = self.position
        super().__init__(f"{message} ({pos})" if pos else message)

    @property
    def position(self) -> str:
        labelled = (
            ("record", self.record),
            ("line", self.line),
            ("column", self.column),
            ("char", self.offset),
            ("byte offset", self.byte_offset),
        )
        return ", ".join(f"{label} {value}" for label, value in labelled if value is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": str(self),
            "reason": self.reason,
            "line": self.line,
            "column": self.column,
            "offset": self.offset,
            "record": self.record,
            "byte_offset": self.byte_offset,
        }


class JsonInputError(EventInputError, code="bad-json"):
    """The text is not valid JSON / JSON lines (position: line, column, char offset)."""


class EventShapeError(EventInputError, code="bad-event-shape"):
    """A JSON value is not an event object (position: record index, line, column)."""


class EvtxInputError(EventInputError, code="bad-evtx"):
    """An ``.evtx`` file is truncated or corrupt (position: record index or byte offset)."""


class InputEncodingError(EventInputError, code="bad-encoding"):
    """The bytes are not valid UTF-8 / UTF-16 text (position: byte offset)."""


class EmptyInputError(EventInputError, code="empty-input"):
    """The input holds no event at all."""
