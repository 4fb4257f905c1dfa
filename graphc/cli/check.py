"""`graphc check`, `summary`, `schema`, `ops`: the front end only (load → expand → validate →
infer); none of them loads Numba."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from graphc.cli.common import analyze_or_exit, console, format_option, parse_overrides, report, set_option

if TYPE_CHECKING:
    from graphc.pipeline import Analysis


def _outputs(analysis: Analysis) -> dict[str, str]:
    from graphc.shapes import fmt_shape

    g = analysis.graph
    named = {**g.outputs, **g.losses}
    return {name: fmt_shape(g.types[t].shape) for name, t in named.items() if t in g.types}


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@set_option
@format_option
def check(specs, sets, fmt):
    """Validate specs and infer their shapes; print the output shapes or the problems."""
    from graphc.diagnostics import summary_line, to_json
    from graphc.pipeline import analyze

    overrides = parse_overrides(sets)
    failed = False
    results = []
    for spec in specs:
        a = analyze(spec, overrides)
        failed |= not a.ok
        if fmt == "json":
            results.append({"file": spec, "ok": a.ok, "outputs": _outputs(a) if a.ok else {},
                            "diagnostics": json.loads(to_json(a.diagnostics))["diagnostics"]})
            continue
        report(a)
        if a.ok:
            g = a.graph
            out = ", ".join(f"{k} [{v}]" for k, v in _outputs(a).items())
            warn = f"; {summary_line(a.diagnostics)}" if a.diagnostics else ""
            click.echo(f"{spec}: ok — {len(g.nodes)} nodes, {g.param_count(trainable_only=True):,} "
                       f"parameters; {out}{warn}")
        else:
            console(stderr=True).print(f"[bold red]{spec}[/]: {summary_line(a.diagnostics)}")
    if fmt == "json":
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2, default=str,
                              ensure_ascii=False))
    sys.exit(1 if failed else 0)


def _fmt_flops(f) -> str:
    import sympy

    f = sympy.sympify(f)
    if f.is_number:
        v = float(f)
        for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if v >= scale:
                return f"{v / scale:.2f}{unit}"
        return f"{int(v)}"
    return str(sympy.factor_terms(f)).replace("**", "^")


@click.command()
@click.argument("spec", type=click.Path())
@set_option
@format_option
def summary(spec, sets, fmt):
    """A table of every node: op, output shape (symbolic), parameters and FLOPs, with totals.

    Bind dimensions to get numbers: `graphc summary spec.yaml --set B=64 --set T=16`."""
    import sympy
    from rich.table import Table

    from graphc.shapes import fmt_shape

    a = analyze_or_exit(spec, parse_overrides(sets), fmt)
    g = a.graph
    rows = []
    for name in g.order:
        node = g.nodes[name]
        shapes = [fmt_shape(g.types[(name, p)].shape) for p in node.outputs if (name, p) in g.types]
        rows.append({"node": name, "op": node.op, "shape": ", ".join(shapes),
                     "params": g.param_count(name), "flops": g.flops.get(name, 0)})
    total_flops = sympy.expand(sum(sympy.sympify(r["flops"]) for r in rows))
    trainable = g.param_count(trainable_only=True)
    buffers = g.param_count() - trainable
    if fmt == "json":
        click.echo(json.dumps({"file": spec, "nodes": [{**r, "flops": str(r["flops"])} for r in rows],
                               "params": trainable, "buffers": buffers, "flops": str(total_flops)},
                              indent=2))
        return
    table = Table(title=f"{g.name} — {spec}", title_justify="left")
    for col, just in (("node", "left"), ("op", "left"), ("output shape", "left"),
                      ("params", "right"), ("FLOPs", "right")):
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(r["node"], r["op"], r["shape"], f"{r['params']:,}" if r["params"] else "",
                      _fmt_flops(r["flops"]) if r["flops"] else "")
    table.add_section()
    table.add_row("total", "", "", f"{trainable:,}", _fmt_flops(total_flops))
    out = console()
    out.print(table)
    if buffers:
        out.print(f"non-trainable buffers: {buffers:,}")


@click.command()
def schema():
    """Print the JSON Schema of the spec format (generated from the op registry)."""
    from graphc.schema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


@click.command()
@click.argument("name", required=False)
def ops(name):
    """List every op, or show one op's inputs and attributes."""
    from rich.table import Table

    from graphc.ops import OPS

    out = console()
    if name:
        op = OPS.get(name)
        if op is None:
            from graphc.diagnostics import did_you_mean

            hint = did_you_mean(name, OPS) or "run `graphc ops` for the list"
            click.echo(f"error: unknown op `{name}`; {hint}", err=True)
            sys.exit(1)
        out.print(f"[bold]{op.name}[/] ({op.family}): {op.doc}")
        ports = ", ".join(f"{p.name}{'?' if p.optional else ''}{'…' if p.variadic else ''}"
                          f" ({p.dtype})" for p in op.inputs)
        out.print(f"inputs: {ports}")
        for k, a in op.attrs.items():
            default = "required" if a.required else f"default {a.default!r}"
            choices = f"; one of {', '.join(a.choices)}" if a.choices else ""
            out.print(f"  {k}: {a.type}, {default}{choices} — {a.doc}")
        return
    table = Table(show_header=True)
    table.add_column("op")
    table.add_column("family")
    table.add_column("description")
    for op in sorted(OPS.values(), key=lambda o: (o.family, o.name)):
        table.add_row(op.name, op.family, op.doc.splitlines()[0])
    out.print(table)
