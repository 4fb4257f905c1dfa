"""Convolutions, pooling and resampling over [B, C, L] and [B, C, H, W] (PyTorch layouts).

Output sizes follow H_out = (H + 2·padding - dilation·(k - 1) - 1) / stride + 1. When that is
not a whole number the spec is wrong: graphc reports it instead of flooring silently.
"""

from __future__ import annotations

from graphc.ops.init import uniform_fan_in
from graphc.ops.registry import Attr, Kernel, ParamDef, ShapeError, defop
from graphc.shapes import fmt_dim


def _conv_attrs(spatial: str) -> dict:
    kind = "int" if spatial == "1d" else "int2"
    return {
        "out": Attr("int", doc="output channels", min=1),
        "kernel": Attr(kind, doc="kernel size (k or [kh, kw])"),
        "stride": Attr(kind, 1, "step between windows"),
        "padding": Attr(kind, 0, "zeros added on each side"),
        "dilation": Attr(kind, 1, "spacing between kernel taps"),
        "groups": Attr("int", 1, "channel groups (groups = C_in: depthwise)", min=1),
        "bias": Attr("bool", True, "add a learned bias per output channel"),
        **_round_attr(),
    }


def _round_attr() -> dict:
    return {"round": Attr("str", "exact", "exact: a size that is not whole is an error; floor: drop "
                          "the last partial window (PyTorch's behaviour)", choices=("exact", "floor"))}


def _pair(v) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def _check_window(c, **values) -> None:
    """Kernel, stride and dilation are at least 1, padding (and output_padding) at least 0."""
    for name, v in values.items():
        low = 0 if "padding" in name else 1
        if v < low:
            c.fail(f"{name} must be ≥ {low}, found {v}", attr=name)


def out_size(c, size, k, s, p, d, axis: str):
    import sympy

    _check_window(c, kernel=k, stride=s, padding=p, dilation=d)
    span = d * (k - 1) + 1
    n = (size + 2 * p - span) / s + 1
    if c.attrs.get("round") == "floor":
        n = sympy.floor((size + 2 * p - span) / s) + 1
    what = f"output {axis} ((in {fmt_dim(size)} + 2·{p} - {span}) / {s} + 1)"
    try:
        return c.whole(n, what, attr="stride" if s > 1 else "kernel")
    except ShapeError as exc:
        exc.hint = (f"{exc.hint}; or set `round: floor` to drop the last partial window, as PyTorch "
                    "does") if "whole" in str(exc) else exc.hint
        raise


def _check_groups(c, cin, cout):
    g = c.attrs["groups"]
    if cin.is_Integer and int(cin) % g:
        c.fail(f"groups={g} does not divide the {cin} input channels", attr="groups")
    if cout % g:
        c.fail(f"groups={g} does not divide out={cout}", attr="groups")


def _conv_params(c, transposed=False):
    x = c.inputs["x"]
    cin = c.concrete(x.shape[1], "the input channel axis", port="x")
    g, out = c.attrs["groups"], c.attrs["out"]
    ks = _pair(c.attrs["kernel"])
    taps = 1
    for k in ks:
        taps *= k
    if transposed:  # PyTorch: weight [C_in, C_out/groups, kh, kw]; fan_in uses dim 1
        shape, fan_in = (cin, out // g, *ks), (out // g) * taps
    else:
        shape, fan_in = (out, cin // g, *ks), (cin // g) * taps
    params = {"weight": ParamDef(shape, uniform_fan_in(fan_in))}
    if c.attrs["bias"]:
        params["bias"] = ParamDef((out,), uniform_fan_in(fan_in), decay=False)
    return params


def _conv_flops(c):
    x, y = c.inputs["x"], c.outputs["out"]
    taps = 1
    for k in _pair(c.attrs["kernel"]):
        taps *= k
    return 2 * y.numel() * (x.shape[1] / c.attrs["groups"]) * taps


def _pairs(a: dict, **names: str) -> dict:
    """`kernel: [3, 3]` → kh=3, kw=3 style flat kernel arguments."""
    out = {}
    for spec_name, short in names.items():
        out[f"{short}_h"], out[f"{short}_w"] = a[spec_name]
    return out


_CONV2D = ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "has_bias")


def _lower_conv2d(a: dict, rank: int) -> dict:
    return {**_pairs(a, stride="stride", padding="pad", dilation="dil"), "groups": a["groups"],
            "has_bias": a["bias"]}


@defop("conv1d", family="conv", attrs=_conv_attrs("1d"), params=_conv_params, flops=_conv_flops,
       kernel=Kernel("conv", params=("weight", "bias"), skips=("x",),
                     attrs=("stride", "padding", "dilation", "groups", "has_bias")),
       lower=lambda a, rank: {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
                              "groups": a["groups"], "has_bias": a["bias"]},
       tags=("position",))
def conv1d(c):
    """1-D convolution over [B, C, L] → [B, out, L_out]."""
    x = c.input("x", ranks=(3,))
    _check_groups(c, x.shape[1], c.attrs["out"])
    a = c.attrs
    n = out_size(c, x.shape[2], a["kernel"], a["stride"], a["padding"], a["dilation"], "length")
    return x.with_shape((x.shape[0], a["out"], n))


@defop("conv2d", family="conv", attrs=_conv_attrs("2d"), params=_conv_params, flops=_conv_flops,
       kernel=Kernel("conv", params=("weight", "bias"), attrs=_CONV2D, skips=("x",)),
       lower=_lower_conv2d)
def conv2d(c):
    """2-D convolution over [B, C, H, W] → [B, out, H_out, W_out]; groups=C is depthwise."""
    x = c.input("x", ranks=(4,))
    _check_groups(c, x.shape[1], c.attrs["out"])
    a = c.attrs
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    h = out_size(c, x.shape[2], kh, sh, ph, dh, "height")
    w = out_size(c, x.shape[3], kw, sw, pw, dw, "width")
    return x.with_shape((x.shape[0], a["out"], h, w))


@defop("conv_transpose2d", family="conv",
       kernel=Kernel("conv_transpose", params=("weight", "bias"), skips=("x",),
                     attrs=(*_CONV2D[:4], "out_pad_h", "out_pad_w", *_CONV2D[4:])),
       lower=lambda a, rank: {**_lower_conv2d(a, rank), **_pairs(a, output_padding="out_pad")},
       attrs={**{k: a for k, a in _conv_attrs("2d").items() if k != "round"},
              "output_padding": Attr("int2", 0, "extra size added to one side of the output")},
       params=lambda c: _conv_params(c, transposed=True),
       flops=lambda c: 2 * c.inputs["x"].numel() * (c.attrs["out"] / c.attrs["groups"])
       * c.attrs["kernel"][0] * c.attrs["kernel"][1])
def conv_transpose2d(c):
    """Transposed convolution (learned upsampling, U-Net decoders):
    H_out = (H - 1)·stride - 2·padding + dilation·(k - 1) + output_padding + 1."""
    x = c.input("x", ranks=(4,))
    _check_groups(c, x.shape[1], c.attrs["out"])
    a = c.attrs
    sizes = []
    for i, axis in enumerate(("height", "width")):
        k, s, p, d, op = (a[n][i] for n in ("kernel", "stride", "padding", "dilation", "output_padding"))
        _check_window(c, kernel=k, stride=s, padding=p, dilation=d, output_padding=op)
        if op >= max(s, d):
            c.fail(f"output_padding {op} must be smaller than stride or dilation", attr="output_padding")
        sizes.append(c.whole((x.shape[2 + i] - 1) * s - 2 * p + d * (k - 1) + op + 1, f"output {axis}"))
    return x.with_shape((x.shape[0], a["out"], *sizes))


def _pool_attrs():
    return {"kernel": Attr("int2", doc="window size"),
            "stride": Attr("int2", None, "step between windows (default: the kernel size)"),
            "padding": Attr("int2", 0, "padding on each side"),
            **_round_attr()}


def _pool(c):
    x = c.input("x", ranks=(4,))
    a = c.attrs
    stride = a["stride"] or a["kernel"]
    for k, st, p in zip(a["kernel"], stride, a["padding"], strict=True):
        _check_window(c, kernel=k, stride=st, padding=p)
        if p > k // 2:
            c.fail(f"padding {p} must be at most half the kernel {k}", attr="padding")
    h = out_size(c, x.shape[2], a["kernel"][0], stride[0], a["padding"][0], 1, "height")
    w = out_size(c, x.shape[3], a["kernel"][1], stride[1], a["padding"][1], 1, "width")
    return x.with_shape((x.shape[0], x.shape[1], h, w))


_POOL_KERNEL = Kernel("pool", attrs=("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w"))


def _lower_pool(a: dict, rank: int) -> dict:
    kh, kw = a["kernel"]
    return {"kh": kh, "kw": kw, "stride_h": (a["stride"] or a["kernel"])[0],
            "stride_w": (a["stride"] or a["kernel"])[1], **_pairs(a, padding="pad")}


def _pool_flops(c):
    k = c.attrs["kernel"]
    return c.outputs["out"].numel() * k[0] * k[1]


@defop("maxpool2d", family="pool", attrs=_pool_attrs(), flops=_pool_flops,
       kernel=Kernel("pool", attrs=_POOL_KERNEL.attrs, saved=1), lower=_lower_pool)
def maxpool2d(c):
    """Max over each window of [B, C, H, W]."""
    return _pool(c)


@defop("avgpool2d", family="pool", attrs=_pool_attrs(), flops=_pool_flops, kernel=_POOL_KERNEL,
       lower=_lower_pool)
def avgpool2d(c):
    """Average over each window of [B, C, H, W] (zero padding counts, as in PyTorch)."""
    return _pool(c)


@defop("global_avgpool", family="pool", flops=lambda c: c.inputs["x"].numel(), kernel=Kernel("pool"))
def global_avgpool(c):
    """Average over all spatial positions: [B, C, H, W] → [B, C]."""
    x = c.input("x", ranks=(4,))
    return x.with_shape(x.shape[:2])


@defop("upsample", family="pool", kernel=Kernel("pool", attrs=("scale",)),
       attrs={"scale": Attr("int", 2, "integer scale factor", min=1),
              "mode": Attr("str", "nearest", "interpolation", choices=("nearest",))},
       flops=lambda c: c.outputs["out"].numel())
def upsample(c):
    """Nearest-neighbour upsampling of [B, C, H, W] by an integer factor."""
    x = c.input("x", ranks=(4,))
    s = c.attrs["scale"]
    return x.with_shape((x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s))
