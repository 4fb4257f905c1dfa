"""Expansion: from the loaded spec document to a flat `Graph` of op nodes.

Resolves constants and expressions, instantiates blocks (with arguments and `repeat`), binds
node inputs to ports, evaluates attributes against each op's schema, and resolves every
reference. All problems are collected as diagnostics; expansion continues past them so one
run reports everything it can.

References are resolved in two phases: expansion records, per scope, what each local name
means (`_Target`s); once every scope is known, each node input is resolved through them.
That lets a node refer to one declared later, and a block's inputs refer to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy

from graphc.diagnostics import Diagnostics, Span, did_you_mean
from graphc.ir import INPUT, BlockFrame, Graph, Input, Node
from graphc.ops import OPS, Attr, OpDef
from graphc.shapes import DTYPES, symbol
from graphc.spec.expr import ExprError, evaluate
from graphc.spec.loader import MDict, MList

TOP_KEYS = ("graphc", "name", "doc", "dims", "constants", "inputs", "blocks", "nodes", "outputs",
            "losses", "train")
NODE_KEYS = ("op", "block", "in", "repeat", "doc", "lint")
BLOCK_KEYS = ("doc", "args", "inputs", "nodes", "outputs")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_REPEAT = 1000
MAX_NODES = 100_000


# ---- scopes and targets -------------------------------------------------------------------
@dataclass
class _Node:  # an op node's output(s)
    full: str


@dataclass
class _Alias:  # a name that stands for a reference written in another scope
    scope: _Scope
    ref: str
    span: Span | None


@dataclass
class _Instance:  # a block instance: its named outputs
    outputs: dict[str, _Alias]
    default: str


@dataclass
class _Scope:
    prefix: str
    names: dict[str, Any] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)  # constants, dims, block args


class _ResolveError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def _resolve(scope: _Scope, ref: str, depth: int = 0) -> tuple[str, str | None]:
    """A reference `a` or `a.port` → (full node name, output port or None for the default)."""
    if depth > 200:
        raise _ResolveError(f"reference `{ref}` does not resolve (aliases loop)")
    head, _, rest = ref.partition(".")
    target = scope.names.get(head)
    if target is None:
        where = f" in block instance `{scope.prefix.rstrip('.')}`" if scope.prefix else ""
        raise _ResolveError(f"`{head}` is not defined{where}",
                            did_you_mean(head, scope.names) or "names refer to inputs or other nodes")
    if isinstance(target, _Node):
        return target.full, rest or None
    if isinstance(target, _Alias):
        if rest:
            raise _ResolveError(f"`{head}` is a single tensor (a block input); it has no `.{rest}`")
        return _resolve(target.scope, target.ref, depth + 1)
    out = rest or target.default
    if out not in target.outputs:
        raise _ResolveError(f"block instance `{head}` has no output `{out}`",
                            did_you_mean(out, target.outputs) or f"outputs: {', '.join(target.outputs)}")
    alias = target.outputs[out]
    return _resolve(alias.scope, alias.ref, depth + 1)


# ---- the expander --------------------------------------------------------------------------
class Expander:
    def __init__(self, doc: MDict, file: str, overrides: dict[str, Any] | None = None):
        self.doc, self.file = doc, file
        self.overrides = dict(overrides or {})
        self.diags = Diagnostics()
        self.nodes: dict[str, Node] = {}
        self.pending: list[tuple[Node, list[tuple[str, str, Span | None, _Scope]]]] = []
        self.dims: dict[str, sympy.Symbol] = {}
        self.constants: dict[str, Any] = {}
        self.blocks: MDict = MDict()
        self.train: dict = {}
        self.broken: set[str] = set()  # nodes with a reported problem: not shape-inferred

    # -- entry point
    def run(self) -> Graph:
        d = self.doc
        for key in d:
            if key not in TOP_KEYS:
                self._err("GC005", f"unknown top-level key `{key}`", d.key_where(key),
                          hint=did_you_mean(str(key), TOP_KEYS) or f"allowed: {', '.join(TOP_KEYS)}")
        self._constants()
        self.blocks = self._mapping(d, "blocks", required=False)
        root = _Scope("", values={**self.constants, **self.dims})
        self._inputs(root)
        nodes = self._mapping(d, "nodes")
        self._body(nodes, root, (), path="nodes")
        self._train()
        outputs, out_spans = self._named_refs("outputs", root)
        losses, loss_spans = self._named_refs("losses", root)
        self._bind_pending()
        if not outputs and not losses and "outputs" not in d and "losses" not in d:
            self._err("GC303", "the spec declares no `outputs:` and no `losses:`", d.span,
                      hint="name at least one output or loss; nothing else would be computed")
        graph = Graph(
            name=str(d.get("name") or _stem(self.file)), file=self.file, nodes=self.nodes,
            outputs=outputs, losses=losses, constants=self.constants, dims=self.dims,
            train=self.train, doc=str(d.get("doc") or ""), output_spans={**out_spans, **loss_spans},
            failed=set(self.broken),
        )
        return graph

    # -- helpers
    def _err(self, code, message, span, **kw):
        self.diags.error(code, message, span, **kw)

    def _unknown_key(self, code, message, mapping: MDict, key, choices, **kw):
        """An unknown key; a key with spaces is usually text split at a comma in `{…}`."""
        fallback = kw.pop("hint", None)
        hint = did_you_mean(str(key), choices) or fallback
        if isinstance(key, str) and " " in key.strip():
            hint = "a comma inside {…} starts a new key: put text with commas in quotes, e.g. doc: \"a, b\""
        self._err(code, message, mapping.key_where(key), hint=hint, **kw)

    def _mapping(self, parent: MDict, key: str, required=True) -> MDict:
        v = parent.get(key)
        if v is None:
            if required:
                self._err("GC005", f"missing `{key}:` section", parent.span,
                          hint=f"add `{key}:` with at least one entry")
            return MDict()
        if not isinstance(v, MDict):
            self._err("GC005", f"`{key}` must be a mapping, found {_kind(v)}", parent.where(key))
            return MDict()
        return v

    def _expr(self, raw, scope: Mapping, span: Span | None, what: str):
        """Evaluate a number or an expression string; report and return None on failure."""
        if isinstance(raw, bool | int | float):
            return raw
        if isinstance(raw, str):
            try:
                return evaluate(raw, scope)
            except ExprError as exc:
                self._err("GC105", f"{what}: {exc}", span, hint=exc.hint)
                return None
        self._err("GC104", f"{what}: expected a number or an expression, found {_kind(raw)}", span)
        return None

    # -- sections
    def _constants(self):
        d = self.doc
        dims = d.get("dims") or []
        if not isinstance(dims, list):
            self._err("GC005", "`dims` must be a list of names, e.g. [B, T]", d.where("dims"))
            dims = []
        for i, name in enumerate(dims):
            if not isinstance(name, str) or not NAME.match(name):
                self._err("GC005", f"dimension name `{name}` is not an identifier", dims.where(i))
                continue
            self.dims[name] = symbol(name)
        consts = self._mapping(d, "constants", required=False)
        for name, raw in consts.items():
            span = consts.where(name)
            if not isinstance(name, str) or not NAME.match(name):
                self._err("GC005", f"constant name `{name}` is not an identifier", consts.key_where(name))
                continue
            if name in self.overrides:
                raw = self.overrides.pop(name)
            value = self._expr(raw, {**self.constants, **self.dims}, span, f"constant `{name}`")
            if value is not None:
                self.constants[name] = value
        for name in list(self.dims):  # --set on a declared dimension binds it to a number
            if name in self.overrides:
                self.constants[name] = self.overrides.pop(name)
                del self.dims[name]

    def _inputs(self, root: _Scope):
        inputs = self._mapping(self.doc, "inputs")
        for name, raw in inputs.items():
            span = inputs.key_where(name)
            if not self._check_name(name, span, "input"):
                continue
            decl = raw if isinstance(raw, MDict) else MDict(shape=raw)
            if isinstance(raw, MDict):
                for k in decl:
                    if k not in ("shape", "dtype", "doc"):
                        self._unknown_key("GC005", f"unknown key `{k}` in input `{name}`", decl, k,
                                          ("shape", "dtype", "doc"))
            else:
                decl.value_spans["shape"] = inputs.where(name)
            shape_raw = decl.get("shape")
            if not isinstance(shape_raw, list):
                self._err("GC005", f"input `{name}` needs a shape list such as [B, T]",
                          decl.where("shape") if isinstance(raw, MDict) else inputs.where(name))
                continue
            shape = []
            for i, d in enumerate(shape_raw):
                dspan = shape_raw.where(i) if isinstance(shape_raw, MList) else span
                if isinstance(d, str) and d in self.overrides:  # --set B=32 binds a dimension
                    self.constants[d] = self.overrides.pop(d)
                if isinstance(d, str) and NAME.match(d) and d not in self.constants:
                    if d not in self.dims:
                        self.dims[d] = symbol(d)
                        near = did_you_mean(d, self.constants)
                        if near:
                            self.diags.warning("GC109", f"`{d}` in input `{name}` becomes a new "
                                               f"symbolic dimension", dspan, hint=near)
                    shape.append(self.dims[d])
                    continue
                v = self._expr(d, {**self.constants, **self.dims}, dspan, f"input `{name}` shape")
                if v is None:
                    continue
                if isinstance(v, float) or isinstance(v, int) and v < 1:
                    self._err("GC104", f"input `{name}`: dimension {v} must be a positive integer", dspan)
                    continue
                shape.append(v)
            dtype = decl.get("dtype", "float32")
            if dtype not in DTYPES:
                self._err("GC104", f"input `{name}`: unknown dtype `{dtype}`", decl.where("dtype"),
                          hint=did_you_mean(str(dtype), DTYPES) or f"one of {', '.join(DTYPES)}")
                dtype = "float32"
            self._add_node(Node(name, INPUT, {}, [], ("out",), span, dtype=dtype,
                                shape_spec=tuple(shape), doc=str(decl.get("doc") or "")), span)
            root.names[name] = _Node(name)
        root.values = {**self.constants, **self.dims}

    def _check_name(self, name, span, what) -> bool:
        if not isinstance(name, str) or not NAME.match(name):
            self._err("GC005", f"{what} name `{name}` must be an identifier (letters, digits, _)", span,
                      hint="dots are reserved for referring to outputs (`node.port`)")
            return False
        return True

    def _add_node(self, node: Node, span) -> bool:
        if node.name in self.nodes:
            first = self.nodes[node.name].span
            self._err("GC202", f"duplicate name `{node.name}`", span,
                      related=(("first defined", first),) if first else (),
                      hint="every input and node needs its own name")
            return False
        if len(self.nodes) >= MAX_NODES:
            self._err("GC004", f"the graph expands to more than {MAX_NODES} nodes", span)
            return False
        self.nodes[node.name] = node
        return True

    # -- bodies: the top-level `nodes:` and each block instance
    def _body(self, nodes: MDict, scope: _Scope, frames: tuple[BlockFrame, ...], path: str):
        decls = []
        for name, decl in nodes.items():
            span = nodes.key_where(name)
            if not self._check_name(name, span, "node"):
                continue
            if not isinstance(decl, MDict):
                self._err("GC005", f"node `{name}` must be a mapping like {{op: relu, in: x}}, "
                          f"found {_kind(decl)}", nodes.where(name))
                continue
            if name in scope.names:
                first = self.nodes.get(scope.prefix + name)
                self._err("GC202", f"duplicate name `{name}`: it is already an input", span,
                          related=(("first defined", first.span),) if first and first.span else ())
                continue
            decls.append((name, decl, span))
            scope.names[name] = None  # reserved; filled below
        for name, decl, span in decls:
            scope.names[name] = self._node(name, decl, span, scope, frames, f"{path}.{name}")

    def _node(self, name, decl: MDict, span, scope: _Scope, frames, path):
        has_op, has_block = "op" in decl, "block" in decl
        if has_op == has_block:
            self._err("GC005", f"node `{name}` needs exactly one of `op:` or `block:`", span,
                      hint="`op:` names a built-in op; `block:` one of this spec's blocks")
            return _Node(scope.prefix + name)
        repeat = 1
        if "repeat" in decl:
            repeat = self._expr(decl["repeat"], scope.values, decl.where("repeat"), f"`{name}` repeat")
            if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
                if repeat is not None:
                    self._err("GC104", f"`{name}`: repeat must be an integer from 1 to {MAX_REPEAT}, "
                              f"found {repeat}", decl.where("repeat"))
                repeat = 1
        if has_block:
            return self._instance(name, decl, span, scope, frames, path, repeat)
        op_name = decl["op"]
        if isinstance(op_name, str) and op_name not in OPS and isinstance(scope.values.get(op_name), str):
            op_name = scope.values[op_name]  # a block argument naming an op, e.g. `op: act`
        op = OPS.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            self._err("GC101", f"unknown op `{op_name}` in node `{name}`", decl.where("op"),
                      hint=did_you_mean(str(op_name), OPS) or "`graphc ops` lists every op")
            return _Node(scope.prefix + name)
        errors_before = len(self.diags.items)
        attrs, spans = self._attrs(op, name, decl, scope)
        ports = self._ports(op, name, decl, scope)
        full = scope.prefix + name
        broken = any(d.is_error for d in self.diags.items[errors_before:])
        lint = decl.get("lint") if isinstance(decl.get("lint"), dict) else {}
        for k in range(repeat):
            node_name = full if repeat == 1 else f"{full}.{k}"
            node = Node(node_name, op.name, attrs, [], op.output_names(attrs), span, spans,
                        decl.where("in"), frames, dict(lint), str(decl.get("doc") or ""))
            bindings = list(ports)
            if k > 0 and ports:  # `repeat` on an op chains its first input through the copies
                bindings[0] = (ports[0][0], f"{full}.{k - 1}", ports[0][2], _ABS)
            if self._add_node(node, span):
                self.pending.append((node, bindings))
                if broken:
                    self.broken.add(node_name)
        return _Node(full if repeat == 1 else f"{full}.{repeat - 1}")

    def _ports(self, op: OpDef, name, decl: MDict, scope: _Scope):
        """Bind `in:` to the op's ports → [(port, ref, span, scope)]."""
        raw = decl.get("in")
        span = decl.where("in")
        ports = op.inputs
        out = []
        if raw is None:
            self._err("GC108", f"node `{name}` has no `in:`", decl.key_where("op"),
                      hint=f"`{op.name}` takes {_port_list(op)}")
            return out
        if isinstance(raw, MDict):
            for port, ref in raw.items():
                p = op.port(port)
                if p is None:
                    self._err("GC108", f"`{op.name}` has no input port `{port}`", raw.key_where(port),
                              hint=did_you_mean(str(port), [q.name for q in ports]) or _port_list(op))
                    continue
                refs = ref if isinstance(ref, list) else [ref]
                for i, r in enumerate(refs):
                    out.append((port, r, ref.where(i) if isinstance(ref, MList) else raw.where(port), scope))
        else:
            refs = raw if isinstance(raw, list) else [raw]
            spans = [raw.where(i) for i in range(len(refs))] if isinstance(raw, MList) else [span] * len(refs)
            variadic = next((p for p in ports if p.variadic), None)
            if variadic:
                out = [(variadic.name, r, s, scope) for r, s in zip(refs, spans, strict=True)]
            else:
                if len(refs) > len(ports):
                    self._err("GC108", f"`{name}` ({op.name}) takes at most {len(ports)} input(s), "
                              f"found {len(refs)}", span, hint=f"`{op.name}` takes {_port_list(op)}")
                out = [(p.name, r, s, scope) for p, r, s in zip(ports, refs, spans, strict=False)]
        bound = {p for p, *_ in out}
        for p in ports:
            if not p.optional and p.name not in bound:
                self._err("GC108", f"`{name}` ({op.name}) is missing its input `{p.name}`", span,
                          hint=f"`{op.name}` takes {_port_list(op)}")
        for _, r, s, _ in out:
            if not isinstance(r, str):
                self._err("GC201", f"`{name}`: an input reference must be a name, found {_kind(r)}", s)
        return [b for b in out if isinstance(b[1], str)]

    def _attrs(self, op: OpDef, name, decl: MDict, scope: _Scope):
        values, spans = {}, {}
        for key in decl:
            if key in NODE_KEYS:
                continue
            if key not in op.attrs:
                self._unknown_key("GC102", f"`{op.name}` has no attribute `{key}` (node `{name}`)",
                                  decl, key, list(op.attrs) + list(NODE_KEYS),
                                  hint=f"`{op.name}` takes: {', '.join(op.attrs)}" if op.attrs
                                  else f"`{op.name}` takes no attributes")
        for key, attr in op.attrs.items():
            if key not in decl:
                if attr.required:
                    self._err("GC103", f"`{name}` ({op.name}) is missing the attribute `{key}`",
                              decl.key_where("op"), hint=f"{key}: {attr.doc} ({attr.type})")
                    continue
                values[key] = _normalize(attr, attr.default)
                continue
            spans[key] = decl.where(key)
            values[key] = self._attr_value(op, name, key, attr, decl[key], scope, spans[key])
        return values, spans

    def _attr_value(self, op, name, key, attr: Attr, raw, scope: _Scope, span):
        what = f"`{name}.{key}`"
        if attr.type == "str":
            if isinstance(raw, str) and isinstance(scope.values.get(raw), str):
                raw = scope.values[raw]
            if not isinstance(raw, str):
                self._err("GC104", f"{what} must be a string, found {_kind(raw)}", span)
                return attr.default
            if attr.choices and raw not in attr.choices:
                self._err("GC104", f"{what} must be one of {', '.join(attr.choices)}; found `{raw}`",
                          span, hint=did_you_mean(raw, attr.choices))
            return raw
        if raw is None and attr.default is None:
            return None
        items = raw if attr.type in ("ints", "shape", "axes") and isinstance(raw, list) else None
        if attr.type == "int2" and isinstance(raw, list):
            items = raw
            if len(raw) != 2:
                self._err("GC104", f"{what} takes one integer or a pair [h, w], found {len(raw)} values", span)
                return _normalize(attr, attr.default) if not attr.required else (1, 1)
        if attr.type in ("ints", "shape") and items is None:
            self._err("GC104", f"{what} must be a list, found {_kind(raw)}", span)
            return attr.default
        values = [self._scalar(what, attr, v, scope, raw.where(i) if isinstance(raw, MList) else span)
                  for i, v in enumerate(items if items is not None else [raw])]
        if items is None:
            return values[0]
        return tuple(values)

    def _scalar(self, what, attr: Attr, raw, scope, span):
        want_bool = attr.type == "bool"
        if want_bool and isinstance(raw, str) and not isinstance(scope.values.get(raw.strip()), bool):
            self._err("GC104", f"{what} must be true or false, found `{raw}`", span)
            return bool(attr.default)
        v = self._expr(raw, scope.values, span, what) if not isinstance(raw, bool) else raw
        if v is None:
            return attr.default if attr.default is not None else 0
        if want_bool:
            if not isinstance(v, bool):
                self._err("GC104", f"{what} must be true or false, found {v!r}", span)
                return bool(attr.default)
            return v
        if isinstance(v, bool):
            self._err("GC104", f"{what} must be a number, found {v}", span)
            return 0
        if attr.type == "float":
            if isinstance(v, sympy.Basic):
                self._err("GC104", f"{what} must be a number, found symbolic `{v}`", span)
                return 0.0
            return float(v)
        if attr.type == "shape":  # dims: numbers, -1, or symbolic expressions
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, float):
                self._err("GC104", f"{what}: dimension {v} is not an integer", span)
                return 1
            return sympy.sympify(v)
        if isinstance(v, sympy.Basic):
            if v.is_Integer:
                return int(v)
            self._err("GC104", f"{what} must be a concrete integer, found symbolic `{v}`", span,
                      hint="attributes that size parameters need numbers (constants), not dims like B or T")
            return 1
        if isinstance(v, float):
            if not v.is_integer():
                self._err("GC104", f"{what} must be an integer, found {v:g}", span,
                          hint="use // for integer division")
                return int(v)
            v = int(v)
        if attr.min is not None and v < attr.min:
            self._err("GC104", f"{what} must be ≥ {attr.min:g}, found {v}", span)
        return v

    def _instance(self, name, decl: MDict, span, scope: _Scope, frames, path, repeat):
        bname = decl["block"]
        block = self.blocks.get(bname) if isinstance(bname, str) else None
        if not isinstance(block, MDict):
            self._err("GC106", f"unknown block `{bname}` in node `{name}`", decl.where("block"),
                      hint=did_you_mean(str(bname), self.blocks) or
                      ("blocks defined: " + ", ".join(self.blocks) if self.blocks else "define it under `blocks:`"))
            return _Node(scope.prefix + name)
        if any(f.block == bname for f in frames):
            self._err("GC106", f"block `{bname}` uses itself (recursion)", decl.where("block"))
            return _Node(scope.prefix + name)
        for key in block:
            if key not in BLOCK_KEYS:
                self._err("GC005", f"unknown key `{key}` in block `{bname}`", block.key_where(key),
                          hint=did_you_mean(str(key), BLOCK_KEYS))
        # arguments: defaults from the block, values from the instance (evaluated by the caller)
        params = block.get("args") or MDict()
        if not isinstance(params, MDict):
            self._err("GC005", f"`args` of block `{bname}` must be a mapping of name: default", block.where("args"))
            params = MDict()
        args = {}
        for key in decl:
            if key in NODE_KEYS or key == "block":
                continue
            if key not in params:
                self._err("GC107", f"block `{bname}` has no argument `{key}` (node `{name}`)",
                          decl.key_where(key), hint=did_you_mean(str(key), params) or
                          (f"its arguments: {', '.join(params)}" if params else "it takes no arguments"))
                continue
            args[key] = self._arg(decl[key], scope, decl.where(key), f"`{name}.{key}`")
        for key, default in params.items():
            if key not in args:
                if default is None:
                    self._err("GC107", f"`{name}` must give block `{bname}` its argument `{key}`",
                              decl.key_where("block"))
                    args[key] = 1
                else:
                    args[key] = self._arg(default, {**self.constants, **self.dims}, params.where(key),
                                          f"default of `{bname}.{key}`")
        # ports: block inputs bound positionally or by name
        in_names = block.get("inputs") or []
        if isinstance(in_names, str):
            in_names = [in_names]
        raw_in = decl.get("in")
        if isinstance(raw_in, MDict):
            given = {k: (v, raw_in.where(k)) for k, v in raw_in.items()}
            for k in given:
                if k not in in_names:
                    self._err("GC107", f"block `{bname}` has no input `{k}`", raw_in.key_where(k),
                              hint=did_you_mean(str(k), in_names))
        else:
            refs = raw_in if isinstance(raw_in, list) else ([] if raw_in is None else [raw_in])
            if len(refs) > len(in_names):
                self._err("GC107", f"block `{bname}` takes {len(in_names)} input(s), found {len(refs)}",
                          decl.where("in"))
            given = {n: (r, raw_in.where(i) if isinstance(raw_in, MList) else decl.where("in"))
                     for i, (n, r) in enumerate(zip(in_names, refs, strict=False))}
        for n in in_names:
            if n not in given:
                self._err("GC107", f"`{name}` does not give block `{bname}` its input `{n}`",
                          decl.where("in") if "in" in decl else span)
        outs = block.get("outputs")
        out_map = _named(outs)
        if not out_map:
            self._err("GC005", f"block `{bname}` declares no `outputs:`", block.span)
            return _Node(scope.prefix + name)
        body = block.get("nodes")
        if not isinstance(body, MDict):
            self._err("GC005", f"block `{bname}` needs a `nodes:` mapping", block.span)
            return _Node(scope.prefix + name)
        values = {**self.constants, **self.dims, **args}
        prev: _Scope | None = None
        full = scope.prefix + name
        for k in range(repeat):
            prefix = f"{full}.{k}." if repeat > 1 else f"{full}."
            child = _Scope(prefix, values=values)
            for i, n in enumerate(in_names):
                if n not in given:
                    continue
                if k > 0 and i == 0:  # repeat chains the first input through the copies
                    first_out = next(iter(out_map.values()))
                    child.names[n] = _Alias(prev, first_out[0], first_out[1])
                else:
                    child.names[n] = _Alias(scope, given[n][0], given[n][1])
            frame = BlockFrame(prefix.rstrip("."), name, str(bname), k if repeat > 1 else None,
                               repeat, span)
            self._body(body, child, frames + (frame,), f"{path}[{k}]")
            prev = child
        return _Instance({o: _Alias(prev, ref, s) for o, (ref, s) in out_map.items()},
                         next(iter(out_map)))

    def _arg(self, raw, scope, span, what):
        if isinstance(raw, str):
            try:
                return evaluate(raw, scope if isinstance(scope, Mapping) else scope.values)
            except ExprError as exc:
                if exc.name == raw.strip():  # a bare unknown word is a string argument (`act: relu`)
                    return raw
                self._err("GC105", f"{what}: {exc}", span, hint=exc.hint)
                return None
        return raw

    # -- outputs, losses, train
    def _named_refs(self, key, root: _Scope):
        raw = self.doc.get(key)
        named = _named(raw)
        if raw is not None and not named:
            self._err("GC005", f"`{key}` must be a name, a list of names, or a mapping name: ref",
                      self.doc.where(key))
        result, spans = {}, {}
        for out_name, (ref, span) in named.items():
            if not isinstance(ref, str):
                self._err("GC201", f"`{key}` entries must be node names", span)
                continue
            try:
                node, port = _resolve(root, ref)
            except _ResolveError as exc:
                self._err("GC201", f"{key[:-1]} `{out_name}`: {exc}", span, hint=exc.hint)
                continue
            target = self.nodes.get(node)
            if target is None:
                continue
            if port is not None and port not in target.outputs:
                self._err("GC201", f"{key[:-1]} `{out_name}`: `{node}` ({target.op}) has no output "
                          f"`{port}`", span, hint=f"its outputs: {', '.join(target.outputs)}")
                continue
            port = port or target.outputs[0]
            result[out_name], spans[out_name] = (node, port), span
        return result, spans

    def _train(self):
        raw = self.doc.get("train")
        if raw is None:
            return
        if not isinstance(raw, MDict):
            self._err("GC401", "`train` must be a mapping", self.doc.where("train"))
            return
        self.train = _plain(raw)
        for key, value in self.overrides.items():  # leftovers of --set address train settings
            cur = self.train
            parts = key.split(".")
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
                if not isinstance(cur, dict):
                    self._err("GC401", f"--set {key}: `{p}` is not a section of train", None)
                    break
            else:
                cur[parts[-1]] = value
        self.overrides.clear()

    def _bind_pending(self):
        for node, bindings in self.pending:
            for port, ref, span, scope in bindings:
                try:
                    src, src_port = (ref, None) if scope is _ABS else _resolve(scope, ref)
                except _ResolveError as exc:
                    self._err("GC201", f"node `{node.name}`: {exc}", span,
                              hint=exc.hint, nodes=(node.name,))
                    self.broken.add(node.name)
                    continue
                producer = self.nodes.get(src)
                if producer is None:
                    continue  # its own definition failed and was reported
                if src_port is None:
                    src_port = producer.outputs[0] if producer.outputs else "out"
                elif src_port not in producer.outputs:
                    self._err("GC201", f"node `{node.name}`: `{producer.name}` ({producer.op}) has no "
                              f"output `{src_port}`", span, hint=did_you_mean(src_port, producer.outputs)
                              or f"its outputs: {', '.join(producer.outputs)}")
                    self.broken.add(node.name)
                    continue
                node.inputs.append(Input(port, src, src_port, span, ref))


_ABS = object()  # marks a binding whose reference is already a full node name


def _named(raw) -> dict[str, tuple[Any, Span | None]]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {raw: (raw, None)}
    if isinstance(raw, MList):
        return {str(r): (r, raw.where(i)) for i, r in enumerate(raw)}
    if isinstance(raw, MDict):
        return {str(k): (v, raw.where(k)) for k, v in raw.items()}
    return {}


def _normalize(attr: Attr, value):
    if attr.type == "int2" and isinstance(value, int):
        return (value, value)
    return value


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _kind(v) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    return "nothing" if v is None else f"a {type(v).__name__}"


def _port_list(op: OpDef) -> str:
    return ", ".join(f"{p.name}{'?' if p.optional else ''}{'…' if p.variadic else ''}" for p in op.inputs)


def _stem(file: str) -> str:
    return file.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def expand(doc: MDict, file: str, overrides: dict | None = None) -> tuple[Graph, list]:
    ex = Expander(doc, file, overrides)
    graph = ex.run()
    # int2 attributes: turn scalars into pairs now that values are known
    for node in graph.nodes.values():
        op = OPS.get(node.op)
        if op:
            node.attrs = {k: _normalize(op.attrs[k], v) if k in op.attrs else v for k, v in node.attrs.items()}
    return graph, ex.diags.items
