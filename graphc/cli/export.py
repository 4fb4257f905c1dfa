"""`graphc export`: a trained model as an ONNX file (opset 17), optionally checked in onnxruntime.

The front end runs first (a spec with errors prints its diagnostics); every node that cannot
be exported is named before anything is written. `--verify` compiles the spec and compares
onnxruntime's outputs with graphc's forward on a batch of other sizes than the training batch.
"""

from __future__ import annotations

from pathlib import Path

import click

from graphc.cli.common import (
    analyze_or_exit,
    fail,
    fits_or_exit,
    parse_dims,
    parse_overrides,
    set_option,
    user_errors,
)


def _params(graph, checkpoint: str | None, seed: int | None) -> tuple[dict, dict]:
    """Parameters from a checkpoint (with its provenance for the metadata), or a fresh init."""
    import numpy as np

    if checkpoint is None:
        from graphc.compiler.model import ParamSpec, initialize

        rng = np.random.default_rng(seed)
        specs = [ParamSpec(f"{n}.{p}", d.shape, d.init, d.decay, n, d.trainable)
                 for n in graph.order for p, d in graph.params.get(n, {}).items()]
        return {s.name: initialize(s, rng) for s in specs}, {"graphc.init_seed": str(seed)}
    from graphc.runtime.checkpoint import checkpoint_dir, load_checkpoint

    ckpt = load_checkpoint(checkpoint_dir(checkpoint))
    state = ckpt.state or {}
    meta = {f"graphc.checkpoint_{k}": str(state[k]) for k in ("step", "model_hash", "spec_hash")
            if state.get(k) is not None}
    return dict(ckpt.params), meta


@click.command("export")
@click.argument("spec", type=click.Path())
@click.option("--checkpoint", type=click.Path(), help="Run or checkpoint directory with the trained parameters.")
@click.option("--init-seed", type=click.IntRange(min=0),
              help="Export freshly initialized parameters (this seed) instead of a checkpoint.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="The .onnx file to write (default: <spec name>.onnx).")
@click.option("--verify", is_flag=True,
              help="Run the file in onnxruntime on a batch of other sizes than the training batch "
                   "and compare every output with graphc's forward (rtol 1e-4).")
@click.option("--dim", "dims", multiple=True, metavar="NAME=INT",
              help="Size of a symbolic dimension for --verify's batch (default B=3, T=5, S=4, N=5).")
@set_option
def export(spec, checkpoint, init_seed, output, verify, dims, sets):
    """Export SPEC's inference forward (to its outputs) as ONNX, with the checkpoint's weights."""
    if checkpoint is None and init_seed is None:
        fail("give --checkpoint RUN_OR_CHECKPOINT_DIR (or --init-seed N to export fresh parameters)", 2)
    overrides = {k: v for k, v in parse_overrides(sets).items() if "." not in k}  # constants, dims
    analysis = analyze_or_exit(spec, overrides)
    graph = analysis.graph
    path = Path(output or f"{graph.name}.onnx")
    import numpy as np

    from graphc.export import OPSET, ExportError, export_onnx
    from graphc.export.verify import verify_dims

    with user_errors():
        params, meta = _params(graph, checkpoint, init_seed)
        try:
            model = export_onnx(graph, params, path, metadata=meta)
        except ExportError as exc:
            fail(f"{spec}: {exc}\nnothing was written")
        except OSError as exc:  # the directory of -o is missing, read-only, full, …
            fail(f"cannot write {path}: {exc.strerror or exc}; nothing was written")
    g = model.graph
    values = sum(int(np.prod(t.dims)) for t in g.initializer)
    ins = ", ".join(f"{i.name}[{_shape(i)}]" for i in g.input)
    outs = ", ".join(f"{o.name}[{_shape(o)}]" for o in g.output)
    click.echo(f"{spec} → {path} (ONNX opset {OPSET}, {len(g.node)} nodes, {values:,} parameter and "
               f"constant values; inputs {ins}; outputs {outs})")
    if not verify:
        return
    from graphc.compiler import compile_graph
    from graphc.export import verify as run_verify

    with user_errors():
        compiled = compile_graph(graph)
        sizes = verify_dims(compiled, parse_dims(dims, {}, known=graph.dims) or None)
        fits_or_exit(compiled.inference_model([o.name for o in g.output if o.name in compiled.outputs]), sizes)
        try:
            rows = run_verify(compiled, params, model, dims=sizes)
        except ExportError as exc:
            fail(str(exc))
    used = {d for n in compiled.inference_model([o.name for o in g.output]).inputs.values()
            for d in n.shape if isinstance(d, str) and d in sizes}
    at = ", ".join(f"{d}={sizes[d]}" for d in sorted(used)) or "fixed sizes"
    click.echo(f"verify: onnxruntime vs graphc's forward, float32, on a batch with {at}:")
    for r in rows:
        mark = "ok" if r.ok else "MISMATCH"
        click.echo(f"  {r.output:<16} {'×'.join(map(str, r.shape)):<12} max abs err {r.max_abs:.2e}  "
                   f"max rel err {r.max_rel:.2e}  {mark}")
    if not all(r.ok for r in rows):
        fail("the ONNX model's outputs differ from graphc's (rtol 1e-4); please report this with the spec")


def _shape(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "×".join(d.dim_param or str(d.dim_value) for d in dims)
