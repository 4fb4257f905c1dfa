"""References: what a name written in `in:`, `outputs:` or `losses:` stands for.

Owns scopes (the local names of the top level and of each block instance), the targets those
names map to (an op node, an alias for a reference written in another scope, a block
instance's named outputs), binding a node's `in:` to its op's ports, and resolving every
reference to a full node name and output port.

Resolution runs in two phases, which is why this is its own module: while expanding, each
scope only records what its local names mean and each node its unresolved bindings; once every
scope is known, `bind_pending` resolves them. That lets a node refer to one declared later,
and a block's inputs refer to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphc.diagnostics import Diagnostics, Span, did_you_mean
from graphc.ir import Input, Node
from graphc.ops import OpDef
from graphc.spec.literals import Literal, LiteralError, literal
from graphc.spec.loader import MDict, MList
from graphc.spec.values import kind


# ---- scopes and targets -------------------------------------------------------------------
@dataclass
class NodeTarget:  # an op node's output(s)
    full: str


@dataclass
class Alias:  # a name that stands for a reference written in another scope
    scope: Scope
    ref: str
    span: Span | None


@dataclass
class Instance:  # a block instance: its named outputs
    outputs: dict[str, Alias]
    default: str
    note: str = ""  # why an output may be missing (an instance repeated 0 times)


@dataclass
class Scope:
    prefix: str
    names: dict[str, Any] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)  # constants, dims, block args


ABS = object()  # marks a binding whose reference is already a full node name
_FLOAT32_MAX = 3.4028234663852886e38

# (port, reference, its span, the scope it was written in — or ABS)
Binding = tuple[str, Any, Span | None, Any]  # the reference is a str, or a Literal while expanding


class ResolveError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def resolve(scope: Scope, ref: str, depth: int = 0) -> tuple[str, str | None]:
    """A reference `a` or `a.port` → (full node name, output port or None for the default)."""
    if depth > 200:
        raise ResolveError(f"reference `{ref}` does not resolve (aliases loop)")
    if not isinstance(ref, str):
        raise ResolveError(f"a reference must be a node name, found {kind(ref)}")
    head, _, rest = ref.partition(".")
    if not head or ref.endswith("."):
        raise ResolveError(f"`{ref}` is not a reference", "write `node` or `node.output`")
    target = scope.names.get(head)
    if target is None:
        where = f" in block instance `{scope.prefix.rstrip('.')}`" if scope.prefix else ""
        raise ResolveError(f"`{head}` is not defined{where}",
                           did_you_mean(head, scope.names) or "names refer to inputs or other nodes")
    if isinstance(target, NodeTarget):
        return target.full, rest or None
    if isinstance(target, Alias):
        if rest:
            raise ResolveError(f"`{head}` is a single tensor (a block input); it has no `.{rest}`")
        return resolve(target.scope, target.ref, depth + 1)
    out = rest or target.default
    if out not in target.outputs:
        raise ResolveError(f"block instance `{head}` has no output `{out}`", target.note or
                           did_you_mean(out, target.outputs) or f"outputs: {', '.join(target.outputs)}")
    alias = target.outputs[out]
    return resolve(alias.scope, alias.ref, depth + 1)


def named(raw, span: Span | None = None) -> dict[str, tuple[Any, Span | None]]:
    """`a`, `[a, b]` or `{name: ref}` → {name: (ref, span)}; {} for anything else. `span` is
    where `raw` is written (the span of a single name)."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {raw: (raw, span)}
    if isinstance(raw, MList):
        return {str(r): (r, raw.where(i)) for i, r in enumerate(raw)}
    if isinstance(raw, MDict):
        return {str(k): (v, raw.where(k)) for k, v in raw.items()}
    return {}


# ---- phase 1: bind `in:` to ports ----------------------------------------------------------
def bind_ports(diags: Diagnostics, op: OpDef, name, decl: MDict, scope: Scope) -> list[Binding]:
    """Bind `in:` to the op's ports → [(port, ref, span, scope)]; a number written as an input
    becomes a `Literal` ref (graphc.spec.literals), which expansion turns into a constant node."""
    raw = decl.get("in")
    span = decl.where("in")
    ports = op.inputs
    out = []
    if not ports:  # param, constant
        if raw is not None:
            diags.error("GC108", f"`{name}` ({op.name}) takes no inputs", span,
                        hint="remove `in:`; its value comes from its attributes")
        return out
    if raw is None:
        diags.error("GC108", f"node `{name}` has no `in:`", decl.key_where("op"),
                    hint=f"`{op.name}` takes {_port_list(op)}")
        return out
    if isinstance(raw, MDict):
        for port, ref in raw.items():
            p = op.port(port)
            if p is None:
                diags.error("GC108", f"`{op.name}` has no input port `{port}`", raw.key_where(port),
                            hint=did_you_mean(str(port), [q.name for q in ports]) or _port_list(op))
                continue
            refs = ref if isinstance(ref, list) and p.variadic else [ref]
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
                diags.error("GC108", f"`{name}` ({op.name}) takes at most {len(ports)} input(s), "
                            f"found {len(refs)}", span, hint=f"`{op.name}` takes {_port_list(op)}")
            out = [(p.name, r, s, scope) for p, r, s in zip(ports, refs, spans, strict=False)]
    bound = {p for p, *_ in out}
    for p in ports:
        if not p.optional and p.name not in bound:
            diags.error("GC108", f"`{name}` ({op.name}) is missing its input `{p.name}`", span,
                        hint=f"`{op.name}` takes {_port_list(op)}")
    out = [_literal_or_ref(diags, op, name, b) for b in out]
    return [b for b in out if isinstance(b[1], str | Literal)]


def _literal_or_ref(diags: Diagnostics, op: OpDef, name, binding: Binding) -> Binding:
    port, r, s, scope = binding
    try:
        lit = literal(r, scope.names, scope.values)
    except LiteralError as exc:
        diags.error("GC201", f"`{name}`: input `{port}`: {exc}", s)
        return (port, None, s, scope)
    if lit is None:
        if not isinstance(r, str):
            diags.error("GC201", f"`{name}`: an input reference must be a name (or a number), found {kind(r)}", s)
        return binding
    bad = next((v for v in lit.values if not abs(v) <= _FLOAT32_MAX), None)  # inf, nan, 1e39
    if bad is not None:
        diags.error("GC201", f"`{name}`: input `{port}`: {bad:g} is not a finite float32 number", s,
                    hint="a number in `in:` becomes a float32 constant (at most ±3.4e38)")
        return (port, None, s, scope)
    p = op.port(port)
    if p is not None and p.dtype == "int":
        diags.error("GC201", f"`{name}`: input `{port}` of `{op.name}` takes integer ids; the number "
                    f"{lit.text} would be a float constant", s, hint="feed ids from an int64 input")
        return (port, None, s, scope)
    return (port, lit, s, scope)


def _port_list(op: OpDef) -> str:
    return ", ".join(f"{p.name}{'?' if p.optional else ''}{'…' if p.variadic else ''}" for p in op.inputs)


# ---- phase 2: resolve ----------------------------------------------------------------------
def named_refs(diags: Diagnostics, doc: MDict, key: str, root: Scope, nodes: dict[str, Node]):
    """`outputs:` or `losses:` → ({name: (node, port)}, {name: span})."""
    raw = doc.get(key)
    entries = named(raw, doc.where(key))
    what = {"outputs": "output", "losses": "loss"}.get(key, key)
    if raw is not None and not entries:
        diags.error("GC005", f"`{key}` must be a name, a list of names, or a mapping name: ref",
                    doc.where(key))
    result, spans = {}, {}
    for out_name, (ref, span) in entries.items():
        if not isinstance(ref, str):
            diags.error("GC201", f"`{key}` entries must be node names", span)
            continue
        try:
            node, port = resolve(root, ref)
        except ResolveError as exc:
            diags.error("GC201", f"{what} `{out_name}`: {exc}", span, hint=exc.hint)
            continue
        target = nodes.get(node)
        if target is None:
            continue
        if port is not None and port not in target.outputs:
            diags.error("GC201", f"{what} `{out_name}`: `{node}` ({target.op}) has no output "
                        f"`{port}`", span, hint=f"its outputs: {', '.join(target.outputs)}")
            continue
        if not target.outputs:
            diags.error("GC201", f"{what} `{out_name}`: `{node}` ({target.op}) has no outputs", span)
            continue
        port = port or target.outputs[0]
        result[out_name], spans[out_name] = (node, port), span
    return result, spans


def bind_pending(diags: Diagnostics, pending: list[tuple[Node, list[Binding]]],
                 nodes: dict[str, Node], broken: set[str]) -> None:
    """Resolve every recorded binding into the node's `inputs`; nodes whose inputs do not
    resolve are added to `broken`."""
    for node, bindings in pending:
        for port, ref, span, scope in bindings:
            try:
                src, src_port = (ref, None) if scope is ABS else resolve(scope, ref)
            except ResolveError as exc:
                diags.error("GC201", f"node `{node.name}`: {exc}", span,
                            hint=exc.hint, nodes=(node.name,))
                broken.add(node.name)
                continue
            producer = nodes.get(src)
            if producer is None:  # its own definition failed and was reported
                broken.add(node.name)
                continue
            if src_port is None:
                src_port = producer.outputs[0] if producer.outputs else "out"
            elif src_port not in producer.outputs:
                diags.error("GC201", f"node `{node.name}`: `{producer.name}` ({producer.op}) has no "
                            f"output `{src_port}`", span, hint=did_you_mean(src_port, producer.outputs)
                            or f"its outputs: {', '.join(producer.outputs)}")
                broken.add(node.name)
                continue
            node.inputs.append(Input(port, src, src_port, span, ref))
