"""The convolution and pooling kernels split the batch (or the image planes) over the thread
pool: at 2 threads they give what they give at 1 (the weight and bias gradients are summed per
block of images, so float32 may differ in the last bits), conv2d's gradients equal NumPy's
both when a GEMM covers one image and when it covers a chunk of several (the op table's tiny
batches only reach the latter), and an input gradient passed a zero-size destination is
skipped."""

import numpy as np
import pytest

from graphc.kernels import threads
from graphc.kernels.conv import conv1d_bwd, conv1d_fwd, conv2d_bwd, conv2d_fwd
from graphc.kernels.conv_transpose import conv_transpose2d_bwd, conv_transpose2d_fwd
from graphc.kernels.pool import avgpool2d_bwd, avgpool2d_fwd, maxpool2d_bwd, maxpool2d_fwd

F32 = np.float32
# Batches large enough that every kernel below splits its work at 2 threads.
B = 16


def _at_1_and_2_threads(fn):
    runs = []
    for n in (1, 2):
        threads.set_threads(n)
        runs.append([np.array(a, copy=True) for a in fn()])
    return runs


def _assert_same(runs):
    one, two = runs
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(a).max(initial=0.0))))


def _r(rng, *shape):
    return rng.standard_normal(shape).astype(F32)


CONV2D = [  # (x shape, weight shape, stride, pad, dil, groups)
    ((B, 3, 28, 28), (16, 3, 3, 3), 1, 1, 1, 1),
    ((B, 16, 14, 14), (32, 16, 3, 3), 1, 1, 1, 1),
    ((B, 4, 9, 8), (6, 2, 3, 2), 2, 1, 2, 2),  # groups, stride, dilation; small images chunked
    ((B, 8, 12, 12), (16, 1, 3, 3), 1, 1, 1, 8),  # depthwise, channel multiplier 2
    ((B, 8, 10, 10), (12, 8, 1, 1), 1, 0, 1, 1),  # 1x1
]


@pytest.mark.parametrize("xs, ws, s, p, d, g", CONV2D)
def test_conv2d_is_the_same_at_1_and_2_threads(xs, ws, s, p, d, g, two_threads):
    rng = np.random.default_rng(0)
    x, w, b = _r(rng, *xs), _r(rng, *ws), _r(rng, ws[0])
    attrs = dict(stride_h=s, stride_w=s, pad_h=p, pad_w=p, dil_h=d, dil_w=d, groups=g, has_bias=True)
    (out,) = conv2d_fwd(x=x, weight=w, bias=b, **attrs)
    go = _r(rng, *out.shape)

    def run():
        (y,) = conv2d_fwd(x=x, weight=w, bias=b, **attrs)
        return (y, *conv2d_bwd(g_out=go, x=x, weight=w, bias=b, out=y, **attrs))

    _assert_same(_at_1_and_2_threads(run))


def _np_conv2d_grads(x, w, go, s, p, d, groups):
    """Input and weight gradients of conv2d in float64, one kernel tap at a time."""
    x, w, go = (a.astype(np.float64) for a in (x, w, go))
    h, wd = x.shape[2:]
    o_n, cg, kh, kw = w.shape
    og, (oh, ow) = o_n // groups, go.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for g in range(groups):
        cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(kh):
            for j in range(kw):
                win = (slice(None), cs, slice(i * d, i * d + s * (oh - 1) + 1, s),
                       slice(j * d, j * d + s * (ow - 1) + 1, s))  # fmt: skip
                gw[os_, :, i, j] = np.einsum("boyz,bcyz->oc", go[:, os_], xp[win])
                gxp[win] += np.einsum("boyz,oc->bcyz", go[:, os_], w[os_, :, i, j])
    return gxp[:, :, p : p + h, p : p + wd], gw


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("xs, ws, s, p, d, g", CONV2D)
def test_conv2d_gradients_equal_numpy(xs, ws, s, p, d, g, n_threads, two_threads):
    threads.set_threads(n_threads)
    rng = np.random.default_rng(4)
    x, w, b = _r(rng, *xs), _r(rng, *ws), _r(rng, ws[0])
    attrs = dict(stride_h=s, stride_w=s, pad_h=p, pad_w=p, dil_h=d, dil_w=d, groups=g, has_bias=True)
    (y,) = conv2d_fwd(x=x, weight=w, bias=b, **attrs)
    go = _r(rng, *y.shape)
    gx, gw, gb = conv2d_bwd(g_out=go, x=x, weight=w, bias=b, out=y, **attrs)
    want_gx, want_gw = _np_conv2d_grads(x, w, go, s, p, d, g)
    for got, want in ((gx, want_gx), (gw, want_gw), (gb, go.astype(np.float64).sum(axis=(0, 2, 3)))):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_conv1d_and_conv_transpose2d_are_the_same_at_1_and_2_threads(two_threads):
    rng = np.random.default_rng(1)
    x1, w1, b1 = _r(rng, B, 8, 200), _r(rng, 16, 8, 5), _r(rng, 16)
    a1 = dict(stride=1, padding=2, dilation=1, groups=1, has_bias=True)
    xt, wt, bt = _r(rng, B, 16, 14, 14), _r(rng, 16, 8, 3, 3), _r(rng, 8)
    at = dict(stride_h=2, stride_w=2, pad_h=1, pad_w=1, out_pad_h=1, out_pad_w=1, dil_h=1, dil_w=1, groups=1,
              has_bias=True)  # fmt: skip
    go1 = _r(rng, *conv1d_fwd(x=x1, weight=w1, bias=b1, **a1)[0].shape)
    got = _r(rng, *conv_transpose2d_fwd(x=xt, weight=wt, bias=bt, **at)[0].shape)

    def run():
        (y1,) = conv1d_fwd(x=x1, weight=w1, bias=b1, **a1)
        (yt,) = conv_transpose2d_fwd(x=xt, weight=wt, bias=bt, **at)
        return (y1, *conv1d_bwd(g_out=go1, x=x1, weight=w1, bias=b1, out=y1, **a1),
                yt, *conv_transpose2d_bwd(g_out=got, x=xt, weight=wt, bias=bt, out=yt, **at))  # fmt: skip

    _assert_same(_at_1_and_2_threads(run))


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 0)])
def test_pooling_is_the_same_at_1_and_2_threads(k, s, p, two_threads):
    rng = np.random.default_rng(2)
    x = _r(rng, B, 16, 28, 28)
    attrs = dict(kh=k, kw=k, stride_h=s, stride_w=s, pad_h=p, pad_w=p)
    go = _r(rng, *avgpool2d_fwd(x=x, **attrs)[0].shape)

    def run():
        y, arg = maxpool2d_fwd(x=x, **attrs)
        (a,) = avgpool2d_fwd(x=x, **attrs)
        return (y, arg, *maxpool2d_bwd(g_out=go, x=x, saved0=arg, out=y, **attrs), a,
                *avgpool2d_bwd(g_out=go, x=x, out=a, **attrs))  # fmt: skip

    one, two = _at_1_and_2_threads(run)
    for a, b in zip(one, two, strict=True):  # planes are independent: bit-identical
        np.testing.assert_array_equal(a, b)


def test_a_zero_size_input_gradient_destination_is_skipped(two_threads):
    rng = np.random.default_rng(3)
    x, w, b = _r(rng, B, 1, 28, 28), _r(rng, 16, 1, 3, 3), _r(rng, 16)
    attrs = dict(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1, groups=1, has_bias=True)
    (y,) = conv2d_fwd(x=x, weight=w, bias=b, **attrs)
    go = _r(rng, *y.shape)
    _, gw, gb = conv2d_bwd(g_out=go, x=x, weight=w, bias=b, out=y, **attrs)
    skip = np.empty((0, 0, 0, 0), F32)
    gx, gw_skip, gb_skip = conv2d_bwd(g_out=go, x=x, weight=w, bias=b, out=y, into_x=skip, **attrs)
    assert gx is skip
    np.testing.assert_array_equal(gw_skip, gw)
    np.testing.assert_array_equal(gb_skip, gb)
