"""Typed errors for everything that can be wrong with a rule document.

Each carries a message a user can act on; the importer stores ``str(error)`` per file.
"""

from __future__ import annotations


class RuleError(Exception):
    """Base class: a document could not be turned into a rule."""

    code = "invalid-rule"


class YamlSyntaxError(RuleError):
    """The text is not valid YAML (or not valid UTF-8)."""

    code = "bad-yaml"


class UnsafeDocumentError(RuleError):
    """The document is too large or expands too much (YAML alias bomb)."""

    code = "unsafe-document"


class NotASigmaRuleError(RuleError):
    """Valid YAML, but not a Sigma detection rule (missing title/detection, wrong types)."""

    code = "not-a-rule"


class ConditionError(RuleError):
    """The condition cannot be parsed or references an undefined search identifier."""

    code = "bad-condition"


class ModifierError(RuleError):
    """A detection item uses an unknown or unsupported value modifier."""

    code = "bad-modifier"


class DetectionError(RuleError):
    """The detection section is malformed (wrong value types, empty identifiers...)."""

    code = "bad-detection"
