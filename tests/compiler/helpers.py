"""Shared pieces of the compiler proof tiers: write tiny specs, compile them in float64,
make batches, and check gradients against central finite differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from graphc.compiler import CompiledModel, compile_spec
from graphc.pipeline import analyze

EPS = 1e-5  # central differences in float64: truncation ~EPS², round-off ~1e-16/EPS


def spec_text(inputs: dict, nodes: dict, *, outputs=(), losses=(), name: str = "t") -> str:
    """YAML text of a spec. `inputs` maps name → shape list, or (shape, dtype)."""
    ins = {}
    for k, v in inputs.items():
        shape, dtype = v if isinstance(v, tuple) else (v, "float32")
        ins[k] = {"shape": list(shape)} | ({"dtype": dtype} if dtype != "float32" else {})
    doc = {"graphc": 1, "name": name, "inputs": ins, "nodes": nodes}
    if outputs:
        doc["outputs"] = list(outputs)
    if losses:
        doc["losses"] = list(losses)
    return yaml.safe_dump(doc, sort_keys=False)


def write(tmp: Path, text: str, fname: str = "spec.yaml") -> Path:
    path = Path(tmp) / fname
    path.write_text(text)
    return path


def output_types(path: Path) -> dict:
    """(node, port) → TensorType of every tensor, from the front end alone."""
    analysis = analyze(path)
    assert analysis.ok, [d.message for d in analysis.errors]
    return analysis.graph.types


def compile64(path: Path, **kw) -> CompiledModel:
    return compile_spec(path, dtype=np.float64, wrt_inputs=True, **kw)


def params64(model: CompiledModel, seed: int = 0) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in model.init_params(seed).items()}


def objective(model: CompiledModel, params, batch, *, training: bool, seed: int) -> float:
    """Sum of the losses; parameters are copied because batchnorm updates buffers in place."""
    p = {k: v.copy() for k, v in params.items()}
    r = model.forward(p, batch, training=training, seed=seed)
    return float(sum(r.losses.values()))


def check_gradients(model: CompiledModel, params, batch, *, training=False, seed=0, rng=None,
                    expect_inputs=None, frozen_rows=None, n_elements=3, rtol=1e-6, atol=1e-9):
    """Every trainable parameter gradient and every float input gradient vs central differences.

    A random direction d per tensor: <g, d> vs (L(x+εd) - L(x-εd)) / 2ε, then `n_elements`
    single-element checks. `expect_inputs` is the exact set of inputs that must get a gradient;
    `frozen_rows` maps a tensor name to a boolean row mask whose gradient must be exactly zero
    by definition (the embedding's padding row) and which is kept out of the directions.
    Returns the number of tensors checked.
    """
    rng = rng or np.random.default_rng(0)
    frozen_rows = frozen_rows or {}
    p = {k: v.copy() for k, v in params.items()}
    result = model.forward(p, batch, training=training, seed=seed)
    grads = model.backward(result)
    in_grads = model.input_gradients(result)
    batch = model.feed(batch)

    trainable = {k for k, s in model.params.items() if s.trainable}
    assert set(grads) == trainable, f"parameter gradients {sorted(grads)} vs trainable {sorted(trainable)}"
    if expect_inputs is not None:
        assert set(in_grads) == set(expect_inputs), (
            f"input gradients for {sorted(in_grads)}, expected {sorted(expect_inputs)}")
    for name in (k for k, s in model.params.items() if not s.trainable):
        assert name not in grads, f"buffer {name} got a gradient"

    targets = [("param", k, params, grads[k]) for k in sorted(grads)]
    targets += [("input", k, batch, in_grads[k]) for k in sorted(in_grads)]
    for kind, name, where, g in targets:
        x0 = where[name]
        assert g.shape == x0.shape, f"{kind} {name}: gradient shape {g.shape} vs {x0.shape}"
        assert g.dtype == np.float64, f"{kind} {name}: gradient dtype {g.dtype}"
        assert np.all(np.isfinite(g)), f"{kind} {name}: non-finite gradient"
        free = np.ones(x0.shape, bool)
        if name in frozen_rows:
            free[frozen_rows[name]] = False
            assert np.all(g[~free] == 0), f"{kind} {name}: frozen rows got gradient"

        def loss_at(x, name=name, where=where):
            if where is params:
                return objective(model, {**params, name: x}, batch, training=training, seed=seed)
            return objective(model, params, {**batch, name: x}, training=training, seed=seed)

        d = rng.standard_normal(x0.shape) * free
        fd = (loss_at(x0 + EPS * d) - loss_at(x0 - EPS * d)) / (2 * EPS)
        an = float(np.sum(g * d))
        scale = np.sqrt(np.sum(g * g) * np.sum(d * d))
        assert abs(an - fd) <= atol + rtol * max(abs(an), abs(fd), scale), (
            f"{kind} {name}: directional derivative {an!r} (backward) vs {fd!r} (finite differences)")
        flat = np.flatnonzero(free.reshape(-1))
        for i in rng.choice(flat, size=min(n_elements, flat.size), replace=False):
            e = np.zeros(x0.size)
            e[i] = 1.0
            e = e.reshape(x0.shape)
            fd_i = (loss_at(x0 + EPS * e) - loss_at(x0 - EPS * e)) / (2 * EPS)
            an_i = float(g.reshape(-1)[i])
            assert abs(an_i - fd_i) <= 10 * atol + 1e-5 * max(abs(an_i), abs(fd_i), 1e-3), (
                f"{kind} {name}[{np.unravel_index(i, x0.shape)}]: backward {an_i!r} vs "
                f"finite differences {fd_i!r}")
    return len(targets)


# An input declared with an expression of the dims another input binds: `t` is [B, T - 1, 3]
# (tests of the feeder's and the guards' exact checks, and of a restored model's first step)
SHIFTED = """
graphc: 1
name: shifted
inputs:
  x: {shape: [B, T, 3]}
  t: {shape: [B, T - 1, 3], doc: x one step on}
nodes:
  fc: {op: linear, in: x, out: 3}
  next: {op: slice, in: fc, axis: 1, start: 1}
  loss: {op: mse, in: [next, t]}
losses: [loss]
train:
  data: {file: data.npz, val_fraction: 0}
  batch: 4
  steps: 3
  eval_every: 0
  optimizer: {name: sgd, lr: 0.1}
"""


def shifted_spec(folder: Path, t_length: int = 4) -> Path:
    """SHIFTED with its data file: x [16, 5, 3] and t [16, t_length, 3] (4 fits T - 1)."""
    rng = np.random.default_rng(0)
    np.savez(Path(folder) / "data.npz", x=rng.standard_normal((16, 5, 3)).astype(np.float32),
             t=rng.standard_normal((16, t_length, 3)).astype(np.float32))
    return write(folder, SHIFTED, "shifted.yaml")
