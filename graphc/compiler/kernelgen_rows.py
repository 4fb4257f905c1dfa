"""Row groups: fused pointwise groups that also sum or average along the innermost loop axis.

A layer norm written from primitives is `mean`, `sub`, `mul`, `mean`, `add`, `rsqrt`, `mul`…:
two reductions over the last axis with pointwise work around them. graphc.compiler.fuse lets a
`sum`/`mean` (keepdims, over exactly the innermost collapsed axis) join a group; the loop then
runs row by row (the outer axes), and within a row in *phases*, each an inner loop over the row:

  forward: phase q evaluates the per-element members it needs (recomputed, the row is in L1)
           and fills the reductions that complete in it; between phases the per-row members
           (the statistics and what is computed from them: var + eps, rsqrt) are scalars.
  backward: the forward phases are replayed for the row statistics; then the reverse walk of
           the same rules runs in phases: a per-row value's cotangent is the row sum of its
           per-element consumers' VJPs (a reduction in the backward), available to the next
           phase; a reduction's VJP broadcasts its cotangent (÷ n for a mean) back.

Everything is recomputed from the group's inputs; nothing is saved. Sums go through a row buffer
and `rowsum` (float64, independent partial sums), as broadcast inputs' gradients do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from graphc.ops import OPS
from graphc.ops.scalar import Expr, Name, Num, add, binary, names, substitute


@dataclass
class _Plan:
    kind: dict  # ("v", j) / ("x", k) → "elem" | "row"
    phase: dict  # elem member j → the forward loop that computes it (recomputed after)
    avail: dict  # row member j → the forward loop from which it is available
    loops: int  # forward loops
    consumers: dict = field(default_factory=dict)  # node → [(member, port)]


def _node(a) -> tuple[str, int] | None:
    from graphc.compiler.kernelgen import In, V

    if isinstance(a, V):
        return ("v", a.index)
    if isinstance(a, In):
        return ("x", a.index)
    return None


@cache
def plan(g) -> _Plan:
    kind: dict = {("x", k): "elem" if p[-1] else "row" for k, p in enumerate(g.inputs)}
    phase: dict = {}
    avail: dict = {}
    consumers: dict = {}

    def ready(n) -> int:  # the first forward loop in which node n's value can be used
        if n is None or n[0] == "x":
            return 0
        return phase[n[1]] if kind[n] == "elem" else avail[n[1]]

    for j, m in enumerate(g.members):
        args = [_node(a) for a in m.args]
        for port, n in zip([p.name for p in OPS[m.op].inputs], args, strict=True):
            if n is not None:
                consumers.setdefault(n, []).append((j, port))
        if m.reduce:
            kind[("v", j)] = "row"
            avail[j] = ready(args[0]) + 1
        elif any(n is not None and kind[n] == "elem" for n in args):
            kind[("v", j)] = "elem"
            phase[j] = max((ready(n) for n in args), default=0)
        else:
            kind[("v", j)] = "row"
            avail[j] = max((ready(n) for n in args), default=0)
    reduce_loops = [ready(_node(m.args[0])) for m in g.members if m.reduce]
    loops = max([phase[j] for j in g.outputs] + reduce_loops) + 1
    return _Plan(kind, phase, avail, loops, consumers)


class _Emitter:
    """Lines of one inner loop: values and cotangents emitted once each, on demand."""

    def __init__(self, g, printer, plan: _Plan):
        self.g, self.p, self.plan = g, printer, plan
        self.lines: list[str] = []
        self.values: set = set()

    def value(self, j: int) -> Name:
        from graphc.compiler.kernelgen import _forward_expr, _index

        if self.plan.kind[("v", j)] == "row" or j in self.values:
            return Name(f"v{j}")
        e = _forward_expr(self.g.members[j])
        for n in sorted(names(e)):
            if n.startswith("v"):
                self.value(int(n[1:]))
            elif n.startswith("x") and n not in self.values and self.plan.kind[("x", int(n[1:]))] == "elem":
                self.values.add(n)
                self.lines.append(f"{n} = in{n[1:]}[{_index(self.g.inputs[int(n[1:])])}]")
        self.values.add(j)
        self.lines.append(f"v{j} = {self.p.print(e)}  # {self.g.members[j].op}")
        return Name(f"v{j}")

    def expr(self, e: Expr) -> Expr:
        """`e` with every value it names emitted first."""
        for n in sorted(names(e)):
            if n.startswith("v") and n[1:].isdigit():
                self.value(int(n[1:]))
            elif n.startswith("x") and n[1:].isdigit():
                self.load(int(n[1:]))
        return e

    def load(self, k: int) -> None:
        from graphc.compiler.kernelgen import _index

        if self.plan.kind[("x", k)] == "elem" and f"x{k}" not in self.values:
            self.values.add(f"x{k}")
            self.lines.append(f"x{k} = in{k}[{_index(self.g.inputs[k])}]")


def forward(g, bits: int, printer, sig_fwd: list[str]) -> list[str]:
    """The forward core of row group `g`."""
    from graphc.compiler.kernelgen import _JIT, _index

    pl = plan(g)
    K = g.rank
    outer = [f"{'    ' * (a + 1)}for i{a} in range(n{a}):" for a in range(K - 1)]
    row_indent = "    " * K
    inner = f"for i{K - 1} in range(n{K - 1}):"
    lines = [_JIT, f"def _fwd{bits}({', '.join(sig_fwd)}):",
             f"    {', '.join(f'n{a}' for a in range(K))} = out0.shape"]
    reductions = [j for j, m in enumerate(g.members) if m.reduce]
    rows = [f"    red{j} = np.empty(n{K - 1})  # v{j}'s terms along a row" for j in reductions]
    body = _row_inputs(g, pl)
    out_pos = {j: pos for pos, j in enumerate(g.outputs)}
    for q in range(pl.loops):
        body += _between(g, pl, printer, q, bits)
        em = _Emitter(g, printer, pl)
        for j in reductions:
            if pl.avail[j] == q + 1:
                arg = em.expr(_value_of(g.members[j].args[0]))
                em.lines.append(f"red{j}[i{K - 1}] = {printer.print(arg)}")
        for j, pos in out_pos.items():
            if pl.phase[j] == q:
                em.value(j)
                em.lines.append(f"out{pos}[{_index((True,) * K)}] = v{j}")
        body += [inner] + ["    " + line for line in em.lines]
    consts = printer.constants([f"a{k}" for k in range(g.params)])
    inv = [f"    inv_n = {_cast(bits)}(1.0) / {_cast(bits)}(n{K - 1})"] if any(
        g.members[j].reduce == "mean" for j in reductions) else []
    return lines + rows + consts + inv + outer + [row_indent + line for line in body]


def _cast(bits: int) -> str:
    return "np.float32" if bits == 32 else "np.float64"


def _value_of(a) -> Expr:
    from graphc.compiler.kernelgen import _value

    return _value(a)


def _row_inputs(g, pl: _Plan) -> list[str]:
    """Loads of the inputs that are one value per row (broadcast along the innermost axis)."""
    from graphc.compiler.kernelgen import _index

    return [f"x{k} = in{k}[{_index(p)}]" for k, p in enumerate(g.inputs) if pl.kind[("x", k)] == "row"]


def _between(g, pl: _Plan, printer, q: int, bits: int) -> list[str]:
    """Before forward loop q: the reductions filled by loop q-1, and the per-row members that
    become available."""
    from graphc.compiler.kernelgen import _forward_expr

    out = []
    for j, m in enumerate(g.members):
        if pl.kind[("v", j)] != "row" or pl.avail[j] != q:
            continue
        if m.reduce:
            scale = " * inv_n" if m.reduce == "mean" else ""
            out.append(f"v{j} = {_cast(bits)}(rowsum(red{j}){scale})  # {m.op}")
        else:
            out.append(f"v{j} = {printer.print(_forward_expr(m))}  # {m.op}")
    return out


# ----------------------------------------------------------------------------- backward


@dataclass
class _BPlan:
    active: set  # nodes whose cotangent is nonzero and reaches an input wanting a gradient
    bphase: dict  # elem node → the backward loop where its cotangent is complete
    ready: dict  # row node → the backward loop (and the section before it) from which it is
    loops: int


@cache
def bplan(g) -> _BPlan:
    pl = plan(g)
    members = g.members
    reaches: dict = {("x", k): bool(g.grads[k]) for k in range(len(g.inputs))}
    for j, m in enumerate(members):
        reaches[("v", j)] = any(reaches.get(_node(a), False) for a in m.args if _node(a) is not None)
    has_cot = {("v", j) for pos, j in enumerate(g.outputs) if g.cotangents[pos]}
    for j in reversed(range(len(members))):  # consumers come later: propagate backwards
        if ("v", j) in has_cot:
            for a in members[j].args:
                n = _node(a)
                if n is not None:
                    has_cot.add(n)
    active = {n for n in has_cot if reaches.get(n, False)}
    bphase: dict = {}
    ready: dict = {}
    nodes = [("v", j) for j in reversed(range(len(members)))] + [("x", k) for k in range(len(g.inputs))]
    for n in nodes:
        if n not in active:
            continue
        cons = [(c, port) for c, port in pl.consumers.get(n, []) if ("v", c) in active]
        if pl.kind[n] == "elem":
            phases = [0]
            for c, _ in cons:
                phases.append(ready[("v", c)] if members[c].reduce else bphase[("v", c)])
            bphase[n] = max(phases)
        else:
            readies = [0]
            for c, _ in cons:
                c_node = ("v", c)
                readies.append(bphase[c_node] + 1 if pl.kind[c_node] == "elem" else ready[c_node])
            ready[n] = max(readies)
    loops = max([v + 1 for v in bphase.values()] + [v for v in ready.values()] + [1])
    return _BPlan(active, bphase, ready, loops)


def backward_reads(g) -> list[int]:
    """The inputs the backward reads (everything is recomputed from them)."""
    return list(range(len(g.inputs)))


def backward(g, bits: int, printer, sig_bwd: list[str]) -> list[str]:
    """The backward core of row group `g`: replay the forward's row statistics, then the reverse
    walk in phases."""
    from graphc.compiler.kernelgen import _JIT, _index, _value

    pl, bp = plan(g), bplan(g)
    K = g.rank
    members = g.members
    outer = [f"{'    ' * (a + 1)}for i{a} in range(n{a}):" for a in range(K - 1)]
    row_indent = "    " * K
    inner = f"for i{K - 1} in range(n{K - 1}):"
    first = sig_bwd[0]
    lines = [_JIT, f"def _bwd{bits}({', '.join(sig_bwd)}):",
             f"    {', '.join(f'n{a}' for a in range(K))} = {first}.shape"]
    reductions = [j for j, m in enumerate(members) if m.reduce]
    row_nodes = [n for n in bp.ready if n in bp.active]
    summed = [n for n in row_nodes if any(("v", c) in bp.active and pl.kind[("v", c)] == "elem"
                                          for c, _ in pl.consumers.get(n, []))]
    grads = [k for k in range(len(g.inputs)) if g.grads[k] and ("x", k) in bp.active]
    accs = [k for k in grads if not all(g.inputs[k])]
    lines += [f"    acc{k} = np.zeros(gin{k}.shape)  # a broadcast input: its gradient summed in float64"
              for k in accs]
    lines += [f"    red{j} = np.empty(n{K - 1})  # v{j}'s terms along a row" for j in reductions]
    lines += [f"    rowg_{_name(n)} = np.empty(n{K - 1})  # terms of the cotangent of {_name(n)} along a row"
              for n in summed]

    # replay the forward up to the last row statistic
    body = _row_inputs(g, pl)
    last = max((pl.avail[j] for j in reductions), default=0)
    for q in range(last):
        body += _between(g, pl, printer, q, bits)
        em = _Emitter(g, printer, pl)
        for j in reductions:
            if pl.avail[j] == q + 1:
                em.lines.append(f"red{j}[i{K - 1}] = {printer.print(em.expr(_value(members[j].args[0])))}")
        body += [inner] + ["    " + line for line in em.lines]
    body += _between(g, pl, printer, last, bits)
    body += [f"gacc_{_name(n)} = 0.0" for n in summed]

    seeds = {j: Name(f"g{pos}") for pos, j in enumerate(g.outputs) if g.cotangents[pos]}
    out_pos = {j: pos for pos, j in enumerate(g.outputs)}

    def elem_cotangent(em: _Emitter, n, done: dict) -> Expr:
        """The complete cotangent of elem node n in the current loop (emitting what it needs)."""
        if n in done:
            return done[n]
        total = None
        if n[0] == "v" and n[1] in seeds:
            pos = out_pos[n[1]]
            if f"g{pos}" not in em.values:
                em.values.add(f"g{pos}")
                em.lines.append(f"g{pos} = gout{pos}[{_index((True,) * K)}]")
            total = seeds[n[1]]
        for c, port in pl.consumers.get(n, []):
            if ("v", c) not in bp.active:
                continue
            if members[c].reduce:
                term = Name(f"gv{c}")
                term = binary("*", term, Name("inv_n")) if members[c].reduce == "mean" else term
            else:
                term = _vjp_term(g, c, port, elem_cotangent(em, ("v", c), done))
            total = add(total, term)
        name = f"g{_name(n)}"
        em.lines.append(f"{name} = {printer.print(em.expr(total))}")
        done[n] = Name(name)
        return done[n]

    for q in range(bp.loops):
        # before loop q: per-row cotangents that are complete, in reverse order
        for n in sorted((n for n in row_nodes if bp.ready[n] == q), key=_order, reverse=True):
            total = Name(f"gacc_{_name(n)}") if n in summed else None
            for c, port in pl.consumers.get(n, []):
                if ("v", c) in bp.active and pl.kind[("v", c)] == "row" and not members[c].reduce:
                    total = add(total, _vjp_term(g, c, port, Name(f"gv{c}")))
            if total is None:
                total = Num(0.0)
            body.append(f"g{_name(n)} = {_cast(bits)}({printer.print(total)})")
            if n[0] == "x":
                body.append(f"acc{n[1]}[{_index(g.inputs[n[1]])}] += g{_name(n)}")
        em = _Emitter(g, printer, pl)
        done: dict = {}
        sums: dict = {}
        for n in row_nodes:  # terms of per-row cotangents whose consumers complete in this loop
            for c, port in pl.consumers.get(n, []):
                if ("v", c) in bp.active and pl.kind[("v", c)] == "elem" and bp.bphase[("v", c)] == q:
                    sums[n] = add(sums.get(n), _vjp_term(g, c, port, elem_cotangent(em, ("v", c), done)))
        stores = []
        for k in grads:
            if pl.kind[("x", k)] == "elem" and bp.bphase[("x", k)] == q:
                gk = elem_cotangent(em, ("x", k), done)
                target, op = (f"acc{k}", "+=") if k in accs else (f"gin{k}", "=")
                stores.append(f"{target}[{_index(g.inputs[k])}] {op} {gk.id}")
        for n, e in sums.items():
            stores.append(f"rowg_{_name(n)}[i{K - 1}] = {printer.print(em.expr(e))}")
        if em.lines or stores:
            body += [inner] + ["    " + line for line in em.lines + stores]
            body += [f"gacc_{_name(n)} += rowsum(rowg_{_name(n)})" for n in sums]
    consts = printer.constants([f"a{k}" for k in range(g.params)])
    inv = [f"    inv_n = {_cast(bits)}(1.0) / {_cast(bits)}(n{K - 1})"] if any(
        members[j].reduce == "mean" for j in reductions) else []
    lines += consts + inv + outer + [row_indent + line for line in body]
    for k in accs:
        lines += [f"    flat{k}, sums{k} = gin{k}.reshape(-1), acc{k}.reshape(-1)",
                  f"    for i in range(sums{k}.size):", f"        flat{k}[i] = sums{k}[i]"]
    for k in range(len(g.inputs)):
        if g.grads[k] and k not in grads:
            lines.append(f"    gin{k}[...] = 0")
    return lines


def _name(n) -> str:
    return f"{n[0]}{n[1]}"


def _order(n) -> tuple:
    return (0 if n[0] == "x" else 1, n[1])


def _vjp_term(g, c: int, port: str, g_c: Expr) -> Expr:
    """Member c's VJP for `port`, given its cotangent `g_c`."""
    from graphc.compiler.kernelgen import _env

    m = g.members[c]
    return substitute(OPS[m.op].pointwise.vjp(port), _env(m) | {"y": Name(f"v{c}"), "g": g_c})
