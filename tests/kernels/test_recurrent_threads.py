"""The recurrent kernels give the same numbers at 1 and 2 threads (each thread runs the
recurrence of its own block of batch rows and makes its share of the weight gradients), and
the same whatever the layout of the input and of the input gradient's destination."""

import numpy as np
import pytest

from graphc.kernels import recurrent, threads


def _params(rng, kind, n_in, hd, bidirectional, dtype):
    g = {"rnn": 1, "lstm": 4, "gru": 3}[kind] * hd
    s = 1.0 / np.sqrt(hd)
    shapes = [(g, n_in), (g, hd), (g,), (g,)]
    p0 = [rng.uniform(-s, s, sh).astype(dtype) for sh in shapes]
    p1 = [rng.uniform(-s, s, sh).astype(dtype) if bidirectional else np.zeros(0, dtype) for sh in shapes]
    return p0 + p1


def _run(kind, x, params, bidirectional, last, g_out):
    flags = (bidirectional, last) + ((True,) if kind == "rnn" else ())
    fwd, bwd = getattr(recurrent, f"{kind}_fwd"), getattr(recurrent, f"{kind}_bwd")
    out, *saved = fwd(x, *params, *flags)
    return (out, *bwd(g_out, x, *params, *flags, *saved))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("batch", "bidirectional", "last"), [(32, False, True), (13, True, False)])
def test_one_and_two_threads_agree(kind, batch, bidirectional, last, two_threads):
    """Batch 32 splits into two blocks of 16 rows; 13 into 6 and 7 (tile remainders)."""
    rng = np.random.default_rng(batch)
    t_len, n_in, hd = 7, 5, 24
    x = rng.standard_normal((batch, t_len, n_in)).astype(np.float32)
    params = _params(rng, kind, n_in, hd, bidirectional, np.float32)
    width = hd * (2 if bidirectional else 1)
    g_out = rng.standard_normal((batch, width) if last else (batch, t_len, width)).astype(np.float32)
    runs = []
    for n in (1, 2):
        threads.set_threads(n)
        runs.append(_run(kind, x, params, bidirectional, last, g_out))
    for i, (a, b) in enumerate(zip(*runs, strict=True)):
        # the two blocks' shares of a gradient are summed in another order: float32 rounding
        scale = float(np.abs(a).max(initial=0.0))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * scale, err_msg=f"result {i}")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_strided_input_and_destination(kind):
    """A non-contiguous x (the cores read it as [B*T, I] rows, so the wrapper copies it) and a
    non-contiguous destination for its gradient give the contiguous results."""
    rng = np.random.default_rng(3)
    batch, t_len, n_in, hd = 6, 5, 3, 8
    x = rng.standard_normal((batch, t_len, n_in)).astype(np.float32)
    params = _params(rng, kind, n_in, hd, True, np.float32)
    g_out = rng.standard_normal((batch, t_len, 2 * hd)).astype(np.float32)
    ref = _run(kind, x, params, True, False, g_out)
    x_strided = np.zeros((batch, t_len, 2 * n_in), np.float32)[:, :, ::2]
    x_strided[...] = x
    flags = (True, False) + ((True,) if kind == "rnn" else ())
    fwd, bwd = getattr(recurrent, f"{kind}_fwd"), getattr(recurrent, f"{kind}_bwd")
    out, *saved = fwd(x_strided, *params, *flags)
    into = np.full((batch, t_len, 2 * n_in), np.nan, np.float32)[:, :, 1::2]
    got = (out, *bwd(g_out, x_strided, *params, *flags, *saved, into_x=into))
    assert got[1] is into
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=f"result {i}")
