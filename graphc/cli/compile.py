"""The back end's commands: `graphc compile`, `graphc gradcheck`, `graphc bench`.

Numba loads inside the commands, when they compile, never when this module is imported."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from graphc.cli.common import (
    MAX_REPEATS,
    analyze_or_exit,
    dim_option,
    fits_or_exit,
    format_option,
    parse_dims,
    parse_overrides,
    report,
    set_option,
)
from graphc.pipeline import PASS_NAMES


def _no_fuse(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.meta["graphc.fuse"] = False


no_fuse_option = click.option(
    "--no-fuse", is_flag=True, expose_value=False, callback=_no_fuse,
    help="Keep every pointwise op a kernel call of its own (no fused generated kernels).")


def fuse_wanted() -> bool:
    """False when the running command was given --no-fuse."""
    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.meta.get("graphc.fuse", True)


def _compiled(spec: str, sets, analysis=None, **kw):
    from graphc.compiler import CompileError, compile_graph
    from graphc.diagnostics import summary_line
    from graphc.pipeline import Analysis

    analysis = analysis or analyze_or_exit(spec, parse_overrides(sets))
    try:
        return compile_graph(analysis.graph, fuse=fuse_wanted(), **kw)
    except CompileError as exc:  # what only the back end checks (e.g. a loss that is not a scalar)
        report(Analysis(spec, graph=analysis.graph, diagnostics=exc.diagnostics))
        click.echo(f"{spec}: {summary_line(exc.diagnostics)}", err=True)
        sys.exit(1)


def _dump_after(spec: str, sets, pass_name: str, fuse: bool) -> None:
    from graphc.pipeline import Analysis, dump, run

    a = run(Analysis(spec, parse_overrides(sets), fuse=fuse), until=pass_name)
    if a.reached != pass_name or a.errors:
        report(a)
        click.echo(f"{spec}: stopped before `{pass_name}` finished", err=True)
        sys.exit(1)
    click.echo(dump(a, pass_name))


def _check_plan_memory(model, sizes: dict, max_memory) -> None:
    """Exit 1 when the plan's buffers alone exceed the memory a step may use."""
    from graphc.compiler.plan import plan_bytes
    from graphc.runtime.budget import Budget
    from graphc.runtime.errors import ResourceError

    shared, _ = plan_bytes(model.buffer_plan, sizes, model.dtype)
    try:
        Budget.detect(max_memory).check(shared, "the buffer plan at these sizes",
                                        "lower the dims (--dim) or raise --max-memory")
    except ResourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.command("compile")
@click.argument("spec", type=click.Path())
@click.option("--emit", type=click.Path(file_okay=False),
              help="Write the generated driver and fused kernels here.")
@click.option("--plan", "show_plan", is_flag=True,
              help="Print the buffer plan: each tensor's shape, live range and buffer (sizes from --dim).")
@click.option("--dump-after", type=click.Choice(PASS_NAMES), metavar="PASS",
              help=f"Print what the pipeline holds after PASS ({', '.join(PASS_NAMES)}) and stop.")
@click.option("--max-memory", metavar="SIZE",
              help="With --plan: exit 1 when the plan's buffers exceed SIZE (2GB, 512MB); "
                   "default: the memory available.")
@dim_option
@set_option
@no_fuse_option
def compile_command(spec, emit, show_plan, dump_after, max_memory, dims, sets):
    """Compile a spec: autodiff, code generation, kernels; optionally write the generated source."""
    if dump_after:
        _dump_after(spec, sets, dump_after, fuse_wanted())
        return
    t0 = time.perf_counter()
    model = _compiled(spec, sets)
    elapsed = time.perf_counter() - t0
    kernels = model.kernels
    params = sum(1 for p in model.params.values() if p.trainable)
    click.echo(f"{spec}: compiled `{model.name}` in {elapsed:.2f}s — {len(model.graph.order)} nodes, "
               f"{params} parameter tensors, {len(kernels)} kernels; driver {model.source_path}")
    if emit:
        out = Path(emit)
        try:
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"{model.name}.py"
            target.write_text(model.source)
            written = [target]
            for group in model.fused:  # each generated kernel module, headed by what it serves here
                written.append(out / f"{model.name}.{group.name}.py")
                written[-1].write_text(f"{group.header()}\n\n{group.source}")
        except OSError as exc:
            click.echo(f"error: cannot write to `{emit}`: {exc.strerror}", err=True)
            sys.exit(1)
        click.echo(f"wrote {', '.join(str(p) for p in written)}")
    if show_plan:
        from graphc.compiler.plan import describe

        batch = int((model.train or {}).get("batch", 32))
        sizes = parse_dims(dims, {"B": batch, "T": 16}, known=model.graph.dims)
        needed = set(model.buffer_plan.dims)
        if needed - set(sizes):
            missing = ", ".join(sorted(needed - set(sizes)))
            click.echo(f"error: give a size for {missing} (e.g. --dim {min(needed - set(sizes))}=8)", err=True)
            sys.exit(2)
        shown = ", ".join(f"{k}={sizes[k]}" for k in sorted(needed))
        click.echo(f"buffer plan ({shown}, {model.dtype}):")
        for line in describe(model.buffer_plan, {k: sizes[k] for k in needed}, model.dtype):
            click.echo(f"  {line}")
        _check_plan_memory(model, {k: sizes[k] for k in needed}, max_memory)


@click.command()
@click.argument("spec", type=click.Path())
@dim_option
@click.option("--training", is_flag=True, help="Check in training mode (dropout, batch statistics).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@set_option
@format_option
@no_fuse_option
def gradcheck(spec, dims, training, seed, sets, fmt):
    """Float64 finite-difference check of the generated backward: per node and whole graph."""
    from rich.console import Console
    from rich.table import Table

    from graphc.compiler.checks import gradcheck as run

    model = _compiled(spec, sets, wrt_inputs=True)
    sizes = parse_dims(dims, {"B": 2, "T": 5}, known=model.graph.dims)
    fits_or_exit(model, sizes, "float64")
    try:
        rows = run(model, sizes, seed=seed, training=training)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    ok = all(r.ok for r in rows)
    if fmt == "json":
        click.echo(json.dumps({"ok": ok, "rows": [r.__dict__ for r in rows]}, indent=2))
    else:
        table = Table(title=f"gradcheck {spec} (float64, central differences)", title_justify="left")
        for col in ("node", "op", "checked", "size", "rel. error", ""):
            table.add_column(col, justify="right" if col in ("size", "rel. error") else "left")
        for r in rows:
            table.add_row(r.node, r.op, r.what, str(r.size), f"{r.rel_error:.1e}",
                          "[green]ok[/]" if r.ok else "[red]FAIL[/]")
        Console(highlight=False).print(table)
        click.echo(f"{spec}: {'all gradients match' if ok else 'gradient mismatch'} "
                   f"({sum(r.ok for r in rows)}/{len(rows)} ok)")
    sys.exit(0 if ok else 1)


@click.command()
@click.argument("spec", type=click.Path())
@dim_option
@click.option("--steps", type=click.IntRange(1, MAX_REPEATS), default=30, show_default=True,
              help="Timed steps.")
@click.option("--no-cold", is_flag=True, help="Skip the cold-compile measurement (fresh Numba cache).")
@set_option
@format_option
@no_fuse_option
def bench(spec, dims, steps, no_cold, sets, fmt):
    """Cold compile time, cached start time, step time (forward+backward) and peak memory.

    Each run gets the model as `graphc train` does: the compiled model saved by an earlier run
    of the same spec is restored, else the spec is compiled and saved."""
    from graphc.compiler.benchmark import BenchmarkError, run_benchmark

    overrides = parse_overrides(sets)
    analysis = analyze_or_exit(spec, overrides)  # the settings checked, the batch size
    batch = int((analysis.graph.train or {}).get("batch", 32))
    sizes = parse_dims(dims, {"B": batch, "T": 16}, known=analysis.graph.dims)
    fits_or_exit(_compiled(spec, sets, analysis), sizes)  # the workers' model, for its buffer plan
    try:
        front_end = {k: v for k, v in overrides.items() if "." not in k}  # what train compiles with
        results = run_benchmark(spec, sizes, steps, front_end, cold=not no_cold, fuse=fuse_wanted())
    except BenchmarkError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(results, indent=2))
        return
    dims_text = ", ".join(f"{k}={v}" for k, v in sizes.items())
    click.echo(f"{spec} ({dims_text})")
    if "cold_start_s" in results:
        click.echo(f"  cold start (empty kernel cache, to first step): {results['cold_start_s']:.2f} s")
    click.echo(f"  cached start (to first step):                   {results['cached_start_s']:.2f} s"
               + ("" if results["cached_start_restored"] else " (compiled: no saved model of this spec yet)"))
    click.echo(f"  step (forward+backward): median {results['step_median_ms']:.2f} ms, "
               f"best {results['step_best_ms']:.2f} ms over {steps} steps")
    click.echo(f"  peak memory (RSS): {results['peak_rss_mb']:.0f} MB; buffer plan (activations and "
               f"gradients): {results['buffer_plan_mb']:.1f} MiB")
