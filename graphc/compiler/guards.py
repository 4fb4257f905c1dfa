"""Dimension guards: what a batch's dims must satisfy for every inferred size to be real.

The shape rules keep a size that depends on symbolic dims as an expression: an `exact` conv's
`(H - 3)/2 + 1`, a reshape's `-1` axis `C·H·W / 6`, a floored pool's `floor((H - 2)/2) + 1`.
`check` reports a concrete size that is not whole or not ≥ 1, but for a symbolic one that
depends on the batch. The driver computes sizes in integer arithmetic (codegen.pyexpr), so
without a check here a batch with an even H silently floors the exact conv (the documented
promise is "never a silent floor"), and one with H smaller than the kernel gets an empty or
negative size deep inside a kernel. Some ops also constrain their input's dims beyond their
output's size (a slice's `stop` must not pass the end of a symbolic axis); they register a
`guards` rule (graphc.ops.registry) returning expressions that must be ≥ 0.

An input may declare an axis as an expression of dims that other inputs bind (`[2*B, 3]`,
`[B, H/2 + 1/2]`): the batch's axis must be the expression's value there (an `InputGuard`).
Its value is computed exactly, as sympy would (ints, and `Fraction`s where a quotient need not
be whole), so `H/2 + 1/2` at an even H is 7/2 and fits no batch: by graphc.dimexpr,
from the text the model's TensorSpec shows, the same evaluator the data feeder uses
(graphc.runtime.data.feed) to check such an axis and to size a generated input.

`guard_source(graph, dims)` writes `check(sizes, fed=None)` as plain Python over the bound dims
(no sympy: it is saved with a compiled model, graphc.compiler.saved, and a restored model feeds
batches without the front end); given the fed arrays it checks the declared input axes first.
It returns None when every guard holds, else the index of the first that fails and the value
found there. `CompiledModel.feed` turns that into an InputError naming the node or input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guard:
    node: str
    op: str
    what: str  # e.g. "output axis 2, (H/2 - 1/2)"
    kind: str  # "whole": must be a whole number; "size": must be ≥ 1; "bound": must be ≥ 0


@dataclass(frozen=True)
class InputGuard:
    """An input axis declared as an expression (`2*B`) must hold its value at the bound dims."""

    input: str
    axis: int
    expr: str  # as the model's TensorSpec shows it
    bound_by: tuple[tuple[str, str], ...]  # (dim, the input it is bound from), the expression's dims


def _input_guards(graph, dims: set[str]) -> list[InputGuard]:
    """One per input axis declared as an expression over the dims a batch binds (one over a dim
    no input binds has no value to check), in the order `feed` reads them."""
    import sympy

    binder: dict[str, str] = {}  # each dim's first input, where `feed` binds it
    for node in graph.inputs:
        for d in node.shape_spec:
            if str(d).isidentifier():
                binder.setdefault(str(d), node.name)
    found = []
    for node in graph.inputs:
        for axis, d in enumerate(node.shape_spec):
            d = sympy.sympify(d)
            names = {str(s) for s in d.free_symbols}
            if d.is_Integer or str(d).isidentifier() or not names or not names <= dims:
                continue
            found.append(InputGuard(node.name, axis, str(d), tuple((n, binder[n]) for n in sorted(names))))
    return found


def _axes_of(graph, node) -> list[tuple[str, object]]:
    out = []
    for port in node.outputs:
        t = graph.types.get((node.name, port))
        if t is None:
            continue
        where = "output" if port == "out" else f"output `{port}`"
        out += [(f"{where} axis {i}", d) for i, d in enumerate(t.shape)]
    return out


def guards_of(graph, dims: set[str]) -> list[tuple[Guard, object, object]]:
    """(guard, numerator, denominator) per condition: "whole" guards num % den == 0, "size"
    guards num // den ≥ 1, "bound" guards num ≥ 0. Only sizes over the dims a batch binds."""
    import sympy

    from graphc.ops.registry import OPS
    from graphc.shapes import fmt_dim, is_integral, lift_quotients

    found, seen = [], set()
    for name in graph.order or list(graph.nodes):
        node = graph.nodes[name]
        if node.is_input:
            continue
        for what, d in _axes_of(graph, node):
            d = sympy.sympify(d)
            # a number was checked by the shape rule; a dim (B, T) is a whole number ≥ 1; a size
            # seen before is guarded where it first appears
            if d.is_number or d.is_Symbol or d in seen or not {str(s) for s in d.free_symbols} <= dims:
                continue
            seen.add(d)
            # one quotient of whole-number expressions, so the generated integer arithmetic is exact
            num, den = sympy.fraction(sympy.together(lift_quotients(d)))
            if is_integral(d) is not True:
                found.append((Guard(name, node.op, f"{what}, {fmt_dim(d)},", "whole"), num, den))
            if (d - 1).is_nonnegative is not True:
                found.append((Guard(name, node.op, f"{what}, {fmt_dim(d)},", "size"), num, den))
        rule = OPS[node.op].rules.get("guards") if node.op in OPS else None
        if rule is not None:
            inputs = {i.port: graph.types.get(i.tensor) for i in node.inputs}
            if all(t is not None for t in inputs.values()):
                for e, what in rule(node.attrs, inputs):
                    e = sympy.sympify(e)
                    if not e.is_number and {str(s) for s in e.free_symbols} <= dims \
                            and e.is_nonnegative is not True:
                        found.append((Guard(name, node.op, what, "bound"), e, sympy.Integer(1)))
    return found


def guard_source(graph, dims: set[str]) -> tuple[str, list[Guard | InputGuard]]:
    """Python source of `check(sizes, fed=None)` and the guards it checks, in order."""
    from graphc import dimexpr
    from graphc.compiler.codegen import pyexpr, sizes_function

    inputs = _input_guards(graph, dims)
    found = guards_of(graph, dims)
    lines, local = sizes_function("check", dims, "fed=None")
    if inputs:
        lines[:0] = ["from graphc.dimexpr import UndefinedDim, value", ""]
        lines.append("    if fed is not None:")
    for i, g in enumerate(inputs):
        dimexpr.parse(g.expr)  # DimExprError (a ValueError) now, not at the first batch
        got = f"fed[{g.input!r}].shape"
        # a quotient by a dim (`T/B`) has no value at B = 0 (a batch of no samples)
        lines += ["        try:", f"            _v = value({g.expr!r}, sizes)", "        except UndefinedDim:",
                  "            _v = None"]
        lines.append(f"        if _v is None or _v != {got}[{g.axis}]:")
        lines.append(f"            return {i}, ({got}, _v)")
    for i, (g, num, den) in enumerate(found, len(inputs)):
        n, m = pyexpr(num, local), pyexpr(den, local)
        if g.kind == "whole":
            lines.append(f"    if (_n := {n}) % (_m := {m}):")
            lines.append(f"        return {i}, f'{{_n}}/{{_m}}'")
        elif g.kind == "size":
            lines.append(f"    if (_v := ({n}) // ({m})) < 1:")
            lines.append(f"        return {i}, _v")
        else:
            lines.append(f"    if (_v := {n}) < 0:")
            lines.append(f"        return {i}, _v")
    lines.append("    return None")
    return "\n".join(lines) + "\n", [*inputs] + [g for g, _, _ in found]


def message(g: Guard | InputGuard, value, sizes: dict[str, int]) -> str:
    if isinstance(g, InputGuard):
        shape, want = value
        where = ", ".join(f"{d}={sizes[d]} from `{binder}`" for d, binder in g.bound_by)
        want = "undefined (a division by zero)" if want is None else want
        return f"input `{g.input}` has shape {shape}; axis {g.axis} must be {g.expr} = {want} ({where})"
    where = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
    head = f"the batch's dims ({where}) do not fit node `{g.node}` ({g.op}): "
    if g.kind == "whole":
        from graphc.ops.registry import OPS

        # only windowed ops (conv, pool) can round a size down instead
        hint = " (an `exact` size; `round: floor` drops the last partial window)" \
            if g.op in OPS and "round" in OPS[g.op].attrs else ""
        return head + f"its {g.what} is {value} there, not a whole number{hint}"
    if g.kind == "size":
        return head + f"its {g.what} is {value} there: the output would be empty"
    return head + f"{g.what} (short by {-value})"
