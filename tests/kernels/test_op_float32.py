"""Tier 3: every row's float32 backward ≈ its float64 backward on the same (float32-rounded)
values. The float32 paths (vectorised exp/tanh/erf in graphc.kernels.vmath, float32 GEMMs) are
separate code from the float64 paths the finite differences check."""

import zlib

import numpy as np
import pytest

from tests.op_cases import ROWS, case

from .harness import Run


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.key)
def test_float32_backward_matches_float64(r):
    c = case(r)
    grads = {}
    for dtype in (np.float32, np.float64):
        run = Run(c, dtype)
        args = run.args(round_to=np.float32)
        outs, saved, _ = run.forward(args)
        cot = run.cotangents(np.random.default_rng(zlib.crc32(f"f32/{r.key}".encode())), outs, np.float32)
        grads[dtype], _ = run.backward(run.args(round_to=np.float32), outs, saved, cot)
    for name, g32 in grads[np.float32].items():
        g64 = grads[np.float64][name]
        assert g32.shape == g64.shape, name
        if g32.size == 0:
            continue
        assert g32.dtype == np.float32 and g32.flags.c_contiguous, name
        assert np.all(np.isfinite(g32)), name
        scale = float(np.max(np.abs(g64)))
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * max(scale, 1.0), err_msg=name)
