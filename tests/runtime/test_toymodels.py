"""The test models' hand-written gradients agree with finite differences (float64)."""

import numpy as np
import pytest

from .toymodels import MLP, TokenModel


def _check_grads(model, batch, seed=3):
    params = {k: v.astype(np.float64) for k, v in model.init_params(seed).items()}
    params["norm.running_mean"] = (
        np.full_like(params["norm.running_mean"], 0.1) if "norm.running_mean" in params else None
    )
    params = {k: v for k, v in params.items() if v is not None}
    result = model.forward({k: v.copy() for k, v in params.items()}, batch, training=False, seed=0)
    grads = model.backward(result)
    rng = np.random.default_rng(0)
    for name, g in grads.items():
        for _ in range(5):
            idx = tuple(rng.integers(0, s) for s in g.shape)
            hi = {k: v.copy() for k, v in params.items()}
            lo = {k: v.copy() for k, v in params.items()}
            hi[name][idx] += 1e-6
            lo[name][idx] -= 1e-6
            f_hi = model.forward(hi, batch, training=False, seed=0).losses["ce"]
            f_lo = model.forward(lo, batch, training=False, seed=0).losses["ce"]
            assert g[idx] == pytest.approx((f_hi - f_lo) / 2e-6, rel=1e-5, abs=1e-8), name


def test_mlp_gradients():
    rng = np.random.default_rng(1)
    batch = {"x": rng.standard_normal((6, 3)), "y": rng.integers(0, 4, 6)}
    _check_grads(MLP(in_shape=(3,), hidden=5, classes=4), batch)


def test_token_model_gradients():
    rng = np.random.default_rng(1)
    tok = rng.integers(0, 11, (4, 8))
    mask = (rng.random((4, 8)) > 0.5).astype(np.float64)
    mask[0, 0] = 1
    batch = {"tokens": tok, "targets": rng.integers(0, 11, (4, 8)), "loss_mask": mask}
    _check_grads(TokenModel(), batch)
