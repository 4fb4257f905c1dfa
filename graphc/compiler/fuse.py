"""The `fuse` pass: chains of pointwise calls become one generated kernel, forward and backward.

Runs between autodiff and plan, on the calls as data. A *group* is a maximal set of forward
calls of ops with a `Pointwise` rule (add, mul, tanh, gelu, …, including their broadcasting
and scalar literals) that one loop can evaluate:

  - a call joins the group of a pointwise call that reads its output, when every member whose
    value is needed outside the group has the group's loop shape (the last member's output
    shape; a member of a smaller, broadcast shape is evaluated per loop element, and is
    allowed only when nothing outside reads it), and no call outside the group that reads a
    member comes before the group's last member (the fused call runs in the last member's
    place, so the group is convex: no path leaves it and comes back);
  - members' values that nothing outside the group reads (forward calls, other nodes'
    backward calls, the graph's outputs) are never written to memory.

Each group of two or more calls becomes one forward `Call` (in place of its last member) and
one backward `Call` (in place of its first backward call in backward order: every cotangent
it reads is complete there, and every producer of its inputs runs its backward after it),
with kernels generated from the members' rules (graphc.compiler.kernelgen). The gradient
results of the whole backward are then re-bound (`_rebind`): the first call to produce a
tensor's gradient binds its variable, later ones accumulate into it, as autodiff does.
A group of one keeps its op's library kernel, which is itself generated from the rule: the
same code paths, so `--no-fuse` compares like with like.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import sympy

from graphc.compiler import kernelgen as kg
from graphc.compiler.autodiff import _where
from graphc.compiler.calls import Accumulate, Call, Const, Dest, Out, Program, Shape, Value
from graphc.ops import OPS
from graphc.shapes import dims_equal, fmt_shape

MAX_MEMBERS = 24  # a bound on one generated kernel's size (and compile time)


@dataclass
class FusedGroup:
    """One group as the driver uses it, for `--emit` and `render`: spec names and shapes."""

    name: str  # the driver's kernel prefix: `<name>_fwd`, `<name>_bwd`
    group: kg.Group
    nodes: list[str]  # member nodes, in order
    ops: list[str]
    inputs: list[str]  # driver variables of in0, in1, …
    input_shapes: list[str]
    outputs: list[str]  # driver variables of out0, …
    loop: str  # the loop shape, collapsed: "(B·T, 64)"
    where: str = ""  # spec file:line of the last member
    module: object = None
    saved: list[str] = field(default_factory=list)  # Jacobian entries saved for the backward

    @property
    def source(self) -> str:
        """The generated module (the same text as its file in the cache)."""
        return kg.source(self.group)

    def header(self) -> str:
        """Comment lines naming what the group's generated module computes in this spec."""
        lines = [f"# {self.name}: {', '.join(f'{n} ({o})' for n, o in zip(self.nodes, self.ops, strict=True))}"
                 f" {self.where}",
                 f"#   loop {self.loop}; " + ", ".join(f"in{k} = {v} ({s})" for k, (v, s) in enumerate(
                     zip(self.inputs, self.input_shapes, strict=True))),
                 "#   " + ", ".join(f"out{k} = {v}" for k, v in enumerate(self.outputs))
                 + (f"; saved for the backward: {', '.join(self.saved)}" if self.saved else "")]
        return "\n".join(lines)


def fuse(prog: Program) -> Program:
    """Replace each group of two or more pointwise forward calls (and their backward calls)
    by one generated kernel call each; returns `prog`, changed in place."""
    groups = _groups(prog)
    if not groups:
        return prog
    taken = _taken_names(prog)
    backward = list(prog.backward)
    forward = list(prog.forward)
    replaced_f: dict[int, Call | None] = {}
    replaced_b: dict[int, Call | None] = {}
    for members in groups:
        fwd_call, bwd_call, bwd_members, fused = _build(prog, members, taken)
        for t in members:
            replaced_f[t] = None
        replaced_f[members[-1]] = fwd_call
        for b in bwd_members:
            replaced_b[b] = None
        if bwd_call is not None:
            replaced_b[min(bwd_members)] = bwd_call
        prog.fused.append(fused)
    prog.forward = [replaced_f.get(t, c) for t, c in enumerate(forward) if replaced_f.get(t, c) is not None]
    prog.backward = [replaced_b.get(t, c) for t, c in enumerate(backward) if replaced_b.get(t, c) is not None]
    _rebind(prog)
    _drop_dead_constants(prog)
    used = {c.kernel for c in prog.forward + prog.backward}
    prog.kernels = {k: v for k, v in prog.kernels.items() if k in used}
    return prog


# ----------------------------------------------------------------------------- grouping


def _candidate(call: Call, var_type: dict, reductions: bool = True) -> bool:
    op = OPS.get(call.op)
    if op is None or call.noise is not None or len(op.output_names({})) != 1:
        return False
    if op.pointwise is None:
        return reductions and _row_reduction(call, var_type) is not None
    ports = [p.name for p in op.inputs]
    if not all(isinstance(call.args.get(p), Value) or _literal(call.args.get(p)) for p in ports):
        return False
    return all(_literal(call.args.get(a)) for a in op.kernel.attrs)


def _row_reduction(call: Call, var_type: dict) -> tuple[int, int] | None:
    """(first, stop): the trailing axes a `sum`/`mean` with keepdims reduces, when it does."""
    op = OPS.get(call.op)
    x = call.args.get("x")
    axes, keep = call.args.get("axis"), call.args.get("keepdims")
    if (op is None or "reduce" not in op.rules or not isinstance(x, Value) or not isinstance(axes, Const)
            or not isinstance(keep, Const) or keep.value is not True or not axes.value):
        return None
    t = var_type.get(x.var)
    rank = len(t.shape) if t is not None else 0
    axes = sorted(axes.value)
    if rank < 2 or axes != list(range(rank - len(axes), rank)):
        return None
    return axes[0], rank


def _literal(op) -> bool:
    return isinstance(op, Const) and isinstance(op.value, int | float) and not isinstance(op.value, bool)


def _groups(prog: Program, reductions: bool = True, only: set[int] | None = None) -> list[list[int]]:
    """Forward call indices of each group of two or more members, in forward order. A group with
    a reduction is first grown leniently (a statistic read by a later pointwise call may join
    with it) and then checked whole; one that fails is grouped again without reductions."""
    fwd = prog.forward
    var_type = {v: prog.graph.types.get(t) for t, v in prog.tensors.items()}
    cand = {t for t, c in enumerate(fwd) if _candidate(c, var_type, reductions) and (only is None or t in only)}
    producer = {fwd[t].bound()[0]: t for t in cand}
    cand_nodes = {fwd[t].node for t in cand}
    readers: dict[str, set] = {}  # var → forward call indices and ("b", node) of backward readers
    for t, c in enumerate(fwd):
        for v in c.reads():
            readers.setdefault(v, set()).add(t)
    for c in prog.backward:
        for v in c.reads():
            readers.setdefault(v, set()).add(("b", c.node))
    escaping = {prog.tensors[t] for t in (*prog.graph.outputs.values(), *prog.graph.losses.values())}
    group_of: dict[int, int] = {}
    groups: dict[int, list[int]] = {}

    def valid(members: list[int], strict: bool) -> bool:
        last = members[-1]
        reduces = [t for t in members if OPS[fwd[t].op].pointwise is None]
        if strict and last in reduces:
            return False
        loop = var_type[fwd[last].args["x"].var if last in reduces else fwd[last].bound()[0]]
        nodes = {fwd[t].node for t in members}
        for t in members:
            var = fwd[t].bound()[0]
            outside = [r for r in readers.get(var, ()) if (r not in members if isinstance(r, int)
                                                          else r[1] not in nodes)]
            if any(isinstance(r, int) and r < last for r in outside):
                return False  # read before the fused call would run
            if (outside or var in escaping) and t != last and not _same_shape(var_type[var], loop):
                later = not strict and var not in escaping and all(
                    (r in cand) if isinstance(r, int) else (r[1] in cand_nodes) for r in outside)
                if not later:  # needed outside, but not of the loop's shape
                    return False
        if strict and reduces:
            return _rows_ok(fwd, members, reduces, loop, var_type)
        return len(members) <= MAX_MEMBERS

    for t, c in enumerate(fwd):
        if t not in cand:
            continue
        members = [t]
        for v in dict.fromkeys(op.var for op in c.args.values() if isinstance(op, Value)):
            p = producer.get(v)
            if p is None or p not in group_of or group_of[p] in {group_of.get(m) for m in members}:
                continue
            trial = sorted(set(members) | set(groups[group_of[p]]))
            if valid(trial, strict=False):
                members = trial
        for m in members:
            old = group_of.get(m)
            if old is not None and old != t:
                groups.pop(old, None)
            group_of[m] = t
        groups[t] = members
    out = []
    for members in sorted(groups.values()):
        if valid(members, strict=True):
            out.append(members)
        elif reductions and any(OPS[fwd[t].op].pointwise is None for t in members):
            out += _groups(prog, reductions=False, only=set(members))
    return [m for m in sorted(out) if len(m) > 1]


def _rows_ok(fwd, members, reduces, loop, var_type) -> bool:
    """A group with reductions: each reduces exactly the innermost collapsed axis of the loop
    (the shapes of the members' values and inputs decide where axes merge), over a value of
    the loop's shape, and the loop has outer axes."""
    shapes = [tuple(var_type[fwd[t].bound()[0]].shape) for t in members]
    for t in members:
        for a in fwd[t].args.values():
            if isinstance(a, Value) and var_type.get(a.var) is not None:
                shapes.append(tuple(var_type[a.var].shape))
    ranges, _ = kg.collapse(tuple(loop.shape), shapes)
    if len(ranges) < 2:
        return False
    for t in reduces:
        axes = _row_reduction(fwd[t], var_type)
        if axes is None or axes != tuple(ranges[-1]) or not _same_shape(var_type[fwd[t].args["x"].var], loop):
            return False
    return len(members) <= MAX_MEMBERS


def _same_shape(a, b) -> bool:
    return (a is not None and b is not None and len(a.shape) == len(b.shape)
            and all(dims_equal(x, y) for x, y in zip(a.shape, b.shape, strict=True)))


# ----------------------------------------------------------------------------- one group


def _taken_names(prog: Program) -> set[str]:
    names = set(prog.tensors.values()) | set(prog.kernels) | set(prog.dim_vars.values())
    for c in prog.forward + prog.backward:
        names |= set(c.bound()) | {d.var for d in c.dests()}
        names |= {a.part for a in c.accumulate}
    return names


def _fresh(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _build(prog: Program, members: list[int], taken: set[str]):
    graph = prog.graph
    fwd = [prog.forward[t] for t in members]
    member_var = [c.bound()[0] for c in fwd]
    var_type = {v: graph.types.get(t) for t, v in prog.tensors.items()}
    index = {v: j for j, v in enumerate(member_var)}
    nodes = {c.node for c in fwd}

    # inputs, members and outputs as data
    literals = _scalar_constants(prog)
    inputs: list[str] = []
    kmembers = []
    for c in fwd:
        op = OPS[c.op]
        args = []
        if op.pointwise is None:  # a sum/mean along the innermost axis (graphc.compiler.kernelgen_rows)
            a = c.args["x"]
            if a.var in index:
                arg = kg.V(index[a.var])
            else:
                if a.var not in inputs:
                    inputs.append(a.var)
                arg = kg.In(inputs.index(a.var))
            kmembers.append(kg.Member(c.op, (arg,), reduce=op.rules["reduce"]))
            continue
        for p in op.inputs:
            a = c.args[p.name]
            if isinstance(a, Const):
                args.append(kg.Lit(float(a.value)))
            elif a.var in literals:  # a number written in `in:`: baked into the kernel
                args.append(kg.Lit(literals[a.var]))
            elif a.var in index:
                args.append(kg.V(index[a.var]))
            else:
                if a.var not in inputs:
                    inputs.append(a.var)
                args.append(kg.In(inputs.index(a.var)))
        attrs = tuple((n, kg.Lit(float(c.args[n].value))) for n in op.kernel.attrs)
        kmembers.append(kg.Member(c.op, tuple(args), attrs))
    readers = set()
    for t, c in enumerate(prog.forward):
        if t not in members:
            readers |= c.reads()
    for c in prog.backward:
        if c.node not in nodes:
            readers |= c.reads()
    escaping = {prog.tensors[t] for t in (*graph.outputs.values(), *graph.losses.values())}
    outputs = [j for j, v in enumerate(member_var) if v in readers or v in escaping or j == len(fwd) - 1]

    # the backward calls of the members, and what they say about gradients
    bwd_at = [b for b, c in enumerate(prog.backward) if c.node in nodes]
    totals = _gradient_totals(prog)
    grad_of: dict[str, str] = {}  # input var → its gradient variable
    for b in bwd_at:
        c = prog.backward[b]
        f = fwd[[x.node for x in fwd].index(c.node)]
        op = OPS[c.op]
        for p, r in zip([p.name for p in op.inputs], c.results, strict=False):
            a = f.args[p]
            if isinstance(r, Out) and isinstance(a, Value) and a.var in inputs:
                grad_of[a.var] = totals.get((b, r.var), r.var)
    cot_var: dict[int, str] = {}
    produced_outside = set(prog.seeds)
    for b, c in enumerate(prog.backward):
        if c.node not in nodes:
            produced_outside |= {totals.get((b, r.var), r.var) for r in c.results if isinstance(r, Out)}
    for b in bwd_at:
        c = prog.backward[b]
        j = [x.node for x in fwd].index(c.node)
        g = c.args.get("g_out")
        if j in outputs and isinstance(g, Value) and g.var in produced_outside:
            cot_var[j] = g.var

    loop_t = var_type[member_var[-1]]
    shapes = [var_type[v].shape for v in inputs]
    members_shapes = [tuple(var_type[v].shape) for v in member_var]  # they keep row axes apart
    ranges, patterns = kg.collapse(tuple(loop_t.shape), [tuple(s) for s in shapes] + members_shapes)
    patterns = patterns[: len(inputs)]
    n = kg.sizes(tuple(loop_t.shape), ranges)
    group = kg.Group(len(ranges), tuple(patterns), tuple(kmembers), tuple(outputs),
                     tuple(v in grad_of for v in inputs), tuple(j in cot_var for j in outputs))
    group = replace(group, jacobian=kg.wants_jacobian(group))
    module = kg.load(group)

    last = fwd[-1]
    name = _fresh(f"fused_{member_var[0]}", taken)
    prog.kernels[f"{name}_fwd"] = module.fwd
    loop = Shape(tuple(sympy.sympify(d) for d in n))
    saved = kg.saved_jacobians(group)
    jac_vars = [_fresh(f"{member_var[outputs[pos]]}_d{inputs[k]}", taken) for pos, k in saved]
    args = {"n": loop, **{f"in{k}": Value(v) for k, v in enumerate(inputs)}}
    args |= {f"out{pos}": Dest(member_var[j], tuple(loop_t.shape)) for pos, j in enumerate(outputs)}
    args |= {f"jac{pos}_{k}": Dest(v, tuple(loop_t.shape)) for (pos, k), v in zip(saved, jac_vars, strict=True)}
    results = [Out(member_var[j]) for j in outputs] + [Out(v) for v in jac_vars]
    where = _where(graph.nodes[last.node])
    span = f"{fwd[0].node}, {last.node}" if len(fwd) == 2 else f"{fwd[0].node} … {last.node}"
    comment = (f"{span} · {len(fwd)} ops fused → "
               f"{', '.join(fmt_shape(loop_t.shape) for _ in outputs)}{where}")
    fwd_call = Call(last.node, "fused", f"{name}_fwd", args, results, comment)
    fused = FusedGroup(name, group, [c.node for c in fwd], [c.op for c in fwd], inputs,
                       [fmt_shape(s) for s in shapes], [member_var[j] for j in outputs],
                       "(" + ", ".join(str(d).replace("*", "·") for d in n) + ")", where.strip(),
                       module, jac_vars)

    if not bwd_at or not any(group.grads) or not cot_var:
        return fwd_call, None, bwd_at, fused
    prog.kernels[f"{name}_bwd"] = module.bwd
    reads_in, reads_out = group.bwd_reads()
    bargs = {"n": loop}
    bargs |= {f"gout{pos}": Value(cot_var[j]) for pos, j in enumerate(outputs) if j in cot_var}
    if group.jacobian:
        bargs |= {f"jac{pos}_{k}": Value(v, saved=True) for (pos, k), v in zip(saved, jac_vars, strict=True)}
    else:
        bargs |= {f"in{k}": Value(inputs[k], saved=True) for k in reads_in}
        bargs |= {f"out{pos}": Value(member_var[outputs[pos]], saved=True) for pos in reads_out}
    bresults = []
    for k, v in enumerate(inputs):
        if v in grad_of:
            bargs[f"gin{k}"] = Dest(grad_of[v], tuple(var_type[v].shape))
            bresults.append(Out(grad_of[v]))
    first = prog.backward[min(bwd_at)]
    comment = f"{span} · {len(fwd)} ops fused, backward ← {fmt_shape(loop_t.shape)}{where}"
    return fwd_call, Call(first.node, "fused", f"{name}_bwd", bargs, bresults, comment), bwd_at, fused


def _scalar_constants(prog: Program) -> dict[str, float]:
    """Variables of scalar `constant` nodes (the numbers written in `in:`) → their value."""
    out = {}
    for c in prog.forward:
        value = c.args.get("value")
        t = prog.graph.types.get((c.node, "out"))
        if (c.op == "constant" and isinstance(value, Const) and len(value.value) == 1 and t is not None
                and all(d == 1 for d in t.shape)):
            out[c.bound()[0]] = float(value.value[0])
    return out


def _drop_dead_constants(prog: Program) -> None:
    """A constant every reader of which now bakes it in is no longer computed."""
    read = set().union(*(c.reads() for c in prog.forward + prog.backward))
    escaping = {prog.tensors[t] for t in (*prog.graph.outputs.values(), *prog.graph.losses.values())}
    prog.forward = [c for c in prog.forward
                    if not (c.op == "constant" and not (set(c.bound()) & (read | escaping)))]


def _gradient_totals(prog: Program) -> dict[tuple[int, str], str]:
    """(backward call, result variable) → the gradient it is part of (a part accumulated into
    a total, or the total itself)."""
    out = {}
    for b, c in enumerate(prog.backward):
        parts = {a.part: a.total for a in c.accumulate}
        for r in c.results:
            if isinstance(r, Out):
                out[(b, r.var)] = parts.get(r.var, r.var)
    return out


def _rebind(prog: Program) -> None:
    """Walk the backward in order: the first call producing a gradient binds its variable,
    each later one writes a part and accumulates it (autodiff's rule, after the calls moved)."""
    bound = set(prog.seeds)
    used = {a.part for c in prog.backward for a in c.accumulate}
    counter = itertools.count(max((int(p[2:]) for p in used if p[2:].isdigit()), default=-1) + 1)
    for c in prog.backward:
        parts = {a.part: a.total for a in c.accumulate}
        rename: dict[str, str] = {}
        acc: list[Accumulate] = []
        for i, r in enumerate(c.results):
            if not isinstance(r, Out):
                continue
            total = parts.get(r.var, r.var)
            if total not in bound:
                bound.add(total)
                new = total
            else:
                new = r.var if r.var != total else f"_g{next(counter)}"
                acc.append(Accumulate(total, new))
            rename[r.var] = new
            c.results[i] = Out(new)
        c.args = {k: Dest(rename.get(a.var, a.var), a.shape) if isinstance(a, Dest) else a
                  for k, a in c.args.items()}
        c.accumulate = acc

