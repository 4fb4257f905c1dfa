"""Code generation: a `Program` becomes one readable Python module with `forward` and
`backward`, straight-line calls into the kernel library, named after the spec's nodes.

This is the only module that prints Python: the passes before it work on `Call`s as data
(graphc.compiler.calls). The generated driver is plain Python on purpose: the heavy lifting
is in the Numba kernels (compiled once, cached on disk, shared by every spec), so a new
spec's first step costs no compile of its own; see the README's architecture notes.
"""

from __future__ import annotations

import math

import sympy

from graphc import __version__
from graphc.compiler.calls import (
    Absent,
    Call,
    Const,
    Dest,
    Drop,
    Many,
    Mode,
    Operand,
    Out,
    Param,
    ParamGrad,
    Program,
    Result,
    Shape,
    Value,
    Vector,
    ZerosLike,
)
from graphc.compiler.plan import BufferPlan, describe
from graphc.ops.registry import Choice
from graphc.shapes import lift_quotients

WIDTH = 100


def pyexpr(d, dim_vars: dict[str, str] | None = None) -> str:
    """A dimension (sympy) as Python source over the bound dimension variables, in exact
    integer arithmetic: `floor(H/3 - 1/3)` is `(H - 1) // 3`. (sympy's own Python printer
    writes `math.floor((1/3)*H - 1/3)`, which is 1 for H = 7: 7/3 - 1/3 is 1.999… in floats.)
    A quotient inside min, max or mod is taken out first (shapes.lift_quotients): `Max(3, H/2)`
    is `max(6, H) // 2`, never `max(3, H // 2)`, which floors a part of the size."""
    d = lift_quotients(sympy.sympify(d))
    if dim_vars:  # a dim named like a driver local (`P`, `S`, a node) has a renamed variable
        d = d.subs({s: sympy.Symbol(dim_vars[str(s)]) for s in d.free_symbols
                    if dim_vars.get(str(s), str(s)) != str(s)})
    return _int_source(d)


def sizes_function(name: str, dims, more: str = "") -> tuple[list[str], dict[str, str]]:
    """The head of a generated `name(sizes)` that computes with the dims (the buffer plan's
    shapes, the guards' checks), `more` its further parameters: its lines so far, and each
    dim's local variable for pyexpr."""
    names = sorted(dims)
    local = {d: f"d_{i}" for i, d in enumerate(names)}
    head = f"def {name}(sizes{', ' + more if more else ''}):"
    return [head, *[f"    {local[d]} = sizes[{d!r}]" for d in names]], local


def _int_source(e) -> str:
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return e.name
    if isinstance(e, sympy.floor | sympy.ceiling):
        num, den = (_operand(x) for x in sympy.fraction(sympy.together(e.args[0])))
        return f"{num} // {den}" if isinstance(e, sympy.floor) else f"-(-{num} // {den})"
    num, den = sympy.fraction(sympy.together(e))
    if den != 1:  # a quotient the shape rules found whole (any other size is an error)
        return f"{_operand(num)} // {_operand(den)}"
    if e.is_Add:  # symbols first, the constant last, `H - 1` rather than `-1 + H`
        terms = sorted(e.args, key=lambda a: (a.is_number, str(a)))
        text = _int_source(terms[0])
        for a in terms[1:]:
            negative = a.could_extract_minus_sign()
            text += f" - {_int_source(-a)}" if negative else f" + {_int_source(a)}"
        return text
    if e.is_Mul:
        if e.args[0] == -1:
            return "-" + _operand(sympy.Mul(*e.args[1:]))
        return "*".join(_operand(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp >= 0:
        return f"{_operand(e.base)}**{int(e.exp)}"
    if isinstance(e, sympy.Max | sympy.Min):
        return f"{type(e).__name__.lower()}(" + ", ".join(_int_source(a) for a in e.args) + ")"
    if isinstance(e, sympy.Mod):
        return f"{_operand(e.args[0])} % {_operand(e.args[1])}"
    raise ValueError(f"a dimension graphc cannot compute in integers: {e}")


def _operand(e) -> str:
    """`e` as an operand of *, //, % or **: in parentheses unless a name, number or call."""
    text = _int_source(e)
    return text if e.is_Atom or isinstance(e, sympy.Max | sympy.Min) else f"({text})"


class _Printer:
    def __init__(self, prog: Program, buffers: BufferPlan):
        self.prog, self.buffers = prog, buffers
        self.choices: dict[str, int] = {}  # the lowered choices the calls name, by name

    def argument(self, name: str, op: Operand) -> str:
        """A keyword argument's value; a lowered choice by a name the driver defines."""
        if isinstance(op, Const) and isinstance(op.value, Choice):
            constant = f"{name}_{op.value.name}".upper()
            self.choices[constant] = int(op.value)
            return constant
        return self.operand(op)

    def operand(self, op: Operand) -> str:
        match op:
            case Value(var, saved):
                return f'S["{var}"]' if saved else var
            case Param(name):
                return f'P["{name}"]'
            case Const(value):
                return _literal(value)
            case Absent():
                return "_E"
            case Shape(dims):
                return "(" + ", ".join(pyexpr(d, self.prog.dim_vars) for d in dims) + ",)"
            case Mode():
                return "training"
            case Many(items):
                return "[" + ", ".join(self.operand(i) for i in items) + "]"
            case ZerosLike(of):
                return f"np.zeros_like({self.operand(of)})"
            case Vector(of):
                return f"{self.operand(of)}.reshape(1)"
            case Dest(var, shape) if var in self.buffers.fresh:
                dims = ", ".join(pyexpr(d, self.prog.dim_vars) for d in shape)
                return f"np.empty(({dims}{',' if len(shape) == 1 else ''}), dtype)"
            case Dest(var, _):
                return f'buf["{var}"]'
        raise TypeError(f"no printer for operand {op!r}")

    @staticmethod
    def result(r: Result) -> str:
        match r:
            case Out(var):
                return var
            case ParamGrad(name, part):
                return part or f'G["{name}"]'
            case Drop():
                return "_"
        raise TypeError(f"no printer for result {r!r}")

    def call(self, c: Call, step: str, indent: str = "    ") -> list[str]:
        lines = [f"{indent}# [{step}] {c.comment}"]  # step: the call's place in the buffer plan
        if c.noise:
            lines.append(f"{indent}{c.noise.var} = rng.random({c.noise.like}.shape, dtype=dtype) "
                         "if training else _E")
        targets = [self.result(r) for r in c.results]
        args = [f"{k}={self.argument(k, v)}," for k, v in c.args.items()]
        head = ", ".join(targets) + ("," if len(targets) == 1 else "") + f" = {c.kernel}("
        one = f"{indent}{head}{' '.join(args).removesuffix(',')})"
        if len(one) <= WIDTH:
            lines.append(one)
        else:
            if len(indent + head) > WIDTH:  # many results: one parenthesised target list
                lines.append(f"{indent}(")
                lines += _pack([t + "," for t in targets], indent + "    ")
                head = f") = {c.kernel}("
            lines.append(f"{indent}{head}")
            lines += _pack(args, indent + "    ")  # whole arguments per line, never split inside one
            lines.append(f"{indent})")
        for acc in c.accumulate:  # in place when the sum is memory of the step's own
            if acc.total in self.buffers.owned:
                lines.append(f"{indent}np.add({acc.total}, {acc.part}, out={acc.total})")
            else:
                lines.append(f"{indent}{acc.total} = {acc.total} + {acc.part}")
        for r in c.results:  # a shared parameter: the gradients of all its users add up
            if isinstance(r, ParamGrad) and r.part:
                lines.append(f'{indent}G["{r.name}"] = G["{r.name}"] + {r.part}')
        if c.scalar:
            lines.append(f"{indent}{c.scalar} = {c.scalar}.reshape(())")
        return lines


def _literal(value) -> str:
    """A constant as Python source; infinities (clamp without a bound) and NaN by name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "math.nan" if math.isnan(value) else ("math.inf" if value > 0 else "-math.inf")
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _pack(items: list[str], indent: str) -> list[str]:
    lines, row = [], ""
    for item in items:
        if row and len(indent) + len(row) + 1 + len(item) > WIDTH:
            lines.append(indent + row)
            row = item
        else:
            row = f"{row} {item}" if row else item
    return lines + [indent + row]


def _backward_symbols(prog: Program, buffers: BufferPlan) -> set[str]:
    """Driver names the backward's arguments mention: `training` and symbolic dims."""
    names: set[str] = set()
    for c in prog.backward:
        for op in c.args.values():
            if isinstance(op, Mode):
                names.add("training")
            dims = op.dims if isinstance(op, Shape) else op.shape if (
                isinstance(op, Dest) and op.var in buffers.fresh) else ()
            for d in dims:
                names |= {prog.dim_vars.get(str(s), str(s)) for s in sympy.sympify(d).free_symbols}
    return names


def generate(prog: Program, buffers: BufferPlan, source_file: str) -> str:
    g = prog.graph
    p = _Printer(prog, buffers)
    out = [
        f'"""Forward and backward of `{g.name}`, generated by graphc {__version__} from {source_file}.',
        "",
        "Do not edit: regenerate with `graphc compile SPEC --emit DIR`. Variables are named after",
        "spec nodes; each comment gives the node, its op, its output shape and its spec line.",
        "Kernels write into `buf`, views of preallocated buffers (graphc.compiler.plan), or into",
        "fresh arrays for what leaves the step (outputs, losses, input gradients).",
        '"""',
        "",
        "import math",
        "",
        "import numpy as np",
        "",
        "# Buffer plan: live range of each planned tensor, from the call that writes it to the",
        "# last call that reads it (fN: Nth forward call, bN: Nth backward call). Tensors share a",
        "# buffer when their ranges do not overlap; the sizes are fixed when a batch arrives.",
        *[f"#   {line}" for line in describe(buffers)],
        "",
        "",
        "def forward(P, X, buf, training, rng, dtype):",
        "    _E = np.zeros(0, dtype)  # stands in for an absent optional input or parameter",
    ]
    for node in g.inputs:
        t = g.types.get((node.name, "out"))
        out.append(f'    {prog.tensors[(node.name, "out")]} = X["{node.name}"]  # {t}')
    for dim, (inp, axis) in sorted(prog.dims.items()):
        out.append(f"    {prog.dim_vars.get(dim, dim)} = {prog.tensors[(inp, 'out')]}.shape[{axis}]")
    for i, c in enumerate(prog.forward):
        out.append("")
        out += p.call(c, f"f{i}")
    used = _backward_symbols(prog, buffers)
    saved = [v for c in prog.forward for v in c.bound()] + [prog.tensors[(n.name, "out")] for n in g.inputs]
    saved += [c.noise.var for c in prog.forward if c.noise]
    saved += ["training"] if "training" in used else []  # dropout/batchnorm backward need the mode
    out += ["", "    S = dict(", *[f"        {v}={v}," for v in saved], "    )"]
    outputs = ", ".join(f'"{k}": {prog.tensors[t]}' for k, t in g.outputs.items())
    losses = ", ".join(f'"{k}": {prog.tensors[t]}' for k, t in g.losses.items())
    out += [f"    return {{{outputs}}}, {{{losses}}}, S", "", ""]
    out += ["def backward(P, S, buf, dtype, W):",
            '    """Gradients of sum(W[loss] * loss): G for parameters, GX for inputs."""',
            "    _E = np.zeros(0, dtype)", "    G, GX = {}, {}"]
    if "training" in used:
        out.append('    training = S["training"]')
    for dim, (inp, axis) in sorted(prog.dims.items()):  # e.g. reshape's [B, -1] in the backward
        var = prog.dim_vars.get(dim, dim)
        if var in used:
            out.append(f'    {var} = S["{prog.tensors[(inp, "out")]}"].shape[{axis}]')
    for var, loss in prog.seeds.items():
        out.append(f'    {var} = np.full((), W["{loss}"], dtype)  # d(objective)/d({loss}): its weight')
    for i, c in enumerate(prog.backward):
        out.append("")
        out += p.call(c, f"b{i}")
    for name, var in prog.input_grads.items():
        out.append(f'    GX["{name}"] = {var}')
    out += ["    return G, GX", ""]
    if p.choices:  # string attributes as their kernels take them (graphc.ops.registry.Choice)
        at = out.index("import numpy as np") + 2
        out[at:at] = ["# String attributes, as the kernels take them: the choice's index."]
        out[at + 1:at + 1] = [f"{name} = {value}" for name, value in sorted(p.choices.items())] + [""]
    return "\n".join(out)
