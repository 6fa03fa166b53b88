"""Parse Sigma YAML into :class:`rules.model.ParsedRule`.

YAML is loaded with the libyaml C loader (several times faster than pySigma's ``from_yaml``),
then validated by pySigma (modifiers, value types, condition grammar) and finally extracted
as written (stages, exclusions, indicators).
"""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from sigma.exceptions import (
    SigmaConditionError,
    SigmaDetectionError,
    SigmaError,
    SigmaModifierError,
    SigmaRegularExpressionError,
    SigmaValueError,
)
from sigma.rule import SigmaRule

from rules.errors import (
    ConditionError,
    DetectionError,
    ModifierError,
    NotASigmaRuleError,
    UnsafeDocumentError,
    YamlSyntaxError,
)
from rules.extract import (
    extract_exclusions,
    extract_indicators,
    extract_stages,
    parse_conditions,
    split_identifiers,
)
from rules.model import LogSource, ParsedRule, Related, Tag
from rules.modifiers import sigma_rule_from_document

MAX_RULE_BYTES = 1024 * 1024
# A Sigma rule has tens of nodes; an alias bomb expands to billions. Anything past this
# budget is refused before pySigma (which walks the expanded tree) ever sees it.
MAX_NODES = 50_000


class WrittenInt(int):
    """An integer that remembers how YAML wrote it (``0x10``, ``0o17``, ``+5``)."""

    written: str


class WrittenFloat(float):
    """A float that remembers how YAML wrote it (``1.50``, ``1e3``)."""

    written: str


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The C loader, except that numbers keep their source text (indicators show values as
    written). Constructors are Python even in the C loader, so this costs nothing."""


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    number = WrittenInt(yaml.constructor.SafeConstructor.construct_yaml_int(loader, node))
    number.written = node.value
    return number


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    number = WrittenFloat(yaml.constructor.SafeConstructor.construct_yaml_float(loader, node))
    number.written = node.value
    return number


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_document(data: str | bytes) -> dict[str, Any]:
    """Load one YAML document safely: size-limited, UTF-8 only, alias bombs refused."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > MAX_RULE_BYTES:
        raise UnsafeDocumentError(
            f"file is {size:,} bytes; rules larger than {MAX_RULE_BYTES:,} bytes are refused"
        )
    text = decode_text(data) if isinstance(data, bytes) else data
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {_one_line(exc)}") from exc
    except RecursionError as exc:
        raise UnsafeDocumentError("YAML nesting is too deep") from exc
    if not documents:
        raise NotASigmaRuleError("the file is empty")
    if len(documents) > 1:
        raise NotASigmaRuleError(
            f"the file holds {len(documents)} YAML documents; multi-document rule collections "
            "(action: global) are not supported, split them into one rule per file"
        )
    document = documents[0]
    _check_size(document)
    if not isinstance(document, dict):
        raise NotASigmaRuleError(
            f"a Sigma rule is a YAML mapping, this document is a {type(document).__name__}"
        )
    return document


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (a BOM is allowed); anything else is refused with the byte offset."""
    if b"\x00" in data[:8192]:
        raise YamlSyntaxError("the file is binary (it contains NUL bytes), not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(
            f"the file is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _check_size(document: Any) -> None:
    """Count nodes as a consumer would see them (aliases expanded), with a budget."""
    budget = MAX_NODES
    stack = [document]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise UnsafeDocumentError(
                f"the document expands to more than {MAX_NODES:,} YAML nodes "
                "(YAML alias bomb?); refused"
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_rule(data: str | bytes, source_path: str = "") -> ParsedRule:
    """Parse one Sigma rule document; raise a :class:`RuleError` subclass when it is not one."""
    raw = decode_text(data) if isinstance(data, bytes) else data
    document = load_document(raw)
    return parse_document(document, raw, source_path)


def parse_document(document: dict[str, Any], raw: str, source_path: str = "") -> ParsedRule:
    """Build a :class:`ParsedRule` from an already loaded YAML mapping."""
    _check_shape(document)
    sigma = _validate_with_pysigma(document)
    detection: dict[str, Any] = document["detection"]
    condition = detection["condition"]
    conditions = [str(c) for c in condition] if isinstance(condition, list) else [str(condition)]
    trees = parse_conditions(conditions, detection)
    positive, negative = split_identifiers(detection, trees)
    logsource = document.get("logsource") or {}
    return ParsedRule(
        id=str(document["id"]),
        title=_meta_text(document.get("title")),
        status=_meta_text(document.get("status")),
        level=_meta_text(document.get("level")),
        description=_meta_text(document.get("description")).strip(),
        author=_author(document.get("author")),
        date=_date(document.get("date")),
        modified=_date(document.get("modified")),
        references=_meta_text_list(document.get("references")),
        falsepositives=_meta_text_list(document.get("falsepositives")),
        related=_related(document.get("related")),
        tags=[split_tag(t) for t in _meta_text_list(document.get("tags"))],
        logsource=LogSource(
            product=_meta_text(logsource.get("product")),
            category=_meta_text(logsource.get("category")),
            service=_meta_text(logsource.get("service")),
            definition=_meta_text(logsource.get("definition")),
        ),
        detection=detection,
        conditions=conditions,
        stages=extract_stages(detection, conditions, trees, raw),
        exclusions=extract_exclusions(detection, negative),
        indicators=extract_indicators(detection, positive),
        raw_yaml=raw,
        source_path=source_path,
        document=document,
        sigma=sigma,
        unsupported=_unsupported(detection),
    )


def _check_shape(document: dict[str, Any]) -> None:
    if "correlation" in document and "detection" not in document:
        raise NotASigmaRuleError("correlation rules are not supported by the catalog yet")
    if "filter" in document and "detection" not in document:
        raise NotASigmaRuleError("Sigma filter documents are not detection rules")
    missing = [key for key in ("title", "id", "logsource", "detection") if key not in document]
    if missing:
        raise NotASigmaRuleError(f"not a Sigma rule: missing {', '.join(missing)}")
    if not isinstance(document["detection"], dict):
        raise NotASigmaRuleError("not a Sigma rule: 'detection' must be a mapping")
    if "condition" not in document["detection"]:
        raise ConditionError("the detection has no condition")
    if not isinstance(document["logsource"], dict):
        raise NotASigmaRuleError("not a Sigma rule: 'logsource' must be a mapping")
    if not isinstance(document["id"], str) or not document["id"].strip():
        raise NotASigmaRuleError("the rule id must be a non-empty string")


def _validate_with_pysigma(document: dict[str, Any]) -> SigmaRule:
    """pySigma is the reference for modifiers, value types and the condition grammar, with the
    specification's modifiers it lacks or reads differently (:mod:`rules.modifiers`)."""
    try:
        rule = sigma_rule_from_document(document)
        # Grammar only: resolving identifiers (postprocess) costs 7x more and is checked
        # by our own parser in rules.extract, with the same error class.
        for condition in rule.detection.parsed_condition:
            condition.parse(postprocess=False)
    except (SigmaModifierError, SigmaRegularExpressionError) as exc:
        raise ModifierError(_one_line(exc)) from exc
    except SigmaConditionError as exc:
        raise ConditionError(_one_line(exc)) from exc
    except (SigmaDetectionError, SigmaValueError) as exc:
        raise DetectionError(_one_line(exc)) from exc
    except SigmaError as exc:
        raise NotASigmaRuleError(_one_line(exc)) from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # pySigma trusts the document's types in places; a wrong type surfaces as these.
        raise NotASigmaRuleError(f"malformed rule: {_one_line(exc)}") from exc
    return rule


def _unsupported(detection: dict[str, Any]) -> list[str]:
    """Features the sandbox cannot evaluate without configuration."""
    found: list[str] = []
    for name, definition in detection.items():
        if name == "condition":
            continue
        maps = definition if isinstance(definition, list) else [definition]
        for mapping in maps:
            if isinstance(mapping, dict) and any("|expand" in str(k) for k in mapping):
                found.append(f"{name}: |expand placeholder needs configuration")
    return found


def split_tag(name: str) -> Tag:
    namespace, _, value = name.partition(".")
    return Tag(name=name, namespace=namespace.lower() if value else "", value=value or name)


def _meta_text(value: Any) -> str:
    """A metadata value (title, date, author...) as text; dates ISO, ``None`` empty."""
    if value is None:
        return ""
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def _meta_text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_meta_text(v) for v in value if v is not None]
    return [_meta_text(value)]


def _author(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_meta_text(v) for v in value)
    return _meta_text(value)


def _date(value: Any) -> str:
    text = _meta_text(value)
    return text.replace("/", "-")


def _related(value: Any) -> list[Related]:
    if not isinstance(value, list):
        return []
    return [
        Related(id=_meta_text(item.get("id")), type=_meta_text(item.get("type")))
        for item in value
        if isinstance(item, dict) and item.get("id")
    ]
