"""The register-tiled GEMM (`graphc.kernels.tile_gemm`) equals NumPy's product at every tile
remainder (rows left after the 8-row tiles, or 4-row ones without AVX-512, columns after the 3-, 2- and 1-vector
tiles), K across several passes, any row strides, and from a start matrix or a bias row."""

import numpy as np
import pytest

from graphc.kernels.tile_gemm import mm, mm_bias

# (m, k, n): the LSTM's shapes, then edges around the tile sizes (8 or 4 rows; 16, 32, 48
# float32 or 8, 16, 24 float64 columns; K passes of 128)
SHAPES = [
    (32, 128, 512),
    (16, 32, 512),
    (1600, 32, 512),
    (512, 800, 32),
    (9, 129, 49),
    (15, 7, 47),
    (17, 256, 97),
    (13, 300, 70),
    (7, 3, 33),
    (5, 3, 17),
    (3, 5, 15),
    (1, 1, 1),
    (6, 0, 40),
]


def _tol(dtype, k):
    """Rounding of a k-term sum grows like sqrt(k)."""
    return (1e-5 if dtype == np.float32 else 1e-12) * max(1.0, np.sqrt(k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_equals_numpy(m, k, n, dtype):
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    start = rng.standard_normal((m, n)).astype(dtype)
    tol = _tol(dtype, k)
    none = np.empty((0, 0), dtype)
    ref = a.astype(np.float64) @ b
    np.testing.assert_allclose(mm(a, b, np.empty((m, n), dtype), none), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(mm(a, b, np.empty((m, n), dtype), start), start + ref, rtol=tol, atol=tol)
    c = start.copy()
    mm(a, b, c, c)  # in place: c += a @ b
    np.testing.assert_allclose(c, start + ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_strided_operands(m, k, n, dtype):
    """A transposed a (the gate gradients' a.T), rows of b, c and a start matrix inside wider
    arrays; nothing is written past c's columns."""
    rng = np.random.default_rng(m + 7 * n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    tol = _tol(dtype, k)
    ref = a.astype(np.float64) @ b
    at = np.ascontiguousarray(a.T).T
    wide_b = np.zeros((k, n + 9), dtype)
    wide_b[:, :n] = b
    wide_start = np.zeros((m, n + 5), dtype)
    wide_start[:, :n] = 1.5
    wide_c = np.zeros((m, n + 3), dtype)
    mm(at, wide_b[:, :n], wide_c[:, :n], wide_start[:, :n])
    np.testing.assert_allclose(wide_c[:, :n], ref + 1.5, rtol=tol, atol=tol)
    assert not wide_c[:, n:].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n"), [(32, 128, 512), (9, 129, 49), (1600, 32, 512), (3, 2, 5)])
def test_bias_row(m, k, n, dtype):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    tol = _tol(dtype, k)
    got = mm_bias(a, b, np.empty((m, n), dtype), bias)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b + bias, rtol=tol, atol=tol)
