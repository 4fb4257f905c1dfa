"""The spec format's JSON Schema, generated from the op registry (`graphc schema`).

Editors use it for completion and inline errors; the tests validate every reference spec
against it. It describes structure; graphc's own checks go further (shapes, references).
"""

from __future__ import annotations

from graphc.ops import OPS, Attr
from graphc.spec.expand import NODE_KEYS
from graphc.spec.train_schema import json_schema as train_json_schema

_EXPR = {"type": "string", "description": "an expression over constants, e.g. `4 * d_model`"}
_IDENT = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_REF = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"}


def _attr_schema(a: Attr) -> dict:
    number = {"int": {"type": "integer"}, "axis": {"type": "integer"}, "float": {"type": "number"}}
    if a.type in number:
        base = {"anyOf": [number[a.type], _EXPR]}
    elif a.type == "bool":
        base = {"anyOf": [{"type": "boolean"}, _IDENT]}
    elif a.type == "str":
        base = {"anyOf": [{"enum": list(a.choices)}, _IDENT]} if a.choices else {"type": "string"}
    elif a.type == "int2":
        item = {"anyOf": [{"type": "integer"}, _EXPR]}
        base = {"anyOf": [item, {"type": "array", "items": item, "minItems": 2, "maxItems": 2}]}
    elif a.type == "axes":
        item = {"type": "integer"}
        base = {"anyOf": [{"type": "null"}, item, {"type": "array", "items": item}]}
    else:  # ints, shape
        base = {"type": "array", "items": {"anyOf": [{"type": "integer"}, _EXPR]}}
    if a.default is None:
        base = {"anyOf": [{"type": "null"}, base]}
    desc = a.doc + ("" if a.required else f" (default: {a.default})")
    return {**base, "description": desc}


# a number written as an input (a constant): a scalar or a (nested) list of numbers
_LITERAL = {"anyOf": [{"type": "number"}, {"type": "array", "items": {"$ref": "#/$defs/literal"}}]}


def _in_schema() -> dict:
    item = {"anyOf": [_REF, {"$ref": "#/$defs/literal"}, _EXPR]}  # an expression over constants: a number
    return {"anyOf": [item, {"type": "array", "items": item},
                      {"type": "object", "additionalProperties": {"anyOf": [item, {"type": "array", "items": item}]}}],
            "description": "inputs: a name, a list bound to the op's ports in order, or {port: name}; "
                           "a number (or a list of numbers) is a constant"}


def _common() -> dict:
    return {"in": _in_schema(),
            "repeat": {"anyOf": [{"type": "integer", "minimum": 0}, _EXPR],
                       "description": "chain this node N times (0: it stands for its first input)"},
            "tie": {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}],
                    "description": "share parameters: {param: node.param} (or node.param for the same name)"},
            "doc": {"type": "string"},
            "lint": {"type": "object", "properties": {"ignore": {"type": "array", "items": {"type": "string"}}}}}


def _op_node(name: str) -> dict:
    op = OPS[name]
    props = {"op": {"const": name, "description": op.doc}, **_common()}
    props |= {k: _attr_schema(a) for k, a in op.attrs.items()}
    required = ["op"] + [k for k, a in op.attrs.items() if a.required]
    return {"type": "object", "title": name, "properties": props, "required": required,
            "additionalProperties": False}


def _node_schema(in_block: bool = False) -> dict:
    """A node: one of the ops (with exactly its attributes) or a block instance. At the top
    level `op` must name a registered op, so an editor flags `op: lienar` and completes op
    names; inside a block `op` may also be one of the block's arguments (`op: act`), which a
    schema cannot tell from a misspelt op (graphc check can: GC101)."""
    instance = {"type": "object", "title": "block instance",
                "properties": {"block": _IDENT, **_common()}, "required": ["block"],
                "not": {"required": ["op"]}, "additionalProperties": True}
    variants = [_op_node(n) for n in sorted(OPS)] + [instance]
    op = {"enum": sorted(OPS), "description": "the op (`graphc ops` lists them)"}
    if in_block:
        variants.append({"type": "object", "title": "op named by a block argument",
                         "properties": {"op": {"not": {"enum": sorted(OPS)}, **_IDENT}, **_common()},
                         "required": ["op"]})
        op = {"anyOf": [op, {**_IDENT, "description": "an op, or a block argument naming one"}]}
    return {"type": "object", "properties": {"op": op}, "oneOf": variants}


def spec_schema() -> dict:
    nodes = {"type": "object", "additionalProperties": {"$ref": "#/$defs/node"},
             "propertyNames": _IDENT}
    block_nodes = {**nodes, "additionalProperties": {"$ref": "#/$defs/block_node"}}
    shape = {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, _EXPR]}}
    refs = {"anyOf": [_REF, {"type": "array", "items": _REF},
                      {"type": "object", "additionalProperties": _REF}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://graphc.dev/schema/spec-1.json",
        "title": "graphc network spec",
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs", "nodes"],
        "properties": {
            "graphc": {"const": 1, "description": "spec format version"},
            "name": {"type": "string"},
            "doc": {"type": "string"},
            "dims": {"type": "array", "items": _IDENT},
            "constants": {"type": "object", "propertyNames": _IDENT,
                          "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "boolean"},
                                                             {"type": "string"}]}},
            "inputs": {"type": "object", "propertyNames": _IDENT, "additionalProperties": {"anyOf": [
                shape,
                {"type": "object", "additionalProperties": False, "required": ["shape"],
                 "properties": {"shape": shape, "doc": {"type": "string"},
                                "dtype": {"enum": ["float32", "float64", "int64", "bool"]}}}]}},
            "blocks": {"type": "object", "propertyNames": _IDENT, "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["nodes", "outputs"],
                "properties": {"doc": {"type": "string"}, "args": {"type": "object"},
                               "inputs": {"anyOf": [_IDENT, {"type": "array", "items": _IDENT}]},
                               "nodes": block_nodes, "outputs": refs}}},
            "nodes": nodes,
            "outputs": refs,
            "losses": refs,
            "train": train_json_schema(),
            "compile": {"type": "object", "additionalProperties": False,
                        "properties": {"fuse": {"type": "boolean", "description":
                                                "fuse chains of pointwise ops into generated kernels"}}},
        },
        "$defs": {"node": _node_schema(), "block_node": _node_schema(in_block=True), "literal": _LITERAL},
        "x-node-keys": list(NODE_KEYS),
    }
