"""Table of example calls for every kernel: ``CASES[op]`` is a list of ``(case_id, build)``
where ``build(rng, dtype)`` returns the keyword arguments of ``<op>_fwd`` (inputs, params,
buffers, attrs). Shared by the gradient checks and the signature test.
"""

import numpy as np

_EMPTY_OK = "absent optional arrays are zero-size"


def _r(rng, dtype, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _e(dtype):
    return np.zeros(0, dtype)


def _ids(rng, high, *shape):
    return rng.integers(0, high, size=shape).astype(np.int64)


def _rnn_params(rng, dtype, gates, n_in, hd, bidirectional, bias=True):
    p = {}
    for d in (0, 1):
        live = d == 0 or bidirectional
        p[f"w_ih_{d}"] = _r(rng, dtype, gates * hd, n_in, scale=0.5) if live else _e(dtype)
        p[f"w_hh_{d}"] = _r(rng, dtype, gates * hd, hd, scale=0.5) if live else _e(dtype)
        p[f"b_ih_{d}"] = _r(rng, dtype, gates * hd, scale=0.5) if live and bias else _e(dtype)
        p[f"b_hh_{d}"] = _r(rng, dtype, gates * hd, scale=0.5) if live and bias else _e(dtype)
    return p


def _attn(rng, dtype, b, t, s, e, ekv, heads, causal, has_bias, self_attn, mask):
    kv = _e(dtype) if self_attn else _r(rng, dtype, b, s, ekv)
    src = e if self_attn else ekv
    if mask == "none":
        kpm = _e(dtype)
    else:
        kpm = (rng.random((b, s)) < 0.3).astype(dtype)
        kpm[:, 0] = 0.0  # keep at least one key per row...
        if mask == "full":
            kpm[0, :] = 1.0  # ...except batch 0: every key padded (must not give NaN)
    sc = 1.0 / np.sqrt(e)

    def bias():
        return _r(rng, dtype, e, scale=0.1) if has_bias else _e(dtype)

    return dict(
        q=_r(rng, dtype, b, t, e),
        kv=kv,
        key_padding_mask=kpm,
        wq=_r(rng, dtype, e, e, scale=sc),
        bq=bias(),
        wk=_r(rng, dtype, e, src, scale=sc),
        bk=bias(),
        wv=_r(rng, dtype, e, src, scale=sc),
        bv=bias(),
        wo=_r(rng, dtype, e, e, scale=sc),
        bo=bias(),
        heads=heads,
        causal=causal,
        has_bias=has_bias,
    )


def _conv2d(rng, dtype, x, o, k, s=(1, 1), p=(0, 0), d=(1, 1), groups=1, has_bias=True):
    c = x[1]
    return dict(
        x=_r(rng, dtype, *x),
        weight=_r(rng, dtype, o, c // groups, *k),
        bias=_r(rng, dtype, o) if has_bias else _e(dtype),
        stride_h=s[0], stride_w=s[1], pad_h=p[0], pad_w=p[1], dil_h=d[0], dil_w=d[1],
        groups=groups, has_bias=has_bias,
    )  # fmt: skip


def _convt(rng, dtype, x, o, k, s=(1, 1), p=(0, 0), op=(0, 0), d=(1, 1), groups=1, has_bias=True):
    c = x[1]
    return dict(
        x=_r(rng, dtype, *x),
        weight=_r(rng, dtype, c, o // groups, *k),
        bias=_r(rng, dtype, o) if has_bias else _e(dtype),
        stride_h=s[0], stride_w=s[1], pad_h=p[0], pad_w=p[1], out_pad_h=op[0], out_pad_w=op[1],
        dil_h=d[0], dil_w=d[1], groups=groups, has_bias=has_bias,
    )  # fmt: skip


def _pool(rng, dtype, x, k, s, p):
    return dict(
        x=_r(rng, dtype, *x), kh=k[0], kw=k[1], stride_h=s[0], stride_w=s[1], pad_h=p[0],
        pad_w=p[1],
    )  # fmt: skip


def _grid(rng, dtype, b, h, w, h_in, w_in, align_corners):
    """A sampling grid [b, h, w, 2] for an h_in×w_in image whose points land up to two pixels
    outside it (zero padding, no neighbour in reach) and never within 0.15 px of a pixel line,
    where bilinear sampling has a kink that central differences cannot follow."""
    g = np.empty((b, h, w, 2))
    for axis, n in ((0, w_in), (1, h_in)):
        pix = rng.integers(-2, n + 1, size=(b, h, w)) + rng.uniform(0.15, 0.85, size=(b, h, w))
        if align_corners and n == 1:
            g[..., axis] = rng.uniform(-1.5, 1.5, size=(b, h, w))  # every point reads pixel 0
        elif align_corners:
            g[..., axis] = 2.0 * pix / (n - 1) - 1.0
        else:
            g[..., axis] = (2.0 * pix + 1.0) / n - 1.0
    return g.astype(dtype)


def _grid_sample(rng, dtype, x, hw, align_corners):
    b, _, h_in, w_in = x
    grid = _grid(rng, dtype, b, *hw, h_in, w_in, align_corners)
    return dict(x=_r(rng, dtype, *x), grid=grid, align_corners=align_corners)


def _unary(shapes):
    return [(f"x{'x'.join(map(str, s))}", lambda rng, dt, s=s: dict(x=_r(rng, dt, *s))) for s in shapes]


def _binary(pairs):
    return [
        (
            f"{'x'.join(map(str, a))}_{'x'.join(map(str, b))}",
            lambda rng, dt, a=a, b=b: dict(a=_r(rng, dt, *a), b=_r(rng, dt, *b)),
        )
        for a, b in pairs
    ]


_BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (1, 4, 1)), ((1,), (2, 3))]


def _ce(rng, dt, shape, n_cls, ignore_index, smoothing, masked):
    target = _ids(rng, n_cls, *shape)
    flat = target.reshape(-1)
    if ignore_index >= 0:
        flat[::3] = ignore_index  # some ignored positions
    mask = (rng.random(shape) < 0.7).astype(dt) if masked else _e(dt)
    if masked:
        mask.reshape(-1)[1] = 1.0
        flat[1] = 0 if ignore_index != 0 else 1  # at least one counted position
    return dict(
        logits=_r(rng, dt, *shape, n_cls),
        target=target,
        mask=mask,
        ignore_index=ignore_index,
        label_smoothing=smoothing,
    )


CASES = {
    "linear": [
        (
            "bias",
            lambda rng, dt: dict(
                x=_r(rng, dt, 3, 4), weight=_r(rng, dt, 5, 4), bias=_r(rng, dt, 5), has_bias=True
            ),
        ),
        (
            "nobias_3d_size1",
            lambda rng, dt: dict(
                x=_r(rng, dt, 2, 1, 3), weight=_r(rng, dt, 1, 3), bias=_e(dt), has_bias=False
            ),
        ),
    ],
    "matmul": _binary(
        [
            ((2, 3, 4), (2, 4, 5)),
            ((2, 3, 4), (4, 5)),
            ((3, 4), (4, 2)),
            ((2, 1, 3, 4), (1, 3, 4, 2)),
            ((3, 4), (2, 4, 1)),
        ]
    ),
    "embedding": [
        ("nopad", lambda rng, dt: dict(ids=_ids(rng, 5, 2, 3), weight=_r(rng, dt, 5, 4), padding_idx=-1)),
        (
            "pad",
            lambda rng, dt: dict(
                ids=np.array([[2, 0, 2, 4]], np.int64), weight=_r(rng, dt, 5, 3), padding_idx=2
            ),
        ),
    ],
    "positional_encoding": [
        ("learned", lambda rng, dt: dict(x=_r(rng, dt, 2, 3, 4), weight=_r(rng, dt, 7, 4), learned=True)),
        ("sinusoid_odd_d", lambda rng, dt: dict(x=_r(rng, dt, 2, 6, 5), weight=_e(dt), learned=False)),
    ],
    "conv1d": [
        (
            "groups_stride_dil",
            lambda rng, dt: dict(
                x=_r(rng, dt, 2, 4, 9),
                weight=_r(rng, dt, 6, 2, 3),
                bias=_r(rng, dt, 6),
                stride=2,
                padding=1,
                dilation=2,
                groups=2,
                has_bias=True,
            ),
        ),
        (
            "k1_nobias",
            lambda rng, dt: dict(
                x=_r(rng, dt, 1, 1, 5),
                weight=_r(rng, dt, 3, 1, 1),
                bias=_e(dt),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                has_bias=False,
            ),
        ),
    ],
    "conv2d": [
        ("plain", lambda rng, dt: _conv2d(rng, dt, (2, 3, 5, 5), 4, (3, 3), p=(1, 1))),
        (
            "groups_stride_dil",
            lambda rng, dt: _conv2d(rng, dt, (2, 4, 7, 6), 6, (3, 2), s=(2, 1), p=(1, 2), d=(1, 2), groups=2),
        ),
        (
            "depthwise_nobias",
            lambda rng, dt: _conv2d(rng, dt, (1, 3, 4, 5), 3, (3, 3), p=(1, 1), groups=3, has_bias=False),
        ),
        ("1x1_size1", lambda rng, dt: _conv2d(rng, dt, (1, 2, 1, 1), 1, (1, 1))),
        (
            "depthwise_mult2_stride_dil",
            lambda rng, dt: _conv2d(rng, dt, (2, 3, 7, 6), 6, (3, 2), s=(2, 3), p=(2, 1), d=(2, 1), groups=3),
        ),
        ("c1_into_gemm_free_path", lambda rng, dt: _conv2d(rng, dt, (2, 1, 5, 4), 3, (2, 2))),
    ],
    "conv_transpose2d": [
        ("plain", lambda rng, dt: _convt(rng, dt, (2, 3, 3, 4), 2, (3, 3), s=(2, 2), p=(1, 1))),
        (
            "groups_outpad_dil",
            lambda rng, dt: _convt(
                rng, dt, (2, 4, 3, 3), 6, (3, 2), s=(2, 3), p=(1, 0), op=(1, 2), d=(1, 2), groups=2
            ),
        ),
        ("nobias_1x1", lambda rng, dt: _convt(rng, dt, (1, 2, 2, 2), 1, (1, 1), has_bias=False)),
    ],
    "maxpool2d": [
        ("k2s2", lambda rng, dt: _pool(rng, dt, (2, 3, 4, 4), (2, 2), (2, 2), (0, 0))),
        ("k3s2p1", lambda rng, dt: _pool(rng, dt, (1, 2, 5, 6), (3, 3), (2, 2), (1, 1))),
    ],
    "avgpool2d": [
        ("k2s2", lambda rng, dt: _pool(rng, dt, (2, 3, 4, 4), (2, 2), (2, 2), (0, 0))),
        ("k3s2p1", lambda rng, dt: _pool(rng, dt, (1, 2, 5, 6), (3, 3), (2, 2), (1, 1))),
    ],
    "global_avgpool": _unary([(2, 3, 4, 5), (1, 1, 1, 1)]),
    "upsample": [
        ("s2", lambda rng, dt: dict(x=_r(rng, dt, 2, 3, 2, 3), scale=2)),
        ("s3", lambda rng, dt: dict(x=_r(rng, dt, 1, 1, 1, 2), scale=3)),
    ],
    "affine_grid": [
        ("3x4_align", lambda rng, dt: dict(theta=_r(rng, dt, 2, 2, 3), size=(3, 4), align_corners=True)),
        ("5x2", lambda rng, dt: dict(theta=_r(rng, dt, 2, 2, 3), size=(5, 2), align_corners=False)),
        ("1x3_align", lambda rng, dt: dict(theta=_r(rng, dt, 1, 2, 3), size=(1, 3), align_corners=True)),
        ("4x1", lambda rng, dt: dict(theta=_r(rng, dt, 1, 2, 3), size=(4, 1), align_corners=False)),
    ],
    "grid_sample": [
        ("outside", lambda rng, dt: _grid_sample(rng, dt, (2, 3, 4, 5), (3, 6), False)),
        ("outside_align", lambda rng, dt: _grid_sample(rng, dt, (2, 2, 5, 3), (4, 2), True)),
        ("size1_image_align", lambda rng, dt: _grid_sample(rng, dt, (1, 2, 1, 1), (2, 3), True)),
        ("size1_rows_c1", lambda rng, dt: _grid_sample(rng, dt, (2, 1, 1, 3), (1, 4), False)),
    ],
    "concat2": [
        ("axis1", lambda rng, dt: dict(a=_r(rng, dt, 2, 3, 4), b=_r(rng, dt, 2, 1, 4), axis=1)),
        ("axis-1", lambda rng, dt: dict(a=_r(rng, dt, 2, 3), b=_r(rng, dt, 2, 2), axis=-1)),
        ("axis0", lambda rng, dt: dict(a=_r(rng, dt, 1, 3), b=_r(rng, dt, 2, 3), axis=0)),
    ],
    "add": _binary(_BROADCAST_PAIRS),
    "sub": _binary(_BROADCAST_PAIRS),
    "mul": _binary(_BROADCAST_PAIRS),
    "relu": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "gelu": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "tanh": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "sigmoid": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "softmax": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "log_softmax": _unary([(3, 4), (1, 1), (2, 3, 5)]),
    "dropout": [
        (
            "train",
            lambda rng, dt: dict(x=_r(rng, dt, 3, 5), u=rng.random((3, 5)).astype(dt), p=0.3, training=True),
        ),
        (
            "eval",
            lambda rng, dt: dict(x=_r(rng, dt, 2, 2), u=rng.random((2, 2)).astype(dt), p=0.5, training=False),
        ),
    ],
    "layernorm": [
        (
            "affine",
            lambda rng, dt: dict(
                x=_r(rng, dt, 2, 3, 5), weight=_r(rng, dt, 5), bias=_r(rng, dt, 5), eps=1e-5, affine=True
            ),
        ),
        (
            "plain_d1",
            lambda rng, dt: dict(x=_r(rng, dt, 4, 2), weight=_e(dt), bias=_e(dt), eps=1e-5, affine=False),
        ),
    ],
    "add_norm": [
        (
            "3d",
            lambda rng, dt: dict(
                x=_r(rng, dt, 2, 3, 4),
                y=_r(rng, dt, 2, 3, 4),
                weight=_r(rng, dt, 4),
                bias=_r(rng, dt, 4),
                eps=1e-5,
            ),
        ),
    ],
    "batchnorm": [
        (
            f"{'x'.join(map(str, s))}_{'train' if tr else 'eval'}",
            lambda rng, dt, s=s, tr=tr: dict(
                x=_r(rng, dt, *s),
                weight=_r(rng, dt, s[1]),
                bias=_r(rng, dt, s[1]),
                running_mean=_r(rng, dt, s[1]),
                running_var=(rng.random(s[1]) + 0.5).astype(dt),
                eps=1e-5,
                momentum=0.1,
                training=tr,
            ),
        )
        for s, tr in [((4, 3), True), ((2, 3, 4), True), ((2, 2, 3, 3), True), ((2, 3, 2), False)]
    ],
    "attention": [
        ("self_causal", lambda rng, dt: _attn(rng, dt, 2, 4, 4, 6, 6, 2, True, True, True, "none")),
        ("cross_mask", lambda rng, dt: _attn(rng, dt, 2, 3, 5, 4, 3, 2, False, True, False, "some")),
        (
            "self_fullmask_nobias",
            lambda rng, dt: _attn(rng, dt, 2, 3, 3, 4, 4, 1, False, False, True, "full"),
        ),
    ],
    "rnn": [
        (
            f"{nl}_{'bi' if bi else 'uni'}_{'last' if last else 'seq'}",
            lambda rng, dt, nl=nl, bi=bi, last=last: dict(
                x=_r(rng, dt, 2, 4, 3),
                **_rnn_params(rng, dt, 1, 3, 5, bi),
                hidden=5,
                bidirectional=bi,
                last=last,
                nonlinearity_tanh=nl == "tanh",
            ),
        )
        for nl, bi, last in [("tanh", False, False), ("relu", True, True), ("tanh", True, False)]
    ]
    + [
        (
            "relu_nobias",
            lambda rng, dt: dict(
                x=_r(rng, dt, 3, 2, 2),
                **_rnn_params(rng, dt, 1, 2, 3, False, bias=False),
                hidden=3,
                bidirectional=False,
                last=False,
                nonlinearity_tanh=False,
            ),
        ),
    ],
    "lstm": [
        (
            f"{'bi' if bi else 'uni'}_{'last' if last else 'seq'}",
            lambda rng, dt, bi=bi, last=last: dict(
                x=_r(rng, dt, 2, 4, 3),
                **_rnn_params(rng, dt, 4, 3, 5, bi),
                hidden=5,
                bidirectional=bi,
                last=last,
            ),
        )
        for bi, last in [(False, False), (True, True), (True, False)]
    ]
    + [
        (
            "nobias_b1_t1",
            lambda rng, dt: dict(
                x=_r(rng, dt, 1, 1, 2),
                **_rnn_params(rng, dt, 4, 2, 3, False, bias=False),
                hidden=3,
                bidirectional=False,
                last=True,
            ),
        ),
    ],
    "gru": [
        (
            f"{'bi' if bi else 'uni'}_{'last' if last else 'seq'}",
            lambda rng, dt, bi=bi, last=last: dict(
                x=_r(rng, dt, 2, 4, 3),
                **_rnn_params(rng, dt, 3, 3, 5, bi),
                hidden=5,
                bidirectional=bi,
                last=last,
            ),
        )
        for bi, last in [(False, False), (True, True), (True, False)]
    ]
    + [
        (
            "nobias_bi",
            lambda rng, dt: dict(
                x=_r(rng, dt, 2, 3, 2),
                **_rnn_params(rng, dt, 3, 2, 4, True, bias=False),
                hidden=4,
                bidirectional=True,
                last=False,
            ),
        ),
    ],
    "cross_entropy": [
        ("plain", lambda rng, dt: _ce(rng, dt, (4,), 5, -100, 0.0, False)),
        ("ignore_smooth_3d", lambda rng, dt: _ce(rng, dt, (2, 3), 4, 1, 0.1, False)),
        ("mask", lambda rng, dt: _ce(rng, dt, (2, 4), 3, -100, 0.0, True)),
    ],
    "bce_with_logits": [
        (
            "2d",
            lambda rng, dt: dict(logits=_r(rng, dt, 3, 4, scale=3.0), target=rng.random((3, 4)).astype(dt)),
        ),
    ],
    "mse": [
        ("2d", lambda rng, dt: dict(pred=_r(rng, dt, 3, 4), target=_r(rng, dt, 3, 4))),
        ("1", lambda rng, dt: dict(pred=_r(rng, dt, 1), target=_r(rng, dt, 1))),
    ],
    "hinge": [
        ("m1", lambda rng, dt: dict(scores=_r(rng, dt, 4, 5), target=_ids(rng, 5, 4), margin=1.0)),
    ],
    "kl_div": [
        ("T1", lambda rng, dt: dict(student=_r(rng, dt, 3, 4), teacher=_r(rng, dt, 3, 4), temperature=1.0)),
        (
            "T2_3d",
            lambda rng, dt: dict(student=_r(rng, dt, 2, 2, 5), teacher=_r(rng, dt, 2, 2, 5), temperature=2.0),
        ),
    ],
}


def all_cases():
    """(op, case_id, build) for every row of the table."""
    return [(op, cid, build) for op, rows in CASES.items() for cid, build in rows]
