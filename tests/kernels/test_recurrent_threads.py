"""The recurrent kernels give the same numbers at 1 and 2 threads (each thread runs the
recurrence of its own block of batch rows), and their tiled products (`_mm`) equal NumPy's
at every tile remainder, stride and start."""

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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n"), [(32, 128, 512), (7, 300, 70), (1, 1, 1), (5, 3, 17), (6, 0, 40)])
def test_tiled_products_equal_numpy(m, k, n, dtype):
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    start = rng.standard_normal((m, n)).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    none = np.empty((0, 0), dtype)
    ref = a.astype(np.float64) @ b
    np.testing.assert_allclose(recurrent._mm(a, b, np.empty((m, n), dtype), none), ref, rtol=rtol, atol=rtol)
    got = recurrent._mm(a, b, np.empty((m, n), dtype), start)
    np.testing.assert_allclose(got, start + ref, rtol=rtol, atol=rtol)
    # a transposed view and strided rows of b and c (the shapes the kernels pass)
    at = np.ascontiguousarray(a.T).T
    wide_b = np.zeros((k, n + 9), dtype)
    wide_b[:, :n] = b
    wide_c = np.zeros((m, n + 3), dtype)
    recurrent._mm(at, wide_b[:, :n], wide_c[:, :n], none)
    np.testing.assert_allclose(wide_c[:, :n], ref, rtol=rtol, atol=rtol)
    assert not wide_c[:, n:].any()  # nothing written past the view
    c = start.copy()
    recurrent._mm(a, b, c, c)  # in place: c += a @ b
    np.testing.assert_allclose(c, start + ref, rtol=rtol, atol=rtol)
