"""The buffer plan: which tensor lives in which preallocated buffer.

A training step runs the forward calls and then the backward calls; together they form one
timeline (call 0 … F-1 forward, F … F+B-1 backward). For every tensor a kernel can write
into (its `out=` / `into_<port>=` destinations) the plan knows its symbolic shape and its
live range: from the call that writes it to the last call that reads it, or reads anything
that may alias it (a `reshape` is a view; a kernel without a destination may hand back a view
of its arguments, so its results are assumed to alias all of them). Forward tensors the
backward reads stay live into the backward; gradients die as soon as they are consumed.

Tensors that leave the step (outputs, losses, input gradients, and whatever they may alias)
get fresh arrays on every call; everything else is *planned*: the driver finds it in `buf`, a
dict of views into a few flat buffers. Which buffer is decided when a batch's dimensions are
known (`assign`): a greedy best-fit over the live ranges, so two tensors share memory only
when their lives do not overlap, and never with an argument of the call that writes them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from graphc.compiler.calls import Program


@dataclass(frozen=True)
class Planned:
    var: str
    shape: tuple[str, ...]  # the symbolic shape as text (`B×T×128` is ("B", "T", "128"))
    start: int  # the call that writes it
    end: int  # the last call that reads it (or anything aliasing it)


@dataclass
class BufferPlan:
    """Plain data (no sympy): a plan is saved with a compiled model (graphc.compiler.saved) and
    read back by a process that never imports the front end."""

    tensors: list[Planned]  # in order of `start`
    dims: dict[str, tuple[str, int]]  # symbolic dim → (graph input, axis) that binds it
    n_forward: int
    fresh: frozenset[str] = field(default_factory=frozenset)  # destinations that leave the step
    shape_source: str = "def shapes(sizes):\n    return {}\n"  # every tensor's shape from the dims

    @property
    def owned(self) -> frozenset[str]:
        """Tensors in memory of the step's own (planned or fresh): sums into them go in place."""
        return frozenset(t.var for t in self.tensors) | self.fresh

    def shapes(self, sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
        """Every planned tensor's shape for these dims (KeyError: a dim that is not given)."""
        fn = self.__dict__.get("_shapes")
        if fn is None:
            namespace = {}
            exec(compile(self.shape_source, "<buffer plan>", "exec"), namespace)  # noqa: S102 - made by `plan`
            fn = self.__dict__["_shapes"] = namespace["shapes"]
        return fn(sizes)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_shapes"}

    def sizes_of(self, X: dict[str, np.ndarray]) -> dict[str, int]:
        return {dim: X[inp].shape[axis] for dim, (inp, axis) in self.dims.items()}

    def where(self, t: int) -> str:
        return f"f{t}" if t < self.n_forward else f"b{t - self.n_forward}"


class _Aliases:
    """Union-find over variables that may share memory."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, v: str) -> str:
        self.parent.setdefault(v, v)
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def plan(prog: Program) -> BufferPlan:
    """Decide where every destination of every call lives (a planned buffer or a fresh array)
    and return the live ranges of the planned tensors."""
    from graphc.shapes import fmt_dim
    calls = prog.forward + prog.backward
    known = {v for c in calls for v in c.bound()} | {d.var for c in calls for d in c.dests()}
    defined: dict[str, int] = {}
    last: dict[str, int] = {}
    aliases = _Aliases()
    for t, call in enumerate(calls):
        reads = call.reads() & known
        for v in reads:
            last[v] = t
        dest_vars = {d.var for d in call.dests()}
        for v in [*call.bound(), *dest_vars]:
            defined.setdefault(v, t)
            last.setdefault(v, t)
        for v in call.bound():  # results the kernel allocated itself may be views of its arguments
            if v not in dest_vars:
                for r in reads:
                    aliases.union(v, r)
    group_end: dict[str, int] = {}
    for v, t in last.items():
        root = aliases.find(v)
        group_end[root] = max(group_end.get(root, -1), t)
    escaping = {prog.tensors[t] for t in (*prog.graph.outputs.values(), *prog.graph.losses.values())}
    escaping |= set(prog.input_grads.values())
    escaping_groups = {aliases.find(v) for v in escaping}

    planned: dict[str, Planned] = {}
    fresh = set()
    for call in calls:
        for d in call.dests():
            if aliases.find(d.var) in escaping_groups:
                fresh.add(d.var)
            elif d.var not in planned:
                planned[d.var] = Planned(d.var, tuple(d.shape), defined[d.var], group_end[aliases.find(d.var)])
    tensors = sorted(planned.values(), key=lambda p: p.start)
    source = _shape_source(tensors, prog.dims)
    tensors = [Planned(t.var, tuple(fmt_dim(d) for d in t.shape), t.start, t.end) for t in tensors]
    return BufferPlan(tensors, dict(prog.dims), len(prog.forward), frozenset(fresh), source)


def _shape_source(tensors: list[Planned], dims) -> str:
    """Python source of `shapes(sizes)`: the tensors' symbolic shapes as integer arithmetic on
    the dims, the way the driver computes them (codegen.pyexpr), so that a batch's shapes cost
    no sympy."""
    import sympy

    from graphc.compiler.codegen import pyexpr, sizes_function

    free = {str(s) for t in tensors for d in t.shape for s in sympy.sympify(d).free_symbols}
    lines, local = sizes_function("shapes", set(dims) | free)
    lines.append("    return {")
    for t in tensors:
        shape = "".join(f"{pyexpr(d, local)}, " for d in t.shape)
        lines.append(f"        {t.var!r}: ({shape}),")
    lines.append("    }")
    return "\n".join(lines) + "\n"


def numel(shape) -> int:
    """Elements of a shape, exactly (Python integers: np.prod in int64 wraps around silently
    for the sizes a mistyped dim gives, and a wrapped size could pass a memory check)."""
    return math.prod(int(d) for d in shape)


def assign(plan: BufferPlan, shapes: dict[str, tuple[int, ...]],
           reuse: bool = True) -> tuple[dict[str, int], list[int]]:
    """Buffer index of every planned tensor and each buffer's size in elements.

    Greedy in order of first write: a tensor takes the smallest free buffer that fits, else
    grows the largest free one, else opens a new one. A buffer is free once the last reader of
    its tenant has run (strictly before the call that writes the new tenant).
    """
    where: dict[str, int] = {}
    capacity: list[int] = []
    busy: list[tuple[int, int]] = []  # heap of (end, buffer)
    free: list[int] = []
    for t in plan.tensors:
        n = max(1, numel(shapes[t.var]))
        while reuse and busy and busy[0][0] < t.start:
            free.append(heapq.heappop(busy)[1])
        fits = [b for b in free if capacity[b] >= n]
        if fits:
            b = min(fits, key=lambda i: capacity[i])
        elif free:
            b = max(free, key=lambda i: capacity[i])
            capacity[b] = n
        else:
            b = len(capacity)
            capacity.append(n)
        if b in free:
            free.remove(b)
        where[t.var] = b
        heapq.heappush(busy, (t.end, b))
    return where, capacity


class Arena:
    """The buffers of one plan for one set of dimensions and one dtype."""

    def __init__(self, plan: BufferPlan, sizes: dict[str, int], dtype, reuse: bool = True):
        dtype = np.dtype(dtype)
        shapes = plan.shapes(sizes)
        where, capacity = assign(plan, shapes, reuse)
        self.where = where  # tensor → buffer index
        self.buffers = [np.empty(n, dtype) for n in capacity]
        self.views = {v: self.buffers[b][: numel(shapes[v])].reshape(shapes[v])
                      for v, b in where.items()}
        self.nbytes = sum(b.nbytes for b in self.buffers)
        self.unshared_nbytes = sum(numel(s) for s in shapes.values()) * dtype.itemsize


def plan_bytes(plan: BufferPlan, sizes: dict[str, int], dtype=np.float32) -> tuple[int, int]:
    """(shared, unshared) bytes of the plan's buffers for these dims, without allocating them."""
    shapes = plan.shapes(sizes)
    _, capacity = assign(plan, shapes)
    itemsize = np.dtype(dtype).itemsize
    unshared = sum(numel(s) for s in shapes.values())
    return int(sum(capacity)) * itemsize, unshared * itemsize


def describe(plan: BufferPlan, sizes: dict[str, int] | None = None, dtype=np.float32) -> list[str]:
    """The plan as comment lines for the generated driver (and `graphc compile --plan`); sizes
    are computed, never allocated (a plan may be far larger than memory)."""
    lines = [f"{'tensor':<28} {'shape':<24} live"]
    shapes = plan.shapes(sizes) if sizes is not None else {}
    where, capacity = assign(plan, shapes) if sizes is not None else ({}, [])
    for t in plan.tensors:
        shape = str(shapes[t.var]) if sizes is not None else f"({'×'.join(t.shape) or 'scalar'})"
        buf = f"   buffer {where[t.var]}" if sizes is not None else ""
        lines.append(f"{t.var:<28} {shape:<24} {plan.where(t.start)}..{plan.where(t.end)}{buf}")
    if sizes is not None:
        shared, unshared = plan_bytes(plan, sizes, dtype)
        lines.append(f"{len(plan.tensors)} tensors in {len(capacity)} buffers: "
                     f"{shared / 2**20:.2f} MiB (unshared {unshared / 2**20:.2f} MiB)")
    return lines
