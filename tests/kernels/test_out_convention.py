"""Destination passing: every kernel writes into the buffers the buffer plan hands it.

For every case of the kernel table (and every NumPy shape kernel), the forward is run once
allocating its output and once with ``out=`` a NaN-filled buffer; the backward once
allocating and once with ``into_<port>=`` NaN-filled buffers for every differentiable input.
The destination must be the very object returned, and the results must equal the allocating
call's (a NaN left anywhere means an element was not written).
"""

import inspect
import zlib

import numpy as np
import pytest

from graphc.compiler.lowering import KERNEL_TABLE
from graphc.kernels import KERNELS

from .kernel_cases import all_cases


def _copy(kwargs):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}


def _nan_like(a):
    return np.full(a.shape, np.nan, a.dtype) if a.dtype.kind == "f" else np.empty_like(a)


def _same(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype, what
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=what)


def _signature(fn):
    return inspect.signature(getattr(fn, "py_func", fn)).parameters


def _check_pair(op, fwd, bwd, inputs, nondiff, kwargs, rng):
    res = fwd(**_copy(kwargs))
    out = _nan_like(res[0])
    res_out = fwd(**_copy(kwargs), out=out)
    assert res_out[0] is out, f"{op}: forward did not return its `out` buffer"
    _same(out, res[0], f"{op}: forward into `out`")
    for i, (a, b) in enumerate(zip(res[1:], res_out[1:], strict=True)):
        _same(b, a, f"{op}: saved{i}")

    bwd_kwargs = _copy(kwargs)
    bwd_kwargs["g_out"] = rng.standard_normal(res[0].shape).astype(res[0].dtype)
    bwd_kwargs.update({f"saved{i}": s for i, s in enumerate(res[1:])})
    if "out" in _signature(bwd):
        bwd_kwargs["out"] = res[0]
    grads = bwd(**_copy(bwd_kwargs))
    into = {}
    for i, port in enumerate(inputs):
        if port not in nondiff:
            into[f"into_{port}"] = _nan_like(grads[i]) if grads[i].size else kwargs[port][:0]
    grads_into = bwd(**_copy(bwd_kwargs), **into)
    for i, port in enumerate(inputs):
        if port in nondiff:
            continue
        assert grads_into[i] is into[f"into_{port}"], f"{op}: backward did not return into_{port}"
        _same(grads_into[i], grads[i], f"{op}: gradient into `into_{port}`")
    for i in range(len(inputs), len(grads)):  # parameter gradients stay the kernel's own
        _same(grads_into[i], grads[i], f"{op}: parameter gradient {i - len(inputs)}")


@pytest.mark.parametrize(
    ("op", "case_id", "build"), all_cases(), ids=[f"{op}-{cid}" for op, cid, _ in all_cases()]
)
def test_kernel_writes_into_destinations(op, case_id, build):
    rng = np.random.default_rng(zlib.crc32(f"out/{op}/{case_id}".encode()))
    kp = KERNELS[op]
    kwargs = build(rng, np.float64)
    _check_pair(op, kp.fwd, kp.bwd, kp.inputs, kp.nondiff_inputs, kwargs, rng)


# Shape kernels over NumPy: (op, forward kwargs). flatten/reshape return views of their input
# (no copy, hence no destination) and split has one output per piece; see lowering.ALIASING.
_VIEW_CASES = [
    ("transpose", dict(x=np.arange(24.0).reshape(2, 3, 4), dim0=0, dim1=2)),
    ("permute", dict(x=np.arange(24.0).reshape(2, 3, 4), dims=(2, 0, 1))),
    ("slice", dict(x=np.arange(24.0).reshape(2, 3, 4), axis=1, start=1, stop=3)),
    ("sum", dict(x=np.arange(24.0).reshape(2, 3, 4), axis=(1,), keepdims=False)),
    ("sum", dict(x=np.arange(24.0).reshape(2, 3, 4), axis=None, keepdims=False)),
    ("mean", dict(x=np.arange(24.0).reshape(2, 3, 4), axis=(0, 2), keepdims=True)),
    ("softmax", dict(x=np.linspace(-3, 3, 24).reshape(2, 3, 4), axis=1)),
    ("log_softmax", dict(x=np.linspace(-3, 3, 24).reshape(2, 3, 4), axis=2)),
]


@pytest.mark.parametrize(("op", "kwargs"), _VIEW_CASES, ids=[f"{op}-{i}" for i, (op, _) in
                                                             enumerate(_VIEW_CASES)])
def test_shape_kernel_writes_into_destinations(op, kwargs):
    k = KERNEL_TABLE[op]
    _check_pair(op, k.fwd, k.bwd, k.inputs, k.nondiff, kwargs, np.random.default_rng(0))


def test_concat_forward_writes_into_out():
    xs = [np.arange(6.0).reshape(2, 3), np.arange(4.0).reshape(2, 2)]
    k = KERNEL_TABLE["concat"]
    out = np.full((2, 5), np.nan)
    assert k.fwd(xs=xs, axis=1, out=out)[0] is out
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=1))
