"""Backward kernels vs central finite differences, float64, for every op in KERNELS.

For each case and each differentiable, present input/param x we draw a random cotangent g
for every output and a random direction v, and compare the directional derivative
``<dL/dx, v>`` (from the backward kernel, L = sum <g, out>) with
``(L(x + eps v) - L(x - eps v)) / (2 eps)``.
"""

import zlib

import numpy as np
import pytest

from graphc.kernels import KERNELS

from .kernel_cases import CASES, all_cases

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-8


def test_every_kernel_has_a_gradcheck_row():
    missing = sorted(set(KERNELS) - set(CASES))
    assert not missing, f"ops without a gradient-check row: {missing}"
    unknown = sorted(set(CASES) - set(KERNELS))
    assert not unknown, f"gradient-check rows for unknown ops: {unknown}"


def _copy_args(kwargs):
    # batchnorm updates its buffers in place: give every call fresh copies
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}


def _outputs(kp, kwargs):
    res = kp.fwd(**_copy_args(kwargs))
    assert isinstance(res, tuple) and len(res) == len(kp.outputs) + kp.n_saved
    return res


def _objective(kp, kwargs, cotangents):
    outs = _outputs(kp, kwargs)[: len(kp.outputs)]
    return sum(float(np.sum(o * g)) for o, g in zip(outs, cotangents, strict=True))


def _direction_mask(op, name, kwargs):
    """Directions the backward deliberately does not follow (by torch semantics)."""
    if op == "embedding" and name == "weight" and kwargs["padding_idx"] >= 0:
        # the padding row is used in the forward but never receives gradient
        mask = np.ones_like(kwargs["weight"])
        mask[kwargs["padding_idx"]] = 0.0
        return mask
    return None


@pytest.mark.parametrize(
    ("op", "case_id", "build"), all_cases(), ids=[f"{op}-{cid}" for op, cid, _ in all_cases()]
)
def test_backward_matches_finite_differences(op, case_id, build):
    rng = np.random.default_rng(zlib.crc32(f"{op}/{case_id}".encode()))
    kp = KERNELS[op]
    kwargs = build(rng, np.float64)
    res = _outputs(kp, kwargs)
    outs, saved = res[: len(kp.outputs)], res[len(kp.outputs) :]
    cot = [rng.standard_normal(o.shape) for o in outs]

    bwd_kwargs = _copy_args(kwargs)
    bwd_kwargs.update({f"g_{n}": g for n, g in zip(kp.outputs, cot, strict=True)})
    bwd_kwargs.update({f"saved{i}": s for i, s in enumerate(saved)})
    bwd_kwargs.update(dict(zip(kp.outputs, outs, strict=True)))
    grads = kp.bwd(**bwd_kwargs)
    names = kp.inputs + kp.params
    assert isinstance(grads, tuple) and len(grads) == len(names)

    checked = 0
    for name, grad in zip(names, grads, strict=True):
        x = kwargs[name]
        if name in kp.nondiff_inputs or x.size == 0:
            assert grad.size == 0, f"{name}: expected a zero-size gradient"
            continue
        assert grad.shape == x.shape, f"{name}: gradient shape {grad.shape} != {x.shape}"
        assert grad.dtype == x.dtype and grad.flags.c_contiguous
        mask = _direction_mask(op, name, kwargs)
        if mask is not None:
            assert np.all(grad[mask == 0] == 0), f"{name}: masked gradient entries must be 0"
        for _ in range(2):
            v = rng.standard_normal(x.shape)
            if mask is not None:
                v *= mask
            plus = _objective(kp, {**kwargs, name: x + EPS * v}, cot)
            minus = _objective(kp, {**kwargs, name: x - EPS * v}, cot)
            fd = (plus - minus) / (2 * EPS)
            an = float(np.sum(grad * v))
            assert abs(fd - an) <= ATOL + RTOL * max(abs(fd), abs(an)), (
                f"{op}[{case_id}] d/d{name}: finite difference {fd!r} vs backward {an!r}"
            )
        checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    ("op", "case_id", "build"), all_cases(), ids=[f"{op}-{cid}" for op, cid, _ in all_cases()]
)
def test_float32_backward_matches_float64(op, case_id, build):
    """The float32 paths (vectorised exp/tanh/erf, float32 GEMMs) are separate code from the
    float64 paths the finite differences check: compare their gradients on the same inputs."""
    rng = np.random.default_rng(zlib.crc32(f"f32/{op}/{case_id}".encode()))
    kp = KERNELS[op]
    kw32 = build(rng, np.float32)
    kw64 = {
        k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
        for k, v in kw32.items()
    }
    grads = {}
    for dt, kw in ((np.float32, kw32), (np.float64, kw64)):
        res = _outputs(kp, kw)
        outs, saved = res[: len(kp.outputs)], res[len(kp.outputs) :]
        cot = [np.random.default_rng(7).standard_normal(o.shape).astype(dt) for o in outs]
        bwd_kwargs = _copy_args(kw)
        bwd_kwargs.update({f"g_{n}": g for n, g in zip(kp.outputs, cot, strict=True)})
        bwd_kwargs.update({f"saved{i}": s for i, s in enumerate(saved)})
        bwd_kwargs.update(dict(zip(kp.outputs, outs, strict=True)))
        grads[dt] = kp.bwd(**bwd_kwargs)
    for name, g32, g64 in zip(kp.inputs + kp.params, grads[np.float32], grads[np.float64],
                              strict=True):  # fmt: skip
        assert g32.shape == g64.shape, name
        if g32.size == 0:
            continue
        assert g32.dtype == np.float32 and g32.flags.c_contiguous, name
        assert np.all(np.isfinite(g32)), name
        scale = float(np.max(np.abs(g64)))
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * max(scale, 1.0), err_msg=name)
