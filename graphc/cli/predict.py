"""`graphc predict`: a trained model on the user's own inputs, no labels needed.

Only the inputs the chosen output is computed from are read (the spec is pruned to that
output: no targets, loss masks or a loss's generated inputs). A classifier's output (logits
into cross_entropy/hinge, a logit into bce_with_logits) is reported as classes with their
probabilities (names from --classes); text prompts to a next-token model are continued
greedily. Bad files, shapes and dtypes are one clear message and exit status 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from graphc.cli.common import MAX_REPEATS, analyze_or_exit, fail, parse_overrides, set_option, user_errors


def _class_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() in (".txt", ".csv") or path.exists():
        if not path.is_file():
            fail(f"--classes: no such file: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            fail(f"--classes: cannot read {path} as UTF-8 text, one class name a line ({err})")
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [n.strip() for n in value.split(",")]


def _read(inputs: tuple[str, ...], model_inputs: dict) -> dict:
    from graphc.runtime.errors import DataError
    from graphc.runtime.predict_io import read_array, read_arrays

    arrays: dict = {}
    for item in inputs:
        name, sep, file = item.partition("=")
        if sep and not Path(item).exists():
            if name in arrays:
                raise DataError(f"--input {name}= is given twice")
            arrays[name] = read_array(file)
        else:
            arrays |= read_arrays(item, model_inputs)
    return arrays


def _show(values, limit: int = 8) -> str:
    import numpy as np

    flat = np.ravel(np.asarray(values))
    shown = " ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat[:limit].tolist())
    return shown + (" …" if flat.size > limit else "")


@click.command("predict")
@click.argument("spec", type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path(), help="Run or checkpoint directory.")
@click.option("--input", "inputs", required=True, multiple=True, metavar="FILE | NAME=FILE",
              help=".npz (arrays named by input), .npy or .csv (the one input the output reads; a "
                   "header's label columns are skipped), or .txt prompts (one per line) for a token "
                   "model. NAME=FILE gives one input of several. Repeatable.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False),
              help="Write the predictions: .npy (classes, or the raw output), .npz (every output), "
                   ".json or .csv (one record per sample). Default: print them.")
@click.option("--output", "output", help="Which of the spec's outputs (default: the first).")
@click.option("--classes", help="Class names: a comma-separated list or a file with one per line.")
@click.option("--raw", is_flag=True, help="The output's values even where it is a classifier's logits.")
@click.option("--length", type=click.IntRange(0, MAX_REPEATS), default=None,
              help="Text prompts: tokens to generate (default: the task's answer length or 32; 0: "
                   "classify every prompt token).")
@set_option
def predict(spec, checkpoint, inputs, out, output, classes, raw, length, sets):
    """Run a trained SPEC on new inputs (no labels) and print or write its predictions."""
    import numpy as np

    from graphc.compiler import compile_graph
    from graphc.runtime.checkpoint import load_params
    from graphc.runtime.predict import continue_prompts, label, output_kind, predict_arrays
    from graphc.runtime.predict_io import OUTPUT_SUFFIXES, read_prompts, write_output

    if out and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        fail(f"-o {out}: unknown output format; use one of {', '.join(OUTPUT_SUFFIXES)}", 2)
    analysis = analyze_or_exit(spec, {k: v for k, v in parse_overrides(sets).items() if "." not in k})
    names = _class_names(classes)
    base = Path(spec).resolve().parent
    with user_errors():
        model = compile_graph(analysis.graph)
        output = output or (model.outputs[0] if model.outputs else None)
        if output not in model.outputs:
            fail(f"--output: the spec's outputs are {', '.join(model.outputs) or 'none'}"
                 + (f", not `{output}`" if output else ""), 2)
        params = load_params(checkpoint, model)
        kind = None if raw else output_kind(model, output)
        texts = [i for i in inputs if i.lower().endswith(".txt")]
        if texts:
            if len(inputs) != 1:
                fail("give text prompts as the only --input")
            data = (model.train or {}).get("data") or {}
            n = length if length is not None else (int(data.get("length", 8)) if isinstance(data, dict)
                                                    and data.get("task") else 32)
            rows = continue_prompts(model, params, read_prompts(texts[0]), output=output, length=n,
                                    base_dir=base, names=names)
            values = {}
            main = np.asarray([r.get("continuation", r.get("predicted")) for r in rows], dtype=object)
        else:
            data = (model.train or {}).get("data") or {}
            drawn = set(data.get("generate") or {}) if isinstance(data, dict) else set()
            needed = {k: v for k, v in model.inference_model([output]).inputs.items() if k not in drawn}
            arrays = _read(inputs, needed)
            values = predict_arrays(model, params, arrays, outputs=[output], source=", ".join(inputs))
            if kind:
                main, rows = label(values[output], kind, names)
            else:
                main = values[output]
                rows = [{output: np.asarray(v).tolist()} for v in main]
        if out:
            if texts and Path(out).suffix.lower() in (".npy", ".npz"):
                fail("text predictions are written as .json or .csv")
            write_output(out, rows, values, main)
            click.echo(f"{len(rows)} predictions of `{output}` → {out}")
            return
    for i, r in enumerate(rows):
        if "continuation" in r:
            click.echo(f"{r['prompt']}{r['continuation']}")
        elif "prompt" in r:
            click.echo(f"{r['prompt']}\t{' '.join(map(str, r.get('class', r['predicted'])))}")
        elif "predicted" in r:
            shown = r.get("class", r["predicted"])
            prob = f" (p={r['prob']:.3f})" if isinstance(r["prob"], float) else ""
            click.echo(f"{i}\t{shown if not isinstance(shown, list) else json.dumps(shown)}{prob}")
        else:
            click.echo(f"{i}\t{_show(r[output])}")
