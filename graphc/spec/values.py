"""Values: what a number, expression or attribute written in the spec evaluates to.

Owns the constants and dims (and `--set` overrides binding them), input shapes and dtypes,
expression evaluation, and op attributes checked against each op's schema. Expansion keeps the
state (the `constants`/`dims` dicts, the pending `overrides`); the functions here read and fill
it and report problems to the `Diagnostics` they are given, in the order they meet them.

Kept apart from expansion because none of it depends on where a node sits in the graph: given
the names in scope, a value means the same thing in a block instance as at the top level. The
small helpers that describe a YAML value in messages (`kind`, `section`, `unknown_key`) live
here too; expansion and reference resolution share them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sympy

from graphc.diagnostics import Diagnostics, Span, did_you_mean
from graphc.ops import Attr, OpDef
from graphc.shapes import DTYPES, symbol
from graphc.spec.expr import ExprError, evaluate
from graphc.spec.loader import MDict, MList

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NODE_KEYS = ("op", "block", "in", "repeat", "doc", "lint")


# ---- describing the document ---------------------------------------------------------------
def kind(v) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    return "nothing" if v is None else f"a {type(v).__name__}"


def section(diags: Diagnostics, parent: MDict, key: str, required=True) -> MDict:
    """The mapping under `key`; an empty one (reported) when it is missing or not a mapping."""
    v = parent.get(key)
    if v is None:
        if required:
            diags.error("GC005", f"missing `{key}:` section", parent.span,
                        hint=f"add `{key}:` with at least one entry")
        return MDict()
    if not isinstance(v, MDict):
        diags.error("GC005", f"`{key}` must be a mapping, found {kind(v)}", parent.where(key))
        return MDict()
    return v


def unknown_key(diags: Diagnostics, code, message, mapping: MDict, key, choices, **kw):
    """An unknown key; a key with spaces is usually text split at a comma in `{…}`."""
    fallback = kw.pop("hint", None)
    hint = did_you_mean(str(key), choices) or fallback
    if isinstance(key, str) and " " in key.strip():
        hint = "a comma inside {…} starts a new key: put text with commas in quotes, e.g. doc: \"a, b\""
    diags.error(code, message, mapping.key_where(key), hint=hint, **kw)


# ---- expressions, constants, dims ----------------------------------------------------------
def expr(diags: Diagnostics, raw, scope: Mapping, span: Span | None, what: str):
    """Evaluate a number or an expression string; report and return None on failure."""
    if isinstance(raw, bool | int | float):
        return raw
    if isinstance(raw, str):
        try:
            return evaluate(raw, scope)
        except ExprError as exc:
            diags.error("GC105", f"{what}: {exc}", span, hint=exc.hint)
            return None
    diags.error("GC104", f"{what}: expected a number or an expression, found {kind(raw)}", span)
    return None


def arg(diags: Diagnostics, raw, scope: Mapping, span, what):
    """A block argument: an expression, or a bare unknown word taken as a string (`act: relu`)."""
    if isinstance(raw, str):
        try:
            return evaluate(raw, scope)
        except ExprError as exc:
            if exc.name == raw.strip():
                return raw
            diags.error("GC105", f"{what}: {exc}", span, hint=exc.hint)
            return None
    return raw


def declare_constants(diags: Diagnostics, doc: MDict, overrides: dict[str, Any],
                      dims: dict[str, sympy.Symbol], constants: dict[str, Any]) -> None:
    """Fill `dims` and `constants` from the `dims:` and `constants:` sections, applying (and
    consuming) the `--set` overrides that name them."""
    raw_dims = doc.get("dims") or []
    if not isinstance(raw_dims, list):
        diags.error("GC005", "`dims` must be a list of names, e.g. [B, T]", doc.where("dims"))
        raw_dims = []
    for i, name in enumerate(raw_dims):
        if not isinstance(name, str) or not NAME.match(name):
            diags.error("GC005", f"dimension name `{name}` is not an identifier", raw_dims.where(i))
            continue
        dims[name] = symbol(name)
    consts = section(diags, doc, "constants", required=False)
    for name, raw in consts.items():
        span = consts.where(name)
        if not isinstance(name, str) or not NAME.match(name):
            diags.error("GC005", f"constant name `{name}` is not an identifier", consts.key_where(name))
            continue
        if name in overrides:
            raw = overrides.pop(name)
        value = expr(diags, raw, {**constants, **dims}, span, f"constant `{name}`")
        if value is not None:
            constants[name] = value
    for name in list(dims):  # --set on a declared dimension binds it to a number
        if name in overrides:
            constants[name] = overrides.pop(name)
            del dims[name]


def input_decl(diags: Diagnostics, name: str, raw, inputs: MDict, span, overrides: dict[str, Any],
               dims: dict[str, sympy.Symbol], constants: dict[str, Any]):
    """One entry of `inputs:` → (shape, dtype, its mapping), or None when it has no usable shape.

    A name in the shape that is neither a constant nor a dim becomes a new symbolic dim; a
    `--set` naming it binds it to a number instead."""
    decl = raw if isinstance(raw, MDict) else MDict(shape=raw)
    if isinstance(raw, MDict):
        for k in decl:
            if k not in ("shape", "dtype", "doc"):
                unknown_key(diags, "GC005", f"unknown key `{k}` in input `{name}`", decl, k,
                            ("shape", "dtype", "doc"))
    else:
        decl.value_spans["shape"] = inputs.where(name)
    shape_raw = decl.get("shape")
    if not isinstance(shape_raw, list):
        diags.error("GC005", f"input `{name}` needs a shape list such as [B, T]",
                    decl.where("shape") if isinstance(raw, MDict) else inputs.where(name))
        return None
    shape = []
    for i, d in enumerate(shape_raw):
        dspan = shape_raw.where(i) if isinstance(shape_raw, MList) else span
        if isinstance(d, str) and d in overrides:  # --set B=32 binds a dimension
            constants[d] = overrides.pop(d)
        if isinstance(d, str) and NAME.match(d) and d not in constants:
            if d not in dims:
                dims[d] = symbol(d)
                near = did_you_mean(d, constants)
                if near:
                    diags.warning("GC109", f"`{d}` in input `{name}` becomes a new "
                                  f"symbolic dimension", dspan, hint=near)
            shape.append(dims[d])
            continue
        v = expr(diags, d, {**constants, **dims}, dspan, f"input `{name}` shape")
        if v is None:
            continue
        if isinstance(v, float) or isinstance(v, int) and v < 1:
            diags.error("GC104", f"input `{name}`: dimension {v} must be a positive integer", dspan)
            continue
        shape.append(v)
    dtype = decl.get("dtype", "float32")
    if dtype not in DTYPES:
        diags.error("GC104", f"input `{name}`: unknown dtype `{dtype}`", decl.where("dtype"),
                    hint=did_you_mean(str(dtype), DTYPES) or f"one of {', '.join(DTYPES)}")
        dtype = "float32"
    return tuple(shape), dtype, decl


# ---- op attributes -------------------------------------------------------------------------
def normalize(attr: Attr, value):
    if attr.type == "int2" and isinstance(value, int):
        return (value, value)
    return value


def attrs(diags: Diagnostics, op: OpDef, name, decl: MDict, scope: Mapping):
    """A node's attributes, checked against `op`'s schema → (values, their spans)."""
    values, spans = {}, {}
    for key in decl:
        if key in NODE_KEYS:
            continue
        if key not in op.attrs:
            unknown_key(diags, "GC102", f"`{op.name}` has no attribute `{key}` (node `{name}`)",
                        decl, key, list(op.attrs) + list(NODE_KEYS),
                        hint=f"`{op.name}` takes: {', '.join(op.attrs)}" if op.attrs
                        else f"`{op.name}` takes no attributes")
    for key, attr in op.attrs.items():
        if key not in decl:
            if attr.required:
                diags.error("GC103", f"`{name}` ({op.name}) is missing the attribute `{key}`",
                            decl.key_where("op"), hint=f"{key}: {attr.doc} ({attr.type})")
                continue
            values[key] = normalize(attr, attr.default)
            continue
        spans[key] = decl.where(key)
        values[key] = _attr_value(diags, name, key, attr, decl[key], scope, spans[key])
    return values, spans


def _attr_value(diags: Diagnostics, name, key, attr: Attr, raw, scope: Mapping, span):
    what = f"`{name}.{key}`"
    if attr.type == "str":
        if isinstance(raw, str) and isinstance(scope.get(raw), str):
            raw = scope[raw]
        if not isinstance(raw, str):
            diags.error("GC104", f"{what} must be a string, found {kind(raw)}", span)
            return attr.default
        if attr.choices and raw not in attr.choices:
            diags.error("GC104", f"{what} must be one of {', '.join(attr.choices)}; found `{raw}`",
                        span, hint=did_you_mean(raw, attr.choices))
        return raw
    if raw is None and attr.default is None:
        return None
    items = raw if attr.type in ("ints", "shape", "axes") and isinstance(raw, list) else None
    if attr.type == "int2" and isinstance(raw, list):
        items = raw
        if len(raw) != 2:
            diags.error("GC104", f"{what} takes one integer or a pair [h, w], found {len(raw)} values", span)
            return normalize(attr, attr.default) if not attr.required else (1, 1)
    if attr.type in ("ints", "shape") and items is None:
        diags.error("GC104", f"{what} must be a list, found {kind(raw)}", span)
        return attr.default
    values = [_scalar(diags, what, attr, v, scope, raw.where(i) if isinstance(raw, MList) else span)
              for i, v in enumerate(items if items is not None else [raw])]
    if items is None:
        return values[0]
    return tuple(values)


def _scalar(diags: Diagnostics, what, attr: Attr, raw, scope: Mapping, span):
    want_bool = attr.type == "bool"
    if want_bool and isinstance(raw, str) and not isinstance(scope.get(raw.strip()), bool):
        diags.error("GC104", f"{what} must be true or false, found `{raw}`", span)
        return bool(attr.default)
    v = expr(diags, raw, scope, span, what) if not isinstance(raw, bool) else raw
    if v is None:
        return attr.default if attr.default is not None else 0
    if want_bool:
        if not isinstance(v, bool):
            diags.error("GC104", f"{what} must be true or false, found {v!r}", span)
            return bool(attr.default)
        return v
    if isinstance(v, bool):
        diags.error("GC104", f"{what} must be a number, found {v}", span)
        return 0
    if attr.type == "float":
        if isinstance(v, sympy.Basic):
            diags.error("GC104", f"{what} must be a number, found symbolic `{v}`", span)
            return 0.0
        return float(v)
    if attr.type == "shape":  # dims: numbers, -1, or symbolic expressions
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, float):
            diags.error("GC104", f"{what}: dimension {v} is not an integer", span)
            return 1
        return sympy.sympify(v)
    if isinstance(v, sympy.Basic):
        if v.is_Integer:
            return int(v)
        diags.error("GC104", f"{what} must be a concrete integer, found symbolic `{v}`", span,
                    hint="attributes that size parameters need numbers (constants), not dims like B or T")
        return 1
    if isinstance(v, float):
        if not v.is_integer():
            diags.error("GC104", f"{what} must be an integer, found {v:g}", span,
                        hint="use // for integer division")
            return int(v)
        v = int(v)
    if attr.min is not None and v < attr.min:
        diags.error("GC104", f"{what} must be ≥ {attr.min:g}, found {v}", span)
    return v
