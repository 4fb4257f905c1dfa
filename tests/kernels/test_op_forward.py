"""Tier 1: every row's forward kernel, in float64 and float32, vs the row's NumPy reference
(computed in float64 on the same, possibly float32-rounded, values); then targeted semantic
checks that are not a per-op table (running statistics, masking, extremes)."""

import math

import numpy as np
import pytest

from graphc.ops import OPS
from tests.op_cases import ROWS, by_key, case

from .harness import Run, backward, forward

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=1e-5)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.key)
def test_forward_matches_reference(r, dtype):
    c = case(r)
    run = Run(c, dtype)
    outs, _, _ = run.forward(run.args())
    expected = c.reference(cast=None if dtype is np.float64 else dtype)
    for port, out in outs.items():
        assert out.dtype == dtype and out.flags.c_contiguous, port
        assert out.shape == c.outputs[port], f"{port}: shape {out.shape}, the op's shape rule says {c.outputs[port]}"
        assert np.array_equal(np.isfinite(out), np.isfinite(expected[port]).reshape(out.shape)), port
        np.testing.assert_allclose(out.reshape(expected[port].shape), expected[port], err_msg=port, **TOL[dtype])


# ----------------------------------------------------------------------------- special cases
def _f32(a):
    return np.asarray(a, np.float32)


def _row_args(key, **tensors):
    """A table row's float32 arguments (its lowered attributes) with other tensors."""
    return Run(case(by_key(key)), np.float32).args(**tensors)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_updates_running_stats_in_place(training):
    rng = np.random.default_rng(1)
    x = _f32(rng.standard_normal((4, 3, 5)))
    rm0, rv0 = _f32(rng.standard_normal(3)), _f32(rng.random(3) + 0.5)
    args = _row_args("batchnorm-train-3d", x=x, weight=np.ones(3), bias=np.zeros(3), running_mean=rm0,
                     running_var=rv0) | {"training": training}
    assert args["momentum"] == 0.1
    forward(OPS["batchnorm"], args, 1, x.shape)
    rm, rv = args["running_mean"], args["running_var"]
    if training:
        xd = x.astype(np.float64)
        np.testing.assert_allclose(rm, 0.9 * rm0 + 0.1 * xd.mean((0, 2)), rtol=1e-5)
        np.testing.assert_allclose(rv, 0.9 * rv0 + 0.1 * xd.var((0, 2), ddof=1), rtol=1e-5)
    else:
        assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)


def test_attention_fully_masked_row_is_finite_and_uniform():
    run = Run(case(by_key("attention-self-fully-masked-row")), np.float32)
    outs, saved, _ = run.forward(run.args())
    probs = saved[2]  # [B, H, T, S]
    assert np.all(np.isfinite(outs["out"]))
    np.testing.assert_allclose(probs[0], 1.0 / probs.shape[-1], rtol=1e-6)


def test_softmax_and_losses_are_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0]])
    (sm,), _, _ = forward(OPS["softmax"], _row_args("softmax-2d", x=x), 1, x.shape)
    (lsm,), _, _ = forward(OPS["log_softmax"], _row_args("log_softmax-2d", x=x), 1, x.shape)
    assert np.allclose(sm, [[1, 0, 0]]) and np.isfinite(lsm).all()
    (bce,), _, _ = forward(OPS["bce_with_logits"], _row_args("bce_with_logits-2d", logits=x, target=np.ones_like(x)),
                           1, (1,))
    np.testing.assert_allclose(bce, [(0 + 1e4 + math.log(2)) / 3], rtol=1e-6)
    (kl,), _, _ = forward(OPS["kl_div"], _row_args("kl_div-2d", student=x, teacher=x[:, ::-1].copy()), 1, (1,))
    assert np.isfinite(kl).all()


def test_cross_entropy_with_nothing_counted_is_zero_not_nan():
    op = OPS["cross_entropy"]
    args = _row_args("cross_entropy-2d", logits=np.ones((2, 3)), target=np.array([-100, -100]))
    assert args["ignore_index"] == -100
    (out,), saved, _ = forward(op, args, 1, (1,))
    grads, _ = backward(op, args, {"out": out}, saved, {"out": np.ones(1, np.float32)})
    assert out.shape == (1,) and out[0] == 0.0 and not grads["logits"].any()


def test_embedding_rejects_out_of_range_ids():
    args = _row_args("embedding-plain", ids=np.array([[5]]))
    assert args["weight"].shape[0] == 5
    with pytest.raises(IndexError):
        forward(OPS["embedding"], args, 1, (1, 1, args["weight"].shape[1]))


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_affine_grid_samples_the_image_unchanged(align_corners):
    x = _f32(np.random.default_rng(3).standard_normal((2, 3, 5, 4)))
    theta = np.tile([[1.0, 0, 0], [0, 1, 0]], (2, 1, 1))
    ac = {"align_corners": align_corners}
    (grid,), _, _ = forward(OPS["affine_grid"], _row_args("affine_grid-3x4", theta=theta) | ac | {"size": (5, 4)},
                            1, (2, 5, 4, 2))
    (y,), _, _ = forward(OPS["grid_sample"], _row_args("grid_sample-outside", x=x, grid=grid) | ac, 1, x.shape)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)


def test_grid_sample_far_outside_and_nan_points_read_zero_and_get_no_gradient():
    op = OPS["grid_sample"]
    grid = np.array([[[[1.7, 0.0], [0.0, -5.0], [np.nan, 0.0], [1e30, -1e30]]]])
    args = Run(case(by_key("grid_sample-outside")), np.float64).args(x=np.ones((1, 2, 3, 3)), grid=grid)
    assert args["align_corners"] is False
    (y,), saved, _ = forward(op, args, 1, (1, 2, 1, 4))
    assert np.all(y == 0.0)
    grads, _ = backward(op, args, {"out": y}, saved, {"out": np.ones_like(y)})
    assert not grads["x"].any() and not grads["grid"].any()
