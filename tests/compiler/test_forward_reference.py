"""Forward of single-node specs through the compiled path (float32) vs plain NumPy references.

The references are written here from the ops' definitions (PyTorch semantics and layouts),
in float64, independently of graphc.kernels; the compiled model runs in float32, so the
tolerances are float32-tight.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from graphc.compiler import compile_spec

from .helpers import spec_text, write

TOL = dict(rtol=2e-5, atol=2e-6)


def _rng(key: str):
    return np.random.default_rng(zlib.crc32(key.encode()))


def _run(tmp_path, inputs, node, batch, *, loss=False, params=None, training=False, seed=0, rng=None):
    """Compile `inputs` + one node `y`; return (value of y, float32 params used, model)."""
    nodes = {"y": node}
    text = spec_text(inputs, nodes, losses=["y"]) if loss else spec_text(inputs, nodes, outputs=["y"])
    model = compile_spec(write(tmp_path, text))
    p = model.init_params(0)
    if rng is not None:  # move trainable params off their init (γ=1, β=0, zero biases)
        p = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32)
             if model.params[k].trainable else v for k, v in p.items()}
    p.update({k: np.asarray(v, np.float32) for k, v in (params or {}).items()})
    r = model.forward(p, batch, training=training, seed=seed)
    out = r.losses["y"] if loss else r.outputs["y"]
    if not loss:
        assert out.dtype == np.float32
    return out, {k: v.astype(np.float64) for k, v in p.items()}, model


def f32(a):
    return np.asarray(a, np.float32)


# ----------------------------------------------------------------------------- references
def ref_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def ref_log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def ref_conv2d(x, w, b, stride, pad, dil, groups):
    bn, cin, h, wd = x.shape
    cout, cpg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((bn, cout, ho, wo))
    opg = cout // groups
    for o in range(cout):
        g = o // opg
        for i in range(ho):
            for j in range(wo):
                for a in range(kh):
                    for c in range(kw):
                        patch = xp[:, g * cpg:(g + 1) * cpg, i * stride[0] + a * dil[0], j * stride[1] + c * dil[1]]
                        out[:, o, i, j] += patch @ w[o, :, a, c]
        if b is not None:
            out[:, o] += b[o]
    return out


def ref_conv_transpose2d(x, w, b, stride, pad, out_pad, dil, groups):
    bn, cin, h, wd = x.shape
    _, opg, kh, kw = w.shape
    cpg = cin // groups
    hf = (h - 1) * stride[0] + dil[0] * (kh - 1) + 1 + out_pad[0]
    wf = (wd - 1) * stride[1] + dil[1] * (kw - 1) + 1 + out_pad[1]
    full = np.zeros((bn, opg * groups, hf, wf))
    for ci in range(cin):
        g = ci // cpg
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    for c in range(kw):
                        full[:, g * opg:(g + 1) * opg, i * stride[0] + a * dil[0], j * stride[1] + c * dil[1]] += (
                            x[:, ci, i, j][:, None] * w[ci, :, a, c][None, :])
    out = full[:, :, pad[0]:hf - pad[0], pad[1]:wf - pad[1]]
    return out + (b[None, :, None, None] if b is not None else 0)


def ref_pool(x, k, stride, pad, kind):
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    ho = (x.shape[2] + 2 * pad[0] - k[0]) // stride[0] + 1
    wo = (x.shape[3] + 2 * pad[1] - k[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * stride[0]:i * stride[0] + k[0], j * stride[1]:j * stride[1] + k[1]]
            out[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return out


def ref_layernorm(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def ref_attention(q, kv, p, heads, causal, mask=None):
    b, t, e = q.shape
    s = kv.shape[1]
    dh = e // heads
    Q = q @ p["wq"].T + p["bq"]
    K = kv @ p["wk"].T + p["bk"]
    V = kv @ p["wv"].T + p["bv"]
    out = np.zeros((b, t, e))
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        sc = Q[:, :, sl] @ K[:, :, sl].transpose(0, 2, 1) / np.sqrt(dh)
        if causal:
            sc = np.where(np.triu(np.ones((t, s), bool), 1)[None], -np.inf, sc)
        if mask is not None:
            sc = np.where(mask[:, None, :] > 0.5, -np.inf, sc)
        out[:, :, sl] = ref_softmax(sc) @ V[:, :, sl]
    return out @ p["wo"].T + p["bo"]


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_lstm(x, p, hd):
    b, t, _ = x.shape
    h, c = np.zeros((b, hd)), np.zeros((b, hd))
    hs = []
    for s in range(t):
        a = x[:, s] @ p["y.w_ih_0"].T + p["y.b_ih_0"] + h @ p["y.w_hh_0"].T + p["y.b_hh_0"]
        i, f, g, o = (a[:, k * hd:(k + 1) * hd] for k in range(4))
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        h = _sig(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1)


def ref_gru(x, p, hd):
    b, t, _ = x.shape
    h = np.zeros((b, hd))
    hs = []
    for s in range(t):
        gi = x[:, s] @ p["y.w_ih_0"].T + p["y.b_ih_0"]
        gh = h @ p["y.w_hh_0"].T + p["y.b_hh_0"]
        r = _sig(gi[:, :hd] + gh[:, :hd])
        z = _sig(gi[:, hd:2 * hd] + gh[:, hd:2 * hd])
        n = np.tanh(gi[:, 2 * hd:] + r * gh[:, 2 * hd:])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, 1)


# ----------------------------------------------------------------------------- dense
def test_linear(tmp_path):
    rng = _rng("linear")
    x = f32(rng.standard_normal((2, 3, 4)))
    y, p, _ = _run(tmp_path, {"x": [2, 3, 4]}, {"op": "linear", "in": "x", "out": 5}, {"x": x}, rng=rng)
    np.testing.assert_allclose(y, x @ p["y.weight"].T + p["y.bias"], **TOL)


def test_embedding(tmp_path):
    rng = _rng("embedding")
    ids = rng.integers(0, 7, (3, 4))
    y, p, _ = _run(tmp_path, {"ids": ([3, 4], "int64")},
                   {"op": "embedding", "in": "ids", "num": 7, "dim": 5, "padding_idx": 2}, {"ids": ids})
    np.testing.assert_array_equal(y, f32(p["y.weight"][ids]))


def test_positional_encoding_sinusoidal(tmp_path):
    x = f32(_rng("pe").standard_normal((2, 5, 6)))
    y, _, _ = _run(tmp_path, {"x": [2, 5, 6]}, {"op": "positional_encoding", "in": "x"}, {"x": x})
    pos = np.arange(5)[:, None]
    freq = 10000.0 ** (np.arange(0, 6, 2) / 6)
    pe = np.zeros((5, 6))
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos / freq), np.cos(pos / freq)
    np.testing.assert_allclose(y, x + pe, **TOL)


# ----------------------------------------------------------------------------- conv and pool
@pytest.mark.parametrize(("shape", "attrs"), [
    ((2, 4, 7, 6), {"out": 6, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 1], "dilation": [1, 2],
                    "groups": 2, "round": "floor"}),
    ((1, 3, 5, 5), {"out": 3, "kernel": 3, "stride": 2, "padding": 1, "groups": 3, "bias": False}),
    ((2, 2, 4, 4), {"out": 5, "kernel": 1}),
], ids=["groups2-stride-dil", "depthwise-stride2", "k1"])
def test_conv2d(tmp_path, shape, attrs):
    rng = _rng(f"conv2d{shape}")
    x = f32(rng.standard_normal(shape))
    y, p, _ = _run(tmp_path, {"x": list(shape)}, {"op": "conv2d", "in": "x", **attrs}, {"x": x}, rng=rng)
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
    ref = ref_conv2d(x.astype(np.float64), p["y.weight"], p.get("y.bias"), pair(attrs.get("stride", 1)),
                     pair(attrs.get("padding", 0)), pair(attrs.get("dilation", 1)), attrs.get("groups", 1))
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize(("shape", "attrs"), [
    ((2, 4, 3, 3), {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ((1, 2, 2, 3), {"out": 3, "kernel": [2, 3], "dilation": 2, "bias": False}),
], ids=["stride-pad-outpad-groups", "dilation"])
def test_conv_transpose2d(tmp_path, shape, attrs):
    rng = _rng(f"convt{shape}")
    x = f32(rng.standard_normal(shape))
    y, p, _ = _run(tmp_path, {"x": list(shape)}, {"op": "conv_transpose2d", "in": "x", **attrs}, {"x": x},
                   rng=rng)
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
    ref = ref_conv_transpose2d(x.astype(np.float64), p["y.weight"], p.get("y.bias"),
                               pair(attrs.get("stride", 1)), pair(attrs.get("padding", 0)),
                               pair(attrs.get("output_padding", 0)), pair(attrs.get("dilation", 1)),
                               attrs.get("groups", 1))
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "attrs"), [
    ((2, 3, 4, 4), {"kernel": 2}),
    ((1, 2, 5, 4), {"kernel": 3, "stride": 1, "padding": 1}),
    ((2, 1, 5, 7), {"kernel": [2, 3], "stride": [2, 2], "round": "floor"}),
], ids=["k2", "k3-s1-p1", "rect-floor"])
def test_pool(tmp_path, kind, shape, attrs):
    x = f32(_rng(f"pool{shape}").standard_normal(shape))
    y, _, _ = _run(tmp_path, {"x": list(shape)}, {"op": f"{kind}pool2d", "in": "x", **attrs}, {"x": x})
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
    k = pair(attrs["kernel"])
    ref = ref_pool(x.astype(np.float64), k, pair(attrs.get("stride", list(k))), pair(attrs.get("padding", 0)), kind)
    np.testing.assert_allclose(y, ref, **TOL)


# ----------------------------------------------------------------------------- spatial transformer
def ref_affine_grid(theta, h, w, align_corners):
    def coords(n):  # torch's linspace_from_neg_one
        if n == 1:
            return np.zeros(1)
        c = np.linspace(-1.0, 1.0, n)
        return c if align_corners else c * (n - 1) / n

    xs, ys = np.meshgrid(coords(w), coords(h))  # [H, W] each
    base = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    return base @ theta.transpose(0, 2, 1)[:, None]  # [B, H, W, 2]


def ref_grid_sample(x, grid, align_corners):
    bn, cn, hin, win = x.shape
    sx, sy = grid[..., 0], grid[..., 1]
    if align_corners:
        px, py = (sx + 1) / 2 * (win - 1), (sy + 1) / 2 * (hin - 1)
    else:
        px, py = ((sx + 1) * win - 1) / 2, ((sy + 1) * hin - 1) / 2
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    out = np.zeros((bn, cn) + grid.shape[1:3])
    bidx = np.arange(bn)[:, None, None]
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wgt = (1 - np.abs(px - xi)) * (1 - np.abs(py - yi))
            inside = (xi >= 0) & (xi < win) & (yi >= 0) & (yi < hin)
            v = x[bidx, :, np.clip(yi, 0, hin - 1), np.clip(xi, 0, win - 1)]  # [B, H, W, C]
            out += np.moveaxis(v * (wgt * inside)[..., None], -1, 1)
    return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_spatial_transformer_with_symbolic_size(tmp_path, align_corners):
    """affine_grid sized [H // 2, W] from the image's symbolic dims, then grid_sample."""
    rng = _rng(f"stn{align_corners}")
    x = f32(rng.standard_normal((3, 2, 6, 5)))
    theta = f32(np.array([[1, 0, 0], [0, 1, 0]]) + 0.5 * rng.standard_normal((3, 2, 3)))
    nodes = {"grid": {"op": "affine_grid", "in": "theta", "size": ["H // 2", "W"],
                      "align_corners": align_corners},
             "y": {"op": "grid_sample", "in": ["x", "grid"], "align_corners": align_corners}}
    text = spec_text({"x": ["B", 2, "H", "W"], "theta": ["B", 2, 3]}, nodes, outputs=["grid", "y"])
    model = compile_spec(write(tmp_path, text))
    out = model.forward({}, {"x": x, "theta": theta}).outputs
    grid = ref_affine_grid(theta.astype(np.float64), 3, 5, align_corners)
    np.testing.assert_allclose(out["grid"], grid, **TOL)
    np.testing.assert_allclose(out["y"], ref_grid_sample(x.astype(np.float64), out["grid"].astype(np.float64),
                                                         align_corners), **TOL)
    assert out["y"].shape == (3, 2, 3, 5) and out["y"].dtype == np.float32


def test_grid_sample_identity_and_zero_padding(tmp_path):
    """The identity grid reproduces the image; a grid shifted by a whole image width reads zeros."""
    x = f32(_rng("stn-identity").standard_normal((2, 3, 4, 4)))
    theta = f32(np.tile([[1, 0, 0], [0, 1, 0]], (2, 1, 1)))
    nodes = {"grid": {"op": "affine_grid", "in": "theta", "size": [4, 4]},
             "y": {"op": "grid_sample", "in": ["x", "grid"]}}
    model = compile_spec(write(tmp_path, spec_text({"x": [2, 3, 4, 4], "theta": [2, 2, 3]}, nodes,
                                                   outputs=["y"])))
    np.testing.assert_allclose(model.forward({}, {"x": x, "theta": theta}).outputs["y"], x, **TOL)
    shifted = theta.copy()
    shifted[:, 0, 2] = 2.5  # x + 2.5: more than one pixel right of the image everywhere
    assert not model.forward({}, {"x": x, "theta": shifted}).outputs["y"].any()


# ----------------------------------------------------------------------------- norms
def test_layernorm(tmp_path):
    rng = _rng("layernorm")
    x = f32(rng.standard_normal((2, 3, 6)) * 3 + 1)
    y, p, _ = _run(tmp_path, {"x": [2, 3, 6]}, {"op": "layernorm", "in": "x"}, {"x": x}, rng=rng)
    np.testing.assert_allclose(y, ref_layernorm(x.astype(np.float64), p["y.weight"], p["y.bias"]), **TOL)


def test_batchnorm_eval_uses_running_statistics(tmp_path):
    rng = _rng("batchnorm")
    x = f32(rng.standard_normal((2, 3, 2, 2)))
    stats = {"y.running_mean": rng.standard_normal(3), "y.running_var": rng.uniform(0.5, 2, 3)}
    y, p, _ = _run(tmp_path, {"x": [2, 3, 2, 2]}, {"op": "batchnorm", "in": "x", "eps": 1e-3}, {"x": x},
                   params=stats, rng=rng)
    c = (slice(None), slice(None), None, None)
    ref = ((x - p["y.running_mean"][c[1:]]) / np.sqrt(p["y.running_var"][c[1:]] + 1e-3)
           * p["y.weight"][c[1:]] + p["y.bias"][c[1:]])
    np.testing.assert_allclose(y, ref, **TOL)


def test_batchnorm_training_uses_batch_statistics(tmp_path):
    rng = _rng("batchnorm-train")
    x = f32(rng.standard_normal((4, 3)) * 2 + 1)
    y, p, _ = _run(tmp_path, {"x": [4, 3]}, {"op": "batchnorm", "in": "x"}, {"x": x}, training=True, rng=rng)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5) * p["y.weight"] + p["y.bias"]
    np.testing.assert_allclose(y, ref, **TOL)


# ----------------------------------------------------------------------------- attention, recurrent
def test_attention_causal(tmp_path):
    rng = _rng("attention")
    q = f32(rng.standard_normal((2, 5, 8)))
    y, p, _ = _run(tmp_path, {"q": [2, 5, 8]}, {"op": "attention", "in": "q", "heads": 2, "causal": True},
                   {"q": q}, rng=rng)
    w = {k.split(".")[1]: v for k, v in p.items()}
    np.testing.assert_allclose(y, ref_attention(q.astype(np.float64), q.astype(np.float64), w, 2, True), **TOL)


def test_attention_cross_with_key_padding_mask(tmp_path):
    rng = _rng("attention-cross")
    q, kv = f32(rng.standard_normal((2, 3, 4))), f32(rng.standard_normal((2, 5, 6)))
    m = f32(rng.random((2, 5)) < 0.4)
    m[:, 0] = 0
    y, p, _ = _run(tmp_path, {"q": [2, 3, 4], "kv": [2, 5, 6], "m": [2, 5]},
                   {"op": "attention", "in": {"q": "q", "kv": "kv", "key_padding_mask": "m"}, "heads": 2},
                   {"q": q, "kv": kv, "m": m}, rng=rng)
    w = {k.split(".")[1]: v for k, v in p.items()}
    ref = ref_attention(q.astype(np.float64), kv.astype(np.float64), w, 2, False, m)
    np.testing.assert_allclose(y, ref, **TOL)


def test_lstm(tmp_path):
    rng = _rng("lstm")
    x = f32(rng.standard_normal((2, 4, 3)))
    y, p, _ = _run(tmp_path, {"x": [2, 4, 3]}, {"op": "lstm", "in": "x", "hidden": 5}, {"x": x}, rng=rng)
    np.testing.assert_allclose(y, ref_lstm(x.astype(np.float64), p, 5), **TOL)


def test_lstm_bidirectional_last(tmp_path):
    rng = _rng("lstm-bi")
    x = f32(rng.standard_normal((2, 4, 3)))
    y, p, _ = _run(tmp_path, {"x": [2, 4, 3]},
                   {"op": "lstm", "in": "x", "hidden": 3, "bidirectional": True, "output": "last"},
                   {"x": x}, rng=rng)
    fwd = ref_lstm(x.astype(np.float64), p, 3)
    rev_p = {k.replace("_1", "_0"): v for k, v in p.items() if k.endswith("_1")}
    bwd = ref_lstm(x[:, ::-1].astype(np.float64), rev_p, 3)[:, ::-1]
    np.testing.assert_allclose(y, np.concatenate([fwd[:, -1], bwd[:, 0]], axis=1), **TOL)


def test_gru(tmp_path):
    rng = _rng("gru")
    x = f32(rng.standard_normal((3, 5, 2)))
    y, p, _ = _run(tmp_path, {"x": [3, 5, 2]}, {"op": "gru", "in": "x", "hidden": 4}, {"x": x}, rng=rng)
    np.testing.assert_allclose(y, ref_gru(x.astype(np.float64), p, 4), **TOL)


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_and_log_softmax(tmp_path, axis):
    x = f32(_rng(f"softmax{axis}").standard_normal((3, 4, 5)) * 4)
    y, _, _ = _run(tmp_path, {"x": [3, 4, 5]}, {"op": "softmax", "in": "x", "axis": axis}, {"x": x})
    np.testing.assert_allclose(y, ref_softmax(x.astype(np.float64), axis), **TOL)
    y, _, _ = _run(tmp_path, {"x": [3, 4, 5]}, {"op": "log_softmax", "in": "x", "axis": axis}, {"x": x})
    np.testing.assert_allclose(y, ref_log_softmax(x.astype(np.float64), axis), **TOL)


def test_activations(tmp_path):
    from math import erf

    x = f32(_rng("act").standard_normal((4, 5)) * 3)
    x64 = x.astype(np.float64)
    refs = {"relu": np.maximum(x64, 0), "tanh": np.tanh(x64), "sigmoid": _sig(x64),
            "gelu": 0.5 * x64 * (1 + np.vectorize(erf)(x64 / np.sqrt(2)))}
    for op, ref in refs.items():
        y, _, _ = _run(tmp_path, {"x": [4, 5]}, {"op": op, "in": "x"}, {"x": x})
        np.testing.assert_allclose(y, ref, err_msg=op, **TOL)


# ----------------------------------------------------------------------------- losses
def _ce_ref(logits, target, mask=None, ignore_index=-100):
    lp = ref_log_softmax(logits)
    t = np.where(target == ignore_index, 0, target)
    nll = -np.take_along_axis(lp, t[..., None], -1)[..., 0]
    w = (target != ignore_index).astype(np.float64) * (1.0 if mask is None else mask)
    return float((w * nll).sum() / w.sum())


def test_cross_entropy_with_mask_and_ignore_index(tmp_path):
    rng = _rng("ce")
    logits = f32(rng.standard_normal((3, 4, 5)) * 2)
    target = rng.integers(0, 5, (3, 4))
    target[0, 1] = target[2, 3] = 4  # ignore_index 4 is also a valid class: it must still be skipped
    mask = f32(rng.random((3, 4)) < 0.6)
    mask[1, 1] = mask[0, 0] = 1
    y, _, _ = _run(tmp_path, {"logits": [3, 4, 5], "target": ([3, 4], "int64"), "mask": [3, 4]},
                   {"op": "cross_entropy", "in": {"logits": "logits", "target": "target", "mask": "mask"},
                    "ignore_index": 4},
                   {"logits": logits, "target": target, "mask": mask}, loss=True)
    ref = _ce_ref(logits.astype(np.float64), target, mask.astype(np.float64), 4)
    assert y == pytest.approx(ref, rel=1e-5)


def test_cross_entropy_label_smoothing(tmp_path):
    rng = _rng("ce-smooth")
    logits, target = f32(rng.standard_normal((4, 6))), rng.integers(0, 6, 4)
    y, _, _ = _run(tmp_path, {"logits": [4, 6], "target": ([4], "int64")},
                   {"op": "cross_entropy", "in": ["logits", "target"], "label_smoothing": 0.2},
                   {"logits": logits, "target": target}, loss=True)
    lp = ref_log_softmax(logits.astype(np.float64))
    nll = -lp[np.arange(4), target]
    ref = float(np.mean(0.8 * nll + 0.2 * (-lp.mean(-1))))
    assert y == pytest.approx(ref, rel=1e-5)


def test_hinge(tmp_path):
    rng = _rng("hinge")
    s, t = f32(rng.standard_normal((5, 4))), rng.integers(0, 4, 5)
    y, _, _ = _run(tmp_path, {"s": [5, 4], "t": ([5], "int64")},
                   {"op": "hinge", "in": ["s", "t"], "margin": 0.7}, {"s": s, "t": t}, loss=True)
    s64 = s.astype(np.float64)
    m = np.maximum(0, s64 - s64[np.arange(5), t][:, None] + 0.7)
    m[np.arange(5), t] = 0
    assert y == pytest.approx(float(m.sum(1).mean()), rel=1e-5)


def test_kl_div(tmp_path):
    rng = _rng("kl")
    s, t = f32(rng.standard_normal((2, 3, 5))), f32(rng.standard_normal((2, 3, 5)) * 2)
    y, _, _ = _run(tmp_path, {"s": [2, 3, 5], "t": [2, 3, 5]},
                   {"op": "kl_div", "in": ["s", "t"], "temperature": 2.0}, {"s": s, "t": t}, loss=True)
    lp, lq = ref_log_softmax(t.astype(np.float64) / 2), ref_log_softmax(s.astype(np.float64) / 2)
    ref = 4.0 * float((np.exp(lp) * (lp - lq)).sum(-1).mean())
    assert y == pytest.approx(ref, rel=1e-5)


def test_bce_with_logits(tmp_path):
    rng = _rng("bce")
    z, t = f32(rng.standard_normal((3, 4)) * 5), f32(rng.random((3, 4)))
    y, _, _ = _run(tmp_path, {"z": [3, 4], "t": [3, 4]}, {"op": "bce_with_logits", "in": ["z", "t"]},
                   {"z": z, "t": t}, loss=True)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    ref = float(np.mean(np.logaddexp(0, z64) - t64 * z64))
    assert y == pytest.approx(ref, rel=1e-5)


def test_mse(tmp_path):
    rng = _rng("mse")
    a, b = f32(rng.standard_normal((3, 4))), f32(rng.standard_normal((3, 4)))
    y, _, _ = _run(tmp_path, {"a": [3, 4], "b": [3, 4]}, {"op": "mse", "in": ["a", "b"]}, {"a": a, "b": b},
                   loss=True)
    assert y == pytest.approx(float(np.mean((a.astype(np.float64) - b) ** 2)), rel=1e-5)


# ----------------------------------------------------------------------------- numerics
def _huge_logits(rng):
    x = rng.standard_normal((4, 6)) * 1e4
    x[0] = [1e4, -1e4, 1e4, 0, -1e4, 5e3]
    x[1] = -1e4
    return f32(x)


def test_cross_entropy_finite_on_huge_logits(tmp_path):
    rng = _rng("huge-ce")
    logits, target = _huge_logits(rng), np.array([1, 2, 3, 0])
    y, _, _ = _run(tmp_path, {"z": [4, 6], "t": ([4], "int64")}, {"op": "cross_entropy", "in": ["z", "t"]},
                   {"z": logits, "t": target}, loss=True)
    assert np.isfinite(y)
    assert y == pytest.approx(_ce_ref(logits.astype(np.float64), target), rel=1e-5)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_finite_on_huge_logits(tmp_path, op):
    x = _huge_logits(_rng(f"huge-{op}"))
    y, _, _ = _run(tmp_path, {"x": [4, 6]}, {"op": op, "in": "x"}, {"x": x})
    assert np.all(np.isfinite(y))
    ref = (ref_softmax if op == "softmax" else ref_log_softmax)(x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the remaining ops
def _rnn_ref(x, p, hd):
    h, hs = np.zeros((x.shape[0], hd)), []
    for s in range(x.shape[1]):
        h = np.tanh(x[:, s] @ p["y.w_ih_0"].T + p["y.b_ih_0"] + h @ p["y.w_hh_0"].T + p["y.b_hh_0"])
        hs.append(h)
    return np.stack(hs, 1)


# op → (inputs {name: shape}, node attrs and `in`, reference(batch, params) in float64)
SIMPLE = {
    "add": ({"a": [2, 1, 3], "b": [3]}, {"in": ["a", "b"]}, lambda b, p: b["a"] + b["b"]),
    "sub": ({"a": [3], "b": [2, 4, 1]}, {"in": ["a", "b"]}, lambda b, p: b["a"] - b["b"]),
    "mul": ({"a": [2, 1, 3], "b": [1, 4, 1]}, {"in": ["a", "b"]}, lambda b, p: b["a"] * b["b"]),
    "matmul": ({"a": [2, 1, 3, 4], "b": [3, 4, 2]}, {"in": ["a", "b"]}, lambda b, p: b["a"] @ b["b"]),
    "sum": ({"x": [2, 3, 4]}, {"in": "x", "axis": [0, 2], "keepdims": True},
            lambda b, p: b["x"].sum(axis=(0, 2), keepdims=True)),
    "mean": ({"x": [2, 3, 4]}, {"in": "x", "axis": 1}, lambda b, p: b["x"].mean(axis=1)),
    "dropout": ({"x": [3, 4]}, {"in": "x", "p": 0.5}, lambda b, p: b["x"]),  # eval: the identity
    "flatten": ({"x": [2, 3, 2, 2]}, {"in": "x", "start": 2}, lambda b, p: b["x"].reshape(2, 3, 4)),
    "reshape": ({"x": [2, 3, 4]}, {"in": "x", "shape": [4, -1]}, lambda b, p: b["x"].reshape(4, 6)),
    "transpose": ({"x": [2, 3, 4]}, {"in": "x", "dim0": 0, "dim1": 2}, lambda b, p: b["x"].swapaxes(0, 2)),
    "permute": ({"x": [2, 3, 4]}, {"in": "x", "dims": [2, 0, 1]}, lambda b, p: b["x"].transpose(2, 0, 1)),
    "concat": ({"a": [2, 1], "b": [2, 3], "c": [2, 2]}, {"in": ["a", "b", "c"]},
               lambda b, p: np.concatenate([b["a"], b["b"], b["c"]], axis=-1)),
    "slice": ({"x": [2, 5, 3]}, {"in": "x", "axis": 1, "start": 1, "stop": 4}, lambda b, p: b["x"][:, 1:4]),
    "global_avgpool": ({"x": [2, 3, 4, 5]}, {"in": "x"}, lambda b, p: b["x"].mean(axis=(2, 3))),
    "upsample": ({"x": [1, 2, 2, 3]}, {"in": "x", "scale": 3},
                 lambda b, p: b["x"].repeat(3, axis=2).repeat(3, axis=3)),
    "add_norm": ({"x": [2, 3, 4], "r": [2, 3, 4]}, {"in": {"x": "x", "y": "r"}},
                 lambda b, p: ref_layernorm(b["x"] + b["r"], p["y.weight"], p["y.bias"])),
    "conv1d": ({"x": [2, 4, 7]}, {"in": "x", "out": 6, "kernel": 3, "stride": 2, "padding": 1, "groups": 2},
               lambda b, p: ref_conv2d(b["x"][:, :, None], p["y.weight"][:, :, None], p["y.bias"], (1, 2),
                                       (0, 1), (1, 1), 2)[:, :, 0]),
    "rnn": ({"x": [2, 4, 3]}, {"in": "x", "hidden": 5}, lambda b, p: _rnn_ref(b["x"], p, 5)),
}


@pytest.mark.parametrize("op", sorted(SIMPLE))
def test_simple_op_forward(tmp_path, op):
    rng = _rng(f"simple-{op}")
    shapes, node, ref = SIMPLE[op]
    batch = {k: f32(rng.standard_normal(s)) for k, s in shapes.items()}
    y, p, _ = _run(tmp_path, shapes, {"op": op, **node}, batch, rng=rng)
    np.testing.assert_allclose(y, ref({k: v.astype(np.float64) for k, v in batch.items()}, p), **TOL)


def test_split_pieces(tmp_path):
    x = f32(_rng("split").standard_normal((2, 6, 3)))
    text = spec_text({"x": [2, 6, 3]}, {"y": {"op": "split", "in": "x", "axis": 1, "sizes": [1, 2, 3]}},
                     outputs=["y.0", "y.1", "y.2"])
    model = compile_spec(write(tmp_path, text))
    out = model.forward({}, {"x": x}).outputs
    for got, want in zip(out.values(), np.split(x, [1, 3], axis=1), strict=True):
        np.testing.assert_array_equal(got, want)


def test_every_registered_op_has_a_forward_reference():
    from graphc.ops import OPS

    tested = set(SIMPLE) | {
        "linear", "embedding", "positional_encoding", "conv2d", "conv_transpose2d", "maxpool2d",
        "avgpool2d", "layernorm", "batchnorm", "attention", "lstm", "gru", "softmax", "log_softmax",
        "relu", "gelu", "tanh", "sigmoid", "cross_entropy", "hinge", "kl_div", "bce_with_logits", "mse",
        "split", "affine_grid", "grid_sample"}
    missing = sorted(set(OPS) - tested)
    assert not missing, f"ops without a forward reference: {', '.join(missing)}"


@pytest.mark.parametrize("op", ["bce_with_logits", "kl_div"])
def test_losses_finite_on_huge_logits(tmp_path, op):
    rng = _rng(f"huge-{op}")
    z = _huge_logits(rng)
    other = f32(rng.random(z.shape)) if op == "bce_with_logits" else _huge_logits(rng)[::-1].copy()
    shape = [4, 6] if op == "bce_with_logits" else [1, 4, 6]  # the ranks the other tests compile
    y, _, _ = _run(tmp_path, {"a": shape, "b": shape}, {"op": op, "in": ["a", "b"]},
                   {"a": z.reshape(shape), "b": other.reshape(shape)}, loss=True)
    assert np.isfinite(y)
    a64, b64 = z.astype(np.float64), other.astype(np.float64)
    if op == "bce_with_logits":
        ref = float(np.mean(np.logaddexp(0, a64) - b64 * a64))
    else:
        lp, lq = ref_log_softmax(b64), ref_log_softmax(a64)
        ref = float((np.exp(lp) * (lp - lq)).sum(-1).mean())
    assert y == pytest.approx(ref, rel=1e-5)


def test_fully_masked_attention_row_is_finite_and_uniform(tmp_path):
    """Every key of batch row 0 is padding: documented to attend uniformly, never NaN."""
    rng = _rng("attention-full-mask")
    q = f32(rng.standard_normal((2, 3, 4)))
    m = f32([[1, 1, 1], [0, 1, 0]])
    y, p, _ = _run(tmp_path, {"q": [2, 3, 4], "m": [2, 3]},
                   {"op": "attention", "in": {"q": "q", "kv": "q", "key_padding_mask": "m"}, "heads": 2},
                   {"q": q, "m": m}, rng=rng)  # kv given explicitly: the cross-attention kernel
    assert np.all(np.isfinite(y))
    w = {k.split(".")[1]: v for k, v in p.items()}
    q64 = q.astype(np.float64)
    v = q64 @ w["wv"].T + w["bv"]
    row0 = v[0].mean(axis=0) @ w["wo"].T + w["bo"]  # uniform weights over the three keys
    np.testing.assert_allclose(y[0], np.broadcast_to(row0, (3, 4)), **TOL)
    np.testing.assert_allclose(y[1], ref_attention(q64[1:], q64[1:], w, 2, False, m[1:].astype(np.float64))[0],
                               **TOL)


def test_cross_entropy_with_nothing_counted_is_zero(tmp_path):
    logits = f32(_rng("ce-empty").standard_normal((2, 3)))
    y, _, _ = _run(tmp_path, {"z": [2, 3], "t": ([2], "int64"), "m": [2]},
                   {"op": "cross_entropy", "in": {"logits": "z", "target": "t", "mask": "m"}},
                   {"z": logits, "t": np.array([0, 2]), "m": f32([0, 0])}, loss=True)
    assert y == 0.0


def test_norms_of_constant_rows_are_finite(tmp_path):
    x = np.ones((2, 3, 4), np.float32)
    y, p, _ = _run(tmp_path, {"x": [2, 3, 4]}, {"op": "layernorm", "in": "x"}, {"x": x})
    np.testing.assert_allclose(y, np.broadcast_to(p["y.bias"], y.shape), atol=1e-6)
    y, _, _ = _run(tmp_path, {"x": [1, 3]}, {"op": "batchnorm", "in": "x"}, {"x": np.ones((1, 3), np.float32)},
                   training=True)
    assert np.all(np.isfinite(y))
