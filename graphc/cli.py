"""The `graphc` command line. Exit status: 0 ok, 1 problems found in the input, 2 usage error.

User mistakes never produce a traceback: every command turns them into diagnostics or a
one-line message. Heavy imports (Numba) happen inside the commands that need them.
"""

from __future__ import annotations

import json
import sys

import click
import sympy
import yaml
from rich.console import Console
from rich.table import Table

from graphc.diagnostics import DiagnosticPrinter, summary_line, to_json
from graphc.pipeline import Analysis, analyze
from graphc.shapes import fmt_shape


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """`--set d_model=256 --set optimizer.lr=1e-3` → {"d_model": 256, "optimizer.lr": 0.001}."""
    from graphc.spec.loader import _Loader

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got `{pair}`", param_hint="--set")
        try:
            out[key.strip()] = yaml.load(value, Loader=_Loader) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="Override a constant, bind a dimension (B=32), or a train setting "
                               "(optimizer.lr=1e-3). Repeatable.")
format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Output format.")


# Commands that live in their own modules, imported only when used (keeps `graphc check` fast
# and keeps Numba out of the front-end commands). name → "module:attribute".
LAZY_COMMANDS: dict[str, str] = {
    "lint": "graphc.lint.command:lint",
    "compile": "graphc.compiler.commands:compile_command",
    "gradcheck": "graphc.compiler.commands:gradcheck",
    "bench": "graphc.compiler.commands:bench",
    "doctor": "graphc.doctor:doctor",
    "train": "graphc.training:train",
    "eval": "graphc.training:evaluate",
    "sample": "graphc.training:sample",
    "render": "graphc.render:render",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.version_option(package_name="graphc")
def main():
    """graphc: declarative neural-network specs — check, summarize, lint, render, compile, train."""


def report(analysis: Analysis, fmt: str = "text") -> None:
    """Print an analysis' diagnostics (stderr) in the chosen format."""
    if fmt == "text":
        DiagnosticPrinter().print_all(analysis.diagnostics)


def analyze_or_exit(spec: str, overrides: dict, fmt: str = "text") -> Analysis:
    """Run the front end; on errors print them and exit 1 (for commands that need a valid graph)."""
    analysis = analyze(spec, overrides)
    if not analysis.ok:
        if fmt == "json":
            click.echo(to_json(analysis.diagnostics, file=spec, ok=False))
        else:
            report(analysis)
            _console(stderr=True).print(f"[bold red]{spec}[/]: {summary_line(analysis.diagnostics)}")
        sys.exit(1)
    if fmt == "text":
        report(analysis)
    return analysis


def _outputs(analysis: Analysis) -> dict[str, str]:
    g = analysis.graph
    named = {**g.outputs, **g.losses}
    return {name: fmt_shape(g.types[t].shape) for name, t in named.items() if t in g.types}


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@set_option
@format_option
def check(specs, sets, fmt):
    """Validate specs and infer their shapes; print the output shapes or the problems."""
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
            _console(stderr=True).print(f"[bold red]{spec}[/]: {summary_line(a.diagnostics)}")
    if fmt == "json":
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2, default=str,
                              ensure_ascii=False))
    sys.exit(1 if failed else 0)


def _fmt_flops(f) -> str:
    f = sympy.sympify(f)
    if f.is_number:
        v = float(f)
        for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if v >= scale:
                return f"{v / scale:.2f}{unit}"
        return f"{int(v)}"
    return str(sympy.factor_terms(f)).replace("**", "^")


@main.command()
@click.argument("spec", type=click.Path())
@set_option
@format_option
def summary(spec, sets, fmt):
    """A table of every node: op, output shape (symbolic), parameters and FLOPs, with totals.

    Bind dimensions to get numbers: `graphc summary spec.yaml --set B=64 --set T=16`."""
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
    console = _console()
    console.print(table)
    if buffers:
        console.print(f"non-trainable buffers: {buffers:,}")


@main.command()
def schema():
    """Print the JSON Schema of the spec format (generated from the op registry)."""
    from graphc.schema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


@main.command()
@click.argument("name", required=False)
def ops(name):
    """List every op, or show one op's inputs and attributes."""
    from graphc.ops import OPS

    console = _console()
    if name:
        op = OPS.get(name)
        if op is None:
            from graphc.diagnostics import did_you_mean

            hint = did_you_mean(name, OPS) or "run `graphc ops` for the list"
            click.echo(f"error: unknown op `{name}`; {hint}", err=True)
            sys.exit(1)
        console.print(f"[bold]{op.name}[/] ({op.family}): {op.doc}")
        ports = ", ".join(f"{p.name}{'?' if p.optional else ''}{'…' if p.variadic else ''}"
                          f" ({p.dtype})" for p in op.inputs)
        console.print(f"inputs: {ports}")
        for k, a in op.attrs.items():
            default = "required" if a.required else f"default {a.default!r}"
            choices = f"; one of {', '.join(a.choices)}" if a.choices else ""
            console.print(f"  {k}: {a.type}, {default}{choices} — {a.doc}")
        return
    table = Table(show_header=True)
    table.add_column("op")
    table.add_column("family")
    table.add_column("description")
    for op in sorted(OPS.values(), key=lambda o: (o.family, o.name)):
        table.add_row(op.name, op.family, op.doc.splitlines()[0])
    console.print(table)


if __name__ == "__main__":
    main()
