"""Every modifier of the Sigma specification's modifier appendix, for pySigma 1.5.1 and for us.

pySigma is the grammar and the value model the engine, the importer and the converter share, so
the modifiers it lacks or reads differently from the specification are fixed *inside* pySigma's
modifier table, once, when this module is imported (``rules.parse`` imports it). One table means
the sandbox, the stored rule and every backend read a modifier the same way. The decisions and
their reasons are in ``docs/semantics.md``; in short:

* ``utf16le`` (unknown to pySigma 1.5.1) is an alias of ``wide``.
* ``wide``/``utf16le``, ``utf16be`` and ``utf16`` encode any Unicode text (pySigma refuses
  non-ASCII), and ``utf16`` prefixes the UTF-16LE byte order mark ``FF FE`` (pySigma prefixes
  U+FEFF, which ``base64`` then encodes as the UTF-8 bytes ``EF BB BF``). The encoded bytes are
  held as one character per byte (Latin-1), so a following ``base64`` encodes exactly them.
* ``windash`` interchanges all five characters the appendix lists (``-``, ``/``, en dash, em
  dash, horizontal bar) as a *source* too (pySigma only ``-`` and ``/``), at the places pySigma
  expands: a flag at the start of a word (``\\B[-/–—―]\\b``), never a dash inside a word.
* ``cased`` applies wherever it is written in the chain (pySigma drops it when ``windash``,
  ``base64``, ``base64offset`` or ``wide`` come after it), and with ``fieldref`` it makes the
  field comparison case-sensitive (pySigma drops it silently). :func:`conversion_problems`
  names what a pySigma backend cannot express (``cased`` with ``fieldref``), so conversion says
  so instead of emitting a query that ignores it. ``cased`` with ``re`` is refused with a
  message (a regular expression is case-sensitive already).
* YAML scalar types: the generic and string modifiers take numbers and booleans as the text
  YAML wrote (``EventID|startswith: 41``), as the appendix calls them generic; numeric and time
  modifiers take a quoted decimal (``'5'``) as the number. pySigma refuses both.

:func:`sigma_document` rewrites a rule document into what pySigma then reads this way;
:func:`sigma_rule_from_document` is the one constructor the engine and the converter use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from itertools import product
from typing import Any, Final

from sigma.exceptions import SigmaModifierError, SigmaValueError
from sigma.modifiers import (
    SigmaCaseSensitiveModifier,
    SigmaModifier,
    SigmaUTF16BEModifier,
    SigmaUTF16Modifier,
    SigmaWideModifier,
    SigmaWindowsDashModifier,
    modifier_mapping,
    reverse_modifier_mapping,
)
from sigma.rule import SigmaRule
from sigma.rule.detection import SigmaDetection, SigmaDetectionItem
from sigma.types import (
    SigmaCasedString,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaString,
    SigmaStringPartType,
    SpecialChars,
)

__all__ = [
    "APPENDIX_MODIFIERS",
    "MAX_WINDASH_VARIANTS",
    "WINDASH_CHARACTERS",
    "CasedFieldReference",
    "EncodedString",
    "SigmaUTF16LEModifier",
    "conversion_problems",
    "sigma_document",
    "sigma_rule_from_document",
]

APPENDIX_MODIFIERS: Final = (
    # Generic
    "all", "startswith", "endswith", "contains", "exists", "cased", "neq",
    # String, regular expression, encoding
    "windash", "re", "i", "m", "s", "base64", "base64offset",
    "utf16le", "utf16be", "utf16", "wide",
    # Numeric, time, IP, specific
    "lt", "lte", "gt", "gte", "minute", "hour", "day", "week", "month", "year",
    "cidr", "expand", "fieldref",
)  # fmt: skip
"""The modifiers of the specification's appendix (v2.1.0), in its order."""

WINDASH_CHARACTERS: Final = ("-", "/", "\u2013", "\u2014", "\u2015")
"""Hyphen-minus, slash, en dash, em dash, horizontal bar: the appendix's order (and pySigma's)."""
_WINDASH_FLAG: Final = re.compile("\\B[-/\u2013\u2014\u2015]\\b")
MAX_WINDASH_VARIANTS: Final = 5**6
"""A value with more flags than this expands to is refused: five variants per flag multiply."""

_STRING_MODIFIERS: Final = frozenset(
    {"contains", "startswith", "endswith", "cased", "windash", "re", "base64", "base64offset"}
    | {"wide", "utf16le", "utf16be", "utf16", "fieldref"}
)
_NUMERIC_MODIFIERS: Final = frozenset(
    {"gt", "gte", "lt", "lte", "minute", "hour", "day", "week", "month", "year"}
)
_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


# --------------------------------------------------------------------------------------------
# Values the encoding modifiers produce


class EncodedString(SigmaString):
    """Text after ``wide``/``utf16*``: one character per encoded byte (Latin-1), so that
    ``bytes()`` (what ``base64`` encodes) gives back exactly the encoded bytes."""

    def __bytes__(self) -> bytes:
        return "".join(p for p in self.s if isinstance(p, str)).encode("latin-1")


class CasedFieldReference(SigmaFieldReference):
    """``fieldref`` with ``cased``: the two fields are compared case-sensitively."""


def _encoded(val: SigmaString, codec: str, bom: bytes = b"") -> EncodedString:
    parts: list[SigmaStringPartType] = [bom.decode("latin-1")] if bom else []
    for part in val.s:
        if isinstance(part, str):
            try:
                parts.append(part.encode(codec).decode("latin-1"))
            except UnicodeEncodeError:  # a lone surrogate: no UTF-16 form
                raise SigmaValueError(f"'{val.original}' has no {codec.upper()} form") from None
        else:
            parts.append(part)  # wildcards stay wildcards
    encoded = EncodedString()
    encoded.original = val.original
    encoded.s = parts
    return encoded


def _wide_modify(self: SigmaModifier[Any, Any], val: SigmaString) -> SigmaString:
    return _encoded(val, "utf-16-le")


def _utf16be_modify(self: SigmaModifier[Any, Any], val: SigmaString) -> SigmaString:
    return _encoded(val, "utf-16-be")


def _utf16_modify(self: SigmaModifier[Any, Any], val: SigmaString) -> SigmaString:
    return _encoded(val, "utf-16-le", b"\xff\xfe")


class SigmaUTF16LEModifier(SigmaWideModifier):
    """``utf16le``: the appendix's name for what ``wide`` does."""


def _windash_modify(self: SigmaModifier[Any, Any], val: SigmaString) -> SigmaExpansion:
    flags = 0
    for part in val.s:
        if isinstance(part, str):
            flags += len(_WINDASH_FLAG.findall(part))
    if len(WINDASH_CHARACTERS) ** flags > MAX_WINDASH_VARIANTS:
        raise SigmaValueError(
            f"windash would expand '{val.original}' ({flags} flags) into "
            f"{len(WINDASH_CHARACTERS) ** flags:,} variants; the limit is "
            f"{MAX_WINDASH_VARIANTS:,}: split the value",
            source=self.source,
        )
    return SigmaExpansion(list(_windash_variants(val)))


def _windash_variants(val: SigmaString) -> Iterator[SigmaString]:
    # Each part becomes a list of pieces: text between flags, and a slot per flag.
    pieces: list[str | SpecialChars | None] = []
    for part in val.s:
        if isinstance(part, str):
            last = 0
            for found in _WINDASH_FLAG.finditer(part):
                pieces.append(part[last : found.start()])
                pieces.append(None)
                last = found.end()
            pieces.append(part[last:])
        else:
            pieces.append(part)  # type: ignore[arg-type]
    slots = sum(1 for p in pieces if p is None)
    for choice in product(WINDASH_CHARACTERS, repeat=slots):
        picks = iter(choice)
        variant = val.__class__()
        variant.original = val.original
        variant.s = [next(picks) if p is None else p for p in pieces if p != ""]
        yield variant._merge_strs()


def _cased_modify(
    self: SigmaModifier[Any, Any], val: SigmaString | SigmaFieldReference
) -> SigmaCasedString | SigmaFieldReference:
    if isinstance(val, SigmaFieldReference):
        return CasedFieldReference(val.field, val.starts_with, val.ends_with)
    return SigmaCasedString.from_sigma_string(val)


def _install() -> None:
    """Fix pySigma's modifier table in place (same classes, so validators still recognise
    them; ``utf16le`` is a subclass of ``wide`` with its own name)."""
    patched: list[tuple[type[SigmaModifier[Any, Any]], Any]] = [
        (SigmaWideModifier, _wide_modify),
        (SigmaUTF16BEModifier, _utf16be_modify),
        (SigmaUTF16Modifier, _utf16_modify),
        (SigmaWindowsDashModifier, _windash_modify),
        (SigmaCaseSensitiveModifier, _cased_modify),
    ]
    for cls, modify in patched:
        cls.modify = modify  # type: ignore[method-assign]
        # pySigma type-checks values against modify()'s annotation, cached per class.
        SigmaModifier._type_hint_cache.pop(cls, None)
    modifier_mapping["utf16le"] = SigmaUTF16LEModifier
    reverse_modifier_mapping[SigmaUTF16LEModifier.__name__] = "utf16le"


_install()


# --------------------------------------------------------------------------------------------
# Documents


def _written(value: Any) -> str:
    """A YAML scalar as the text it was written as (numbers keep ``0x10``; see rules.parse)."""
    if value is True or value is False:
        return "true" if value else "false"
    return str(getattr(value, "written", value))


def _number(value: str) -> int | float:
    text = value.strip()
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def _item_value(mods: list[str], value: Any) -> Any:
    """A value as pySigma should read it under ``mods`` (the same object when unchanged)."""
    if isinstance(value, list):
        items = [_item_value(mods, v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if _STRING_MODIFIERS.intersection(mods) and isinstance(value, int | float):
        return _written(value)  # bool is an int
    if (
        _NUMERIC_MODIFIERS.intersection(mods)
        and isinstance(value, str)
        and _DECIMAL.fullmatch(value.strip())
    ):
        return _number(value)
    return value


def _item_key(key: str) -> str:
    """``cased`` moved to the end of the chain, so it holds whatever came after it."""
    field, *mods = key.split("|")
    if "cased" not in mods:
        return key
    if "re" in mods:
        raise SigmaModifierError(
            f"'{key}': cased cannot be combined with re: a regular expression is already "
            "case-sensitive (add |i to ignore case)"
        )
    if mods[-1] == "cased":
        return key
    return "|".join([field, *(m for m in mods if m != "cased"), "cased"])


def _definition(definition: Any) -> Any:
    if isinstance(definition, list):
        items = [_definition(d) for d in definition]
        return definition if all(a is b for a, b in zip(items, definition, strict=True)) else items
    if not isinstance(definition, Mapping):
        return definition
    changed = False
    out: dict[Any, Any] = {}
    for key, value in definition.items():
        new_key = _item_key(key) if isinstance(key, str) else key
        mods = new_key.split("|")[1:] if isinstance(new_key, str) else []
        new_value = _item_value(mods, value)
        changed |= new_key is not key or new_value is not value
        out[new_key] = new_value
    return out if changed else definition


def sigma_document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """``document`` as pySigma must read it to follow the appendix (see the module docstring);
    the same object when nothing changes (every SigmaHQ rule). Raises SigmaModifierError for a
    combination refused with a message."""
    detection = document.get("detection")
    if not isinstance(detection, Mapping):
        return document
    out: dict[Any, Any] = {}
    changed = False
    for name, definition in detection.items():
        new = definition if name == "condition" else _definition(definition)
        changed |= new is not definition
        out[name] = new
    if not changed:
        return document
    return {**document, "detection": out}


def sigma_rule_from_document(document: Mapping[str, Any]) -> SigmaRule:
    """The SigmaRule of a rule document, with the appendix's modifier semantics."""
    return SigmaRule.from_dict(dict(sigma_document(document)))


def _items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for child in detection.detection_items:
        if isinstance(child, SigmaDetection):
            yield from _items(child)
        else:
            yield child


def conversion_problems(rule: SigmaRule) -> list[str]:
    """What a pySigma backend would silently get wrong in ``rule``: one message each."""
    problems: list[str] = []
    for name, detection in rule.detection.detections.items():
        for item in _items(detection):
            if any(isinstance(v, CasedFieldReference) for v in item.value):
                problems.append(
                    f"{name}: '{item.field}|fieldref|cased' compares fields case-sensitively, "
                    "which pySigma backends cannot express (they would ignore cased)"
                )
    return problems
