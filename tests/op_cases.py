"""The op test table: one row per op case, driving every test tier.

A row is one node of one op, in the spec's own terms: the op, its attributes, the inputs
(shape, dtype and how their values are drawn: ids in range, masks, probabilities, sampling
grids), a NumPy reference of the forward in float64, and the same computation written with
torch (used only where torch is installed). `case(row)` turns a row into concrete values
once per process: it runs the front end on the row's one-node spec (so parameter shapes,
attribute defaults, output shapes and the kernel's lowered attributes come from the op's
record, exactly as the compiler gets them), binds symbolic dims and draws the inputs and
parameters from a seed derived from the row's id.

The tiers, each a small module parametrized over `ROWS`:
  tests/kernels/test_op_forward.py       forward kernel (float64, float32) vs the reference
  tests/kernels/test_op_gradcheck.py     backward kernel vs float64 central differences
  tests/kernels/test_op_float32.py       float32 backward ≈ float64 backward
  tests/kernels/test_op_destinations.py  out= / into_<port>= destinations
  tests/compiler/test_op_compiled.py     one-node spec compiled: forward, gradient check
  tests/kernels/test_torch_oracle.py     forward and gradients vs torch
tests/kernels/test_op_table.py fails when an op of `graphc.ops.OPS` has no row.

Kernels are always called as the generated driver calls them (tests/kernels/harness.py):
with destinations, C-contiguous float64 or float32 arrays and the ranks of these rows, so
every tier (and the compiled tier) shares the same Numba specialisations. A new rank, a
new absent/present pattern of an optional input, or a new dtype costs a compile of its own
on a cold cache: reuse the ranks already here unless the case is about the rank.
"""

from __future__ import annotations

import math
import re
import tempfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import yaml
from scipy.special import erf

DIMS = {"B": 3}  # sizes of symbolic dims in the rows


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class In:
    """One spec input: shape (ints, or dim names such as "B") and how its values are drawn.

    kind: normal (× scale) · ids (int64 in [0, high); `special`, e.g. an ignore_index or a
    padding_idx, at every third position from the third, never at the first) · padding (an
    attention key padding mask, 1 = padding, key 0 always visible; `full_row`: every key of
    batch row 0 padded) · weights (a 0/1 loss mask, first position 1) · prob (uniform [0, 1))
    · positive (uniform [0.5, 2), for ops defined on x > 0) · grid (grid_sample points for the
    image input `x`: inside and up to two pixels outside it, never within 0.15 px of a pixel
    line, where bilinear sampling has a kink).
    """

    shape: tuple
    kind: str = "normal"
    scale: float = 1.0
    high: int = 0
    special: int | None = None
    full_row: bool = False

    @property
    def dtype(self) -> str:
        return "int64" if self.kind == "ids" else "float32"


def f(*shape, scale=1.0) -> In:
    return In(shape, scale=scale)


def ids(high, *shape, special=None) -> In:
    return In(shape, "ids", high=high, special=special)


def padding(*shape, full_row=False) -> In:
    return In(shape, "padding", full_row=full_row)


def weights(*shape) -> In:
    return In(shape, "weights")


def prob(*shape) -> In:
    return In(shape, "prob")


def grid(*shape) -> In:
    return In(shape, "grid")


def positive(*shape) -> In:
    return In(shape, "positive")


def _draw(rng, spec: In, shape: tuple, shapes: dict, attrs: dict) -> np.ndarray:
    if spec.kind == "normal":
        return rng.standard_normal(shape) * spec.scale
    if spec.kind == "ids":
        v = rng.integers(0, spec.high, size=shape).astype(np.int64)
        if spec.special is not None:
            v.reshape(-1)[2::3] = spec.special
            v.reshape(-1)[0] = (spec.special + 1) % spec.high
        return v
    if spec.kind == "padding":
        m = (rng.random(shape) < 0.4).astype(np.float64)
        m[..., 0] = 0.0
        if spec.full_row:
            m[0] = 1.0
        return m
    if spec.kind == "weights":
        m = (rng.random(shape) < 0.7).astype(np.float64)
        m.reshape(-1)[0] = 1.0
        return m
    if spec.kind == "prob":
        return rng.random(shape)
    if spec.kind == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if spec.kind == "grid":
        _, _, h_in, w_in = shapes["x"]
        return _grid_points(rng, shape, h_in, w_in, attrs["align_corners"])
    raise ValueError(f"unknown input kind {spec.kind!r}")


def _grid_points(rng, shape, h_in, w_in, align_corners):
    g = np.empty(shape)
    for axis, n in ((0, w_in), (1, h_in)):
        pix = rng.integers(-2, n + 1, size=shape[:3]) + rng.uniform(0.15, 0.85, size=shape[:3])
        if align_corners and n == 1:
            g[..., axis] = rng.uniform(-1.5, 1.5, size=shape[:3])  # every point reads pixel 0
        elif align_corners:
            g[..., axis] = 2.0 * pix / (n - 1) - 1.0
        else:
            g[..., axis] = (2.0 * pix + 1.0) / n - 1.0
    return g


# ----------------------------------------------------------------------------- rows
class Bag(dict):
    """Names → values, also read as attributes; an absent optional tensor reads None."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)


@dataclass
class Row:
    op: str
    id: str
    inputs: dict[str, In]  # spec input name → In
    attrs: dict
    ref: Callable  # (t, a) → output, or a tuple of outputs; t: ports and params, a: attributes
    torch: Callable | None  # the same with torch tensors (None: see `note`)
    ins: Any = None  # the node's `in:` (default: the inputs in order)
    training: bool = False
    prepare: Callable | None = None  # (params, rng) → params, e.g. batchnorm running statistics
    frozen: Callable | None = None  # (t, a) → {param: mask of entries whose gradient is 0 by definition}
    unused: tuple = ()  # outputs left out of the compiled tier's loss
    loss_via: dict | None = None  # the compiled tier's loss reads this op of y (non-finite outputs)
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.op}-{self.id}"


ROWS: list[Row] = []


def row(op, id, inputs, attrs=None, *, ref, torch, **kw) -> None:
    inputs = {k: (v if isinstance(v, In) else f(*v)) for k, v in inputs.items()}
    ROWS.append(Row(op, id, inputs, attrs or {}, ref, torch, **kw))


# ----------------------------------------------------------------------------- NumPy references
def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _axes(a, ndim):
    if a.axis is None:
        return tuple(range(ndim))
    return tuple(x % ndim for x in ((a.axis,) if isinstance(a.axis, int) else a.axis))


def np_conv2d(x, w, b, stride, pad, dil, groups):
    b_n, _, h, wd = x.shape
    o_n, cg, kh, kw = w.shape
    og = o_n // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((b_n, o_n, oh, ow))
    for o in range(o_n):
        g = o // og
        for i in range(kh):
            for j in range(kw):
                win = xp[:, g * cg:(g + 1) * cg,
                         i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                         j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                out[:, o] += np.einsum("bcyz,c->byz", win, w[o, :, i, j])
        if b is not None:
            out[:, o] += b[o]
    return out


def np_conv_transpose2d(x, w, b, stride, pad, out_pad, dil, groups):
    # scatter each input pixel times the kernel onto an uncropped canvas, then crop the padding
    b_n, c_n, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c_n // groups
    full_h = (h - 1) * stride[0] + dil[0] * (kh - 1) + 1 + out_pad[0]
    full_w = (wd - 1) * stride[1] + dil[1] * (kw - 1) + 1 + out_pad[1]
    canvas = np.zeros((b_n, og * groups, full_h, full_w))
    for c in range(c_n):
        g = c // cg
        for i in range(kh):
            for j in range(kw):
                canvas[:, g * og:(g + 1) * og,
                       i * dil[0]:i * dil[0] + stride[0] * (h - 1) + 1:stride[0],
                       j * dil[1]:j * dil[1] + stride[1] * (wd - 1) + 1:stride[1]] += (
                    np.einsum("byz,o->boyz", x[:, c], w[c, :, i, j]))
    out = canvas[:, :, pad[0]:full_h - pad[0], pad[1]:full_w - pad[1]]
    return out + (b[None, :, None, None] if b is not None else 0.0)


def np_pool(t, a, kind):
    x, (kh, kw), (ph, pw) = t.x, a.kernel, a.padding
    sh, sw = a.stride or a.kernel
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh, ow = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return out


def np_positional_encoding(t, a):
    x = t.x
    t_len, d = x.shape[1], x.shape[2]
    if a.kind == "learned":
        return x + t.weight[:t_len]
    pe = np.empty((t_len, d))
    for i in range(t_len):
        for k in range(d):
            ang = i / 10000 ** (2 * (k // 2) / d)
            pe[i, k] = math.sin(ang) if k % 2 == 0 else math.cos(ang)
    return x + pe


def np_layernorm(x, w, b, eps):
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y * w + b if w is not None else y


def np_batchnorm(t, a):
    x = t.x
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu, var = (x.mean(axes), x.var(axes)) if a.training else (t.running_mean, t.running_var)
    y = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + a.eps)
    return y * t.weight.reshape(shape) + t.bias.reshape(shape)


def np_attention(t, a):
    """Per head softmax(QKᵀ/√d + mask) V; a row whose every key is masked attends uniformly
    (graphc's documented choice; torch gives NaN or zeros there)."""
    q = t.q
    src = q if t.kv is None else t.kv
    b_n, t_len, e = q.shape
    s_len = src.shape[1]
    dh = e // a.heads

    def lin(x, w, b):
        return x @ w.T + (b if b is not None else 0.0)

    qp, kp, vp = lin(q, t.wq, t.bq), lin(src, t.wk, t.bk), lin(src, t.wv, t.bv)
    ctx = np.zeros((b_n, t_len, e))
    for b in range(b_n):
        masked = np.zeros((t_len, s_len), bool)
        if a.causal:
            masked |= np.triu(np.ones((t_len, s_len), bool), 1)
        if t.key_padding_mask is not None:
            masked |= t.key_padding_mask[b][None, :] > 0.5
        for h in range(a.heads):
            sl = slice(h * dh, (h + 1) * dh)
            sc = qp[b, :, sl] @ kp[b, :, sl].T / math.sqrt(dh)
            with np.errstate(invalid="ignore"):
                p = _softmax(np.where(masked, -np.inf, sc))
            p[masked.all(1)] = 1.0 / s_len
            ctx[b, :, sl] = p @ vp[b, :, sl]
    return lin(ctx, t.wo, t.bo)


def _rnn_cell(xw, hw, h, c, hd, a):
    pre = xw + hw
    return (np.tanh(pre) if a.nonlinearity == "tanh" else np.maximum(pre, 0.0)), c


def _lstm_cell(xw, hw, h, c, hd, a):
    z = xw + hw
    i, f_, g, o = _sigmoid(z[:, :hd]), _sigmoid(z[:, hd:2 * hd]), np.tanh(z[:, 2 * hd:3 * hd]), _sigmoid(z[:, 3 * hd:])
    c = f_ * c + i * g
    return o * np.tanh(c), c


def _gru_cell(xw, hw, h, c, hd, a):
    r = _sigmoid(xw[:, :hd] + hw[:, :hd])
    z = _sigmoid(xw[:, hd:2 * hd] + hw[:, hd:2 * hd])
    n = np.tanh(xw[:, 2 * hd:] + r * hw[:, 2 * hd:])
    return (1 - z) * n + z * h, c


def np_recurrent(cell):
    def ref(t, a):
        x, hd = t.x, a.hidden
        b_n, t_len, _ = x.shape
        outs = []
        for d in range(2 if a.bidirectional else 1):
            h, c, seq = np.zeros((b_n, hd)), np.zeros((b_n, hd)), np.zeros((b_n, t_len, hd))
            for s in reversed(range(t_len)) if d else range(t_len):
                xw = x[:, s] @ t[f"w_ih_{d}"].T + t[f"b_ih_{d}"]
                h, c = cell(xw, h @ t[f"w_hh_{d}"].T + t[f"b_hh_{d}"], h, c, hd, a)
                seq[:, s] = h
            outs.append(seq)
        if a.output == "last":  # the final state of each direction
            return np.concatenate([o[:, -1] if d == 0 else o[:, 0] for d, o in enumerate(outs)], 1)
        return np.concatenate(outs, axis=2)

    return ref


def np_cross_entropy(t, a):
    c = t.logits.shape[-1]
    lp = _log_softmax(t.logits.reshape(-1, c))
    tgt = t.target.reshape(-1)
    w = (tgt != a.ignore_index) * (t.mask.reshape(-1) if t.mask is not None else 1.0)
    nll = -lp[np.arange(tgt.size), np.where(tgt == a.ignore_index, 0, tgt)]
    loss = (1 - a.label_smoothing) * nll - a.label_smoothing * lp.mean(-1)
    return (w * loss).sum() / (w.sum() if a.reduction == "mean" else 1.0)


def np_reduce(a, v):
    """PyTorch's reduction of elementwise (or per-row) losses `v`."""
    return v.sum() if a.reduction == "sum" else v.mean()


def np_hinge(t, a):
    c = t.scores.shape[-1]
    s, y = t.scores.reshape(-1, c), t.target.reshape(-1)
    rows = np.arange(y.size)
    m = np.maximum(0.0, s - s[rows, y][:, None] + a.margin)
    m[rows, y] = 0.0
    return np_reduce(a, m.sum(1) / c)  # per row ÷ classes, as torch's multi_margin_loss


def np_kl_div(t, a):
    c = t.student.shape[-1]
    lp = _log_softmax(t.teacher.reshape(-1, c) / a.temperature)
    lq = _log_softmax(t.student.reshape(-1, c) / a.temperature)
    total = (np.exp(lp) * (lp - lq)).sum()
    n = {"batchmean": t.student.shape[0], "mean": t.student.size, "sum": 1}[a.reduction]
    return a.temperature ** 2 * total / n


def _base_coords(n, align_corners):
    """torch's linspace_from_neg_one: pixel centres in [-1, 1]; a single point is at 0."""
    if n == 1:
        return np.zeros(1)
    c = np.linspace(-1.0, 1.0, n)
    return c if align_corners else c * (n - 1) / n


def np_affine_grid(t, a):
    h, w = a.size
    xs, ys = _base_coords(w, a.align_corners), _base_coords(h, a.align_corners)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), axis=-1)  # [H, W, 3]
    return np.einsum("hwl,bkl->bhwk", base, t.theta)


def np_grid_sample(t, a):
    x, g = t.x, t.grid
    b_n, c_n, h_in, w_in = x.shape
    if a.align_corners:
        px, py = (g[..., 0] + 1) / 2 * (w_in - 1), (g[..., 1] + 1) / 2 * (h_in - 1)
    else:
        px, py = ((g[..., 0] + 1) * w_in - 1) / 2, ((g[..., 1] + 1) * h_in - 1) / 2
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    out = np.zeros((b_n, c_n) + g.shape[1:3])
    bidx = np.arange(b_n)[:, None, None]
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wgt = (1 - np.abs(px - xi)) * (1 - np.abs(py - yi))
            inside = (xi >= 0) & (xi < w_in) & (yi >= 0) & (yi < h_in)  # zeros outside the image
            v = x[bidx, :, np.clip(yi, 0, h_in - 1), np.clip(xi, 0, w_in - 1)]  # [B, H, W, C]
            out += np.moveaxis(v * (wgt * inside)[..., None], -1, 1)
    return out


def _rotary_parts(x, a, xp):
    """x viewed as [..., T, H, d]; the (first, second) members of each rotated pair; cos, sin."""
    t_len, width = x.shape[-2], x.shape[-1]
    d = width // a.heads
    half = d // 2
    x4 = x.reshape(tuple(x.shape[:-1]) + (a.heads, d))
    ang = np.arange(t_len)[:, None] * a.base ** (-2.0 * np.arange(half) / d)  # [T, d/2]
    cos, sin = xp.asarray(np.cos(ang)[:, None, :]), xp.asarray(np.sin(ang)[:, None, :])  # over heads
    if a.interleaved:
        return x4[..., 0::2], x4[..., 1::2], cos, sin
    return x4[..., :half], x4[..., half:], cos, sin


def np_rotary(t, a):
    x0, x1, cos, sin = _rotary_parts(t.x, a, np)
    y0, y1 = x0 * cos - x1 * sin, x1 * cos + x0 * sin
    pairs = np.stack([y0, y1], -1) if a.interleaved else np.concatenate([y0, y1], -1)
    return pairs.reshape(t.x.shape)


def np_causal_mask(t, a):
    t_len, s_len = t.x.shape[-2:]
    return np.where(np.triu(np.ones((t_len, s_len), bool), 1), -np.inf, t.x)


def np_slice(t, a):
    idx = [slice(None)] * t.x.ndim
    idx[a.axis] = slice(a.start, a.stop)
    return t.x[tuple(idx)]


def np_split(t, a):
    return tuple(np.split(t.x, np.cumsum(a.sizes)[:-1], axis=a.axis))


# ----------------------------------------------------------------------------- torch equivalents
def _torch():
    import torch

    return torch, torch.nn.functional


def th_conv(t, a, fn):
    _, F = _torch()
    return getattr(F, fn)(t.x, t.weight, t.bias, stride=a.stride, padding=a.padding,
                          dilation=a.dilation, groups=a.groups)


def th_conv_transpose2d(t, a):
    _, F = _torch()
    return F.conv_transpose2d(t.x, t.weight, t.bias, stride=a.stride, padding=a.padding,
                              output_padding=a.output_padding, groups=a.groups, dilation=a.dilation)


def th_positional_encoding(t, a):
    torch, _ = _torch()
    t_len, d = t.x.shape[1], t.x.shape[2]
    if a.kind == "learned":
        return t.x + t.weight[:t_len]
    pos = torch.arange(t_len, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(t_len, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos / freq), torch.cos(pos / freq)
    return t.x + pe


def th_attention(t, a):
    torch, F = _torch()
    q = t.q
    kv = q if t.kv is None else t.kv
    bias = torch.cat([t.bq, t.bk, t.bv]) if a.bias else None
    mask = torch.ones(q.shape[1], kv.shape[1], dtype=torch.bool).triu(1) if a.causal else None
    kpm = t.key_padding_mask > 0.5 if t.key_padding_mask is not None else None
    qt, kvt = q.transpose(0, 1), kv.transpose(0, 1)  # (L, N, E)
    out, _ = F.multi_head_attention_forward(
        qt, kvt, kvt, q.shape[-1], a.heads, None, bias, None, None, False, 0.0, t.wo, t.bo,
        training=False, key_padding_mask=kpm, need_weights=False, attn_mask=mask,
        use_separate_proj_weight=True, q_proj_weight=t.wq, k_proj_weight=t.wk, v_proj_weight=t.wv)
    return out.transpose(0, 1)


def th_recurrent(kind):
    def fn(t, a):
        torch, _ = _torch()
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
        extra = {"nonlinearity": a.nonlinearity} if kind == "rnn" else {}
        mod = cls(t.x.shape[2], a.hidden, batch_first=True, bidirectional=a.bidirectional, **extra).double()
        names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
        params = {f"{theirs}_l0{'_reverse' if d else ''}": t[f"{ours}_{d}"]
                  for d in range(2 if a.bidirectional else 1) for ours, theirs in names.items()}
        seq, h_n = torch.func.functional_call(mod, params, (t.x,))
        if kind == "lstm":
            h_n = h_n[0]
        return torch.cat(list(h_n), dim=1) if a.output == "last" else seq  # h_n: [D, B, H]

    return fn


def th_cross_entropy(t, a):
    torch, F = _torch()
    c = t.logits.shape[-1]
    tgt = t.target.reshape(-1)
    per = F.cross_entropy(t.logits.reshape(-1, c), tgt, reduction="none", ignore_index=a.ignore_index,
                          label_smoothing=a.label_smoothing)
    w = (tgt != a.ignore_index).to(torch.float64)
    if t.mask is not None:
        w = w * t.mask.reshape(-1)
    return (per * w).sum() / (w.sum() if a.reduction == "mean" else 1.0)


def th_kl_div(t, a):
    _, F = _torch()
    temp = a.temperature
    lq, lp = F.log_softmax(t.student / temp, -1), F.log_softmax(t.teacher / temp, -1)
    with warnings.catch_warnings():  # torch warns that its "mean" divides by the classes too
        warnings.simplefilter("ignore", UserWarning)
        return temp ** 2 * F.kl_div(lq, lp, log_target=True, reduction=a.reduction)


def th_affine_grid(t, a):
    _, F = _torch()
    with warnings.catch_warnings():  # torch warns about size-1 grids with align_corners=True
        warnings.simplefilter("ignore", UserWarning)
        return F.affine_grid(t.theta, [t.theta.shape[0], 1, *a.size], align_corners=a.align_corners)


def th_sum(t, a):
    return t.x.sum(dim=_axes(a, t.x.ndim), keepdim=a.keepdims)


def th_mean(t, a):
    return t.x.mean(dim=_axes(a, t.x.ndim), keepdim=a.keepdims)


def th_rotary(t, a):
    torch, _ = _torch()
    x0, x1, cos, sin = _rotary_parts(t.x, a, torch)
    y0, y1 = x0 * cos - x1 * sin, x1 * cos + x0 * sin
    pairs = torch.stack([y0, y1], -1) if a.interleaved else torch.cat([y0, y1], -1)
    return pairs.reshape(t.x.shape)


def th_causal_mask(t, a):
    torch, _ = _torch()
    t_len, s_len = t.x.shape[-2:]
    return t.x.masked_fill(torch.ones(t_len, s_len, dtype=torch.bool).triu(1), -torch.inf)


def th_slice(t, a):
    stop = t.x.shape[a.axis] if a.stop is None else a.stop
    return t.x.narrow(a.axis, a.start, stop - a.start)


# ----------------------------------------------------------------------------- the table
def _unary(np_fn, th_fn):
    return dict(ref=lambda t, a: np_fn(t.x), torch=lambda t, a: th_fn(_torch())(t.x))


# -- dense
_LINEAR = dict(ref=lambda t, a: t.x @ t.weight.T + (t.bias if a.bias else 0.0),
               torch=lambda t, a: _torch()[1].linear(t.x, t.weight, t.bias))
row("linear", "2d", {"x": [3, 4]}, {"out": 5}, **_LINEAR)
row("linear", "nobias-3d", {"x": [2, 1, 3]}, {"out": 1, "bias": False}, **_LINEAR)
row("linear", "size1", {"x": [1, 1]}, {"out": 1}, **_LINEAR)
row("linear", "symbolic-batch", {"x": ["B", 3]}, {"out": 2}, **_LINEAR)

_EMBEDDING = dict(
    ref=lambda t, a: t.weight[t.ids],
    torch=lambda t, a: _torch()[1].embedding(t.ids, t.weight,
                                             padding_idx=None if a.padding_idx < 0 else a.padding_idx),
    frozen=lambda t, a: {"weight": np.arange(len(t.weight)) == a.padding_idx} if a.padding_idx >= 0 else {})
row("embedding", "plain", {"ids": ids(5, 2, 3)}, {"num": 5, "dim": 4}, **_EMBEDDING)
row("embedding", "padding", {"ids": ids(4, 2, 4, special=2)}, {"num": 4, "dim": 3, "padding_idx": 2},
    **_EMBEDDING, note="the padding row is read by the forward and gets no gradient (torch's rule)")

_PE = dict(ref=np_positional_encoding, torch=th_positional_encoding)
row("positional_encoding", "sinusoidal", {"x": [2, 5, 6]}, **_PE)
row("positional_encoding", "learned", {"x": [2, 3, 4]}, {"kind": "learned", "max_len": 5}, **_PE)
row("positional_encoding", "learned-T1", {"x": [1, 1, 2]}, {"kind": "learned", "max_len": 1}, **_PE)

_MATMUL = dict(ref=lambda t, a: t.a @ t.b, torch=lambda t, a: t.a @ t.b)
for _id, (_a, _b) in {"batched": ([2, 3, 4], [2, 4, 5]), "3d-2d": ([2, 3, 4], [4, 5]), "2d": ([3, 4], [4, 2]),
                      "broadcast-4d": ([2, 1, 3, 4], [1, 3, 4, 2]), "broadcast-4d-3d": ([2, 1, 3, 4], [3, 4, 2]),
                      "2d-3d": ([3, 4], [2, 4, 1]), "size1": ([1, 2], [2, 1])}.items():
    row("matmul", _id, {"a": _a, "b": _b}, **_MATMUL)

# -- arithmetic with broadcasting
_BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}
for _op, _fn in _BINARY.items():
    _kw = dict(ref=lambda t, a, fn=_fn: fn(t.a, t.b), torch=lambda t, a, fn=_fn: fn(t.a, t.b))
    row(_op, "same", {"a": [3, 4], "b": [3, 4]}, **_kw)
    row(_op, "B1D-D", {"a": [2, 1, 3], "b": [3]}, **_kw)
    row(_op, "D-B1D", {"a": [3], "b": [2, 4, 1]}, **_kw)
    row(_op, "1-vs-2x3", {"a": [1], "b": [2, 3]}, **_kw)
    row(_op, "outer", {"a": [2, 1, 3], "b": [1, 4, 1]}, **_kw)
    if _op != "sub":
        row(_op, "same-tensor-twice", {"x": [2, 3]}, ins=["x", "x"], **_kw)

for _op, _th in (("sum", th_sum), ("mean", th_mean)):
    _kw = dict(ref=lambda t, a, op=_op: getattr(np, op)(t.x, axis=_axes(a, t.x.ndim), keepdims=a.keepdims),
               torch=_th)
    row(_op, "all-keepdims", {"x": [2, 3, 4]}, {"axis": None, "keepdims": True}, **_kw)
    row(_op, "axis1", {"x": [2, 3, 4]}, {"axis": 1}, **_kw)
    row(_op, "axis-1-keepdims", {"x": [2, 3, 4]}, {"axis": -1, "keepdims": True}, **_kw)
    row(_op, "axes0,2", {"x": [2, 3, 4]}, {"axis": [0, 2]}, **_kw)
    row(_op, "negative-axes", {"x": [2, 3, 4]}, {"axis": [-1, 0]}, **_kw)
    row(_op, "size1", {"x": [1, 1]}, {"axis": 0}, **_kw)
    row(_op, "all", {"x": [2, 3]}, **_kw, note="a scalar: the compiled tier makes it the loss itself")

# -- activations (rank 2 and 3: each rank is a Numba specialisation of its own)
_ACT = {"relu": (lambda x: np.maximum(x, 0.0), lambda tf: tf[1].relu),
        "gelu": (lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))), lambda tf: tf[1].gelu),
        "tanh": (np.tanh, lambda tf: tf[0].tanh), "sigmoid": (_sigmoid, lambda tf: tf[0].sigmoid)}
for _op, (_fn, _th) in _ACT.items():
    row(_op, "2d", {"x": f(3, 4, scale=3.0)}, **_unary(_fn, _th))
    row(_op, "size1", {"x": [1, 1]}, **_unary(_fn, _th))
    row(_op, "column", {"x": f(3, 1, scale=3.0)}, **_unary(_fn, _th))
    row(_op, "3d", {"x": f(2, 3, 5, scale=3.0)}, **_unary(_fn, _th))
for _op, _fn in (("softmax", _softmax), ("log_softmax", _log_softmax)):
    _kw = dict(ref=lambda t, a, fn=_fn: fn(t.x, a.axis),
               torch=lambda t, a, op=_op: getattr(_torch()[1], op)(t.x, dim=a.axis))
    row(_op, "2d", {"x": f(3, 4, scale=3.0)}, **_kw)
    row(_op, "last", {"x": f(2, 3, 4, scale=3.0)}, **_kw)
    row(_op, "axis1", {"x": f(2, 3, 4, scale=3.0)}, {"axis": 1}, **_kw)
    row(_op, "axis0", {"x": [3, 2, 2]}, {"axis": 0}, **_kw)
    row(_op, "axis-2", {"x": [2, 3, 4]}, {"axis": -2}, **_kw)
    row(_op, "size1", {"x": [2, 2, 1]}, **_kw)
    row(_op, "size1-2d", {"x": [1, 1]}, **_kw)

_ACT2 = {"relu6": (lambda x: np.clip(x, 0.0, 6.0), lambda tf: tf[1].relu6),
         "hardswish": (lambda x: x * np.clip(x + 3, 0.0, 6.0) / 6, lambda tf: tf[1].hardswish),
         "silu": (lambda x: x * _sigmoid(x), lambda tf: tf[1].silu)}
for _op, (_fn, _th) in _ACT2.items():
    row(_op, "2d", {"x": f(3, 4, scale=4.0)}, **_unary(_fn, _th))
    row(_op, "3d", {"x": f(2, 3, 5, scale=4.0)}, **_unary(_fn, _th))
_CLAMP = dict(ref=lambda t, a: np.clip(t.x, a.min, a.max),
              torch=lambda t, a: _torch()[0].clamp(t.x, a.min, a.max))
row("clamp", "both", {"x": [3, 4]}, {"min": -0.5, "max": 0.8}, **_CLAMP)
row("clamp", "min-only", {"x": [3, 4]}, {"min": 0.0}, **_CLAMP)
row("clamp", "max-only-3d", {"x": [2, 3, 5]}, {"max": 0.3}, **_CLAMP)
_RSQRT = dict(ref=lambda t, a: 1 / np.sqrt(t.x), torch=lambda t, a: _torch()[0].rsqrt(t.x))
row("rsqrt", "2d", {"x": positive(3, 4)}, **_RSQRT)
row("rsqrt", "3d", {"x": positive(2, 3, 5)}, **_RSQRT)

# dropout: the kernel takes the uniform noise `u` the driver draws (so forward and backward
# agree); torch's own dropout draws its own, so its equivalent is written with the same `u`
_DROPOUT = dict(ref=lambda t, a: t.x * (t.u >= a.p) / (1 - a.p) if a.training else t.x,
                torch=lambda t, a: t.x * (t.u >= a.p).to(t.x.dtype) / (1 - a.p) if a.training else t.x * 1)
row("dropout", "train", {"x": [3, 5]}, {"p": 0.3}, training=True, **_DROPOUT)
row("dropout", "p0-train", {"x": [3, 4]}, {"p": 0.0}, training=True, **_DROPOUT)
row("dropout", "eval", {"x": [3, 4]}, {"p": 0.5}, **_DROPOUT)

# -- convolutions and pooling (one rank each: rows are nearly free once the kernel is compiled)
_CONV1D = dict(ref=lambda t, a: np_conv2d(t.x[:, :, None], t.weight[:, :, None], t.bias, (1, a.stride),
                                          (0, a.padding), (1, a.dilation), a.groups)[:, :, 0],
               torch=lambda t, a: th_conv(t, a, "conv1d"))
row("conv1d", "groups-stride-pad-dil", {"x": [2, 4, 9]},
    {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "dilation": 2, "groups": 2}, **_CONV1D)
row("conv1d", "stride-pad", {"x": [2, 3, 7]}, {"out": 4, "kernel": 3, "stride": 2, "padding": 1}, **_CONV1D)
row("conv1d", "groups-dil", {"x": [2, 4, 6]}, {"out": 6, "kernel": 2, "dilation": 2, "groups": 2}, **_CONV1D)
row("conv1d", "k1-nobias", {"x": [1, 1, 5]}, {"out": 3, "kernel": 1, "bias": False}, **_CONV1D)
row("conv1d", "size1", {"x": [1, 2, 1]}, {"out": 1, "kernel": 1}, **_CONV1D)

_CONV2D = dict(ref=lambda t, a: np_conv2d(t.x, t.weight, t.bias, a.stride, a.padding, a.dilation, a.groups),
               torch=lambda t, a: th_conv(t, a, "conv2d"))
row("conv2d", "plain", {"x": [2, 3, 5, 5]}, {"out": 4, "kernel": 3, "padding": 1}, **_CONV2D)
row("conv2d", "groups-stride-pad-dil", {"x": [2, 4, 7, 6]},
    {"out": 6, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 2], "dilation": [1, 2], "groups": 2}, **_CONV2D)
row("conv2d", "groups-floor", {"x": [2, 4, 6, 5]},
    {"out": 6, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2], "groups": 2,
     "round": "floor"}, **_CONV2D)
row("conv2d", "depthwise-nobias", {"x": [1, 3, 4, 5]},
    {"out": 3, "kernel": 3, "padding": 1, "groups": 3, "bias": False}, **_CONV2D)
row("conv2d", "depthwise-stride2", {"x": [1, 3, 5, 5]},
    {"out": 3, "kernel": 3, "stride": 2, "padding": 1, "groups": 3}, **_CONV2D)
row("conv2d", "depthwise-mult2-stride-dil", {"x": [2, 3, 7, 6]},
    {"out": 6, "kernel": [3, 2], "stride": [2, 3], "padding": [2, 1], "dilation": [2, 1], "groups": 3},
    **_CONV2D)
row("conv2d", "stride2", {"x": [2, 2, 5, 5]}, {"out": 2, "kernel": 3, "stride": 2}, **_CONV2D)
row("conv2d", "k1", {"x": [2, 2, 4, 4]}, {"out": 5, "kernel": 1}, **_CONV2D)
row("conv2d", "k1-nobias-size1", {"x": [1, 2, 1, 1]}, {"out": 3, "kernel": 1, "bias": False}, **_CONV2D)
row("conv2d", "c1", {"x": [2, 1, 5, 4]}, {"out": 3, "kernel": 2}, **_CONV2D,
    note="one input channel: the kernel's GEMM-free path")

_CONVT = dict(ref=lambda t, a: np_conv_transpose2d(t.x, t.weight, t.bias, a.stride, a.padding,
                                                   a.output_padding, a.dilation, a.groups),
              torch=th_conv_transpose2d)
row("conv_transpose2d", "stride-pad", {"x": [2, 3, 3, 4]}, {"out": 2, "kernel": 3, "stride": 2, "padding": 1},
    **_CONVT)
row("conv_transpose2d", "groups-outpad-dil", {"x": [2, 4, 3, 3]},
    {"out": 6, "kernel": [3, 2], "stride": [2, 3], "padding": [1, 0], "output_padding": [1, 2],
     "dilation": [1, 2], "groups": 2}, **_CONVT)
row("conv_transpose2d", "stride-pad-outpad-groups", {"x": [2, 4, 3, 3]},
    {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 2}, **_CONVT)
row("conv_transpose2d", "dilation-nobias", {"x": [1, 2, 3, 2]},
    {"out": 3, "kernel": [2, 3], "dilation": 2, "bias": False}, **_CONVT)
row("conv_transpose2d", "k1-nobias", {"x": [2, 3, 2, 2]}, {"out": 1, "kernel": 1, "bias": False}, **_CONVT)

for _op, _kind in (("maxpool2d", "max"), ("avgpool2d", "avg")):
    _kw = dict(ref=lambda t, a, k=_kind: np_pool(t, a, k),
               torch=lambda t, a, op=_op: getattr(_torch()[1], op.replace("pool2d", "_pool2d"))(
                   t.x, a.kernel, a.stride or a.kernel, a.padding))  # floor; avg counts padding
    row(_op, "k2", {"x": [2, 3, 4, 4]}, {"kernel": 2}, **_kw)
    row(_op, "k3-s2-p1-floor", {"x": [1, 2, 5, 6]}, {"kernel": 3, "stride": 2, "padding": 1, "round": "floor"},
        **_kw)
    row(_op, "k3-s1-p1", {"x": [1, 2, 4, 5]}, {"kernel": 3, "stride": 1, "padding": 1}, **_kw)
    row(_op, "rect-floor", {"x": [2, 1, 5, 7]}, {"kernel": [2, 3], "stride": [2, 2], "round": "floor"}, **_kw)
_GAP = dict(ref=lambda t, a: t.x.mean((2, 3)), torch=lambda t, a: t.x.mean((2, 3)))
row("global_avgpool", "4d", {"x": [2, 3, 4, 5]}, **_GAP)
row("global_avgpool", "size1", {"x": [1, 1, 1, 1]}, **_GAP)
_UP = dict(ref=lambda t, a: t.x.repeat(a.scale, 2).repeat(a.scale, 3),
           torch=lambda t, a: _torch()[1].interpolate(t.x, scale_factor=a.scale, mode="nearest"))
row("upsample", "x2", {"x": [2, 3, 2, 3]}, **_UP)
row("upsample", "x3-size1", {"x": [1, 1, 1, 2]}, {"scale": 3}, **_UP)

# -- spatial transformer sampling
_AG = dict(ref=np_affine_grid, torch=th_affine_grid)
row("affine_grid", "3x4", {"theta": [2, 2, 3]}, {"size": [3, 4]}, **_AG)
row("affine_grid", "3x4-align", {"theta": [2, 2, 3]}, {"size": [3, 4], "align_corners": True}, **_AG)
row("affine_grid", "5x2", {"theta": [2, 2, 3]}, {"size": [5, 2]}, **_AG)
row("affine_grid", "1x3-align", {"theta": [1, 2, 3]}, {"size": [1, 3], "align_corners": True}, **_AG)
row("affine_grid", "4x1", {"theta": [1, 2, 3]}, {"size": [4, 1]}, **_AG)
_GS = dict(ref=np_grid_sample,
           torch=lambda t, a: _torch()[1].grid_sample(t.x, t.grid, mode="bilinear", padding_mode="zeros",
                                                      align_corners=a.align_corners))
row("grid_sample", "outside", {"x": [2, 3, 4, 5], "grid": grid(2, 3, 6, 2)}, **_GS)
row("grid_sample", "outside-align", {"x": [2, 2, 5, 3], "grid": grid(2, 4, 2, 2)}, {"align_corners": True}, **_GS)
row("grid_sample", "size1-image-align", {"x": [1, 2, 1, 1], "grid": grid(1, 2, 3, 2)}, {"align_corners": True},
    **_GS)
row("grid_sample", "size1-rows-c1", {"x": [2, 1, 1, 3], "grid": grid(2, 1, 4, 2)}, **_GS)
row("grid_sample", "symbolic-batch", {"x": ["B", 2, 3, 3], "grid": grid("B", 2, 2, 2)}, **_GS)

# -- data movement (NumPy)
_FLATTEN = dict(ref=lambda t, a: t.x.reshape(t.x.shape[:a.start] + (-1,)),
                torch=lambda t, a: t.x.flatten(a.start))
row("flatten", "start1", {"x": [2, 3, 4]}, **_FLATTEN)
row("flatten", "start0", {"x": [2, 3]}, {"start": 0}, **_FLATTEN)
row("flatten", "start2-4d", {"x": [2, 3, 2, 2]}, {"start": 2}, **_FLATTEN)
_RESHAPE = dict(ref=lambda t, a: t.x.reshape(a.shape), torch=lambda t, a: t.x.reshape(a.shape))
row("reshape", "minus1", {"x": [2, 3, 4]}, {"shape": [-1, 4]}, **_RESHAPE)
row("reshape", "symbolic", {"x": ["B", 6]}, {"shape": ["B", 2, 3]}, **_RESHAPE)
row("reshape", "symbolic-minus1", {"x": ["B", 2, 3]}, {"shape": ["B", -1]}, **_RESHAPE)
_TRANSPOSE = dict(ref=lambda t, a: np.swapaxes(t.x, a.dim0, a.dim1), torch=lambda t, a: t.x.transpose(a.dim0, a.dim1))
row("transpose", "default", {"x": [2, 3, 4]}, **_TRANSPOSE)
row("transpose", "0-2", {"x": [2, 3, 4]}, {"dim0": 0, "dim1": 2}, **_TRANSPOSE)
_PERMUTE = dict(ref=lambda t, a: t.x.transpose(a.dims), torch=lambda t, a: t.x.permute(a.dims))
row("permute", "3d", {"x": [2, 3, 4]}, {"dims": [2, 0, 1]}, **_PERMUTE)
row("permute", "4d", {"x": [2, 1, 3, 2]}, {"dims": [0, 2, 3, 1]}, **_PERMUTE)
row("permute", "negative-dims", {"x": [2, 3, 4]}, {"dims": [0, -1, 1]}, **_PERMUTE)
_CONCAT = dict(ref=lambda t, a: np.concatenate(t.xs, a.axis), torch=lambda t, a: _torch()[0].cat(t.xs, a.axis))
row("concat", "three", {"a": [2, 1, 3], "b": [2, 2, 3], "c": [2, 3, 3]}, {"axis": 1}, ins=["a", "b", "c"], **_CONCAT)
row("concat", "last", {"a": [2, 3], "b": [2, 1]}, **_CONCAT)
row("concat", "same-twice", {"a": [2, 3]}, {"axis": 0}, ins=["a", "a"], **_CONCAT)
_SPLIT = dict(ref=np_split, torch=lambda t, a: _torch()[0].split(t.x, list(a.sizes), a.axis))
row("split", "both-used", {"x": [2, 5]}, {"sizes": [2, 3]}, **_SPLIT)
row("split", "one-unused", {"x": [2, 6, 3]}, {"axis": 1, "sizes": [1, 2, 3]}, unused=("1",), **_SPLIT)
row("split", "negative-axis", {"x": [2, 3, 4]}, {"axis": -2, "sizes": [2, 1]}, **_SPLIT)
_SLICE = dict(ref=np_slice, torch=th_slice)
row("slice", "mid", {"x": [2, 5, 3]}, {"axis": 1, "start": 1, "stop": 3}, **_SLICE)
row("slice", "to-end", {"x": [4, 3]}, {"axis": 0, "start": 2}, **_SLICE)
row("slice", "size1", {"x": [2, 3]}, {"axis": -1, "start": 0, "stop": 1}, **_SLICE)


# -- normalization
def _running_stats(params, rng):
    return params | {"running_mean": rng.standard_normal(params["running_mean"].shape),
                     "running_var": rng.uniform(0.5, 2.0, params["running_var"].shape)}


_LN = dict(ref=lambda t, a: np_layernorm(t.x, t.weight, t.bias, a.eps),
           torch=lambda t, a: _torch()[1].layer_norm(t.x, t.x.shape[-1:], t.weight, t.bias, a.eps))
row("layernorm", "3d", {"x": f(2, 3, 5, scale=3.0)}, **_LN)
row("layernorm", "no-affine", {"x": [3, 1, 5]}, {"affine": False}, **_LN)
row("layernorm", "no-affine-2d", {"x": [4, 2]}, {"affine": False}, **_LN)
row("layernorm", "size1-rows", {"x": [1, 1, 3]}, **_LN)
_RMS = dict(ref=lambda t, a: t.x / np.sqrt((t.x ** 2).mean(-1, keepdims=True) + a.eps) * t.weight,
            torch=lambda t, a: _torch()[1].rms_norm(t.x, t.x.shape[-1:], t.weight, a.eps))
row("rmsnorm", "3d", {"x": f(2, 3, 5, scale=3.0)}, **_RMS)
row("rmsnorm", "eps", {"x": [2, 4, 6]}, {"eps": 1e-2}, **_RMS)
row("rmsnorm", "size1-rows", {"x": [1, 1, 3]}, **_RMS)
row("rmsnorm", "d1", {"x": f(2, 3, 1, scale=0.1)}, {"eps": 0.1}, **_RMS,
    note="one feature: x / √(x² + eps), the eps dominates")
_BN = dict(ref=np_batchnorm, prepare=_running_stats,
           torch=lambda t, a: _torch()[1].batch_norm(t.x, t.running_mean, t.running_var, t.weight, t.bias,
                                                     a.training, a.momentum, a.eps))
row("batchnorm", "train-2d", {"x": [4, 3]}, training=True, **_BN)
row("batchnorm", "train-3d", {"x": [2, 3, 4]}, training=True, **_BN)
row("batchnorm", "train-4d-momentum", {"x": [2, 2, 3, 3]}, {"momentum": 0.5}, training=True, **_BN)
row("batchnorm", "eval-3d", {"x": [2, 3, 2]}, **_BN)
row("batchnorm", "eval-4d-eps", {"x": [2, 3, 2, 2]}, {"eps": 1e-3}, **_BN)
_ADDNORM = dict(ref=lambda t, a: np_layernorm(t.x + t.y, t.weight, t.bias, a.eps),
                torch=lambda t, a: _torch()[1].layer_norm(t.x + t.y, t.x.shape[-1:], t.weight, t.bias, a.eps))
row("add_norm", "3d", {"x": [2, 3, 4], "r": [2, 3, 4]}, ins={"x": "x", "y": "r"}, **_ADDNORM)
row("add_norm", "size1", {"x": [1, 1, 5], "r": [1, 1, 5]}, ins={"x": "x", "y": "r"}, **_ADDNORM)

# -- attention: three Numba specialisations (self; cross with a mask; self with a mask)
_ATT = dict(ref=np_attention, torch=th_attention)
_CROSS = {"q": "q", "kv": "kv", "key_padding_mask": "mask"}
row("attention", "self", {"q": [2, 3, 4]}, {"heads": 2}, **_ATT)
row("attention", "causal", {"q": [2, 4, 6]}, {"heads": 3, "causal": True}, **_ATT)
row("attention", "causal-T1", {"q": [1, 1, 2]}, {"heads": 1, "causal": True}, **_ATT)
row("attention", "cross-mask", {"q": [2, 3, 4], "kv": [2, 5, 3], "mask": padding(2, 5)}, {"heads": 2},
    ins=_CROSS, **_ATT)
row("attention", "cross-mask-causal-nobias", {"q": [2, 3, 4], "kv": [2, 3, 2], "mask": padding(2, 3)},
    {"heads": 1, "causal": True, "bias": False}, ins=_CROSS, **_ATT)
row("attention", "self-mask-nobias", {"q": [2, 3, 4], "mask": padding(2, 3)}, {"heads": 2, "bias": False},
    ins={"q": "q", "key_padding_mask": "mask"}, **_ATT)
row("attention", "self-fully-masked-row", {"q": [2, 3, 4], "mask": padding(2, 3, full_row=True)},
    {"heads": 1, "bias": False},
    ins={"q": "q", "key_padding_mask": "mask"}, ref=np_attention, torch=None,
    note="every key of batch row 0 is padding: graphc attends uniformly, torch gives NaN or zeros "
         "(tests/kernels/test_torch_oracle.py compares the other rows)")

# -- positions for attention written from primitives
_ROPE = dict(ref=np_rotary, torch=th_rotary)
row("rotary", "bhtd", {"x": [2, 2, 5, 4]}, **_ROPE)
row("rotary", "btd-heads2", {"x": [2, 5, 8]}, {"heads": 2}, **_ROPE)
row("rotary", "interleaved-base", {"x": [2, 2, 5, 6]}, {"interleaved": True, "base": 100.0}, **_ROPE)
_CAUSAL = dict(ref=np_causal_mask, torch=th_causal_mask, loss_via={"op": "softmax"},
               note="-inf above the diagonal: the tiers give those entries a zero cotangent, the "
                    "compiled tier's loss reads softmax(y)")
row("causal_mask", "square", {"x": [2, 3, 4, 4]}, **_CAUSAL)
row("causal_mask", "rect", {"x": [3, 5]}, **_CAUSAL)

# -- recurrent
for _op, _cell in (("rnn", _rnn_cell), ("lstm", _lstm_cell), ("gru", _gru_cell)):
    _kw = dict(ref=np_recurrent(_cell), torch=th_recurrent(_op))
    row(_op, "sequence", {"x": [2, 4, 3]}, {"hidden": 3}, **_kw)
    row(_op, "last", {"x": [2, 3, 2]}, {"hidden": 4, "output": "last"}, **_kw)
    row(_op, "bidirectional", {"x": [2, 3, 2]}, {"hidden": 2, "bidirectional": True}, **_kw)
    row(_op, "bidir-last", {"x": [3, 4, 2]}, {"hidden": 2, "bidirectional": True, "output": "last"}, **_kw)
    row(_op, "T1", {"x": [1, 1, 1]}, {"hidden": 1}, **_kw)
    if _op == "rnn":
        row(_op, "relu", {"x": [2, 3, 2]}, {"hidden": 3, "nonlinearity": "relu"}, **_kw)
        row(_op, "relu-bidir-last", {"x": [2, 4, 3]},
            {"hidden": 5, "nonlinearity": "relu", "bidirectional": True, "output": "last"}, **_kw)

# -- sources
_PARAM = dict(ref=lambda t, a: t.weight, torch=lambda t, a: t.weight * 1)
row("param", "token", {}, {"shape": [1, 1, 3]}, **_PARAM)
row("param", "matrix-ones", {}, {"shape": [2, 3], "init": "ones", "decay": True}, **_PARAM)
_CONST = dict(ref=lambda t, a: np.full(a.shape, a.value),
              torch=lambda t, a: _torch()[0].full(a.shape, a.value, dtype=_torch()[0].float64))
row("constant", "fill", {}, {"value": 2.5, "shape": [2, 3]}, **_CONST)
row("constant", "vector", {}, {"value": -1.0, "shape": [4]}, **_CONST)
_EXPAND = dict(ref=lambda t, a: np.broadcast_to(t.x, a.shape), torch=lambda t, a: t.x.expand(*a.shape))
row("expand", "size1-axes", {"x": [1, 1, 3]}, {"shape": [2, 4, 3]}, **_EXPAND)
row("expand", "leading", {"x": [3]}, {"shape": [2, 3]}, **_EXPAND)
row("expand", "inner", {"x": [2, 1, 3]}, {"shape": [2, 5, 3]}, **_EXPAND)

# -- losses
_CE = dict(ref=np_cross_entropy, torch=th_cross_entropy)
_CE_IN = {"logits": "logits", "target": "target", "mask": "mask"}
row("cross_entropy", "2d", {"logits": [4, 5], "target": ids(5, 4)}, **_CE)
row("cross_entropy", "ignore-smoothing-3d", {"logits": [2, 3, 4], "target": ids(4, 2, 3, special=1)},
    {"ignore_index": 1, "label_smoothing": 0.1}, **_CE)
row("cross_entropy", "mask-ignore", {"logits": [6, 4], "target": ids(4, 6, special=0), "mask": weights(6)},
    {"ignore_index": 0}, ins=_CE_IN, **_CE)
row("cross_entropy", "mask-3d-ignore", {"logits": f(3, 4, 5, scale=2.0), "target": ids(5, 3, 4, special=4),
                                        "mask": weights(3, 4)}, {"ignore_index": 4}, ins=_CE_IN, **_CE,
    note="ignore_index 4 is also a valid class: it must still be skipped")
row("cross_entropy", "smoothing", {"logits": [4, 6], "target": ids(6, 4)}, {"label_smoothing": 0.2}, **_CE)
row("cross_entropy", "one-class", {"logits": [2, 1], "target": ids(1, 2)}, **_CE)
row("cross_entropy", "sum-mask-ignore", {"logits": [6, 4], "target": ids(4, 6, special=0), "mask": weights(6)},
    {"ignore_index": 0, "reduction": "sum"}, ins=_CE_IN, **_CE)
_BCE = dict(ref=lambda t, a: np_reduce(a, np.logaddexp(0, t.logits) - t.target * t.logits),
            torch=lambda t, a: _torch()[1].binary_cross_entropy_with_logits(t.logits, t.target,
                                                                             reduction=a.reduction))
row("bce_with_logits", "2d", {"logits": f(3, 4, scale=3.0), "target": prob(3, 4)}, **_BCE)
row("bce_with_logits", "size1", {"logits": [1, 1], "target": prob(1, 1)}, **_BCE)
row("bce_with_logits", "sum", {"logits": f(3, 4, scale=3.0), "target": prob(3, 4)}, {"reduction": "sum"}, **_BCE)
_MSE = dict(ref=lambda t, a: np_reduce(a, (t.pred - t.target) ** 2),
            torch=lambda t, a: _torch()[1].mse_loss(t.pred, t.target, reduction=a.reduction))
row("mse", "2d", {"pred": [3, 4], "target": [3, 4]}, **_MSE)
row("mse", "size1", {"pred": [1, 1], "target": [1, 1]}, **_MSE)
row("mse", "1d", {"pred": [5], "target": [5]}, **_MSE)
row("mse", "sum", {"pred": [3, 4], "target": [3, 4]}, {"reduction": "sum"}, **_MSE)
_HINGE = dict(ref=np_hinge,
              torch=lambda t, a: _torch()[1].multi_margin_loss(
                  t.scores.reshape(-1, t.scores.shape[-1]), t.target.reshape(-1), margin=a.margin,
                  reduction=a.reduction))
row("hinge", "2d", {"scores": [4, 5], "target": ids(5, 4)}, **_HINGE)
row("hinge", "margin", {"scores": [5, 4], "target": ids(4, 5)}, {"margin": 0.7}, **_HINGE)
row("hinge", "3d", {"scores": [2, 3, 4], "target": ids(4, 2, 3)}, {"margin": 0.3}, **_HINGE)
row("hinge", "sum", {"scores": [4, 5], "target": ids(5, 4)}, {"reduction": "sum"}, **_HINGE)
_KL = dict(ref=np_kl_div, torch=th_kl_div)
row("kl_div", "2d", {"student": [3, 4], "teacher": [3, 4]}, **_KL)
row("kl_div", "3d", {"student": [1, 3, 4], "teacher": [1, 3, 4]}, **_KL)
row("kl_div", "3d-T2", {"student": [2, 3, 5], "teacher": f(2, 3, 5, scale=2.0)}, {"temperature": 2.0}, **_KL)
row("kl_div", "mean-3d", {"student": [2, 3, 4], "teacher": [2, 3, 4]}, {"reduction": "mean"}, **_KL)
row("kl_div", "sum", {"student": [3, 4], "teacher": [3, 4]}, {"reduction": "sum", "temperature": 0.5}, **_KL)


# ----------------------------------------------------------------------------- concrete cases
@dataclass
class Case:
    """A row made concrete. Arrays are float64 (or int64 ids); never mutate them."""

    row: Row
    node: Any  # the node in the analyzed one-node graph
    graph: Any
    attrs: Bag  # the node's attributes with defaults, symbolic dims bound (what `ref` sees)
    lowered: dict  # the kernel's attribute arguments
    ports: dict  # kernel input name → array, list of arrays (variadic), or None (absent)
    params: dict  # kernel param/buffer name → array, or None (absent)
    trainable: tuple  # params that get a gradient
    outputs: dict  # output port → concrete shape
    batch: dict = field(default_factory=dict)  # spec input name → array
    sizes: dict = field(default_factory=dict)  # bound symbolic dims

    @property
    def op(self):
        from graphc.ops import OPS

        return OPS[self.row.op]

    def tensors(self, cast=None) -> Bag:
        """What `ref` and `torch` get: ports and params by name (None when absent); `cast`
        applies to every float array (e.g. rounding to float32)."""
        def conv(v):
            if isinstance(v, list):
                return [conv(x) for x in v]
            return cast(v) if cast is not None and v is not None and v.dtype.kind == "f" else v

        return Bag({k: conv(v) for k, v in (self.ports | self.params).items()})

    def reference(self, cast=None):
        """The row's NumPy reference on these values (float32-rounded first if `cast`)."""
        t = self.tensors(None if cast is None else (lambda v: cast(v).astype(np.float64)))
        out = self.row.ref(t, self.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        return {p: np.asarray(o, np.float64) for p, o in zip(self.outputs, outs, strict=True)}


_TMP = tempfile.TemporaryDirectory(prefix="graphc-op-cases-")
_CASES: dict[str, Case] = {}


def spec_doc(r: Row, *, outputs=None, losses=(), extra_inputs=None, extra_nodes=None) -> dict:
    """The row's one-node spec: its inputs and the node `y` (plus any `extra_*`)."""
    ins = {k: {"shape": list(v.shape)} | ({"dtype": v.dtype} if v.dtype != "float32" else {})
           for k, v in r.inputs.items()}
    node_in = r.ins if r.ins is not None else list(r.inputs)
    if isinstance(node_in, list) and len(node_in) == 1:
        node_in = node_in[0]
    node = {"op": r.op} | ({"in": node_in} if node_in != [] else {}) | r.attrs  # sources take no `in`
    doc = {"graphc": 1, "name": re.sub(r"\W", "_", r.key), "inputs": ins | (extra_inputs or {}),
           "nodes": {"y": node} | (extra_nodes or {})}
    if outputs:
        doc["outputs"] = list(outputs)
    if losses:
        doc["losses"] = list(losses)
    return doc


def write_spec(doc: dict, directory: str | Path, name: str = "spec.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def concrete(v, sizes: dict):
    """A dim, shape or attribute value with symbolic dims bound to their sizes."""
    if isinstance(v, dict):
        return {k: concrete(x, sizes) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return type(v)(concrete(x, sizes) for x in v)
    if isinstance(v, sympy.Basic):
        return int(v.subs({s: sizes[str(s)] for s in v.free_symbols}))
    if hasattr(v, "dims"):  # RuntimeShape
        return tuple(int(d) for d in concrete(tuple(v.dims), sizes))
    return v


def case(r: Row) -> Case:
    if r.key not in _CASES:
        _CASES[r.key] = _materialize(r)
    return _CASES[r.key]


def _materialize(r: Row) -> Case:
    from graphc.compiler.model import ParamSpec, initialize
    from graphc.ops import OPS
    from graphc.pipeline import analyze

    op = OPS[r.op]
    path = write_spec(spec_doc(r, outputs=["y"]), _TMP.name, re.sub(r"\W", "_", r.key) + ".yaml")
    analysis = analyze(path)
    assert analysis.ok, f"{r.key}: {[d.message for d in analysis.errors]}"
    graph = analysis.graph
    node = graph.nodes["y"]
    sizes = {str(d): DIMS[str(d)] for v in r.inputs.values() for d in v.shape if isinstance(d, str)}
    shapes = {k: tuple(DIMS.get(d, d) for d in v.shape) for k, v in r.inputs.items()}
    attrs = Bag(concrete(dict(node.attrs), sizes) | {"training": r.training})
    rng = np.random.default_rng(zlib.crc32(r.key.encode()))
    batch = {k: _draw(rng, v, shapes[k], shapes, attrs) for k, v in r.inputs.items()}

    k = op.kernel
    ports: dict[str, Any] = {}
    for port in k.inputs:
        bound = node.port_inputs(port)
        if k.variadic:
            ports[port] = [batch[i.src] for i in bound]
        elif port == k.noise:
            x = batch[node.inputs[0].src]
            ports[port] = rng.random(x.shape) if r.training else None
        else:
            ports[port] = batch[bound[0].src] if bound else None

    defs = graph.params.get("y", {})
    params = {n: initialize(ParamSpec(n, d.shape, d.init, d.decay, "y", d.trainable), rng, np.float64)
              for n, d in defs.items()}
    params = {n: v + 0.3 * rng.standard_normal(v.shape) if defs[n].trainable else v for n, v in params.items()}
    if r.prepare:
        params = r.prepare(params, rng)
    kernel_params = {n: params.get(n) for n in (*k.params, *k.buffers)}
    trainable = tuple(n for n in k.params if n in defs and defs[n].trainable)

    rank = graph.types[node.inputs[0].tensor].rank if node.inputs else 0
    lowered = {n: concrete(v, sizes) for n, v in op.lower(dict(node.attrs), rank).items()}
    outputs = {p: (1,) if op.loss else concrete(tuple(graph.types[("y", p)].shape), sizes) for p in node.outputs}
    return Case(r, node, graph, attrs, lowered, ports, kernel_params, trainable, outputs, batch, sizes)


def by_key(key: str) -> Row:
    return next(r for r in ROWS if r.key == key)
