"""Normalization: layernorm and rmsnorm (per sample), batchnorm (per feature over the batch), add_norm."""

from __future__ import annotations

from graphc.ops.init import ONES, ZEROS
from graphc.ops.registry import Attr, Kernel, ParamDef, Port, defop


def _check_eps(c) -> None:
    if c.attrs["eps"] < 0:
        c.fail(f"eps must be ≥ 0, found {c.attrs['eps']:g}", attr="eps",
               hint="eps keeps the division away from zero: 1e-5 is usual")


def _affine(c, port="x", axis=-1, what="the normalized (last) axis"):
    d = c.concrete(c.inputs[port].shape[axis], what, port=port)
    return {"weight": ParamDef((d,), ONES, decay=False), "bias": ParamDef((d,), ZEROS, decay=False)}


@defop("layernorm", family="norm", tags=("norm",),
       kernel=Kernel("norm", params=("weight", "bias"), attrs=("eps", "affine"), saved=2, saved_ranks=(1, 1)),
       attrs={"eps": Attr("float", 1e-5, "added to the variance"),
              "affine": Attr("bool", True, "learn a gain γ and offset β")},
       params=lambda c: _affine(c) if c.attrs["affine"] else {},
       flops=lambda c: 8 * c.inputs["x"].numel())
def layernorm(c):
    """(x - mean) / √(var + eps) · γ + β, statistics over the last axis of each sample."""
    _check_eps(c)
    return c.input("x", min_rank=1)


@defop("rmsnorm", family="norm", tags=("norm",),
       kernel=Kernel("norm", params=("weight",), attrs=("eps",), saved=1),
       attrs={"eps": Attr("float", 1e-6, "added to the mean square (PyTorch's RMSNorm default, "
                                         "eps=None, means the dtype's machine epsilon)")},
       params=lambda c: {"weight": _affine(c)["weight"]},
       flops=lambda c: 4 * c.inputs["x"].numel())
def rmsnorm(c):
    """x / √(mean(x²) + eps) · γ over the last axis (RMSNorm: LayerNorm without centring or β;
    Llama's norm). γ=1 at init."""
    _check_eps(c)
    return c.input("x", min_rank=1)


def _bn_params(c):
    p = _affine(c, axis=1, what="the channel axis (1)")
    (d,) = p["weight"].shape
    p["running_mean"] = ParamDef((d,), ZEROS, decay=False, trainable=False)
    p["running_var"] = ParamDef((d,), ONES, decay=False, trainable=False)
    return p


@defop("batchnorm", family="norm", stochastic=True, tags=("norm",),
       kernel=Kernel("norm", params=("weight", "bias"), attrs=("eps", "momentum"), saved=2,
                     buffers=("running_mean", "running_var"), mode=True),
       attrs={"eps": Attr("float", 1e-5, "added to the variance"),
              "momentum": Attr("float", 0.1, "weight of the new batch in the running averages")},
       params=_bn_params, flops=lambda c: 8 * c.inputs["x"].numel())
def batchnorm(c):
    """Per-channel statistics over the batch (and spatial axes) of [B, C], [B, C, L] or
    [B, C, H, W]; running averages are used at inference. γ=1, β=0 at init."""
    x = c.input("x", ranks=(2, 3, 4))
    _check_eps(c)
    if not 0.0 < c.attrs["momentum"] <= 1.0:
        c.fail(f"momentum must be in (0, 1], found {c.attrs['momentum']}", attr="momentum")
    return x


@defop("add_norm", family="norm", inputs=("x", Port("y")), tags=("norm", "skip"),
       kernel=Kernel("norm", params=("weight", "bias"), attrs=("eps",), saved=2, saved_ranks=(1, 1)),
       attrs={"eps": Attr("float", 1e-5, "added to the variance")},
       params=lambda c: _affine(c),
       flops=lambda c: 9 * c.inputs["x"].numel())
def add_norm(c):
    """Transformer "Add & Norm": layernorm(x + y), the residual add then LayerNorm."""
    x, y = c.input("x", min_rank=1), c.input("y", min_rank=1)
    _check_eps(c)
    if x.rank != y.rank:
        c.fail(f"the residual and the sublayer output differ in rank: {x} vs {y}", port="y")
    for i, (a, b) in enumerate(zip(x.shape, y.shape, strict=True)):
        c.same(b, a, f"axis {i} of `y` must match the residual `x` {x}", port="y")
    return x
