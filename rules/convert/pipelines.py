"""A user's own processing pipeline (YAML), validated before pySigma sees it.

The same YAML ``sigma convert -p file.yml`` reads, checked so that it can only map and
rewrite: a size cap, UTF-8, PyYAML's safe loader (no tags, no objects), bounded nesting, then
:meth:`ProcessingPipeline.from_dict` with pySigma's own safety switches off (no template
``vars`` files, no external sources). Anything that would run code or read files (Jinja
templates, template ``path``/``vars``, external transformations) is refused outright, and
every error names the YAML line it comes from.

The caps below bound what one pasted pipeline may ask for (its text, its transformations, its
lists and strings); they cannot bound the conversion's time (a regex such as ``.*.*.*!``
backtracks polynomially without nested quantifiers, ``\\1\\1`` doubles every value per item),
so the catalog also runs each such conversion in a child process under a time and memory limit
(``catalog.offload.run_limited``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import yaml
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline

MAX_PIPELINE_BYTES = 64 * 1024
"""Largest pipeline YAML accepted (the biggest shipped pipelines are a few KiB)."""
MAX_NESTING = 20
MAX_ITEMS = 500
"""Longest list (mapping targets, condition values, ...); 20 times this is the node budget."""
MAX_TRANSFORMATIONS = 256
"""Processing items, postprocessing items and finalizers, nested ones included. Each value
transformation walks every value of the rule: on the 4,433-hash corpus rule one costs ~80 ms."""
MAX_STRING_CHARS = 4096
"""Longest scalar (field name, regex, condition value...)."""
MAX_REPLACEMENT_CHARS = 1024
"""Longest text a transformation writes into the rule or query (it is repeated per value or
per match: 30 KB on the largest corpus rule made a 133 MB query)."""

_SECTIONS = ("transformations", "postprocessing", "finalizers")
# Lists of processing items, finalizers: the top-level sections, a nested transformation's or
# postprocessing's ``items`` and a nested finalizer's ``finalizers``.
_ITEM_LISTS = frozenset({*_SECTIONS, "items"})
# Keys whose text is written into every matching value or query: replace_string / replace
# (``replacement``), set_value (``value``), embed / concat / field name prefix and suffix,
# concat's ``separator``, set_state's ``val``.
_REPLACEMENT_KEYS = frozenset({"replacement", "value", "val", "prefix", "suffix", "separator"})
_REFUSED_KEYS = {"path": "reads template files", "vars": "runs Python code from a file"}
# Nested quantifiers ((a+)+, (a*)*...) backtrack exponentially in Python's re.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}]\)\s*[+*{]")


class PipelineYAMLError(ValueError):
    """A custom pipeline that cannot be used; ``line`` is 1-based (None: the whole text)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message if line is None else f"line {line}: {message}"
        super().__init__(self.message)
        self.line = line


@dataclass(frozen=True, slots=True)
class CustomPipeline:
    """A validated pipeline YAML; :meth:`build` makes a fresh pySigma pipeline each time."""

    text: str
    document: dict[str, Any]

    @property
    def digest(self) -> str:
        return sha256(self.text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return str(self.document.get("name") or "custom pipeline")

    def build(self) -> ProcessingPipeline:
        # from_dict mutates its input (finalizer keys are popped): give it a copy.
        return ProcessingPipeline.from_dict(_copy(self.document))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _template_types() -> frozenset[str]:
    """Postprocessing and finalizer types that render Jinja templates."""
    from sigma.processing.finalization import finalizers
    from sigma.processing.postprocessing import query_postprocessing_transformations
    from sigma.processing.templates import TemplateBase

    kinds = {**query_postprocessing_transformations, **finalizers}
    return frozenset(name for name, cls in kinds.items() if issubclass(cls, TemplateBase))


def _nodes(node: yaml.Node, depth: int = 0) -> Iterator[tuple[yaml.Node, int]]:
    yield node, depth
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _nodes(key, depth + 1)
            yield from _nodes(value, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _nodes(item, depth + 1)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _compose_and_load(text: str) -> tuple[yaml.Node, Any]:
    """The node tree (for lines and checks) and the document built from that same tree, with
    PyYAML's safe constructor only: tags such as ``!!python/object`` are refused.

    One parse with libyaml when it is installed: the pure-Python parser, run twice as before,
    took 2.5 s for a 64 KiB pipeline in the web process. libyaml also refuses flow nesting past
    1,000 levels with a YAML error where the pure-Python composer hit Python's recursion limit.
    """
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise PipelineYAMLError("the pipeline is empty")
        _check_nodes(root)
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PipelineYAMLError(f"not accepted YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise PipelineYAMLError(f"not accepted YAML: {exc}") from None
    finally:
        loader.dispose()


_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


def _check_nodes(root: yaml.Node) -> None:
    """Bounds and refusals, with the line of the offending node."""
    if not isinstance(root, yaml.MappingNode):
        raise PipelineYAMLError("a pipeline is a mapping (name, transformations, ...)", _line(root))
    templates = _template_types()
    items = 0
    for count, (node, depth) in enumerate(_nodes(root), start=1):
        if depth > MAX_NESTING or count > MAX_ITEMS * 20:
            raise PipelineYAMLError("nested too deeply or too large", _line(node))
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_STRING_CHARS:
            raise PipelineYAMLError(
                f"a value longer than {MAX_STRING_CHARS} characters", _line(node)
            )
        if isinstance(node, yaml.SequenceNode) and len(node.value) > MAX_ITEMS:
            raise PipelineYAMLError(
                f"a list of more than {MAX_ITEMS} items", _line(node.value[MAX_ITEMS])
            )
        if not isinstance(node, yaml.MappingNode):
            continue
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else ""
            if name in _ITEM_LISTS and isinstance(value, yaml.SequenceNode):
                # Counted per visit: an alias repeats its items, and their cost.
                if items + len(value.value) > MAX_TRANSFORMATIONS:
                    first_over = value.value[MAX_TRANSFORMATIONS - items]
                    raise PipelineYAMLError(
                        f"more than {MAX_TRANSFORMATIONS} transformations, postprocessing "
                        "items and finalizers",
                        _line(first_over),
                    )
                items += len(value.value)
            if depth <= 1:
                continue
            if name in _REFUSED_KEYS:
                reason = _REFUSED_KEYS[name]
                raise PipelineYAMLError(f"{name!r} is not accepted here ({reason})", _line(key))
            if (
                name in _REPLACEMENT_KEYS
                and isinstance(value, yaml.ScalarNode)
                and len(value.value) > MAX_REPLACEMENT_CHARS
            ):
                raise PipelineYAMLError(
                    f"{name!r} is longer than {MAX_REPLACEMENT_CHARS} characters", _line(value)
                )
            if name == "type" and isinstance(value, yaml.ScalarNode) and value.value in templates:
                raise PipelineYAMLError(
                    f"type {value.value!r} renders a Jinja template, which is not accepted",
                    _line(value),
                )
            if (
                name == "regex"
                and isinstance(value, yaml.ScalarNode)
                and _NESTED_QUANTIFIER.search(value.value)
            ):
                raise PipelineYAMLError(
                    "a regex with nested quantifiers (catastrophic backtracking)", _line(value)
                )


def _item_lines(root: yaml.MappingNode) -> dict[tuple[str, int], int]:
    """(section, 1-based item number) -> the item's line, for pySigma's item errors."""
    lines: dict[tuple[str, int], int] = {}
    for key, value in root.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value in _SECTIONS
            and isinstance(value, yaml.SequenceNode)
        ):
            for index, item in enumerate(value.value, start=1):
                lines[(key.value, index)] = _line(item)
    return lines


def _section_line(root: yaml.MappingNode, section: str) -> int | None:
    for key, _ in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == section:
            return _line(key)
    return None


def _locate(document: dict[str, Any], root: yaml.MappingNode) -> int | None:
    """The line of the first item pySigma refuses, found by building items one at a time."""
    lines = _item_lines(root)
    for section in _SECTIONS:
        items = document.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            return _section_line(root, section)
        for index, item in enumerate(items, start=1):
            try:
                ProcessingPipeline.from_dict({section: [_copy(item)]})
            except (SigmaError, TypeError, ValueError, KeyError, AttributeError):
                return lines.get((section, index))
    return None


def parse_custom_pipeline(text: str | bytes) -> CustomPipeline:
    """Validate a pipeline YAML; raises :class:`PipelineYAMLError` naming the line."""
    if isinstance(text, bytes):
        if len(text) > MAX_PIPELINE_BYTES:
            raise PipelineYAMLError(f"the pipeline is larger than {MAX_PIPELINE_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineYAMLError(f"the pipeline is not UTF-8 (byte {exc.start})") from None
    if len(text.encode("utf-8")) > MAX_PIPELINE_BYTES:
        raise PipelineYAMLError(f"the pipeline is larger than {MAX_PIPELINE_BYTES} bytes")
    if "\x00" in text:
        raise PipelineYAMLError("the pipeline contains a NUL character")
    root, document = _compose_and_load(text)
    assert isinstance(root, yaml.MappingNode)  # _check_nodes refused anything else
    try:
        ProcessingPipeline.from_dict(_copy(document))
    except (SigmaError, TypeError, ValueError, KeyError, AttributeError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise PipelineYAMLError(f"pySigma refuses it: {message}", _locate(document, root)) from None
    return CustomPipeline(text, document)
