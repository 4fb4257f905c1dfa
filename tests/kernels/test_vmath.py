"""Error bounds of the vectorised float32 transcendental functions (graphc.kernels.vmath)."""

import math

import numpy as np
import pytest
from scipy.special import erf, erfc

from graphc.kernels import vmath

GRID = np.concatenate(
    [
        np.linspace(-100, 100, 20001),
        np.linspace(-3, 3, 20001),
        np.logspace(-12, 1, 2000),
        -np.logspace(-12, 1, 2000),
        [0.0, 1e-30, -1e4, 1e4, 88.0, -87.0, -90.0],
    ]
).astype(np.float32)


def _run(fn, x):
    out = np.empty_like(x)
    fn(x, out)
    return out


def test_exp_relative_error_and_range():
    x = GRID.astype(np.float64)
    got = _run(vmath.vexp, GRID)
    assert np.all(np.isfinite(got))
    normal = (x > -87.0) & (x < 88.0)
    ref = np.exp(x[normal])
    assert np.max(np.abs(got[normal] - ref) / ref) < 2e-7
    assert np.all(got[x < vmath._EXP_LO] == 0.0)  # underflow is exactly 0 (masked softmax)


@pytest.mark.parametrize(
    ("name", "ref", "abs_tol", "rel_tol"),
    [
        ("vsigmoid", lambda x: 1 / (1 + np.exp(-x)), 1e-7, 2e-7),
        ("vtanh", np.tanh, 1e-7, 5e-7),
        # relative bound too: the GELU tail (x << 0) needs Phi's relative accuracy
        ("vnormal_cdf", lambda x: 0.5 * erfc(-x / math.sqrt(2)), 1e-7, 3e-7),
    ],
)
def test_float32_error_bounds(name, ref, abs_tol, rel_tol):
    x = GRID.astype(np.float64)
    with np.errstate(over="ignore"):
        expected = ref(x)
    got = _run(getattr(vmath, name), GRID)
    assert np.all(np.isfinite(got))
    err = np.abs(got - expected)
    assert err.max() < abs_tol
    if rel_tol is not None:
        big = np.abs(expected) > 1e-30
        assert (err[big] / np.abs(expected[big])).max() < rel_tol


@pytest.mark.parametrize("name", ["vexp", "vsigmoid", "vtanh", "vnormal_cdf"])
def test_float64_uses_libm_accuracy(name):
    x = np.linspace(-20, 20, 2001)
    refs = {
        "vexp": np.exp,
        "vsigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "vtanh": np.tanh,
        "vnormal_cdf": lambda v: 0.5 * (1 + erf(v / math.sqrt(2))),
    }
    np.testing.assert_allclose(_run(getattr(vmath, name), x), refs[name](x), rtol=1e-14, atol=1e-16)


# Dense samples (beyond GRID): the lower tail of Phi where GELU needs relative accuracy, the
# region around Phi = 1/2 where the absolute bound binds, and tanh/sigmoid around their
# switch-over points.
_RNG = np.random.default_rng(20240601)
DENSE = {
    "vnormal_cdf": np.concatenate(
        [np.linspace(-11.45, -0.5, 200001), _RNG.uniform(-1.5, 1.5, 200000), _RNG.uniform(-11.45, 6, 200000)]
    ),
    "vtanh": np.concatenate([_RNG.uniform(-3, 3, 200000), np.exp(_RNG.uniform(-25, 1, 100000))]),
    "vsigmoid": np.concatenate([_RNG.uniform(-87, 20, 200000), _RNG.uniform(-2, 2, 100000)]),
}


@pytest.mark.parametrize(
    ("name", "ref", "abs_tol", "rel_tol"),
    [
        ("vsigmoid", lambda x: 1 / (1 + np.exp(-x)), 1e-7, 2e-7),
        ("vtanh", np.tanh, 1e-7, 5e-7),
        ("vnormal_cdf", lambda x: 0.5 * erfc(-x / math.sqrt(2)), 1e-7, 3e-7),
    ],
)
def test_float32_error_bounds_dense(name, ref, abs_tol, rel_tol):
    x32 = DENSE[name].astype(np.float32)
    x = x32.astype(np.float64)
    with np.errstate(over="ignore"):
        expected = ref(x)
    got = _run(getattr(vmath, name), x32)
    err = np.abs(got - expected)
    assert err.max() < abs_tol
    big = np.abs(expected) > 1e-30
    assert (err[big] / np.abs(expected[big])).max() < rel_tol


@pytest.mark.parametrize("name", ["vexp", "vsigmoid", "vtanh", "vnormal_cdf"])
def test_float32_nan_and_inf(name):
    x = np.array([np.nan, np.inf, -np.inf], np.float32)
    got = _run(getattr(vmath, name), x)
    assert np.isnan(got[0])
    assert not np.isnan(got[1:]).any()
    if name == "vexp":
        assert got[2] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_value_and_derivative(dtype):
    x32 = np.concatenate([GRID, DENSE["vnormal_cdf"].astype(np.float32)])
    x = x32.astype(np.float64)
    phi = 0.5 * erfc(-x / math.sqrt(2))
    with np.errstate(under="ignore"):
        expected_grad = phi + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    expected = x * phi
    xs = x32.astype(dtype)
    out, grad = np.empty_like(xs), np.empty_like(xs)
    vmath.vgelu(xs, out, grad)
    if dtype == np.float64:  # libm: exactly vnormal_cdf's float64 path
        phi = _run(vmath.vnormal_cdf, x)
        np.testing.assert_array_equal(out, x * phi)
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        np.testing.assert_allclose(grad, phi + x * pdf, rtol=1e-14, atol=1e-15)  # Phi + x pdf cancels
        return
    big = np.abs(expected) > 1e-30
    assert (np.abs(out - expected)[big] / np.abs(expected[big])).max() < 3e-7
    assert np.abs(grad - expected_grad).max() < 2e-7
