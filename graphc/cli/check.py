"""`graphc check`, `summary`, `schema`, `ops`: the front end only (load → expand → validate →
infer); none of them loads Numba."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from graphc.cli.common import (
    analyze_or_exit,
    console,
    fail,
    format_option,
    parse_overrides,
    report,
    set_option,
)

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
            shared = f" ({len(g.ties)} shared)" if g.ties else ""
            click.echo(f"{spec}: ok — {len(g.nodes)} nodes, {g.param_count(trainable_only=True):,} "
                       f"parameters{shared}; {out}{warn}")
        else:
            console(stderr=True).print(f"[bold red]{spec}[/]: {summary_line(a.diagnostics)}")
    if fmt == "json":
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2, default=str,
                              ensure_ascii=False))
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("spec", type=click.Path())
@set_option
@format_option
@click.option("--depth", type=click.IntRange(min=0), default=None, metavar="N",
              help="Show blocks nested up to N levels (0: top-level nodes and one row per block "
                   "instance with its subtotals). Default: every node.")
@click.option("--memory", "with_memory", is_flag=True,
              help="Also the memory of a training step (parameters, gradients, activations from "
                   "the buffer plan). Needs every dim bound (--set B=64); loads the compiler (~1 s).")
def summary(spec, sets, fmt, depth, with_memory):
    """A table of every node: op, input and output shapes (symbolic), parameters and FLOPs, with
    per-block subtotals and totals (trainable / frozen by train.freeze / buffers, bytes).

    Bind dimensions to get numbers: `graphc summary spec.yaml --set B=64 --set T=16 --memory`."""
    from graphc.summary import MemoryUnknown, memory, summarize, to_json

    a = analyze_or_exit(spec, parse_overrides(sets), fmt)
    s = summarize(a)
    if with_memory:
        try:
            s.memory = memory(a, s)
        except MemoryUnknown as exc:
            fail(f"--memory: {exc}", 2 if s.free_dims else 1)
    if fmt == "json":
        click.echo(json.dumps({**to_json(s, depth), "shared": dict(a.graph.ties)}, indent=2,
                              ensure_ascii=False))
        return
    _print_summary(s, depth, a.graph.ties)


def _print_summary(s, depth: int | None, shared: dict[str, str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from graphc.summary import PARAM_BYTES, fmt_count, fmt_shapes, human, human_bytes

    split = any(r.frozen or r.buffers for r in s.nodes)
    table = Table()
    for col, just in (("node", "left"), ("op", "left"), ("input shape", "left"),
                      ("output shape", "left"), ("params", "right"), ("FLOPs", "right")):
        table.add_column(col, justify=just)
    if split:
        table.add_column("trainable", justify="left")
    for r in s.shown(depth):
        block = r.kind == "block"
        op = f"{r.op} ({r.repeat})" if r.repeat else r.op
        params = [f"{r.params:,}"] if r.params else []
        if not block:  # a shared parameter (`tie:`) is counted at its owner
            params += [f"{mine.rsplit('.', 1)[1]} = {owner}" for mine, owner in shared.items()
                       if mine.rsplit(".", 1)[0] == r.name]
        cells = ["  " * r.depth + r.name, op, fmt_shapes(r.inputs), fmt_shapes(r.outputs),
                 ", ".join(params), fmt_count(r.flops, humanize=True) if r.flops else ""]
        if split:
            cells.append(_trainable(r))
        table.add_row(*cells, style="bold" if block else None)
    out = console()
    out.print(f"[bold]{escape(s.name)}[/] — {escape(s.file)}")  # not a table title: rich pads those
    out.print(table)
    total, trainable, frozen, buffers = (s.total(k) for k in ("params", "trainable", "frozen", "buffers"))
    lines = [f"params    {total:,}" + (f" ({human(total)})" if total >= 1000 else "")
             + f", {human_bytes(total * PARAM_BYTES)} in float32"]
    if split:
        parts = [f"trainable {trainable:,}"]
        if frozen:
            parts.append(f"frozen {frozen:,} (train.freeze: {', '.join(s.freeze)})")
        if buffers:
            parts.append(f"buffers {buffers:,} (not trained, e.g. running statistics)")
        lines.append("          " + " · ".join(parts))
    for mine, owner in shared.items():
        lines.append(f"shared    `{mine}` is `{owner}` (one parameter used twice, counted once)")
    flops = fmt_count(s.flops)
    concrete = sympy_number(s.flops)
    lines.append(f"FLOPs     {flops}" + (f" ({human(concrete)})" if concrete is not None and concrete >= 1000
                                         else "") + " per forward pass")
    if s.sizes:
        lines.append("sizes     " + ", ".join(f"{k}={v}" for k, v in s.sizes.items()))
    if s.memory is not None:
        m = s.memory
        lines += ["memory of a training step (float32):",
                  f"  parameters   {human_bytes(m.param_bytes)}",
                  f"  gradients    {human_bytes(m.grad_bytes)} (trainable parameters)",
                  f"  activations  {human_bytes(m.planned_bytes)} in {m.buffers} shared buffers for "
                  f"{m.tensors} tensors ({human_bytes(m.unshared_bytes)} unshared)",
                  f"  results      {human_bytes(m.fresh_bytes)} (outputs, losses, input gradients)",
                  f"  total        {human_bytes(m.param_bytes + m.grad_bytes + m.step_bytes)} "
                  "(plus optimizer state and kernel scratch)"]
    elif s.free_dims:
        lines.append("numbers   bind " + ", ".join(s.free_dims) + " for concrete sizes ("
                     + " ".join(f"--set {d}=…" for d in s.free_dims) + "), and add --memory for "
                     "the memory of a training step")
    else:
        lines.append("memory    add --memory for the memory of a training step")
    for line in lines:
        out.print(line)


def sympy_number(value) -> int | None:
    import sympy

    value = sympy.sympify(value)
    return int(value) if value.is_number else None


def _trainable(r) -> str:
    if not r.params:
        return ""
    kinds = [k for k in ("trainable", "frozen", "buffers") if getattr(r, k)]
    if len(kinds) == 1:
        return {"trainable": "yes", "frozen": "frozen", "buffers": "buffers"}[kinds[0]]
    return ", ".join(f"{getattr(r, k):,} {k}" for k in kinds)


@click.command()
def schema():
    """Print the JSON Schema of the spec format (generated from the op registry)."""
    from graphc.schema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


def _complete_op(ctx, param, incomplete: str):
    """Op names for the shell (`graphc ops con<TAB>`), from a cache (graphc.cli.common.op_names)."""
    from graphc.cli.common import op_names

    return [name for name in op_names() if name.startswith(incomplete)]


def _yaml_value(value) -> str:
    """A default as it would be written in a spec: `true`, `null`, `exact`, `[1, 1]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


@click.command()
@click.argument("name", required=False, shell_complete=_complete_op)
def ops(name):
    """List every op, or show one op's documentation, inputs and attributes."""
    from rich.markup import escape
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
        # the docs are plain text with brackets ([B, T, D], [kh, kw]): never rich markup
        out.print(f"[bold]{escape(op.name)}[/] ({escape(op.family)}): {escape(op.doc)}")
        ports = ", ".join(f"{p.name}{'?' if p.optional else ''}{'…' if p.variadic else ''}"
                          f" ({p.dtype})" for p in op.inputs)
        out.print(f"inputs: {escape(ports)}")
        for k, a in op.attrs.items():
            default = "required" if a.required else f"default {_yaml_value(a.default)}"
            choices = f"; one of {', '.join(a.choices)}" if a.choices else ""
            out.print(escape(f"  {k}: {a.type}, {default}{choices} — {a.doc}"))
        return
    table = Table(show_header=True)
    table.add_column("op")
    table.add_column("family")
    table.add_column("description")
    for op in sorted(OPS.values(), key=lambda o: (o.family, o.name)):
        table.add_row(escape(op.name), escape(op.family), escape(op.doc.splitlines()[0]))
    out.print(table)
