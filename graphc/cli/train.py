"""The commands that run models: `graphc train`, `graphc eval`, `graphc sample`.

The spec is compiled here; the runtime (graphc.runtime) only ever sees the CompiledModel.
User mistakes (bad config, missing data, corrupt checkpoint, NaN loss) become one clear
message and exit status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from graphc.cli.common import MAX_REPEATS, analyze_or_exit, parse_overrides, set_option, user_errors
from graphc.cli.compile import fuse_wanted, no_fuse_option


def _model(spec: str, sets: tuple[str, ...]):
    """Compile (or restore the model an earlier run compiled from the same spec: see
    graphc.compiler.saved); --set keys that are not constants or dims are kept for the runtime."""
    from graphc.compiler import saved

    overrides = parse_overrides(sets)
    spec_overrides = {k: v for k, v in overrides.items() if "." not in k}
    got = saved.model_for(spec, spec_overrides, fuse_wanted(), analyze_or_exit)
    if got.diagnostics:
        from graphc.diagnostics import DiagnosticPrinter

        DiagnosticPrinter().print_all(got.diagnostics)
    return got.model, {k: v for k, v in overrides.items() if k not in got.constants}


def _speed(summary: dict) -> str:
    """The steady-state speed, warm-up left out: ` (7,332 samples/s; first step 1.2s)`."""
    speed = summary.get("throughput") or {}
    rate, first = speed.get("samples_per_sec"), speed.get("first_step_sec")
    if not isinstance(rate, int | float) or rate <= 0:
        return ""
    text = f" ({rate:,.0f} samples/s"
    if speed.get("steady") and isinstance(first, int | float):
        text += f"; first step {first:.1f}s"
    return text + ")"


def _print_metrics(metrics: dict) -> None:
    width = max((len(k) for k in metrics), default=0)
    for k, v in metrics.items():
        value = f"{v:.4f}" if isinstance(v, float) else str(v)
        click.echo(f"  {k:<{width}}  {value}")


@click.command()
@click.argument("spec", type=click.Path())
@click.option("--steps", type=int, help="Train for this many optimizer steps.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run directory (default: runs/<spec name>).")
@click.option("--resume", type=click.Path(), help="Continue from a run or checkpoint directory.")
@click.option("--seed", type=int, help="Seed for initialization, data order and dropout.")
@click.option("--progress", type=click.Choice(["auto", "rich", "plain", "none"]), default="auto",
              show_default=True, help="Live display (auto: rich on a terminal, plain lines otherwise).")
@click.option("--max-memory", metavar="SIZE",
              help="Refuse to start when a training step would need more than SIZE (2GB, 512MB); "
                   "default: the memory available.")
@click.option("--overwrite", is_flag=True,
              help="Reuse --out when it holds an earlier run (default: train into OUT-2, OUT-3, …).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for the kernels (default: GRAPHC_THREADS, else this machine's usable "
                   "cores, shared among the MPI ranks on it).")
@set_option
@no_fuse_option
def train(spec, steps, out_dir, resume, seed, progress, max_memory, overwrite, threads, sets):
    """Train a spec on the data its `train:` section names; writes a run directory.

    Under an MPI launcher (`mpiexec -n N graphc train …`) every rank trains its shard of each
    batch (graphc.runtime.distributed); a rank that fails ends the whole job."""
    from graphc.runtime.distributed import world

    with user_errors():
        ranks = world()
    from graphc.kernels.threads import configure, set_threads

    configure(local_ranks=ranks.ranks_on_this_host())
    if threads:
        set_threads(threads, by_user=True)
    if not ranks.parallel:
        _start_compile_helpers()
        return _train(spec, steps, out_dir, resume, seed, progress, max_memory, overwrite, sets)
    try:
        _train(spec, steps, out_dir, resume, seed, progress, max_memory, overwrite, sets, quiet=not ranks.root)
    except SystemExit as done:  # a user error, already explained on stderr
        if done.code not in (0, None):
            ranks.abort("stopped with the error above; ending every rank", int(done.code))
        raise
    except BaseException as exc:  # a bug: say where, and do not leave the other ranks waiting
        import traceback

        ranks.abort(f"{type(exc).__name__}: {exc}", details=traceback.format_exc())


def _start_compile_helpers() -> None:
    """On a cold kernel cache the first step compiles for ~10 s (graphc.compiler.warm), in
    helper processes too: start them now (if the cache is cold), so they get Numba ready while
    this process reads the spec. (Under MPI every rank compiles on its own core: none.)"""
    from graphc.kernels.precompile import helpers, start_early

    start_early(helpers())


def _train(spec, steps, out_dir, resume, seed, progress, max_memory, overwrite, sets, quiet=False):
    from graphc.runtime import train as run_training
    from graphc.runtime.budget import parse_size
    from graphc.runtime.errors import ConfigError

    if max_memory is not None:
        try:
            max_memory = parse_size(max_memory)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-memory") from None
    with user_errors():
        model, overrides = _model(spec, sets)
    if steps is not None:
        overrides["steps"] = steps
        if "epochs" in (model.train or {}):
            overrides["epochs"] = None
    if seed is not None:
        overrides["seed"] = seed
    if resume:
        path = Path(resume)
        run_dir = path.parent if path.name == "checkpoint" else path
        if out_dir and Path(out_dir) != run_dir:
            click.echo(f"error: --resume {resume} continues the run in {run_dir}; drop --out or "
                       "make it the same directory", err=True)
            sys.exit(2)
        out_dir = run_dir
    out_dir = out_dir or f"runs/{model.name}"
    with user_errors():
        summary = run_training(model, out_dir=out_dir, overrides=overrides, resume=bool(resume),
                               progress=progress, base_dir=Path(spec).resolve().parent,
                               max_memory=max_memory,
                               existing="overwrite" if overwrite else "version")
    out_dir = summary.get("out_dir", out_dir)
    if not quiet:
        click.echo(f"{spec}: {summary.get('status', 'done')} after {summary.get('steps', '?')} steps "
                   f"in {summary.get('time_sec', 0):.0f}s{_speed(summary)} → {out_dir}")
        _print_metrics(summary.get("metrics", {}))
        best = summary.get("best") or {}
        if isinstance(best.get("best"), int | float):
            click.echo(f"  best {best.get('metric', 'val_loss')} {best['best']:.4f} at step "
                       f"{best.get('best_step')} → {best.get('checkpoint')}")
    if summary.get("status") == "interrupted":
        sys.exit(130)


def _data_name(data) -> str:
    if isinstance(data, dict):
        for key in ("task", "dataset", "file"):
            if key in data:
                return f"{key} {data[key]}"
    return "no data section"


@click.command("eval")
@click.argument("spec", type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path(), help="Run or checkpoint directory.")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@set_option
def evaluate(spec, checkpoint, split, fmt, sets):
    """Metrics of a trained checkpoint on the held-out (or training) split."""
    from graphc.runtime import evaluate as run_eval
    from graphc.runtime.checkpoint import load_params

    with user_errors():
        model, _ = _model(spec, sets)
        params = load_params(checkpoint, model)
        metrics = run_eval(model, params, split=split, base_dir=Path(spec).resolve().parent)
    if fmt == "json":
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo(f"{spec} on the {split} split ({checkpoint}):")
        _print_metrics(metrics)


@click.command()
@click.argument("spec", type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path(), help="Run or checkpoint directory.")
@click.option("-n", "count", type=click.IntRange(min=1), default=8, show_default=True, help="How many examples.")
@click.option("--prompt", help="Start of the text (character-level models: `file: *.txt` data).")
@click.option("--length", type=click.IntRange(0, MAX_REPEATS), default=200, show_default=True,
              help="Characters to generate.")
@set_option
def sample(spec, checkpoint, count, prompt, length, sets):
    """Show a trained model doing its task: predictions on held-out examples, or generated text."""
    from graphc.runtime import predict, sample_text
    from graphc.runtime.checkpoint import load_params
    from graphc.runtime.setup import Setup

    base = Path(spec).resolve().parent
    with user_errors():
        model, _ = _model(spec, sets)
        data = (model.train or {}).get("data") or {}
        text_model = isinstance(data, dict) and str(data.get("file", "")).endswith(".txt")
        if prompt is not None and not text_model:
            click.echo(f"error: --prompt needs a character-level model (one trained on a .txt "
                       f"file); {spec} trains on {_data_name(data)}, so there is no text to "
                       "continue: drop --prompt to see its predictions on held-out examples",
                       err=True)
            sys.exit(2)
        params = load_params(checkpoint, model)
        if text_model:
            bundle = Setup.create(model, None, base, training=False).data
            click.echo(sample_text(model, params, bundle, prompt=prompt or "", length=length))
            return
        rows = predict(model, params, n=count, base_dir=base)
    for row in rows:
        click.echo(row["text"])
    judged = [r for r in rows if "correct" in r]  # generated samples have no right answer
    if judged:
        right = sum(r["correct"] for r in judged)
        click.echo(f"{right}/{len(judged)} correct")
