"""The attention kernel at sizes the op table's tiny rows do not reach: several causal tiles
(T > the kernel's row tile, a partial last tile), padded keys and rows whose keys are all
padded, and the work split over two threads.

- the same outputs and gradients at 1 and 2 threads (float32 tolerance: the row-blocked
  GEMMs and column sums add in another order);
- the forward equals the NumPy reference (`tests.op_cases.np_attention`);
- float64 central differences of the forward match the backward, at 2 threads.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from graphc.kernels import attention as kernel
from graphc.kernels import threads
from graphc.ops import OPS
from tests.op_cases import np_attention

from .harness import backward, forward

OP = OPS["attention"]
T = kernel._ROW_BLOCK * 2 + 5  # three causal tiles, the last one partial
# name -> (kv length or None for self-attention, padding mask?, causal)
CASES = {
    "self-causal": (None, False, True),
    "self-causal-mask": (None, True, True),
    "cross-causal-mask": (T, True, True),
    "self-mask": (None, True, False),
}
PARAMS = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")


def _args(name, dtype, b=3, e=12, heads=3, ekv=8):
    s_len, masked, causal = CASES[name]
    rng = np.random.default_rng(len(name))
    s = T if s_len is None else s_len

    def r(*shape, scale=0.4):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    kv = np.zeros(0, dtype) if s_len is None else r(b, s, ekv, scale=1.0)
    width = e if s_len is None else ekv
    mask = np.zeros(0, dtype)
    if masked:
        mask = (rng.random((b, s)) < 0.3).astype(dtype)
        mask[0, : T // 2] = 1.0  # batch item 0: the first half of the rows see only padding
        mask[1] = 1.0  # batch item 1: every key padded
    return dict(q=r(b, T, e, scale=1.0), kv=kv, key_padding_mask=mask, wq=r(e, e), bq=r(e), wk=r(e, width),
                bk=r(e), wv=r(e, width), bv=r(e), wo=r(e, e), bo=r(e), heads=heads, causal=causal,
                has_bias=True)  # fmt: skip


def _run(args, g):
    (out,), saved, _ = forward(OP, args, 1, args["q"].shape)
    grads, _ = backward(OP, args, {"out": out}, saved, {"out": g})
    return out, grads


@pytest.mark.parametrize("name", CASES)
def test_one_and_two_threads_agree(name, two_threads):
    args = _args(name, np.float32)
    g = np.random.default_rng(1).standard_normal(args["q"].shape).astype(np.float32)
    threads.set_threads(1)
    out1, grads1 = _run(args, g)
    threads.set_threads(2)
    out2, grads2 = _run(args, g)
    np.testing.assert_allclose(out2, out1, rtol=1e-5, atol=1e-6)
    for k in grads1:
        np.testing.assert_allclose(grads2[k], grads1[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(name, two_threads):
    args = _args(name, np.float64)
    (out,), _, _ = forward(OP, args, 1, args["q"].shape)
    t = SimpleNamespace(**{k: (None if v.size == 0 else v) for k, v in args.items() if k in (
        "q", "kv", "key_padding_mask", *PARAMS)})  # fmt: skip
    ref = np_attention(t, SimpleNamespace(heads=args["heads"], causal=args["causal"]))
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_central_differences(name, two_threads):
    args = _args(name, np.float64)
    rng = np.random.default_rng(2)
    g = rng.standard_normal(args["q"].shape)
    _, grads = _run(args, g)
    eps = 1e-6
    for k in ("q", "kv", *PARAMS):
        if args[k].size == 0:
            continue
        v = rng.standard_normal(args[k].shape)

        def objective(x, k=k):
            (out,), _, _ = forward(OP, {**args, k: x}, 1, args["q"].shape)
            return float(np.sum(out * g))

        fd = (objective(args[k] + eps * v) - objective(args[k] - eps * v)) / (2 * eps)
        # abs: bk's gradient is 0 (a shift of every score of a row), its difference ~1e-8
        assert float(np.sum(grads[k] * v)) == pytest.approx(fd, rel=1e-5, abs=1e-6), k
