"""Generated Numba kernels for pointwise groups: a `Group` (data) becomes one Python module.

A group is a small DAG of elementwise ops (each with a `Pointwise` rule on its record) over
the group's inputs, evaluated at every element of one loop shape. Broadcasting is decided
before the source is printed: the loop shape is collapsed to as few axes as the inputs'
broadcast patterns allow (`collapse`: [B, T, D] with a [B, T, 1] statistic and a [D] gain
is a 2-axis loop over (B·T, D)), and each input is indexed with 0 on the axes it is
broadcast along. The module holds

  `_fwd`: the loop nest; each member's value is a scalar local, written out only for the
          group's outputs (intermediates nothing else reads never touch memory);
  `_bwd`: the reverse walk at scalar level, from the same rules: the cotangents of the
          outputs flow back through the members (`g`, `y` and the ports substituted into
          each VJP); values it needs are recomputed from the inputs, or read back when they
          are outputs anyway, so the forward saves nothing; the gradient of a broadcast input
          is summed over its broadcast axes in float64 (unbroadcasting inside the loop);
  `fwd`, `bwd`: what the driver calls, with `n` (the collapsed loop sizes) and whole arrays.

The source names nothing from a spec (inputs are `in0…`, outputs `out0…`, members `v0…`), so
two specs with the same group share one module, cached on disk by the hash of its source
(graphc.compiler.cache), and so its Numba cache (`cache=True`). `graphc compile --emit`
writes the modules next to the driver, headed by which spec nodes and shapes they serve.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np

from graphc.ops import OPS
from graphc.ops.scalar import (
    EXPENSIVE,
    Bin,
    Cmp,
    Expr,
    Fn,
    Name,
    Neg,
    Num,
    Where,
    add,
    binary,
    calls,
    names,
    nodes,
    substitute,
)

# ----------------------------------------------------------------------------- the group, as data


@dataclass(frozen=True)
class In:
    """The group's input `index`."""

    index: int


@dataclass(frozen=True)
class V:
    """The value of member `index`."""

    index: int


@dataclass(frozen=True)
class Lit:
    """A number baked into the source (a scalar literal, an attribute)."""

    value: float


@dataclass(frozen=True)
class Param:
    """The kernel's scalar argument `index` (an attribute of a single-op library kernel)."""

    index: int


Arg = In | V | Lit | Param


@dataclass(frozen=True)
class Member:
    op: str
    args: tuple[Arg, ...]  # one per port of the op, in port order
    attrs: tuple[tuple[str, Arg], ...] = ()  # attribute → a Lit or a Param
    reduce: str = ""  # "sum" | "mean": along the innermost loop axis (graphc.compiler.kernelgen_rows)


@dataclass(frozen=True)
class Group:
    """A fused pointwise group. Members are in topological order; `inputs` gives each input's
    broadcast pattern over the collapsed loop axes (True: it spans the axis, False: size 1)."""

    rank: int  # collapsed loop axes
    inputs: tuple[tuple[bool, ...], ...]
    members: tuple[Member, ...]
    outputs: tuple[int, ...]  # members written out (out0, out1, …)
    grads: tuple[bool, ...]  # per input: the backward writes its gradient
    cotangents: tuple[bool, ...]  # per output: the backward reads its cotangent
    params: int = 0
    jacobian: bool = False  # the forward saves ∂out/∂in for the backward (`wants_jacobian`)

    @property
    def rows(self) -> bool:
        """Whether a member reduces along the innermost axis (a row group)."""
        return any(m.reduce for m in self.members)

    def bwd_reads(self) -> tuple[list[int], list[int]]:
        """(inputs, outputs) whose values the backward reads: nothing else needs to stay live
        (with `jacobian`, it reads the saved entries and the cotangents only)."""
        if self.jacobian:
            return [], []
        if self.rows:
            from graphc.compiler import kernelgen_rows

            return kernelgen_rows.backward_reads(self), []
        r = _recompute(self)
        return r.inputs, r.outputs


def collapse(loop: tuple, shapes: list[tuple]) -> tuple[list[tuple[int, int]], list[tuple[bool, ...]]]:
    """The loop axes merged where every input's broadcast pattern allows, as (start, stop)
    ranges over `loop`'s axes, and each input's pattern over the merged axes. Dims may be
    sympy expressions (the fuse pass) or ints (a library kernel at run time); an axis of size
    1 is dropped (every input is 1 there), and a loop of one element is one axis of size 1."""
    r = len(loop)
    padded = [(1,) * (r - len(s)) + tuple(s) for s in shapes]
    ranges: list[list[int]] = []
    patterns: list[tuple[bool, ...]] = []
    for a in range(r):
        if _is_one(loop[a]):
            if ranges:
                ranges[-1][1] = a + 1
            continue
        flags = tuple(not _is_one(s[a]) for s in padded)
        if ranges and patterns[-1] == flags:
            ranges[-1][1] = a + 1
        else:
            if ranges:
                ranges[-1][1] = a
            ranges.append([a, a + 1])
            patterns.append(flags)
    if not ranges:
        return [(0, r)], [(True,)] * len(shapes)
    ranges[0][0] = 0
    ranges[-1][1] = r
    return [tuple(x) for x in ranges], [tuple(p[i] for p in patterns) for i in range(len(shapes))]


def _is_one(d) -> bool:
    return d == 1  # an int, or a sympy dim (Integer(1) == 1; a symbol never is)


def sizes(loop: tuple, ranges: list[tuple[int, int]]) -> tuple:
    """The collapsed loop sizes: the product of `loop`'s dims over each range."""
    out = []
    for a, b in ranges:
        n = 1
        for d in loop[a:b]:
            n = n * d
        out.append(n)
    return tuple(out)


# ----------------------------------------------------------------------------- the reverse walk


def _value(arg: Arg) -> Expr:
    match arg:
        case In(k):
            return Name(f"x{k}")
        case V(j):
            return Name(f"v{j}")
        case Lit(v):
            return Num(float(v))
        case Param(k):
            return Name(f"a{k}")
    raise TypeError(arg)


def _env(m: Member) -> dict[str, Expr]:
    ports = [p.name for p in OPS[m.op].inputs]
    return {p: _value(a) for p, a in zip(ports, m.args, strict=True)} | {n: _value(a) for n, a in m.attrs}


def _forward_expr(m: Member) -> Expr:
    return substitute(OPS[m.op].pointwise.forward, _env(m))


@dataclass
class _Walk:
    lines: list[tuple[str, Expr, str]]  # cotangents of members with more than one term
    gin: dict[int, Expr]  # input → its gradient


def _walk(g: Group, seeds: dict[int, Expr], prefix: str = "") -> _Walk:
    """The reverse walk at scalar level: `seeds` (output position → its cotangent) flow back
    through the members' VJP rules to the inputs that want a gradient."""
    members = g.members
    reaches = [False] * len(members)  # the member's cotangent reaches an input wanting a gradient
    for j, m in enumerate(members):
        reaches[j] = any((isinstance(a, In) and g.grads[a.index]) or (isinstance(a, V) and reaches[a.index])
                         for a in m.args)
    cot: dict[int, Expr] = {}
    for pos, e in seeds.items():
        cot[g.outputs[pos]] = add(cot.get(g.outputs[pos]), e)
    lines: list[tuple[str, Expr, str]] = []
    gin: dict[int, Expr] = {}
    for j in reversed(range(len(members))):
        if j not in cot or not reaches[j]:
            continue
        m = members[j]
        if isinstance(cot[j], Name | Num):  # a single cotangent is used as it is
            g_j = cot[j]
        else:
            g_j = Name(f"{prefix}gv{j}")
            lines.append((g_j.id, cot[j], f"cotangent of v{j} ({m.op})"))
        env = _env(m) | {"y": Name(f"v{j}"), "g": g_j}
        rule = OPS[m.op].pointwise
        for port, a in zip([p.name for p in OPS[m.op].inputs], m.args, strict=True):
            vjp = rule.vjp(port)
            if vjp is None:
                continue
            term = substitute(vjp, env)
            if isinstance(a, V) and reaches[a.index]:
                cot[a.index] = add(cot.get(a.index), term)
            elif isinstance(a, In) and g.grads[a.index]:
                gin[a.index] = add(gin.get(a.index), term)
    return _Walk(lines, gin)


def _cotangent_seeds(g: Group) -> dict[int, Expr]:
    return {pos: Name(f"g{pos}") for pos in range(len(g.outputs)) if g.cotangents[pos]}


@dataclass
class _Recompute:
    """How the backward gets the values its VJPs use, without anything saved: read back (the
    group's outputs, its inputs) or recomputed from them."""

    inputs: list[int]  # inputs read
    outputs: list[int]  # outputs read back (positions in Group.outputs)
    computed: list[int]  # members recomputed, in order
    walk: _Walk


@cache
def _recompute(g: Group) -> _Recompute:
    w = _walk(g, _cotangent_seeds(g))
    needed: set[str] = set()
    for e in [*(e for _, e, _ in w.lines), *w.gin.values()]:
        needed |= names(e)
    out_pos = {j: pos for pos, j in enumerate(g.outputs)}
    how: dict[int, str] = {}
    stack = [int(n[1:]) for n in needed if n.startswith("v")]
    while stack:
        j = stack.pop()
        if j in how:
            continue
        how[j] = "read" if j in out_pos else "compute"
        if how[j] == "compute":
            deps = names(_forward_expr(g.members[j]))
            needed |= deps
            stack += [int(n[1:]) for n in deps if n.startswith("v")]
    return _Recompute(sorted(int(n[1:]) for n in needed if n.startswith("x")),
                      sorted(out_pos[j] for j, h in how.items() if h == "read"),
                      sorted(j for j, h in how.items() if h == "compute"), w)


@cache
def jacobians(g: Group) -> list[tuple[int, int, Expr]]:
    """(output position, input, ∂out/∂in) for each output with a cotangent and each input
    wanting a gradient: the same walk with the cotangent 1 (VJPs are linear in `g`)."""
    out = []
    for pos in range(len(g.outputs)):
        if g.cotangents[pos]:
            w = _walk(g, {pos: Num(1.0)}, prefix=f"d{pos}_")
            if w.lines:  # a member with several consumers: inline its cotangent into the entries
                env: dict[str, Expr] = {}
                for target, e, _ in w.lines:
                    env[target] = substitute(e, env)
                w.gin = {k: substitute(e, env) for k, e in w.gin.items()}
            out += [(pos, k, e) for k, e in sorted(w.gin.items())]
    return out


def saved_jacobians(g: Group) -> list[tuple[int, int]]:
    """The Jacobian entries a group saves (when `g.jacobian`): the ones that are not constants."""
    return [(pos, k) for pos, k, e in jacobians(g) if not isinstance(e, Num)] if g.jacobian else []


def wants_jacobian(g: Group) -> bool:
    """Whether the forward should save ∂out/∂in rather than have the backward recompute: when
    recomputing would evaluate an expensive function (exp, tanh, the normal CDF, …) and the
    saved entries take no more tensors than the inputs the backward would otherwise keep
    (a GELU saves one, read instead of its input: same memory, no second CDF)."""
    if g.rows:
        return False
    r = _recompute(g)
    exprs = [*(e for _, e, _ in r.walk.lines), *r.walk.gin.values(),
             *(_forward_expr(g.members[j]) for j in r.computed)]
    if not set().union(*(calls(e) for e in exprs)) & EXPENSIVE:
        return False
    entries = [1 for _, _, e in jacobians(g) if not isinstance(e, Num)]
    return 0 < len(entries) <= max(1, len(r.inputs))


def _index(pattern: tuple[bool, ...]) -> str:
    return ", ".join(f"i{a}" if full else "0" for a, full in enumerate(pattern))


# ----------------------------------------------------------------------------- printing

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


class _ExprPrinter:
    """Expressions as Python source for the float32 (`bits` 32) or float64 copy of a loop: a
    function `f` is `f32`/`f64` of graphc.kernels.pointwise; every number becomes a named
    constant of the loop's dtype, defined once at the top of the kernel (a float literal in
    float32 code would promote the arithmetic to float64)."""

    def __init__(self, bits: int):
        self.bits = bits
        self.consts: dict[float, str] = {}
        self.shared: dict[Expr, str] = {}  # an expensive call made once per element: its local
        self.defined: set[Expr] = set()

    def share(self, exprs: list[Expr]) -> None:
        """The expensive calls (`EXPENSIVE`) `exprs` make more than once become locals c0, c1, …,
        each defined by `defs` before its first use. Numba inlines every call site's SIMD code:
        GELU's forward and Jacobian called Φ three times, ~0.3 s of compile per copy (LLVM
        merged the copies, so the loop ran alike)."""
        seen = Counter(n for e in exprs for n in nodes(e) if isinstance(n, Fn) and n.name in EXPENSIVE)
        for fn, count in seen.items():
            if count > 1:
                self.shared[fn] = f"c{len(self.shared)}"

    def defs(self, e: Expr) -> list[str]:
        """Lines defining the shared calls `e` makes that no earlier line defined."""
        lines = []
        for n in nodes(e):
            if n in self.shared and n not in self.defined:
                lines.append(f"{self.shared[n]} = {self.print(n)}")  # (before it counts as defined)
                self.defined.add(n)
        return lines

    def function(self, name: str) -> str:
        return {"max": "fmax", "min": "fmin", "abs": "abs"}.get(name, f"{name}{self.bits}")

    def const(self, v: float) -> str:
        if v not in self.consts:
            text = repr(float(v)).removesuffix(".0").replace("-", "m").replace(".", "p").replace("+", "")
            self.consts[v] = f"_{text}"
        return self.consts[v]

    @staticmethod
    def literal(v: float) -> str:
        if math.isinf(v):
            return "-np.inf" if v < 0 else "np.inf"
        return "np.nan" if math.isnan(v) else repr(float(v))

    def print(self, e: Expr, prec: int = 0) -> str:
        match e:
            case Num(v):
                return self.const(v)
            case Name(n):
                return n
            case Neg(a):
                text = f"-{self.print(a, 3)}"
                return f"({text})" if prec > 1 else text
            case Bin(op, a, b):
                p = _PREC[op]
                text = f"{self.print(a, p)} {op} {self.print(b, p + 1)}"
                return f"({text})" if p < prec else text
            case Cmp(op, a, b):
                text = f"{self.print(a, 1)} {op} {self.print(b, 1)}"
                return f"({text})" if prec > 0 else text
            case Where(c, a, b):
                text = f"{self.print(a, 1)} if {self.print(c, 0)} else {self.print(b, 1)}"
                return f"({text})" if prec > 0 else text
            case Fn(name, args):
                if e in self.defined:
                    return self.shared[e]
                return f"{self.function(name)}({', '.join(self.print(a) for a in args)})"
        raise TypeError(e)

    def constants(self, params: list[str]) -> list[str]:
        cast = "np.float32" if self.bits == 32 else "np.float64"
        lines = [f"    {name} = {cast}({self.literal(v)})"
                 for v, name in sorted(self.consts.items(), key=lambda kv: kv[1])]
        return lines + [f"    {a} = {cast}({a})" for a in params]


_JIT = '@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})'
# A loop whose iterations write disjoint elements runs blocks of its outer axis on graphc's
# thread pool (graphc.kernels.parallel.run_blocks); a backward that sums a broadcast input's
# gradient stays serial. Below this many elements a block costs more to hand to a thread
# than it saves (a pointwise element costs ~0.3-1 ns, waking a thread a few µs).
_MIN_BLOCK_ELEMS = 1 << 14


def _blocked(name: str, args: list[str], shape_of: str, prelude: list[str], loops: list[str],
             body: list[str]) -> list[str]:
    """`name(args)`: `loops` over `body`, the outer loop split into blocks of rows that run on
    the thread pool (`name_block` is one block); `prelude` (constants) opens the block."""
    K = len(loops)
    unpack = ", ".join(f"n{a}" for a in range(K)) + ("," if K == 1 else "")
    inner = " * ".join(f"n{a}" for a in range(1, K)) or "1"
    indent = "    " * (K + 1)
    return [
        _JIT, f"def {name}_block(blk, n_blocks, {', '.join(args)}):", f"    {unpack} = {shape_of}.shape",
        "    lo, hi = block_bounds(blk, n_blocks, n0)", *prelude,
        # unsigned: with signed bounds Numba keeps its negative-index check in the loop, and
        # LLVM does not vectorise it (measured 3-10x slower)
        "    for i0 in range(np.uint64(lo), np.uint64(hi)):", *loops[1:], *[indent + line for line in body],
        "", "",
        _JIT, f"def {name}({', '.join(args)}):", f"    {unpack} = {shape_of}.shape",
        f"    n_blocks = row_blocks(n0, max(1, {_MIN_BLOCK_ELEMS} // max(1, {inner})))",
        f"    run_blocks({name}_block, n_blocks, (n_blocks, {', '.join(args)}))",
    ]


@dataclass
class _Signature:
    fwd: list[str]  # the forward core's arguments
    bwd: list[str]  # the backward core's arguments (empty: no backward)
    outs: list[str]  # what the forward returns
    gins: list[str]  # what the backward returns


def _signature(g: Group) -> _Signature:
    ins = [f"in{k}" for k in range(len(g.inputs))]
    params = [f"a{k}" for k in range(g.params)]
    outs = [f"out{p}" for p in range(len(g.outputs))]
    jacs = [f"jac{pos}_{k}" for pos, k in saved_jacobians(g)]
    gouts = [f"gout{pos}" for pos in range(len(g.outputs)) if g.cotangents[pos]]
    gins = [f"gin{k}" for k in range(len(g.inputs)) if g.grads[k]]
    if g.jacobian:
        reads = jacs
    else:
        reads_in, reads_out = g.bwd_reads()
        reads = [f"in{k}" for k in reads_in] + [f"out{pos}" for pos in reads_out]
    bwd = gouts + reads + params + gins if gins and gouts else []
    return _Signature(ins + params + outs + jacs, bwd, outs + jacs, gins)


def _cores(g: Group, bits: int) -> list[str]:
    """The forward and backward loops of `g` for one dtype."""
    if g.rows:
        from graphc.compiler import kernelgen_rows

        sig = _signature(g)
        lines = kernelgen_rows.forward(g, bits, _ExprPrinter(bits), sig.fwd)
        if sig.bwd:
            lines += ["", ""] + kernelgen_rows.backward(g, bits, _ExprPrinter(bits), sig.bwd)
        return lines
    K = g.rank
    full = _index((True,) * K)
    loops = [f"{'    ' * (a + 1)}for i{a} in range(n{a}):" for a in range(K)]
    indent = "    " * (K + 1)
    unpack = ", ".join(f"n{a}" for a in range(K)) + ("," if K == 1 else "")
    params = [f"a{k}" for k in range(g.params)]
    sig = _signature(g)
    saved = saved_jacobians(g)

    # forward: every member's value a local; outputs (and Jacobian entries) written out
    p = _ExprPrinter(bits)
    body = [f"x{k} = in{k}[{_index(g.inputs[k])}]" for k in range(len(g.inputs))]
    out_pos = {j: pos for pos, j in enumerate(g.outputs)}
    values = [_forward_expr(m) for m in g.members]
    entries = {(pos, k): e for pos, k, e in jacobians(g)} if saved else {}
    p.share(values + [entries[pk] for pk in saved])
    for j, m in enumerate(g.members):
        body += p.defs(values[j])
        body.append(f"v{j} = {p.print(values[j])}  # {m.op}")
        if j in out_pos:
            body.append(f"out{out_pos[j]}[{full}] = v{j}")
    for pos, k in saved:
        body += p.defs(entries[pos, k])
        body.append(f"jac{pos}_{k}[{full}] = {p.print(entries[pos, k])}  # ∂out{pos}/∂in{k}")
    lines = _blocked(f"_fwd{bits}", sig.fwd, "out0", p.constants(params), loops, body)
    if not sig.bwd:
        return lines

    # backward: the reverse walk over recomputed values, or over the saved Jacobian entries
    p = _ExprPrinter(bits)
    body = [f"g{pos} = gout{pos}[{full}]" for pos in range(len(g.outputs)) if g.cotangents[pos]]
    if g.jacobian:
        body += [f"j{pos}_{k} = jac{pos}_{k}[{full}]" for pos, k in saved]
        gin: dict[int, Expr] = {}
        for pos, k, e in jacobians(g):
            entry = Name(f"j{pos}_{k}") if (pos, k) in saved else e
            gin[k] = add(gin.get(k), binary("*", Name(f"g{pos}"), entry))
    else:
        r = _recompute(g)
        body += [f"x{k} = in{k}[{_index(g.inputs[k])}]" for k in r.inputs]
        body += [f"v{g.outputs[pos]} = out{pos}[{full}]" for pos in r.outputs]
        computed = [(f"v{j}", _forward_expr(g.members[j]), g.members[j].op) for j in r.computed]
        computed += r.walk.lines
        gin = r.walk.gin
        p.share([e for _, e, _ in computed] + list(gin.values()))
        for target, e, note in computed:
            body += p.defs(e)
            body.append(f"{target} = {p.print(e)}  # {note}")
    # A broadcast input's gradient is summed in float64: along the innermost axis through a row
    # of contributions (`rowsum`: independent partial sums, no serial chain), else in place.
    accs = [k for k in sorted(gin) if not all(g.inputs[k])]
    rows = [k for k in accs if not g.inputs[k][-1]]
    after = []
    for k in sorted(gin):
        body += p.defs(gin[k])
        if k in rows:
            body.append(f"row{k}[i{K - 1}] = {p.print(gin[k])}")
            after.append(f"acc{k}[{_index(g.inputs[k])}] += rowsum(row{k})")
        else:
            target, op = (f"acc{k}", "+=") if k in accs else (f"gin{k}", "=")
            body.append(f"{target}[{_index(g.inputs[k])}] {op} {p.print(gin[k])}")
    first = sig.bwd[0]
    # an input with no path from a cotangent gets a zero gradient
    zeros = [f"    gin{k}[...] = 0" for k in range(len(g.inputs)) if g.grads[k] and k not in gin]
    if not accs:
        return lines + ["", "", *_blocked(f"_bwd{bits}", sig.bwd, first, p.constants(params), loops, body), *zeros]
    lines += ["", "", _JIT, f"def _bwd{bits}({', '.join(sig.bwd)}):", f"    {unpack} = {first}.shape"]
    lines += [f"    acc{k} = np.zeros(gin{k}.shape)  # a broadcast input: its gradient summed in float64"
              for k in accs]
    lines += [f"    row{k} = np.empty(n{K - 1})  # its contributions along the innermost axis" for k in rows]
    lines += p.constants(params) + loops + [indent + line for line in body]
    lines += ["    " * K + line for line in after]
    for k in accs:
        lines += [f"    flat{k}, sums{k} = gin{k}.reshape(-1), acc{k}.reshape(-1)",
                  f"    for i in range(sums{k}.size):", f"        flat{k}[i] = sums{k}[i]"]
    return lines + zeros


def source(g: Group) -> str:
    """The module of group `g`: `fwd` and `bwd` for the driver over the njit loops."""
    K = g.rank
    sig = _signature(g)

    def view(name: str) -> str:  # whole arrays viewed as the collapsed loop
        pattern = g.inputs[int(name[2:] if name.startswith("in") else name[3:])] if name.startswith(
            ("in", "gin")) else (True,) * K
        if all(pattern):
            return f"{name}.reshape(n)"
        return f"{name}.reshape({', '.join(f'n[{a}]' if f else '1' for a, f in enumerate(pattern))})"

    def call(core: str, args: list[str], like: str) -> list[str]:
        viewed = ", ".join(a if a.startswith("a") and a[1:].isdigit() else view(a) for a in args)
        return [f"    core = {core}32 if {like}.dtype == np.float32 else {core}64",
                f"    core({viewed})"]

    wrappers = [f"def fwd(n, {', '.join(sig.fwd)}):",
                '    """The forward into `out*` (and `jac*`); `n`: the collapsed loop sizes."""',
                *call("_fwd", sig.fwd, "out0"), f"    return {', '.join(sig.outs)},"]
    if sig.bwd:
        wrappers += ["", "", f"def bwd(n, {', '.join(sig.bwd)}):",
                     '    """The gradients of the inputs into `gin*`, from the cotangents `gout*`."""',
                     *call("_bwd", sig.bwd, sig.bwd[0]), f"    return {', '.join(sig.gins)},"]
    functions = set().union(*(calls(e) for e in _all_exprs(g)))
    imports = sorted({_ExprPrinter(b).function(f) for f in functions for b in (32, 64)} - {"abs"})
    if (any(not pattern[-1] for k, pattern in enumerate(g.inputs) if g.grads[k]) and sig.bwd) or g.rows:
        imports = sorted({*imports, "rowsum"})
    head = [
        '"""A fused pointwise group, generated by graphc from the ops\' pointwise rules.',
        "",
        "Do not edit: graphc.compiler.kernelgen writes it; its file name is the hash of this source",
        "and the toolchain. Members: " + ", ".join(f"v{j} {m.op}" for j, m in enumerate(g.members)) + "."
        + (" Row by row, in phases (graphc.compiler.kernelgen_rows)." if g.rows else ""),
        f"A loop over {K} ax{'is' if K == 1 else 'es'}; each input is indexed with 0 where it broadcasts: "
        + ", ".join(f"in{k}[{_index(g.inputs[k])}]" for k in range(len(g.inputs))) + ".",
        "Each loop comes as a float32 and a float64 copy (graphc.kernels.pointwise says why).",
        '"""',
        "",
        "import numba",
        "import numpy as np",
        "",
        "from graphc.kernels.parallel import block_bounds, row_blocks, run_blocks",
        *([f"from graphc.kernels.pointwise import {', '.join(imports)}", ""] if imports else []),
        "",
    ]
    return "\n".join([*head, *_cores(g, 32), "", "", *_cores(g, 64), "", "", *wrappers, ""])


def _all_exprs(g: Group) -> list[Expr]:
    out = []
    for m in g.members:
        rule = OPS[m.op].pointwise
        if rule is not None:  # (a reduction has none)
            out += [rule.forward, *(rule.vjp(p) for p, _ in rule.grads)]
    return out


# ----------------------------------------------------------------------------- loading


_MODULES: dict[Group, object] = {}


def load(g: Group):
    """The module of group `g`: from the on-disk cache (written on first use), imported once
    per process."""
    mod = _MODULES.get(g)
    if mod is None:
        from graphc.compiler.cache import store_kernel

        text = source(g)
        path, key = store_kernel(text)
        name = f"graphc_fused_{key}"
        mod = sys.modules.get(name)
        if mod is None:
            if path is None:  # an unwritable cache: run from memory (no Numba disk cache)
                import types

                mod = types.ModuleType(name)
                exec(compile(text, f"<{name}>", "exec"), mod.__dict__)  # noqa: S102 - generated here
            else:
                spec = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    del sys.modules[name]
                    raise
        mod.group = g
        _MODULES[g] = mod
    return mod


# ----------------------------------------------------------------------------- single-op kernels


@dataclass(frozen=True)
class _SinglePlan:
    """A library kernel's group of one for one broadcast pattern, with what each call needs."""

    mod: object
    n: tuple  # collapsed loop sizes
    loop: tuple  # the output's shape
    jacobians: int  # saved entries
    reads_in: tuple  # inputs the backward reads (recompute mode)
    reads_out: bool  # the backward reads the output back
    grads: tuple  # ports that get a gradient


_SINGLE: dict[tuple, _SinglePlan] = {}


def _single_plan(op: str, shapes: tuple, n_attrs: int) -> _SinglePlan:
    key = (op, shapes, n_attrs)
    plan = _SINGLE.get(key)
    if plan is None:
        rec = OPS[op]
        loop = np.broadcast_shapes(*shapes)
        ranges, patterns = collapse(loop, list(shapes))
        grads = tuple(p.name not in rec.kernel.nondiff for p in rec.inputs)
        g = Group(len(ranges), tuple(patterns),
                  (Member(op, tuple(In(k) for k in range(len(shapes))),
                          tuple((a, Param(i)) for i, a in enumerate(rec.kernel.attrs))),),
                  (0,), grads, (True,), n_attrs, jacobian=rec.kernel.saved > 0)
        if len(saved_jacobians(g)) != rec.kernel.saved:
            raise RuntimeError(f"`{op}`: its kernel saves {len(saved_jacobians(g))} Jacobian entries, "
                               f"its record says {rec.kernel.saved}")
        reads_in, reads_out = g.bwd_reads()
        plan = _SINGLE[key] = _SinglePlan(load(g), tuple(int(x) for x in sizes(loop, ranges)), loop,
                                          rec.kernel.saved, tuple(reads_in), bool(reads_out), grads)
    return plan


def _arrays(values, dtype) -> list:
    """Numbers (a literal passed as a port) as 0-d arrays of the kernel's dtype."""
    return [v if isinstance(v, np.ndarray) else np.asarray(v, dtype) for v in values]


def single_op(op: str, values, attrs, out=None) -> tuple:
    """`op`'s forward on arrays of any broadcast-compatible shapes (its library kernel):
    (out, saved Jacobian entries...)."""
    try:
        plan = _single_plan(op, tuple(v.shape for v in values), len(attrs))
    except AttributeError:  # a number in place of an array
        dtype = next((v.dtype for v in values if isinstance(v, np.ndarray)), np.dtype(np.float64))
        values = _arrays(values, dtype)
        plan = _single_plan(op, tuple(v.shape for v in values), len(attrs))
    if out is None:
        out = np.empty(plan.loop, values[0].dtype if isinstance(values[0], np.ndarray) else values[1].dtype)
    if plan.jacobians:
        return plan.mod.fwd(plan.n, *values, *attrs, out, *[np.empty_like(out) for _ in range(plan.jacobians)])
    return plan.mod.fwd(plan.n, *values, *attrs, out)


def single_op_vjp(op: str, g_out, values, attrs, saved=(), out=None, into=()) -> tuple:
    """`op`'s VJP: one gradient per port, each summed back to its port's shape."""
    try:
        plan = _single_plan(op, tuple(v.shape for v in values), len(attrs))
    except AttributeError:  # a number in place of an array
        values = _arrays(values, g_out.dtype)
        plan = _single_plan(op, tuple(v.shape for v in values), len(attrs))
    grads = [d if d is not None else np.empty(np.shape(v), g_out.dtype)
             for d, v, want in zip(into, values, plan.grads, strict=True) if want]
    if plan.jacobians:
        return plan.mod.bwd(plan.n, g_out, *saved, *attrs, *grads)
    if plan.reads_out and out is None:
        out = single_op(op, values, attrs)[0]
    reads = [values[k] for k in plan.reads_in] + ([out] if plan.reads_out else [])
    return plan.mod.bwd(plan.n, g_out, *reads, *attrs, *grads)


def exercise(g: Group, size: int = 8, dtype=np.float32) -> tuple[float, float]:
    """Call group `g`'s forward and backward once on small arrays of `dtype` (compiling them on a
    cold cache); the seconds each call took. For benchmarks and cache tests."""
    import time

    mod = load(g)
    n = (size,) * g.rank
    rng = np.random.default_rng(0)
    arrays = {f"in{k}": rng.standard_normal(tuple(s if f else 1 for s, f in zip(n, p, strict=True))).astype(dtype)
              for k, p in enumerate(g.inputs)}
    sig = _signature(g)
    for name in [*sig.outs, *sig.fwd]:
        if name.startswith(("out", "jac")):
            arrays[name] = np.empty(n, dtype)
    params = [0.5] * g.params
    t = time.perf_counter()
    mod.fwd(n, *[arrays[a] if not a.startswith("a") or not a[1:].isdigit() else params[int(a[1:])]
                 for a in sig.fwd])
    t_fwd = time.perf_counter() - t
    if not sig.bwd:
        return t_fwd, 0.0
    for name in sig.bwd:
        if name.startswith("gout"):
            arrays[name] = np.ones(n, dtype)
        elif name.startswith("gin"):
            arrays[name] = np.empty_like(arrays[f"in{name[3:]}"])
    t = time.perf_counter()
    mod.bwd(n, *[arrays[a] if not a.startswith("a") or not a[1:].isdigit() else params[int(a[1:])]
                 for a in sig.bwd])
    return t_fwd, time.perf_counter() - t
