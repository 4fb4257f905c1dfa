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
from graphc.spec.aliases import foreign_name_hint, renamed
from graphc.spec.expr import MAX_MAGNITUDE, ExprError, check_number, evaluate
from graphc.spec.loader import MDict, MList

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NODE_KEYS = ("op", "block", "in", "repeat", "doc", "lint", "tie")


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
    if isinstance(v, int | float):
        return f"the number {v}"
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
class Word(str):
    """A block argument that is not a number: a bare word (an op name such as `act: relu`, or a
    misspelt constant such as `width: hiden`), or a value that could not be evaluated.

    It is fine where a word is wanted (`op: act`); used as a number inside the block, it is
    reported where the argument was written (`diagnostic`: code, message, span, hint), once
    however many nodes and copies use it (expansion drops repeated diagnostics)."""

    diagnostic: tuple = ()

    @classmethod
    def make(cls, text: str, diagnostic: tuple) -> Word:
        w = cls(text)
        w.diagnostic = diagnostic
        return w


class ArgList(list):
    """A block argument holding a list (`kernel: [3, 1]`), its items evaluated by the caller;
    remembers where it was written to point there if the block uses it where a list does not go."""

    span: Span | None = None
    what: str = ""


def expr(diags: Diagnostics, raw, scope: Mapping, span: Span | None, what: str):
    """Evaluate a number or an expression string; report and return None on failure."""
    try:
        if isinstance(raw, bool | int | float):
            return check_number(raw)
        if isinstance(raw, str):
            return evaluate(raw, scope)
    except ExprError as exc:
        if isinstance(exc.value, Word) and exc.value.diagnostic:
            code, message, wspan, hint = exc.value.diagnostic
            diags.error(code, message, wspan or span, hint=hint,
                        related=(("used as a number here", span),) if span and wspan else ())
        else:
            diags.error("GC105", f"{what}: {exc}", span, hint=exc.hint)
        return None
    diags.error("GC104", f"{what}: expected a number or an expression, found {kind(raw)}", span)
    return None


def arg(diags: Diagnostics, raw, scope: Mapping, span, what):
    """A block argument: a number, an expression, a list of those (`kernel: [3, 1]`), or a bare
    word (`act: relu`), which becomes a `Word`. Problems are reported here, where the argument is
    written; what is returned is always safe to put in the block's scope."""
    if isinstance(raw, str):
        word = raw.strip()
        if isinstance(scope.get(word), Word | list):  # another block's argument passed on (`act: act`)
            return scope[word]
        try:
            return evaluate(raw, scope)
        except ExprError as exc:
            if exc.name == word:  # a bare word: an op name, or a typo if used as a number
                return Word.make(word, ("GC105", f"{what}: {exc}", span, exc.hint))
            message = f"{what}: {exc}"
            diags.error("GC105", message, span, hint=exc.hint)
            return Word.make(word, ("GC105", message, span, exc.hint))
    if isinstance(raw, bool | int | float):
        try:
            return check_number(raw)
        except ExprError as exc:
            diags.error("GC104", f"{what}: {exc}", span)
            return Word.make(str(raw), ("GC104", f"{what}: {exc}", span, None))
    if isinstance(raw, list) and not any(isinstance(v, list | dict) for v in raw):
        out = ArgList(arg(diags, v, scope, raw.where(i) if isinstance(raw, MList) else span, what)
                      for i, v in enumerate(raw))
        out.span, out.what = span, what
        return out
    message = f"{what} must be a number, an expression, a name or a list of numbers, found {kind(raw)}"
    diags.error("GC104", message, span)
    return Word.make("?", ("GC104", message, span, None))


def declare_constants(diags: Diagnostics, doc: MDict, overrides: dict[str, Any],
                      dims: dict[str, sympy.Symbol], constants: dict[str, Any]) -> None:
    """Fill `dims` and `constants` from the `dims:` and `constants:` sections, applying (and
    consuming) the `--set` overrides that name them."""
    raw_dims = doc.get("dims") or []
    if not isinstance(raw_dims, list):
        diags.error("GC005", "`dims` must be a list of names, e.g. [B, T]", doc.where("dims"))
        raw_dims = []
    dim_spans = {}
    for i, name in enumerate(raw_dims):
        if not isinstance(name, str) or not NAME.match(name):
            diags.error("GC005", f"dimension name `{name}` is not an identifier", raw_dims.where(i))
            continue
        dims[name] = symbol(name)
        dim_spans[name] = raw_dims.where(i)
    consts = section(diags, doc, "constants", required=False)
    for name, raw in consts.items():
        span = consts.where(name)
        if not isinstance(name, str) or not NAME.match(name):
            diags.error("GC005", f"constant name `{name}` is not an identifier", consts.key_where(name))
            continue
        what = f"constant `{name}`"
        if name in overrides:
            raw = overrides.pop(name)
            what = f"constant `{name}` (--set {name}={_shown(raw)})"
        reported = len(diags.items)
        value = expr(diags, raw, {**constants, **dims}, span, what)
        if value is not None:
            constants[name] = value
        elif len(diags.items) > reported:  # its uses repeat this problem, not "unknown name"
            d = diags.items[reported]
            constants[name] = Word.make(name, (d.code, d.message, d.span, d.hint))
    for name in list(dims):  # --set on a declared dimension binds it to a number
        if name in overrides and bind_dim(diags, name, overrides.pop(name), constants, dim_spans[name]):
            del dims[name]


def _shown(raw) -> str:
    text = str(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def bind_dim(diags: Diagnostics, name: str, raw, constants: dict[str, Any], span: Span | None) -> bool:
    """`--set B=32`: bind a symbolic dimension to a positive integer (in `constants`); report and
    leave it symbolic when the value is not one."""
    what = f"--set {name}={_shown(raw)}"
    value = expr(diags, raw, constants, span, what) if isinstance(raw, bool | int | float | str) \
        else diags.error("GC104", f"{what}: a dimension must be a positive integer, found {kind(raw)}", span)
    if value is None:
        return False
    if isinstance(value, sympy.Basic) and value.is_Integer:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        diags.error("GC104", f"{what}: a dimension must be a positive integer, found {value}", span)
        return False
    constants[name] = value
    return True


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
            bind_dim(diags, d, overrides.pop(d), constants, dspan)
        if isinstance(d, str) and NAME.match(d) and d not in constants:
            if d not in dims:
                dims[d] = symbol(d)
                near = did_you_mean(d, constants)
                if near:
                    diags.warning("GC109", f"`{d}` in input `{name}` becomes a new "
                                  f"symbolic dimension", dspan, hint=near)
            shape.append(dims[d])
            continue
        if isinstance(d, bool):
            diags.error("GC104", f"input `{name}`: dimension {str(d).lower()} must be a positive "
                        f"integer", dspan, hint="YAML reads true/false (and yes/no/on/off) as booleans")
            continue
        v = expr(diags, d, {**constants, **dims}, dspan, f"input `{name}` shape")
        if v is None:
            continue
        if isinstance(v, sympy.Basic) and v.is_number:
            v = int(v) if v.is_Integer else float(v)
        if isinstance(v, bool | float) or isinstance(v, int) and v < 1 or \
                isinstance(v, sympy.Basic) and (v.is_positive is False or v.has(sympy.Float)):
            diags.error("GC104", f"input `{name}`: dimension {v} must be a positive integer", dspan)
            continue
        shape.append(v)
    dtype = decl.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in DTYPES:
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
            foreign = foreign_name_hint(op, str(key))  # `kernel_size` → `kernel`, PyTorch's names
            unknown_key(diags, "GC102", f"`{op.name}` has no attribute `{key}` (node `{name}`)",
                        decl, key, [] if foreign else list(op.attrs) + list(NODE_KEYS),
                        hint=foreign or (f"`{op.name}` takes: {', '.join(op.attrs)}" if op.attrs
                                         else f"`{op.name}` takes no attributes"))
    foreign = {renamed(op, str(k)) for k in decl if k not in op.attrs}  # reported above, with `key`
    for key, attr in op.attrs.items():
        if key not in decl:
            if attr.required and key not in foreign:
                diags.error("GC103", f"`{name}` ({op.name}) is missing the attribute `{key}`",
                            decl.key_where("op"), hint=f"{key}: {attr.doc} ({attr.type})")
                continue
            values[key] = normalize(attr, attr.default)
            continue
        spans[key] = decl.where(key)
        values[key] = _attr_value(diags, name, key, attr, decl[key], scope, spans[key])
    return values, spans


def placeholder(attr: Attr):
    """A value of the right type for an attribute whose written value was rejected (the node is
    then not shape-inferred; this only keeps later passes from meeting a wrong type)."""
    if not attr.required and attr.default is not None:
        return normalize(attr, attr.default)
    return {"int": 1, "axis": 0, "float": 0.0, "bool": False, "str": "", "int2": (1, 1)}.get(attr.type, ())


def _attr_value(diags: Diagnostics, name, key, attr: Attr, raw, scope: Mapping, span):
    what = f"`{name}.{key}`"
    if isinstance(raw, str) and isinstance(scope.get(raw.strip()), ArgList):
        raw = scope[raw.strip()]  # a block argument holding a list, e.g. `kernel: k` with k: [3, 1]
        if attr.type not in _LISTS:
            diags.error("GC104", f"{raw.what} is a list, but the block uses it as `{name}.{key}`, "
                        f"which takes {_ONE.get(attr.type, 'one value')}", raw.span or span,
                        related=(("used here", span),) if span and raw.span else ())
            return placeholder(attr)
    if attr.type == "str":
        if isinstance(raw, str) and isinstance(scope.get(raw), str):
            raw = scope[raw]
        if not isinstance(raw, str):
            diags.error("GC104", f"{what} must be a string, found {kind(raw)}", span)
            return placeholder(attr)
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
            return placeholder(attr)
    if attr.type in ("ints", "shape") and items is None:
        diags.error("GC104", f"{what} must be a list, found {kind(raw)}", span)
        return placeholder(attr)
    if items is None and isinstance(raw, list | dict):
        diags.error("GC104", f"{what} must be {_ONE[attr.type]}, found {kind(raw)}", span)
        return placeholder(attr)
    values = [_scalar(diags, what, attr, v, scope, raw.where(i) if isinstance(raw, MList) else span)
              for i, v in enumerate(items if items is not None else [raw])]
    if items is None:
        return values[0]
    return tuple(values)


_LISTS = ("ints", "shape", "axes", "int2")
_ONE = {"str": "a string", "int": "an integer", "axis": "an axis (an integer)", "axes": "an axis or a list of axes",
        "float": "a number", "bool": "true or false", "int2": "an integer or a pair [h, w]"}
_SCALAR_FALLBACK = {"float": 0.0, "bool": False, "axis": 0, "axes": 0}


def _scalar(diags: Diagnostics, what, attr: Attr, raw, scope: Mapping, span):
    want_bool = attr.type == "bool"
    fallback = _SCALAR_FALLBACK.get(attr.type, 1)
    if want_bool and isinstance(raw, str) and not isinstance(scope.get(raw.strip()), bool):
        diags.error("GC104", f"{what} must be true or false, found `{raw}`", span)
        return fallback
    v = expr(diags, raw, scope, span, what) if not isinstance(raw, bool) else raw
    if v is None:
        return fallback
    if want_bool:
        if not isinstance(v, bool):
            diags.error("GC104", f"{what} must be true or false, found {v!r}", span)
            return fallback
        return v
    if isinstance(v, bool):
        diags.error("GC104", f"{what} must be a number, found {v}", span)
        return fallback
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
            return sympy.Integer(1)
        v = sympy.sympify(v)
        if v.has(sympy.Float):  # `W * 0.5`: a float in a size is never whole for sure (nor exact)
            diags.error("GC104", f"{what}: dimension `{v}` holds a fractional number", span,
                        hint="write fractions of dims exactly (`W/2`), or floor them (`W // 2`)")
            return sympy.Integer(1)
        return v
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
            return fallback
        if abs(v) > MAX_MAGNITUDE:
            diags.error("GC104", f"{what}: {v:g} is too large for an integer", span)
            return fallback
        v = int(v)
    if not isinstance(v, int):  # cannot happen for a checked expression; never pass on a non-int
        diags.error("GC104", f"{what} must be an integer, found {v!r}", span)
        return fallback
    if attr.min is not None and v < attr.min:
        diags.error("GC104", f"{what} must be ≥ {attr.min:g}, found {v}", span)
    return v
