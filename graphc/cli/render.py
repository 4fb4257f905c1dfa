"""`graphc render`: its options, the front end (`analyze`, stopping after infer like `check`), the
optional backward view, and the exit status. Drawing is graphc.render.diagram's job and writing
graphc.render.output's."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graphc.cli.common import fail, parse_overrides, set_option


@click.command()
@click.argument("spec", type=click.Path())
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Where to write; the format comes from the extension (.svg .png .pdf .dot). "
                   "Default: SPEC's name with .svg, in the current directory.")
@click.option("--expand", is_flag=True, help="Draw every repetition of a repeated block instead of "
                                             "folding them into one cluster marked ×N.")
@click.option("--direction", type=click.Choice(["TB", "LR", "BT", "RL"], case_sensitive=False),
              default="TB", show_default=True, help="Layout direction (top-bottom, left-right, ...).")
@click.option("--shapes/--no-shapes", default=True, show_default=True,
              help="Label edges with their symbolic tensor shapes.")
@click.option("--backward", is_flag=True,
              help="Also draw the gradient flow of the compiler's reverse-mode autodiff (dashed, "
                   "against the data) and mark the parameters that receive gradients.")
@set_option
def render(spec, output, expand, direction, shapes, backward, sets):
    """Draw SPEC as an architecture diagram with Graphviz.

    Edges carry symbolic shapes, nodes their op, key attributes and parameter count (in an SVG,
    hover over a node for all its attributes and shapes); outputs and losses are framed on the
    node that computes them; blocks are clusters, repeated blocks fold into one cluster marked ×N. A spec with errors still renders
    what it can, with the offending nodes marked. --backward adds the gradient flow of the
    compiler's reverse-mode autodiff. Exit status: 0 drawn; 1 drawn with errors in the spec, or
    nothing to draw, or no `dot` (then the .dot source is written); 2 usage error.

        graphc render specs/transformer.yaml -o transformer.svg
    """
    from graphc.diagnostics import DiagnosticPrinter, summary_line
    from graphc.pipeline import analyze
    from graphc.render.backward import gradient_flow
    from graphc.render.diagram import build_diagram
    from graphc.render.layout import RenderOptions
    from graphc.render.output import RenderError, format_of, write_diagram

    out = Path(output) if output else Path(Path(spec).stem + ".svg")
    try:
        fmt = format_of(out)
    except RenderError as exc:
        fail(str(exc), exc.exit_code)
    if not Path(spec).is_file():
        fail(f"no such spec file: `{spec}`" if not Path(spec).exists() else f"`{spec}` is not a file")
    if not out.parent.is_dir():
        problem = "is not a directory" if out.parent.exists() else "does not exist"
        fail(f"cannot write `{out}`: `{out.parent}` {problem}")
    analysis = analyze(spec, parse_overrides(sets))
    DiagnosticPrinter().print_all(analysis.diagnostics)
    if analysis.graph is None or not analysis.graph.nodes:
        fail(f"{spec}: nothing to draw ({summary_line(analysis.diagnostics)})")
    if expand:
        note = _nothing_to_expand(analysis.graph)
        if note:
            click.echo(f"note: --expand: {spec} {note}", err=True)
    options = RenderOptions(expand=expand, direction=direction.upper(), shapes=shapes)
    gradients, gradient_problem = None, ""
    if backward and analysis.errors:
        gradient_problem = "the spec has errors, so there is no backward graph to draw"
    elif backward:
        try:
            gradients = gradient_flow(analysis.graph)
        except Exception as exc:  # e.g. an op without a kernel: still draw the forward graph
            gradient_problem = f"the compiler could not differentiate it: {type(exc).__name__}: {exc}"
    try:
        diagram = build_diagram(analysis, options, gradients)
    except Exception as exc:  # a renderer bug must still not hand the user a traceback
        fail(f"internal error while drawing `{spec}`: {type(exc).__name__}: {exc} "
             "(this is a graphc bug; please report it with the spec)")
    try:
        write_diagram(diagram, out, fmt)
    except RenderError as exc:
        fail(str(exc), exc.exit_code)
    errors = analysis.errors
    note = f" (drawn as far as it goes: the spec has {summary_line(errors)})" if errors else ""
    click.echo(f"wrote {out}{note}", err=bool(errors))
    if gradient_problem:
        fail(f"gradient flow not drawn: {gradient_problem}")
    sys.exit(1 if errors else 0)


def _nothing_to_expand(graph) -> str:
    """What --expand would open, when that is nothing: "" if some block repeats."""
    frames = [f for node in graph.nodes.values() for f in node.scope]
    if not frames:
        return "has no blocks, so the drawing is the same as without it"
    if not any(f.repeat > 1 for f in frames):
        return "has no repeated blocks (only repeated ones are folded), so the drawing is the same"
    return ""
