"""Micro-benchmark of the kernels on the shapes of the target small models, optionally next
to PyTorch eager: ``python -m graphc.kernels.bench [--torch] [--threads N]``.

Times forward + backward per op (best of several CPU-time repeats, so other processes on a
shared machine disturb it less). ``--threads`` sets both OpenBLAS's and torch's thread counts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graphc.kernels.loss import REDUCTIONS
from graphc.kernels.threads import ensure_configured, set_threads
from graphc.ops import OPS

F32 = np.float32


def _r(rng, *shape, scale=0.1):
    return (rng.standard_normal(shape) * scale).astype(F32)


def _cases(rng) -> dict[str, tuple[str, dict]]:
    """name -> (op, kwargs): transformer (B64 T16 D64 H4), LeNet on 8x8, LSTM over 20 steps."""
    e = np.zeros(0, F32)
    b, t, d = 64, 16, 64
    x = _r(rng, b, t, d, scale=1.0)
    conv = dict(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1, groups=1, has_bias=True)
    lstm = {f"{w}_{k}": e for k in (0, 1) for w in ("w_ih", "w_hh", "b_ih", "b_hh")}
    lstm.update(w_ih_0=_r(rng, 256, 32), w_hh_0=_r(rng, 256, 64), b_ih_0=_r(rng, 256),
                b_hh_0=_r(rng, 256))  # fmt: skip
    attn = {n: _r(rng, d, d) for n in ("wq", "wk", "wv", "wo")}
    attn.update({n: _r(rng, d) for n in ("bq", "bk", "bv", "bo")})
    return {
        "linear 1024x64->256": ("linear", dict(x=x, weight=_r(rng, 256, d), bias=_r(rng, 256),
                                               has_bias=True)),
        "attention causal": ("attention", dict(q=x, kv=e, key_padding_mask=e, **attn, heads=4,
                                                causal=True, has_bias=True)),
        "add_norm": ("add_norm", dict(x=x, y=x.copy(), weight=np.ones(d, F32),
                                      bias=np.zeros(d, F32), eps=1e-5)),
        "gelu 64x16x256": ("gelu", dict(x=_r(rng, b, t, 256, scale=1.0))),
        "cross_entropy 1024x100": ("cross_entropy", dict(
            logits=_r(rng, b, t, 100, scale=1.0), target=rng.integers(0, 100, (b, t)),
            mask=e, ignore_index=-100, label_smoothing=0.0, reduction=REDUCTIONS.index("mean"))),
        "conv2d 1->6 8x8": ("conv2d", dict(x=_r(rng, b, 1, 8, 8, scale=1.0),
                                           weight=_r(rng, 6, 1, 3, 3), bias=_r(rng, 6), **conv)),
        "conv2d 6->16 4x4": ("conv2d", dict(x=_r(rng, b, 6, 4, 4, scale=1.0),
                                            weight=_r(rng, 16, 6, 3, 3), bias=_r(rng, 16), **conv)),
        "maxpool2d 6x8x8": ("maxpool2d", dict(x=_r(rng, b, 6, 8, 8, scale=1.0), kh=2, kw=2,
                                              stride_h=2, stride_w=2, pad_h=0, pad_w=0)),
        "lstm T20 B64 H64": ("lstm", dict(x=_r(rng, b, 20, 32, scale=1.0), **lstm,
                                          bidirectional=False, last=False)),
    }  # fmt: skip


def _best_ms(fn, n: int = 10, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n)
    return best * 1e3


def _ours(op: str, kw: dict):
    kp = OPS[op].kernel

    def step():
        res = kp.fwd(**kw)
        saved = {f"saved{i}": s for i, s in enumerate(res[1:])}
        kp.bwd(g_out=np.ones_like(res[0]), **kw, **saved, out=res[0])

    return step


def _torch(op: str, kw: dict):
    import torch
    import torch.nn.functional as tf

    def t(a):
        return torch.tensor(a, requires_grad=a.dtype.kind == "f")

    if op == "linear":
        args = [t(kw["x"]), t(kw["weight"]), t(kw["bias"])]
        fn = tf.linear
    elif op == "attention":
        d = kw["q"].shape[-1]
        mha = torch.nn.MultiheadAttention(d, kw["heads"], batch_first=True)
        mask = torch.ones(kw["q"].shape[1], kw["q"].shape[1], dtype=torch.bool).triu(1)
        args = [t(kw["q"])]

        def fn(q):
            return mha(q, q, q, attn_mask=mask, need_weights=False)[0]
    elif op == "add_norm":
        args = [t(kw["x"]), t(kw["y"]), t(kw["weight"]), t(kw["bias"])]

        def fn(x, y, w, b):
            return tf.layer_norm(x + y, w.shape, w, b)
    elif op == "gelu":
        args, fn = [t(kw["x"])], tf.gelu
    elif op == "cross_entropy":
        c = kw["logits"].shape[-1]
        target = torch.tensor(kw["target"].reshape(-1))
        args = [t(kw["logits"])]

        def fn(lg):
            return tf.cross_entropy(lg.reshape(-1, c), target)
    elif op == "conv2d":
        args = [t(kw["x"]), t(kw["weight"]), t(kw["bias"])]

        def fn(x, w, b):
            return tf.conv2d(x, w, b, padding=1)
    elif op == "maxpool2d":
        args = [t(kw["x"])]

        def fn(x):
            return tf.max_pool2d(x, 2)
    elif op == "lstm":
        mod = torch.nn.LSTM(kw["x"].shape[2], kw["w_hh_0"].shape[1], batch_first=True)
        args = [t(kw["x"])]

        def fn(x):
            return mod(x)[0]
    else:
        return None

    def step():
        y = fn(*args)
        y.backward(torch.ones_like(y))

    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", action="store_true", help="also time PyTorch eager")
    ap.add_argument("--threads", type=int, default=None, help="kernel/torch threads")
    args = ap.parse_args(argv)
    ensure_configured()  # BLAS on one thread inside the kernels' pool, as graphc train runs them
    if args.threads:
        set_threads(args.threads)
    if args.torch:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{'fwd+bwd':26s} {'graphc ms':>10s}" + (f" {'torch ms':>10s} {'ratio':>6s}"
                                                   if args.torch else ""))  # fmt: skip
    for name, (op, kw) in _cases(rng).items():
        ours = _best_ms(_ours(op, kw))
        line = f"{name:26s} {ours:10.3f}"
        if args.torch:
            theirs = _best_ms(_torch(op, kw))
            line += f" {theirs:10.3f} {ours / theirs:6.2f}"
        print(line)


if __name__ == "__main__":
    main()
