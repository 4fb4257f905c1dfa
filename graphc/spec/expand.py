"""Expansion: from the loaded spec document to a flat `Graph` of op nodes.

The driver of the front end's `expand` pass. Owns the walk over the document's structure:
top-level sections, the `nodes:` bodies, block instances (arguments, input binding, `repeat`
chaining), node names and the `train:` section with its `--set` leftovers. It delegates what a
value means to `graphc.spec.values` (constants, dims, expressions, attributes) and what a name
means to `graphc.spec.refs` (scopes, ports, resolution), so this module reads as the order in
which a spec is expanded.

All problems are collected as diagnostics; expansion continues past them so one run reports
everything it can. `expand` and `NODE_KEYS` are the public entry points.
"""

from __future__ import annotations

from typing import Any

import sympy

from graphc.diagnostics import DiagnosticError, Diagnostics, did_you_mean
from graphc.ir import INPUT, BlockFrame, Graph, Node
from graphc.ops import OPS
from graphc.spec import refs, ties, values
from graphc.spec.literals import Literal
from graphc.spec.loader import MDict, MList, paused_gc
from graphc.spec.refs import ABS, Alias, Binding, Instance, NodeTarget, Scope
from graphc.spec.train_check import check_settings
from graphc.spec.train_schema import TRAIN_KEYS, set_dotted
from graphc.spec.values import NAME, NODE_KEYS, kind, normalize

__all__ = ["BLOCK_KEYS", "MAX_NODES", "MAX_REPEAT", "NODE_KEYS", "TOP_KEYS", "Expander", "expand"]

TOP_KEYS = ("graphc", "name", "doc", "dims", "constants", "inputs", "blocks", "nodes", "outputs",
            "losses", "train", "compile")
COMPILE_KEYS = {"fuse": "fuse chains of pointwise ops into generated kernels (default true)"}
BLOCK_KEYS = ("doc", "args", "inputs", "nodes", "outputs")
MAX_REPEAT = 1000
MAX_NODES = 100_000
MAX_BLOCK_DEPTH = 32  # blocks within blocks (expansion recurses once per level)


class Expander:
    def __init__(self, doc: MDict, file: str, overrides: dict[str, Any] | None = None):
        self.doc, self.file = doc, file
        self.overrides = dict(overrides or {})
        self.diags = Diagnostics()
        self.nodes: dict[str, Node] = {}
        self.pending: list[tuple[Node, list[Binding]]] = []
        self.pending_ties: list[ties.Pending] = []
        self.dims: dict[str, sympy.Symbol] = {}
        self.constants: dict[str, Any] = {}
        self.blocks: MDict = MDict()
        self.train: dict = {}
        self.broken: set[str] = set()  # nodes with a reported problem: not shape-inferred
        self._interfaces: dict[str, tuple | None] = {}  # block name → its checked interface
        self._min_nodes_memo: dict[str, tuple[int, list]] = {}  # block name → (lower bound, chain)

    # -- entry point
    def run(self) -> Graph:
        d = self.doc
        for key in d:
            if key not in TOP_KEYS:
                self._err("GC005", f"unknown top-level key `{key}`", d.key_where(key),
                          hint=did_you_mean(str(key), TOP_KEYS) or f"allowed: {', '.join(TOP_KEYS)}")
        values.declare_constants(self.diags, d, self.overrides, self.dims, self.constants)
        self.blocks = self._block_names(values.section(self.diags, d, "blocks", required=False))
        root = Scope("", values={**self.constants, **self.dims})
        self._inputs(root)
        nodes = values.section(self.diags, d, "nodes")
        self._body(nodes, root, (), path="nodes")
        self._train()
        compile_options = self._compile_options()
        outputs, out_spans = refs.named_refs(self.diags, d, "outputs", root, self.nodes)
        losses, loss_spans = refs.named_refs(self.diags, d, "losses", root, self.nodes)
        refs.bind_pending(self.diags, self.pending, self.nodes, self.broken)
        ties.resolve(self.diags, self.pending_ties, self.nodes)
        if not outputs and not losses and "outputs" not in d and "losses" not in d:
            self._err("GC303", "the spec declares no `outputs:` and no `losses:`", d.span,
                      hint="name at least one output or loss; nothing else would be computed")
        graph = Graph(
            name=str(d.get("name") or _stem(self.file)), file=self.file, nodes=self.nodes,
            outputs=outputs, losses=losses, dims=self.dims,
            constants={k: v for k, v in self.constants.items() if not isinstance(v, values.Word)},
            train=self.train, doc=str(d.get("doc") or ""), output_spans={**out_spans, **loss_spans},
            failed=set(self.broken), compile=compile_options,
        )
        return graph

    def _compile_options(self) -> dict:
        """`compile: {fuse: false}`: how the back end treats this spec."""
        raw = self.doc.get("compile")
        if raw is None:
            return {}
        if not isinstance(raw, MDict):
            self._err("GC005", "`compile` must be a mapping such as {fuse: false}", self.doc.where("compile"))
            return {}
        out = {}
        for key, value in raw.items():
            if key not in COMPILE_KEYS:
                self._err("GC005", f"unknown key `{key}` in `compile`", raw.key_where(key),
                          hint=did_you_mean(str(key), COMPILE_KEYS) or f"allowed: {', '.join(COMPILE_KEYS)}")
            elif not isinstance(value, bool):
                self._err("GC005", f"compile.{key} must be true or false, found {value!r}", raw.where(key))
            else:
                out[key] = value
        return out

    # -- helpers
    def _err(self, code, message, span, **kw):
        self.diags.error(code, message, span, **kw)

    # -- sections
    def _inputs(self, root: Scope):
        inputs = values.section(self.diags, self.doc, "inputs")
        for name, raw in inputs.items():
            span = inputs.key_where(name)
            if not self._check_name(name, span, "input"):
                continue
            decl = values.input_decl(self.diags, name, raw, inputs, span, self.overrides,
                                     self.dims, self.constants)
            if decl is None:
                continue
            shape, dtype, decl = decl
            self._add_node(Node(name, INPUT, {}, [], ("out",), span, dtype=dtype,
                                shape_spec=shape, doc=str(decl.get("doc") or "")), span)
            root.names[name] = NodeTarget(name)
            if len(shape) != len(decl.get("shape") or ()):  # a dimension was rejected (reported):
                self.broken.add(name)  # its shape is unknown, and what reads it is not inferred
        root.values = {**self.constants, **self.dims}

    def _block_names(self, blocks: MDict) -> MDict:
        """`blocks:` without the entries whose names are not identifiers (reported)."""
        out = MDict()
        out.span = blocks.span
        for name, block in blocks.items():
            if self._check_name(name, blocks.key_where(name), "block"):
                out[name] = block
                out.key_spans[name] = blocks.key_spans.get(name)
                out.value_spans[name] = blocks.value_spans.get(name)
        return out

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
        if len(self.nodes) >= MAX_NODES:  # stop: nested `repeat`s multiply (1000³ would never end)
            raise _TooLarge(node, span)
        self.nodes[node.name] = node
        return True

    # -- bodies: the top-level `nodes:` and each block instance
    def _body(self, nodes: MDict, scope: Scope, frames: tuple[BlockFrame, ...], path: str):
        decls = []
        for name, decl in nodes.items():
            span = nodes.key_where(name)
            if not self._check_name(name, span, "node"):
                continue
            if not isinstance(decl, MDict):
                self._err("GC005", f"node `{name}` must be a mapping like {{op: relu, in: x}}, "
                          f"found {kind(decl)}", nodes.where(name))
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

    def _node(self, name, decl: MDict, span, scope: Scope, frames, path):
        has_op, has_block = "op" in decl, "block" in decl
        if has_op == has_block:
            self._err("GC005", f"node `{name}` needs exactly one of `op:` or `block:`", span,
                      hint="`op:` names a built-in op; `block:` one of this spec's blocks")
            return NodeTarget(scope.prefix + name)
        repeat = 1
        if "repeat" in decl:
            repeat = values.expr(self.diags, decl["repeat"], scope.values, decl.where("repeat"),
                                 f"`{name}` repeat")
            if not isinstance(repeat, int) or isinstance(repeat, bool) or not 0 <= repeat <= MAX_REPEAT:
                if repeat is not None:
                    self._err("GC104", f"`{name}`: repeat must be an integer from 0 to {MAX_REPEAT}, "
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
            return NodeTarget(scope.prefix + name)
        errors_before = len(self.diags.items)
        attrs, spans = values.attrs(self.diags, op, name, decl, scope.values)
        ports = refs.bind_ports(self.diags, op, name, decl, scope)
        full = scope.prefix + name
        tied = ties.parse(self.diags, decl, name) if "tie" in decl else []
        if repeat == 0:  # zero copies of a chain: the identity on its first input
            return self._passthrough(name, op.name, ports, decl)
        ports = self._literals(ports, full, span, frames)
        broken = any(d.is_error for d in self.diags.items[errors_before:])
        lint = decl.get("lint") if isinstance(decl.get("lint"), dict) else {}
        for k in range(repeat):
            node_name = full if repeat == 1 else f"{full}.{k}"
            node = Node(node_name, op.name, attrs, [], op.output_names(attrs), span, spans,
                        decl.where("in"), frames, dict(lint), str(decl.get("doc") or ""))
            bindings = list(ports)
            if k > 0 and ports:  # `repeat` on an op chains its first input through the copies
                bindings[0] = (ports[0][0], f"{full}.{k - 1}", ports[0][2], ABS)
            if self._add_node(node, span):
                self.pending.append((node, bindings))
                self.pending_ties += [(node, param, ref, where, scope) for param, ref, where in tied]
                if broken:
                    self.broken.add(node_name)
        return NodeTarget(full if repeat == 1 else f"{full}.{repeat - 1}")

    def _passthrough(self, name, what: str, ports: list[Binding], decl: MDict):
        """`repeat: 0`: the name stands for the first input as given (nothing is added)."""
        if not ports or isinstance(ports[0][1], Literal):
            self._err("GC104", f"`{name}`: with `repeat: 0` the node stands for its first input, but "
                      f"`{what}` is given none", decl.where("repeat"), hint="give it `in:` or remove the node")
            return NodeTarget(name)
        if "tie" in decl:
            self._err("GC207", f"`{name}` repeats 0 times, so it has no parameter to tie", decl.where("tie"))
        _, ref, where, scope = ports[0]
        return Alias(scope, ref, where)

    def _literals(self, ports: list[Binding], full: str, span, frames) -> list[Binding]:
        """A number written in `in:` becomes a constant node `<node>.<port>` feeding that port."""
        out, count = [], {}
        for port, ref, where, scope in ports:
            if not isinstance(ref, Literal):
                out.append((port, ref, where, scope))
                continue
            count[port] = count.get(port, 0) + 1
            const = f"{full}.{port}" + (str(count[port] - 1) if count[port] > 1 else "")
            value = ref.values if ref.shape else ref.values[0]
            node = Node(const, "constant", {"value": value, "shape": ref.shape}, [], ("out",), where,
                        {}, None, frames, {}, ref.text)  # doc: the literal as written
            if self._add_node(node, where):
                out.append((port, const, where, ABS))
        return out

    def _instance(self, name, decl: MDict, span, scope: Scope, frames, path, repeat):
        bname = decl["block"]
        block = self.blocks.get(bname) if isinstance(bname, str) else None
        if not isinstance(block, MDict):
            self._err("GC106", f"unknown block `{bname}` in node `{name}`", decl.where("block"),
                      hint=did_you_mean(str(bname), self.blocks) or
                      ("blocks defined: " + ", ".join(self.blocks) if self.blocks else "define it under `blocks:`"))
            return NodeTarget(scope.prefix + name)
        if any(f.block == bname for f in frames):
            self._err("GC106", f"block `{bname}` uses itself (recursion)", decl.where("block"))
            return NodeTarget(scope.prefix + name)
        if len(frames) >= MAX_BLOCK_DEPTH:
            self._err("GC106", f"blocks nest more than {MAX_BLOCK_DEPTH} deep at `{name}` (block `{bname}`)",
                      decl.where("block"), hint="a block may use other blocks, but not through this many levels")
            return NodeTarget(scope.prefix + name)
        interface = self._interface(bname, block)
        if interface is None:
            return NodeTarget(scope.prefix + name)
        params, in_names, out_map, body = interface
        # arguments: defaults from the block, values from the instance (evaluated by the caller)
        args = {}
        for key in decl:
            if key in NODE_KEYS or key == "block" or decl[key] is None:  # `key: null`: not given
                continue
            if key not in params:
                self._err("GC107", f"block `{bname}` has no argument `{key}` (node `{name}`)",
                          decl.key_where(key), hint=did_you_mean(str(key), params) or
                          (f"its arguments: {', '.join(params)}" if params else "it takes no arguments"))
                continue
            args[key] = values.arg(self.diags, decl[key], scope.values, decl.where(key), f"`{name}.{key}`")
        for key, default in params.items():
            if key not in args:
                if default is None:
                    self._err("GC107", f"`{name}` must give block `{bname}` its argument `{key}`",
                              decl.key_where("block"))
                    args[key] = 1
                else:
                    args[key] = values.arg(self.diags, default, {**self.constants, **self.dims},
                                           params.where(key), f"default of `{bname}.{key}`")
        # ports: block inputs bound positionally or by name
        raw_in = decl.get("in")
        if isinstance(raw_in, MDict):
            given = {k: (v, raw_in.where(k)) for k, v in raw_in.items()}
            for k in given:
                if k not in in_names:
                    self._err("GC107", f"block `{bname}` has no input `{k}`", raw_in.key_where(k),
                              hint=did_you_mean(str(k), in_names) or
                              (f"its inputs: {', '.join(in_names)}" if in_names else "it takes no inputs"))
        else:
            positional = raw_in if isinstance(raw_in, list) else ([] if raw_in is None else [raw_in])
            if len(positional) > len(in_names):
                self._err("GC107", f"block `{bname}` takes {len(in_names)} input(s), found {len(positional)}",
                          decl.where("in"))
            given = {n: (r, raw_in.where(i) if isinstance(raw_in, MList) else decl.where("in"))
                     for i, (n, r) in enumerate(zip(in_names, positional, strict=False))}
        for n, (ref, where) in list(given.items()):
            if n in in_names and not isinstance(ref, str):
                self._err("GC201", f"`{name}`: the block input `{n}` must be given a node name, found "
                          f"{kind(ref)}", where, hint="e.g. `in: x`, `in: [x, mask]` or `in: {x: embed}`")
                given[n] = None
        for n in in_names:
            if n not in given:
                self._err("GC107", f"`{name}` does not give block `{bname}` its input `{n}`",
                          decl.where("in") if "in" in decl else span)
        given = {n: g for n, g in given.items() if g is not None}
        if "tie" in decl:
            self._err("GC207", f"`{name}`: `tie:` belongs on an op node, not on a block instance",
                      decl.key_where("tie"), hint=f"put it on the node of block `{bname}` whose parameter "
                      "is shared")
        if repeat == 0:  # zero copies of a chain: its first output is its first input as given
            return self._empty_instance(name, bname, in_names, out_map, given, decl, scope)
        bound = {**self.constants, **self.dims, **args}
        prev: Scope | None = None
        full = scope.prefix + name
        at_least, chain = self._min_nodes(bname)
        if len(self.nodes) + repeat * at_least > MAX_NODES:  # refuse now, not after 100k nodes
            raise _TooBig(full, repeat, str(bname), repeat * at_least, decl.where("repeat") if "repeat" in decl
                          else span, chain)
        for k in range(repeat):
            prefix = f"{full}.{k}." if repeat > 1 else f"{full}."
            child = Scope(prefix, values=bound)
            for i, n in enumerate(in_names):
                if n not in given:  # reported; what reads it is skipped, not reported again
                    child.names[n] = NodeTarget(prefix + n)
                    continue
                if k > 0 and i == 0:  # repeat chains the first input through the copies
                    first_out = next(iter(out_map.values()))
                    child.names[n] = Alias(prev, first_out[0], first_out[1])
                else:
                    child.names[n] = Alias(scope, given[n][0], given[n][1])
            frame = BlockFrame(prefix.rstrip("."), name, str(bname), k if repeat > 1 else None,
                               repeat, span)
            self._body(body, child, frames + (frame,), f"{path}[{k}]")
            prev = child
        return Instance({o: Alias(prev, ref, s) for o, (ref, s) in out_map.items()},
                        next(iter(out_map)))

    def _empty_instance(self, name, bname, in_names, out_map, given, decl: MDict, scope: Scope):
        first_out = next(iter(out_map))
        if not in_names or in_names[0] not in given:
            if not in_names:  # (a missing input was reported above)
                self._err("GC104", f"`{name}`: with `repeat: 0` an instance stands for its first "
                          f"input, but block `{bname}` has no inputs", decl.where("repeat"))
            return NodeTarget(scope.prefix + name)  # what reads it is skipped, not reported again
        ref, where = given[in_names[0]]
        others = [o for o in out_map if o != first_out]
        note = (f"`{name}` repeats 0 times: only its first output `{first_out}` exists (it is the "
                f"input `{in_names[0]}` as given)") if others else ""
        return Instance({first_out: Alias(scope, ref, where)}, first_out, note)

    def _min_nodes(self, bname: str, seen: frozenset = frozenset()) -> tuple[int, list]:
        """A lower bound on the nodes one instance of block `bname` adds, from the repeats written
        as numbers (a repeat given by an expression may be 0: it counts none), and the nested
        `repeat:`s that multiply it most, as (node name, copies, block, span)."""
        memo = self._min_nodes_memo
        if bname in memo:
            return memo[bname]
        block = self.blocks.get(bname)
        body = block.get("nodes") if isinstance(block, MDict) else None
        if not isinstance(body, MDict) or bname in seen:  # reported elsewhere (or recursion)
            return 0, []
        total, best, best_chain = 0, 0, []
        for name, decl in body.items():
            if not isinstance(decl, MDict):
                continue
            raw = decl.get("repeat", 1)
            copies = raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= MAX_REPEAT else 0
            if isinstance(decl.get("block"), str):
                each, chain = self._min_nodes(decl["block"], seen | {bname})
                total += copies * each
                if copies * each > best:
                    where = decl.where("repeat") if "repeat" in decl else body.key_where(name)
                    best, best_chain = copies * each, [(name, copies, decl["block"], where), *chain]
            elif isinstance(decl.get("op"), str) and decl["op"] in OPS:  # (one named by a block argument: not counted)
                total += copies
        memo[bname] = (total, best_chain)
        return memo[bname]

    def _interface(self, bname: str, block: MDict):
        """A block's (args, input names, outputs, body), checked once per block; None when it
        cannot be instantiated (the problems are reported, once)."""
        if bname in self._interfaces:
            return self._interfaces[bname]
        ok = True
        for key in block:
            if key not in BLOCK_KEYS:
                self._err("GC005", f"unknown key `{key}` in block `{bname}`", block.key_where(key),
                          hint=did_you_mean(str(key), BLOCK_KEYS))
        params = block.get("args") or MDict()
        if not isinstance(params, MDict):
            self._err("GC005", f"`args` of block `{bname}` must be a mapping of name: default",
                      block.where("args"))
            params = MDict()
        for key in params:
            if not isinstance(key, str) or not NAME.match(key):
                self._err("GC005", f"argument name `{key}` of block `{bname}` is not an identifier",
                          params.key_where(key))
                ok = False
        raw_in = block.get("inputs")
        in_names: list[str] = []
        items = [raw_in] if isinstance(raw_in, str) else raw_in if isinstance(raw_in, list) else []
        if raw_in is not None and not isinstance(raw_in, str | list):
            self._err("GC005", f"`inputs` of block `{bname}` must be a list of names, e.g. [x, mask]; "
                      f"found {kind(raw_in)}", block.where("inputs"))
            ok = False
        for i, n in enumerate(items):
            where = raw_in.where(i) if isinstance(raw_in, MList) else block.where("inputs")
            if not isinstance(n, str) or not NAME.match(n):
                self._err("GC005", f"block `{bname}`: input name `{n}` must be an identifier"
                          if isinstance(n, str) else f"block `{bname}`: an input must be a name, found {kind(n)}",
                          where, hint="`inputs:` lists the names its nodes use for what an instance gives it, "
                                      "e.g. `inputs: [x, mask]`")
                ok = False
            elif n in in_names:
                self._err("GC202", f"block `{bname}` lists the input `{n}` twice", where)
                ok = False
            else:
                in_names.append(n)
        outs = block.get("outputs")
        out_map = refs.named(outs, block.where("outputs"))
        if not out_map:
            self._err("GC005", f"block `{bname}` declares no `outputs:`" if outs is None else
                      f"`outputs` of block `{bname}` must be a name, a list of names or a mapping "
                      f"name: node; found {kind(outs)}", block.where("outputs") if outs is not None
                      else block.span)
            ok = False
        for out, (ref, where) in out_map.items():
            if not isinstance(ref, str):
                self._err("GC201", f"block `{bname}`: output `{out}` must name a node, found {kind(ref)}",
                          where)
                ok = False
        body = block.get("nodes")
        if not isinstance(body, MDict):
            self._err("GC005", f"block `{bname}` needs a `nodes:` mapping", block.span)
            ok = False
        self._interfaces[bname] = (params, in_names, out_map, body) if ok else None
        return self._interfaces[bname]

    # -- train
    def _train(self):
        """The `train:` section with the `--set` leftovers (train settings such as
        `optimizer.lr`) merged in, checked against graphc.spec.train_schema (GC401)."""
        raw = self.doc.get("train")
        leftovers, self.overrides = self.overrides, {}
        if raw is not None and not isinstance(raw, MDict):
            self._err("GC401", "`train` must be a mapping", self.doc.where("train"))
            return
        train = _plain(raw) if raw is not None else {}
        applied = {}
        for key, value in leftovers.items():
            top = key.split(".")[0]
            if top in self.dims:  # a dimension no input uses: nothing to bind
                continue
            if top not in TRAIN_KEYS and top in self.constants:  # `hidden.x`: a constant has no fields
                self._err("GC401", f"--set {key}: `{top}` is a constant, with no setting `{key[len(top) + 1:]}`",
                          None, hint=f"set the constant itself: --set {top}=VALUE")
                continue
            if top not in TRAIN_KEYS:
                known = [*self.constants, *self.dims, *TRAIN_KEYS]
                self._err("GC401", f"--set {key}: this spec has no constant, dimension or train "
                          f"setting `{top}`", None, hint=did_you_mean(top, known)
                          or f"train settings: {', '.join(TRAIN_KEYS)}")
                continue
            error = set_dotted(train, key, value)
            if error:
                self._err("GC401", f"--set {key}: {error}", None)
            else:
                applied[key] = value
        if raw is not None or applied:
            self.diags.extend(check_settings(train, raw, applied))
        if raw is not None:  # without a `train:` section, --set train values are only checked
            self.train = train


class _TooLarge(Exception):
    def __init__(self, node: Node, span):
        super().__init__(node.name)
        self.node, self.span = node, span


class _TooBig(Exception):
    """An instance whose copies would add more than MAX_NODES nodes, known before expanding it."""

    def __init__(self, path: str, repeat: int, block: str, at_least: int, span, chain: list):
        super().__init__(path)
        self.path, self.repeat, self.block, self.at_least, self.span, self.chain = (
            path, repeat, block, at_least, span, chain)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _stem(file: str) -> str:
    return file.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@paused_gc()
def expand(doc: MDict, file: str, overrides: dict | None = None) -> tuple[Graph, list]:
    ex = Expander(doc, file, overrides)
    try:
        graph = ex.run()
    except _TooLarge as exc:  # no graph: the passes after expansion would take as long again
        notes = tuple((f"inside `{f.path}`, {f.repeat} copies of block `{f.block}`" if f.repeat > 1 else
                       f"inside `{f.path}`, an instance of block `{f.block}`", f.span)
                      for f in exc.node.scope if f.span)
        ex.diags.error("GC004", f"refusing to expand: the graph has more than {MAX_NODES:,} nodes "
                       f"(reached at `{exc.node.name}`)", exc.span, related=notes,
                       hint="check the `repeat:` counts: nested repeats multiply")
        raise DiagnosticError(ex.diags.items) from None
    except _TooBig as exc:
        notes = tuple((f"each with {copies} copies of block `{block}` (`{name}`)", where)
                      for name, copies, block, where in exc.chain if copies > 1)
        copies = "1 instance" if exc.repeat == 1 else f"{exc.repeat} copies"
        ex.diags.error("GC004", f"refusing to expand: {copies} of block `{exc.block}` at "
                       f"`{exc.path}` would make at least {exc.at_least:,} nodes, more than "
                       f"{MAX_NODES:,}", exc.span, related=notes,
                       hint="check the `repeat:` counts: nested repeats multiply")
        raise DiagnosticError(ex.diags.items) from None
    # int2 attributes: turn scalars into pairs now that values are known
    for node in graph.nodes.values():
        op = OPS.get(node.op)
        if op:
            node.attrs = {k: normalize(op.attrs[k], v) if k in op.attrs else v for k, v in node.attrs.items()}
    # the copies of a block (instances, `repeat`) repeat the problems written once in its body
    unique: dict = {}
    for d in ex.diags.items:
        unique.setdefault((d.severity, d.code, d.span, d.message), d)
    return graph, list(unique.values())
