"""JSON Schema of an ATT&CK Navigator layer, format 4.5, written from MITRE's layer format
specification (attack-navigator ``layers/spec/v4.5/layerformat.md``): required properties,
types, enumerations and the constraints stated there (gradient needs two colours and
``maxValue > minValue``, which JSON Schema cannot say and :func:`check_layer` checks)."""

from __future__ import annotations

from typing import Any

import jsonschema

_METADATA = {
    "oneOf": [
        {
            "type": "object",
            "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["divider"],
            "properties": {"divider": {"type": "boolean"}},
            "additionalProperties": False,
        },
    ]
}
_LINK = {
    "oneOf": [
        {
            "type": "object",
            "required": ["label", "url"],
            "properties": {
                "label": {"type": "string"},
                "url": {"type": "string", "pattern": "^[a-zA-Z][a-zA-Z0-9+.-]*://"},
            },
            "additionalProperties": False,
        },
        _METADATA["oneOf"][1],
    ]
}
_COLOR = {"type": "string", "pattern": "^#([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"}
_TECHNIQUE_ID = "^T[0-9]{4}(\\.[0-9]{3})?$"
_TACTICS = [
    "reconnaissance", "resource-development", "initial-access", "execution", "persistence",
    "privilege-escalation", "stealth", "defense-impairment", "credential-access", "discovery",
    "lateral-movement", "collection", "command-and-control", "exfiltration", "impact",
]  # fmt: skip

LAYER_4_5: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "domain", "versions"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "domain": {"enum": ["enterprise-attack", "mobile-attack", "ics-attack"]},
        "customDataURL": {"type": "string"},
        "versions": {
            "type": "object",
            "required": ["navigator", "layer"],
            "properties": {
                "attack": {"type": "string"},
                "navigator": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+\\.[0-9]+$"},
                "layer": {"const": "4.5"},
            },
            "additionalProperties": False,
        },
        "filters": {
            "type": "object",
            "properties": {"platforms": {"type": "array", "items": {"type": "string"}}},
        },
        "sorting": {"enum": [0, 1, 2, 3]},
        "layout": {
            "type": "object",
            "properties": {
                "layout": {"enum": ["side", "flat", "mini"]},
                "showID": {"type": "boolean"},
                "showName": {"type": "boolean"},
                "showAggregateScores": {"type": "boolean"},
                "countUnscored": {"type": "boolean"},
                "aggregateFunction": {"enum": ["average", "min", "max", "sum"]},
                "expandedSubtechniques": {"enum": ["none", "all", "annotated"]},
            },
            "additionalProperties": False,
        },
        "hideDisabled": {"type": "boolean"},
        "techniques": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["techniqueID"],
                "properties": {
                    "techniqueID": {"type": "string", "pattern": _TECHNIQUE_ID},
                    "tactic": {"enum": _TACTICS},
                    "comment": {"type": "string"},
                    "enabled": {"type": "boolean"},
                    "score": {"type": "number"},
                    "color": {"type": "string"},
                    "metadata": {"type": "array", "items": _METADATA},
                    "links": {"type": "array", "items": _LINK},
                    "showSubtechniques": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
        },
        "gradient": {
            "type": "object",
            "required": ["colors", "minValue", "maxValue"],
            "properties": {
                "colors": {"type": "array", "items": _COLOR, "minItems": 2},
                "minValue": {"type": "number"},
                "maxValue": {"type": "number"},
            },
            "additionalProperties": False,
        },
        "legendItems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "color"],
                "properties": {"label": {"type": "string"}, "color": _COLOR},
                "additionalProperties": False,
            },
        },
        "showTacticRowBackground": {"type": "boolean"},
        "tacticRowBackground": _COLOR,
        "selectTechniquesAcrossTactics": {"type": "boolean"},
        "selectSubtechniquesWithParent": {"type": "boolean"},
        "selectVisibleTechniques": {"type": "boolean"},
        "metadata": {"type": "array", "items": _METADATA},
        "links": {"type": "array", "items": _LINK},
    },
    "additionalProperties": False,
}


def check_layer(layer: dict[str, Any]) -> None:
    """Raise if ``layer`` is not a valid format-4.5 layer."""
    jsonschema.validate(layer, LAYER_4_5, cls=jsonschema.Draft202012Validator)
    gradient = layer.get("gradient")
    if gradient:
        assert gradient["maxValue"] > gradient["minValue"], "maxValue must exceed minValue"
    ids = [(t["techniqueID"], t.get("tactic")) for t in layer.get("techniques", [])]
    assert len(ids) == len(set(ids)), "a technique annotated twice for the same tactic"
