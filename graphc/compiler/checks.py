"""Checks on a compiled model: synthetic batches, float64 gradient checks, step timing.

`gradcheck` compares the generated backward with central finite differences of the forward,
in float64: per parameter-owning node (a random direction through all of the node's
parameters) and for the float inputs of the graph, which covers every parameter-free node
on the way (activations, shape ops, norms without affine, losses).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from graphc.compiler.model import CompiledModel


def batch_shapes(model: CompiledModel, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Every input's shape for these dims (B, T, …), computed without allocating: from the
    model's plain data, so a restored model (graphc.compiler.saved) keeps its front end
    unloaded (an input axis declared as an expression is computed by graphc.dimexpr).
    ValueError names a dimension that is not given."""
    from graphc import dimexpr

    shapes = {}
    for name, spec in model.inputs.items():
        shape = []
        for d in spec.shape:
            if isinstance(d, int):
                shape.append(d)
            elif d in dims:
                shape.append(int(dims[d]))
            else:
                # every name is a dimension here, even one spelled like a sympy function (`N`)
                missing = sorted(dimexpr.names(d) - set(dims))
                if missing:
                    raise ValueError(f"give a size for dimension `{missing[0]}` of input `{name}` "
                                     f"(e.g. --dim {missing[0]}=8)")
                try:
                    shape.append(dimexpr.size(d, dims))
                except dimexpr.DimExprError as exc:
                    raise ValueError(f"input `{name}`: {exc} at "
                                     f"{', '.join(f'{k}={dims[k]}' for k in sorted(dimexpr.names(d)))}") from None
        shapes[name] = tuple(shape)
    return shapes


def step_bytes(model: CompiledModel, dims: dict[str, int], dtype=None) -> int:
    """About what a forward and backward on `synthetic_batch(model, dims)` allocates, without
    allocating it: the batch (drawn in float64), the buffer plan's arena in `dtype` (default:
    the model's), and as much again for what kernels keep outside the arena (as
    graphc.runtime.budget's UNPLANNED). Exact integers: absurd dims give absurd sizes, never a
    wrapped-around one."""
    from graphc.compiler.plan import plan_bytes

    shapes = batch_shapes(model, dims)
    inputs = sum(math.prod(s) for s in shapes.values()) * 8
    plan = model.buffer_plan
    if plan is None:
        return inputs
    sizes = {dim: shapes[inp][axis] for dim, (inp, axis) in plan.dims.items() if inp in shapes}
    try:
        arena, _ = plan_bytes(plan, sizes, dtype or model.dtype)
    except KeyError:  # a dimension no input binds: the inputs are all we can count
        arena = 0
    return inputs + 2 * arena


def synthetic_batch(model: CompiledModel, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the right shapes (`batch_shapes`), dtypes and id ranges."""
    rng = np.random.default_rng(seed)
    batch = {}
    for name, shape in batch_shapes(model, dims).items():
        if model.inputs[name].dtype == "int64":
            batch[name] = rng.integers(0, model.id_ranges.get(name, 2), shape)
        else:
            batch[name] = rng.random(shape) if "mask" in name else rng.standard_normal(shape)
    return batch


@dataclass
class GradRow:
    node: str
    op: str
    what: str  # "params" or "input `x`"
    size: int
    rel_error: float

    @property
    def ok(self) -> bool:
        return self.rel_error < 1e-5


def _objective(model, params, batch, training, seed):
    return sum(model.forward(params, batch, training=training, seed=seed).losses.values())


def _directional(model, params, batch, training, seed, names, direction, eps, inputs=False):
    def moved(sign):
        p = dict(params)
        b = dict(batch)
        target = b if inputs else p
        for n in names:
            target[n] = target[n] + sign * eps * direction[n]
        return _objective(model, p, b, training, seed)

    return (moved(+1) - moved(-1)) / (2 * eps)


def gradcheck(model: CompiledModel, dims: dict[str, int], *, seed: int = 0, training: bool = False,
              eps: float = 1e-6) -> list[GradRow]:
    """Float64 finite-difference check of every trainable parameter and float input."""
    m = model.astype(np.float64)
    rng = np.random.default_rng(seed + 1)
    # Jitter the initial values: zero biases and unit gains put many pre-activations exactly
    # on ReLU's kink, where central differences and the derivative legitimately disagree.
    params = {k: v.astype(np.float64) + 0.1 * rng.standard_normal(v.shape)
              for k, v in m.init_params(seed).items()}
    batch = synthetic_batch(m, dims, seed)
    batch = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in batch.items()}
    result = m.forward(params, batch, training=training, seed=seed)
    grads = m.backward(result)
    input_grads = m.input_gradients(result)
    rows = []
    owners: dict[str, list[str]] = {}
    for name, spec in m.params.items():
        if spec.trainable:
            owners.setdefault(spec.node, []).append(name)
    for node, names in owners.items():
        direction = {n: rng.standard_normal(params[n].shape) for n in names}
        numeric = _directional(m, params, batch, training, seed, names, direction, eps)
        analytic = sum(float(np.sum(grads[n] * direction[n])) for n in names)
        rows.append(GradRow(node, m.graph.nodes[node].op, "params",
                            sum(params[n].size for n in names), _rel(numeric, analytic)))
    for name, g in input_grads.items():
        direction = {name: rng.standard_normal(batch[name].shape)}
        numeric = _directional(m, params, batch, training, seed, [name], direction, eps, inputs=True)
        analytic = float(np.sum(g * direction[name]))
        rows.append(GradRow(name, "input", f"input `{name}`", batch[name].size, _rel(numeric, analytic)))
    return rows


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a) + abs(b), 1e-12)


def time_steps(model: CompiledModel, dims: dict[str, int], *, steps: int = 20, seed: int = 0) -> dict:
    """Median and best forward+backward step time (seconds) on a synthetic batch."""
    params = model.init_params(seed)
    batch = synthetic_batch(model, dims, seed)
    result = model.forward(params, batch, training=True, seed=0)
    model.backward(result)  # warm up (compiles any kernel not in the cache yet)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        result = model.forward(params, batch, training=True, seed=i)
        model.backward(result)
        times.append(time.perf_counter() - t0)
    return {"median": float(np.median(times)), "best": float(np.min(times)), "steps": steps}
