"""What `graphc summary` reports, as data: one row per node (and per block instance), with input
and output shapes, parameters split into trainable / frozen (`train.freeze`) / buffers, FLOPs,
and the totals; optionally the memory of a training step from the compiler's buffer plan.

The command (graphc.cli.check) prints it as a table or JSON; this module only computes it and
formats numbers. Shapes stay symbolic (`B×T×64`) until `--set B=…` binds their dims; counts
are sympy expressions then, printed as `10,664·B` and, once concrete, humanized (`35.9 M`).
Memory needs the back end (autodiff and the buffer plan import Numba), so it is computed only
when asked (`memory()`), never by `summarize()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import sympy

from graphc.shapes import fmt_shape

if TYPE_CHECKING:
    from graphc.ir import Graph
    from graphc.pipeline import Analysis

PARAM_BYTES = 4  # parameters train in float32


@dataclass
class Row:
    """A node, or a block instance standing for the nodes inside it (`kind` "block")."""

    name: str
    op: str  # the op, or `block <definition>` for a block instance
    depth: int  # block nesting: 0 at the top level
    inputs: list[tuple]  # shapes of what flows in (symbolic dims)
    outputs: list[tuple]  # shapes of what it produces (what leaves, for a block)
    trainable: int = 0
    frozen: int = 0
    buffers: int = 0
    flops: Any = 0  # int or sympy expression
    kind: str = "node"
    repeat: str = ""  # "1 of 2" for a repetition of a repeated block

    @property
    def params(self) -> int:
        return self.trainable + self.frozen + self.buffers


@dataclass
class Memory:
    """A training step's memory at concrete sizes (float32), from the buffer plan."""

    sizes: dict[str, int]
    param_bytes: int
    grad_bytes: int  # one gradient per trainable, unfrozen parameter
    planned_bytes: int  # activations and gradients in the plan's shared buffers
    unshared_bytes: int  # the same tensors, each in memory of its own
    fresh_bytes: int  # outputs, losses and input gradients: allocated anew every step
    tensors: int
    buffers: int

    @property
    def step_bytes(self) -> int:
        return self.planned_bytes + self.fresh_bytes


@dataclass
class Summary:
    name: str
    file: str
    rows: list[Row]  # in order, block rows before the nodes inside them
    freeze: list[str]
    flops: Any
    sizes: dict[str, int] = field(default_factory=dict)  # dims bound with --set
    memory: Memory | None = None

    @property
    def nodes(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "node"]

    def total(self, what: str) -> int:
        return sum(getattr(r, what) for r in self.nodes)

    @property
    def free_dims(self) -> list[str]:
        names = set()
        for r in self.nodes:
            for shape in r.outputs:
                names |= {s.name for d in shape for s in sympy.sympify(d).free_symbols}
        return sorted(names)

    def shown(self, depth: int | None) -> list[Row]:
        """The rows down to `depth` levels of block nesting (None: all of them)."""
        return [r for r in self.rows if depth is None or r.depth <= depth]


def summarize(analysis: Analysis) -> Summary:
    """The summary of an analysed spec (the front end only; no Numba)."""
    g = analysis.graph
    freeze = g.train.get("freeze") if isinstance(g.train, dict) else None
    freeze = [freeze] if isinstance(freeze, str) else [p for p in freeze or [] if isinstance(p, str)]
    rows: list[Row] = []
    blocks: dict[str, Row] = {}
    members: dict[str, set[str]] = {}  # block path → the nodes inside it
    for name in g.order:
        node = g.nodes[name]
        for depth, frame in enumerate(node.scope):
            if frame.path not in blocks:
                repeat = f"{frame.index + 1} of {frame.repeat}" if frame.index is not None else ""
                blocks[frame.path] = Row(frame.path, f"block {frame.block}", depth, [], [],
                                         kind="block", repeat=repeat)
                rows.append(blocks[frame.path])
                members[frame.path] = set()
            members[frame.path].add(name)
        row = _node_row(g, name, freeze)
        rows.append(row)
        for frame in node.scope:
            b = blocks[frame.path]
            b.trainable, b.frozen, b.buffers = b.trainable + row.trainable, b.frozen + row.frozen, \
                b.buffers + row.buffers
            b.flops = b.flops + row.flops
    for path, inside in members.items():
        blocks[path].inputs, blocks[path].outputs = _boundary(g, inside)
    flops = sympy.expand(sum((sympy.sympify(r.flops) for r in rows if r.kind == "node"), sympy.Integer(0)))
    declared = analysis.doc.get("constants") if hasattr(analysis.doc, "get") else None
    declared = declared if isinstance(declared, dict) else {}
    sizes = {k: int(g.constants[k]) for k in analysis.overrides or {}  # dims bound by --set
             if k in g.constants and k not in declared and isinstance(g.constants[k], int | sympy.Integer)}
    return Summary(g.name, analysis.file, rows, freeze, flops, sizes)


def _node_row(g: Graph, name: str, freeze: list[str]) -> Row:
    node = g.nodes[name]
    ins = [g.types[i.tensor].shape for i in node.inputs if i.tensor in g.types]
    outs = [g.types[(name, p)].shape for p in node.outputs if (name, p) in g.types]
    row = Row(name, node.op, len(node.scope), ins, outs, flops=g.flops.get(name, 0))
    for pname, p in g.params.get(name, {}).items():
        if not p.trainable:
            row.buffers += p.size
        elif any(fnmatchcase(f"{name}.{pname}", pat) for pat in freeze):
            row.frozen += p.size
        else:
            row.trainable += p.size
    return row


def _boundary(g: Graph, inside: set[str]) -> tuple[list[tuple], list[tuple]]:
    """Shapes of the tensors entering a block instance and of those leaving it."""
    entering = dict.fromkeys(i.tensor for n in sorted(inside, key=g.order.index)
                             for i in g.nodes[n].inputs if i.src not in inside)
    ends = set(g.outputs.values()) | set(g.losses.values())
    leaving = dict.fromkeys(i.tensor for n in g.order if n not in inside
                            for i in g.nodes[n].inputs if i.src in inside)
    leaving |= dict.fromkeys(t for t in ends if t[0] in inside)
    return ([g.types[t].shape for t in entering if t in g.types],
            [g.types[t].shape for t in leaving if t in g.types])


# ---- memory (the back end) -----------------------------------------------------------------
class MemoryUnknown(Exception):
    """Why the memory of a step cannot be computed (unbound dims, a spec the back end refuses)."""


def memory(analysis: Analysis, summary: Summary) -> Memory:
    """The memory of one training step at the bound sizes, from the buffer plan.

    Runs autodiff and the plan pass on `analysis` (which imports the compiler and Numba:
    about a second, so only on request). Raises MemoryUnknown when a dim is still symbolic."""
    free = summary.free_dims
    if free:
        raise MemoryUnknown("the memory of a step needs concrete sizes; bind "
                           + ", ".join(free) + " with " + " ".join(f"--set {d}=…" for d in free))
    from graphc.compiler.plan import assign, numel
    from graphc.pipeline import run

    run(analysis, until="plan", start="autodiff")
    if analysis.buffers is None:
        problems = "; ".join(d.message for d in analysis.errors) or "the back end did not run"
        raise MemoryUnknown(f"no buffer plan: {problems}")
    plan = analysis.buffers
    shapes = plan.shapes({})
    _, capacity = assign(plan, shapes)
    size = {v: numel(s) for v, s in shapes.items()}
    fresh = {}
    for call in analysis.program.forward + analysis.program.backward:
        for d in call.dests():
            if d.var in plan.fresh:
                fresh[d.var] = numel(int(sympy.sympify(x)) for x in d.shape)
    trainable = summary.total("trainable")
    return Memory(summary.sizes, summary.total("params") * PARAM_BYTES, trainable * PARAM_BYTES,
                  sum(capacity) * PARAM_BYTES, sum(size.values()) * PARAM_BYTES,
                  sum(fresh.values()) * PARAM_BYTES, len(plan.tensors), len(capacity))


# ---- formatting ----------------------------------------------------------------------------
def human(n: float) -> str:
    """`35,897,344` → `35.9 M`; below a thousand the number itself."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)}" if float(n).is_integer() else f"{n:.3g}"


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def fmt_count(value, humanize: bool = False) -> str:
    """A count that may be symbolic: `10664*B` → `10,664·B`; concrete → `1,290` (or `1.3 K`)."""
    value = sympy.sympify(value)
    if value.is_number:
        return human(int(value)) if humanize else f"{int(value):,}"
    text = str(sympy.factor_terms(value)).replace("**", "^").replace("*", "·")
    return re.sub(r"\d{4,}", lambda m: f"{int(m.group()):,}", text)


def json_shape(shape: tuple) -> list:
    """`(B, 64)` → `["B", 64]`: numbers as numbers, symbolic dims as their expression."""
    return [int(d) if sympy.sympify(d).is_Integer else str(d) for d in shape]


def json_count(value):
    value = sympy.sympify(value)
    return int(value) if value.is_number else str(value)


def to_json(s: Summary, depth: int | None = None) -> dict:
    rows = []
    for r in s.shown(depth):
        rows.append({"name": r.name, "kind": r.kind, "op": r.op, "depth": r.depth,
                     **({"repeat": r.repeat} if r.repeat else {}),
                     "inputs": [json_shape(x) for x in r.inputs],
                     "outputs": [json_shape(x) for x in r.outputs],
                     "params": r.params, "trainable": r.trainable, "frozen": r.frozen,
                     "buffers": r.buffers, "flops": json_count(r.flops)})
    totals = {"params": s.total("params"), "trainable": s.total("trainable"), "frozen": s.total("frozen"),
              "buffers": s.total("buffers"), "param_bytes": s.total("params") * PARAM_BYTES,
              "flops": json_count(s.flops)}
    out = {"file": s.file, "name": s.name, "sizes": s.sizes, "freeze": s.freeze, "rows": rows,
           "totals": totals}
    if s.memory is not None:
        m = s.memory
        out["memory"] = {"param_bytes": m.param_bytes, "grad_bytes": m.grad_bytes,
                         "planned_bytes": m.planned_bytes, "unshared_bytes": m.unshared_bytes,
                         "fresh_bytes": m.fresh_bytes, "step_bytes": m.step_bytes,
                         "tensors": m.tensors, "buffers": m.buffers}
    return out


def fmt_shapes(shapes: list[tuple]) -> str:
    return ", ".join(fmt_shape(s) for s in shapes)
