"""Tier 2: every row's backward kernel vs float64 central differences of its forward.

For each differentiable input (each tensor of a variadic port) and each trainable parameter
x, with a random cotangent g for every output and two random directions v, the directional
derivative <dL/dx, v> from the backward (L = Σ <g, out>) must match
(L(x + εv) - L(x - εv)) / 2ε. Non-differentiable and absent inputs must get a zero-size
gradient, and entries the op defines as gradient-free (the embedding's padding row) exact zeros.
"""

import zlib

import numpy as np
import pytest

from tests.op_cases import ROWS, case

from .harness import Run, get, put

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-8


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.key)
def test_backward_matches_central_differences(r):
    c = case(r)
    run = Run(c, np.float64)
    rng = np.random.default_rng(zlib.crc32(f"fd/{r.key}".encode()))
    args = run.args()
    outs, saved, _ = run.forward(args)
    cot = run.cotangents(rng, outs)
    grads, _ = run.backward(run.args(), outs, saved, cot)

    def objective(name, value):
        moved, _, _ = run.forward(put(run.args(), name, value))
        return sum(float(np.sum(np.where(cot[p] != 0, moved[p], 0.0) * cot[p])) for p in cot)

    frozen = r.frozen(c.tensors(), c.attrs) if r.frozen else {}
    checked = run.differentiable(args)
    for name, g in grads.items():
        if name not in checked:
            assert g.size == 0, f"{name}: a non-differentiable or absent input must get a zero-size gradient"
    for name in checked:
        x, g = get(args, name), grads[name]
        assert g.shape == x.shape, f"{name}: gradient shape {g.shape} != {x.shape}"
        assert g.dtype == x.dtype and g.flags.c_contiguous, name
        free = np.ones(x.shape, bool)
        if name in frozen:
            free[frozen[name]] = False
            assert np.all(g[~free] == 0), f"{name}: entries without a gradient by definition must be 0"
        for _ in range(2):
            v = rng.standard_normal(x.shape) * free
            fd = (objective(name, x + EPS * v) - objective(name, x - EPS * v)) / (2 * EPS)
            an = float(np.sum(g * v))
            assert abs(fd - an) <= ATOL + RTOL * max(abs(fd), abs(an)), (
                f"{r.key} d/d{name}: finite difference {fd!r} vs backward {an!r}")
    assert checked or not (c.op.inputs or c.trainable), f"{r.key}: nothing to differentiate"
