"""Forward kernels in float32 vs plain NumPy references (computed in float64), for every row
of the case table, plus a few targeted semantic checks (masking, running stats, extremes)."""

import math
import zlib

import numpy as np
import pytest
from scipy.special import erf

from graphc.kernels import KERNELS

from .kernel_cases import CASES, all_cases


def _f64(kw):
    return {
        k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
        for k, v in kw.items()
    }


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- references
def ref_conv2d(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias):
    b_n, c_n, h, w = x.shape
    o_n, cg, kh, kw = weight.shape
    og = o_n // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) // stride_h + 1
    ow = (w + 2 * pad_w - dil_w * (kw - 1) - 1) // stride_w + 1
    out = np.zeros((b_n, o_n, oh, ow))
    for o in range(o_n):
        g = o // og
        for i in range(kh):
            for j in range(kw):
                win = xp[
                    :, g * cg : (g + 1) * cg,
                    i * dil_h : i * dil_h + stride_h * (oh - 1) + 1 : stride_h,
                    j * dil_w : j * dil_w + stride_w * (ow - 1) + 1 : stride_w,
                ]  # fmt: skip
                out[:, o] += np.einsum("bcyz,c->byz", win, weight[o, :, i, j])
        if has_bias:
            out[:, o] += bias[o]
    return out


def ref_conv1d(x, weight, bias, stride, padding, dilation, groups, has_bias):
    out = ref_conv2d(
        x[:, :, None], weight[:, :, None], bias, 1, stride, 0, padding, 1, dilation, groups,
        has_bias,
    )  # fmt: skip
    return out[:, :, 0]


def ref_conv_transpose2d(
    x, weight, bias, stride_h, stride_w, pad_h, pad_w, out_pad_h, out_pad_w, dil_h, dil_w,
    groups, has_bias,
):  # fmt: skip
    # Scatter each input pixel times the kernel onto an uncropped canvas, then crop padding.
    b_n, c_n, h, w = x.shape
    _, og, kh, kw = weight.shape
    cg = c_n // groups
    full_h = (h - 1) * stride_h + dil_h * (kh - 1) + 1 + out_pad_h
    full_w = (w - 1) * stride_w + dil_w * (kw - 1) + 1 + out_pad_w
    canvas = np.zeros((b_n, og * groups, full_h, full_w))
    for c in range(c_n):
        g = c // cg
        for i in range(kh):
            for j in range(kw):
                canvas[
                    :, g * og : (g + 1) * og,
                    i * dil_h : i * dil_h + stride_h * (h - 1) + 1 : stride_h,
                    j * dil_w : j * dil_w + stride_w * (w - 1) + 1 : stride_w,
                ] += np.einsum("byz,o->boyz", x[:, c], weight[c, :, i, j])  # fmt: skip
    out = canvas[:, :, pad_h : full_h - pad_h, pad_w : full_w - pad_w]
    if has_bias:
        out = out + bias[None, :, None, None]
    return out


def _ref_pool(x, kh, kw, stride_h, stride_w, pad_h, pad_w, reduce, fill):
    b_n, c_n, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)), constant_values=fill)
    oh = (h + 2 * pad_h - kh) // stride_h + 1
    ow = (w + 2 * pad_w - kw) // stride_w + 1
    out = np.empty((b_n, c_n, oh, ow))
    for y in range(oh):
        for z in range(ow):
            win = xp[:, :, y * stride_h : y * stride_h + kh, z * stride_w : z * stride_w + kw]
            out[:, :, y, z] = reduce(win, axis=(2, 3))
    return out


def ref_maxpool2d(**kw):
    return _ref_pool(**kw, reduce=np.max, fill=-np.inf)


def ref_avgpool2d(**kw):
    return _ref_pool(**kw, reduce=np.mean, fill=0.0)


def ref_positional_encoding(x, weight, learned):
    t_len, d = x.shape[1], x.shape[2]
    if learned:
        return x + weight[:t_len]
    pe = np.empty((t_len, d))
    for i in range(t_len):
        for k in range(d):
            ang = i / 10000 ** (2 * (k // 2) / d)
            pe[i, k] = math.sin(ang) if k % 2 == 0 else math.cos(ang)
    return x + pe


def _layernorm(x, weight, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * weight + bias if weight.size else y


def ref_batchnorm(x, weight, bias, running_mean, running_var, eps, momentum, training):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mu, var = x.mean(axes), x.var(axes)
    else:
        mu, var = running_mean, running_var
    y = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * weight.reshape(shape) + bias.reshape(shape)


def ref_attention(q, kv, key_padding_mask, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal,
                  has_bias):  # fmt: skip
    src = q if kv.size == 0 else kv
    b_n, t_len, e = q.shape
    s_len = src.shape[1]
    dh = e // heads

    def lin(x, w, b):
        return x @ w.T + (b if has_bias else 0.0)

    qp, kp, vp = lin(q, wq, bq), lin(src, wk, bk), lin(src, wv, bv)
    ctx = np.zeros((b_n, t_len, e))
    for b in range(b_n):
        masked = np.zeros((t_len, s_len), bool)
        if causal:
            masked |= np.triu(np.ones((t_len, s_len), bool), 1)
        if key_padding_mask.size:
            masked |= key_padding_mask[b][None, :] > 0.5
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            sc = qp[b, :, sl] @ kp[b, :, sl].T / math.sqrt(dh)
            with np.errstate(invalid="ignore"):  # fully masked rows: nan, fixed below
                p = _softmax(np.where(masked, -np.inf, sc))
            p[masked.all(1)] = 1.0 / s_len  # documented: a fully masked row attends uniformly
            ctx[b, :, sl] = p @ vp[b, :, sl]
    return lin(ctx, wo, bo)


def _ref_recurrent(cell, x, kw, gates):
    b_n, t_len, _ = x.shape
    hd = kw["hidden"]
    outs = []
    for d in range(2 if kw["bidirectional"] else 1):
        w_ih, w_hh = kw[f"w_ih_{d}"], kw[f"w_hh_{d}"]
        b_ih = kw[f"b_ih_{d}"] if kw[f"b_ih_{d}"].size else np.zeros(gates * hd)
        b_hh = kw[f"b_hh_{d}"] if kw[f"b_hh_{d}"].size else np.zeros(gates * hd)
        h = np.zeros((b_n, hd))
        c = np.zeros((b_n, hd))
        seq = np.zeros((b_n, t_len, hd))
        for t in reversed(range(t_len)) if d else range(t_len):
            h, c = cell(x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh, h, c, hd, kw)
            seq[:, t] = h
        outs.append(seq)
    if kw["last"]:
        return np.concatenate([o[:, -1] if d == 0 else o[:, 0] for d, o in enumerate(outs)], 1)
    return np.concatenate(outs, axis=2)


def _rnn_cell(xw, hw, h, c, hd, kw):
    pre = xw + hw
    return (np.tanh(pre) if kw["nonlinearity_tanh"] else np.maximum(pre, 0)), c


def _lstm_cell(xw, hw, h, c, hd, kw):
    a = xw + hw
    i, f = _sigmoid(a[:, :hd]), _sigmoid(a[:, hd : 2 * hd])
    g, o = np.tanh(a[:, 2 * hd : 3 * hd]), _sigmoid(a[:, 3 * hd :])
    c = f * c + i * g
    return o * np.tanh(c), c


def _gru_cell(xw, hw, h, c, hd, kw):
    r = _sigmoid(xw[:, :hd] + hw[:, :hd])
    z = _sigmoid(xw[:, hd : 2 * hd] + hw[:, hd : 2 * hd])
    n = np.tanh(xw[:, 2 * hd :] + r * hw[:, 2 * hd :])
    return (1 - z) * n + z * h, c


def ref_cross_entropy(logits, target, mask, ignore_index, label_smoothing):
    c = logits.shape[-1]
    lp = _log_softmax(logits.reshape(-1, c))
    t = target.reshape(-1)
    w = (t != ignore_index).astype(float) * (mask.reshape(-1) if mask.size else 1.0)
    nll = -lp[np.arange(t.size), np.where(t == ignore_index, 0, t)]
    loss = (1 - label_smoothing) * nll - label_smoothing * lp.mean(-1)
    return np.array([(w * loss).sum() / w.sum()])


def ref_kl_div(student, teacher, temperature):
    c = student.shape[-1]
    lp = _log_softmax(teacher.reshape(-1, c) / temperature)
    lq = _log_softmax(student.reshape(-1, c) / temperature)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    return np.array([temperature**2 * kl.mean()])


def ref_hinge(scores, target, margin):
    b_n = scores.shape[0]
    sy = scores[np.arange(b_n), target][:, None]
    m = np.maximum(0.0, scores - sy + margin)
    m[np.arange(b_n), target] = 0.0
    return np.array([m.sum(1).mean()])


def _base_coords(n, align_corners):
    """torch's linspace_from_neg_one: pixel centres in [-1, 1]; a single point is at 0."""
    if n == 1:
        return np.zeros(1)
    c = np.linspace(-1.0, 1.0, n)
    return c if align_corners else c * (n - 1) / n


def ref_affine_grid(theta, size, align_corners):
    h, w = size
    xs, ys = _base_coords(w, align_corners), _base_coords(h, align_corners)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), axis=-1)  # [H, W, 3]
    return np.einsum("hwl,bkl->bhwk", base, theta)


def ref_grid_sample(x, grid, align_corners):
    b_n, c_n, h_in, w_in = x.shape
    _, h, w, _ = grid.shape

    def pixel(g, n):
        return (g + 1) / 2 * (n - 1) if align_corners else ((g + 1) * n - 1) / 2

    out = np.zeros((b_n, c_n, h, w))
    for b in range(b_n):
        for i in range(h):
            for j in range(w):
                px, py = pixel(grid[b, i, j, 0], w_in), pixel(grid[b, i, j, 1], h_in)
                x0, y0 = math.floor(px), math.floor(py)
                for yy in (y0, y0 + 1):
                    for xx in (x0, x0 + 1):
                        if 0 <= yy < h_in and 0 <= xx < w_in:  # zeros outside the image
                            weight = (1 - abs(px - xx)) * (1 - abs(py - yy))
                            out[b, :, i, j] += weight * x[b, :, yy, xx]
    return out


REFERENCES = {
    "linear": lambda x, weight, bias, has_bias: x @ weight.T + (bias if has_bias else 0.0),
    "matmul": lambda a, b: a @ b,
    "embedding": lambda ids, weight, padding_idx: weight[ids],
    "positional_encoding": ref_positional_encoding,
    "conv1d": ref_conv1d,
    "conv2d": ref_conv2d,
    "conv_transpose2d": ref_conv_transpose2d,
    "maxpool2d": ref_maxpool2d,
    "avgpool2d": ref_avgpool2d,
    "global_avgpool": lambda x: x.mean((2, 3)),
    "upsample": lambda x, scale: x.repeat(scale, 2).repeat(scale, 3),
    "affine_grid": ref_affine_grid,
    "grid_sample": ref_grid_sample,
    "concat2": lambda a, b, axis: np.concatenate([a, b], axis),
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
    "tanh": lambda x: np.tanh(x),
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "dropout": lambda x, u, p, training: x * (u >= p) / (1 - p) if training else x,
    "layernorm": lambda x, weight, bias, eps, affine: _layernorm(x, weight, bias, eps),
    "add_norm": lambda x, y, weight, bias, eps: _layernorm(x + y, weight, bias, eps),
    "batchnorm": ref_batchnorm,
    "attention": ref_attention,
    "rnn": lambda x, **kw: _ref_recurrent(_rnn_cell, x, kw, 1),
    "lstm": lambda x, **kw: _ref_recurrent(_lstm_cell, x, kw, 4),
    "gru": lambda x, **kw: _ref_recurrent(_gru_cell, x, kw, 3),
    "cross_entropy": ref_cross_entropy,
    "bce_with_logits": lambda logits, target: np.array(
        [-np.mean(target * np.log(_sigmoid(logits)) + (1 - target) * np.log(_sigmoid(-logits)))]
    ),
    "mse": lambda pred, target: np.array([np.mean((pred - target) ** 2)]),
    "hinge": ref_hinge,
    "kl_div": ref_kl_div,
}


def test_every_kernel_has_a_reference():
    assert sorted(REFERENCES) == sorted(KERNELS)


@pytest.mark.parametrize(
    ("op", "case_id", "build"), all_cases(), ids=[f"{op}-{cid}" for op, cid, _ in all_cases()]
)
def test_forward_float32_matches_numpy_reference(op, case_id, build):
    rng = np.random.default_rng(zlib.crc32(f"fwd/{op}/{case_id}".encode()))
    kw = build(rng, np.float32)
    kp = KERNELS[op]
    res = kp.fwd(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
    assert isinstance(res, tuple) and len(res) == len(kp.outputs) + kp.n_saved
    out = res[0]
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.all(np.isfinite(out))
    expected = REFERENCES[op](**_f64(kw))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_updates_running_stats_in_place(training):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    rm = rng.standard_normal(3).astype(np.float32)
    rv = (rng.random(3) + 0.5).astype(np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    KERNELS["batchnorm"].fwd(
        x=x, weight=ones, bias=zeros, running_mean=rm, running_var=rv, eps=1e-5, momentum=0.1,
        training=training,
    )  # fmt: skip
    if training:
        xd = x.astype(np.float64)
        np.testing.assert_allclose(rm, 0.9 * rm0 + 0.1 * xd.mean((0, 2)), rtol=1e-5)
        np.testing.assert_allclose(rv, 0.9 * rv0 + 0.1 * xd.var((0, 2), ddof=1), rtol=1e-5)
    else:
        assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)


def test_attention_fully_masked_row_is_finite_and_uniform():
    rng = np.random.default_rng(2)
    kw = dict(CASES["attention"])["self_fullmask_nobias"](rng, np.float32)
    out, _, _, _, probs, _ = KERNELS["attention"].fwd(**kw)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(probs[0], 1.0 / probs.shape[-1], rtol=1e-6)


def test_softmax_and_losses_are_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0]], np.float32)
    (sm,) = KERNELS["softmax"].fwd(x=x)
    (lsm,) = KERNELS["log_softmax"].fwd(x=x)
    assert np.allclose(sm, [[1, 0, 0]]) and np.isfinite(lsm).all()
    (bce,) = KERNELS["bce_with_logits"].fwd(logits=x, target=np.ones_like(x))
    np.testing.assert_allclose(bce, [(0 + 1e4 + math.log(2)) / 3], rtol=1e-6)
    (kl,) = KERNELS["kl_div"].fwd(student=x, teacher=x[:, ::-1].copy(), temperature=1.0)
    assert np.isfinite(kl).all()


def test_cross_entropy_with_nothing_counted_is_zero_not_nan():
    kp = KERNELS["cross_entropy"]
    kw = dict(
        logits=np.ones((2, 3), np.float32), target=np.array([-100, -100], np.int64),
        mask=np.zeros(0, np.float32), ignore_index=-100, label_smoothing=0.0,
    )  # fmt: skip
    out, probs = kp.fwd(**kw)
    gx, _, _ = kp.bwd(g_out=np.ones(1, np.float32), **kw, saved0=probs, out=out)
    assert out.shape == (1,) and out[0] == 0.0 and not gx.any()


def test_embedding_rejects_out_of_range_ids():
    with pytest.raises(IndexError):
        KERNELS["embedding"].fwd(
            ids=np.array([5], np.int64), weight=np.zeros((5, 2), np.float32), padding_idx=-1
        )


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_affine_grid_samples_the_image_unchanged(align_corners):
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 4)).astype(np.float32)
    theta = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (2, 1, 1))
    (grid,) = KERNELS["affine_grid"].fwd(theta=theta, size=(5, 4), align_corners=align_corners)
    (y,) = KERNELS["grid_sample"].fwd(x=x, grid=grid, align_corners=align_corners)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)


def test_grid_sample_far_outside_and_nan_points_read_zero_and_get_no_gradient():
    x = np.ones((1, 2, 3, 3))
    grid = np.array([[[[1.7, 0.0], [0.0, -5.0], [np.nan, 0.0], [1e30, -1e30]]]])
    kp = KERNELS["grid_sample"]
    (y,) = kp.fwd(x=x, grid=grid, align_corners=False)
    assert np.all(y == 0.0)
    gx, gg = kp.bwd(g_out=np.ones_like(y), x=x, grid=grid, align_corners=False, out=y)
    assert not gx.any() and not gg.any()
