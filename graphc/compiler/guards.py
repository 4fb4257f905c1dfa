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

`guard_source(graph, dims)` writes `check(sizes)` as plain Python over the bound dims (no sympy:
it is saved with a compiled model, graphc.compiler.saved); it returns None when every guard
holds, else the index of the first that fails and the value found there. `CompiledModel.feed`
turns that into an InputError naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guard:
    node: str
    op: str
    what: str  # e.g. "output axis 2, (H/2 - 1/2)"
    kind: str  # "whole": must be a whole number; "size": must be ≥ 1; "bound": must be ≥ 0


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
    from graphc.shapes import fmt_dim, is_integral

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
            num, den = sympy.fraction(sympy.together(d))
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


def guard_source(graph, dims: set[str]) -> tuple[str, list[Guard]]:
    """Python source of `check(sizes)` and the guards it checks, in order."""
    from graphc.compiler.codegen import pyexpr, sizes_function

    found = guards_of(graph, dims)
    lines, local = sizes_function("check", dims)
    for i, (g, num, den) in enumerate(found):
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
    return "\n".join(lines) + "\n", [g for g, _, _ in found]


def message(g: Guard, value, sizes: dict[str, int]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
    head = f"the batch's dims ({where}) do not fit node `{g.node}` ({g.op}): "
    if g.kind == "whole":
        return head + (f"its {g.what} is {value} there, not a whole number (an `exact` size; "
                       "`round: floor` drops the last partial window)")
    if g.kind == "size":
        return head + f"its {g.what} is {value} there: the output would be empty"
    return head + f"{g.what} (short by {-value})"
