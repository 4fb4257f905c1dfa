"""Recurrent layers over [B, T, I], batch first, PyTorch parameter layouts and gate orders."""

from __future__ import annotations

from graphc.ops.init import uniform_fan_in
from graphc.ops.registry import Attr, Kernel, ParamDef, defop

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _attrs(kind: str) -> dict:
    attrs = {
        "hidden": Attr("int", doc="hidden state size", min=1),
        "bidirectional": Attr("bool", False, "also run right-to-left and concatenate"),
        "output": Attr("str", "sequence", "every step [B, T, D·H] or the final state [B, D·H]",
                       choices=("sequence", "last")),
    }
    if kind == "rnn":
        attrs["nonlinearity"] = Attr("str", "tanh", "activation", choices=("tanh", "relu"))
    return attrs


def _params(kind):
    def params(c):
        i = c.concrete(c.inputs["x"].shape[-1], "the input feature axis", port="x")
        h, g = c.attrs["hidden"], GATES[kind]
        init = uniform_fan_in(h)  # PyTorch: every weight and bias U(-1/√H, 1/√H)
        out = {}
        for d in range(2 if c.attrs["bidirectional"] else 1):
            out[f"w_ih_{d}"] = ParamDef((g * h, i), init)
            out[f"w_hh_{d}"] = ParamDef((g * h, h), init)
            out[f"b_ih_{d}"] = ParamDef((g * h,), init, decay=False)
            out[f"b_hh_{d}"] = ParamDef((g * h,), init, decay=False)
        return out

    return params


def _flops(kind):
    def flops(c):
        b, t, i = c.inputs["x"].shape
        h, g = c.attrs["hidden"], GATES[kind]
        dirs = 2 if c.attrs["bidirectional"] else 1
        return dirs * b * t * (2 * g * h * (i + h) + 4 * g * h)

    return flops


def _rule(kind: str, doc: str):
    def rule(c):
        x = c.input("x", ranks=(3,))
        width = c.attrs["hidden"] * (2 if c.attrs["bidirectional"] else 1)
        b, t = x.shape[0], x.shape[1]
        return x.with_shape((b, t, width) if c.attrs["output"] == "sequence" else (b, width))

    rule.__doc__ = doc
    flags = ("bidirectional", "last") + (("nonlinearity_tanh",) if kind == "rnn" else ())
    # wrappers over per-direction Numba cores (the output's rank depends on `output`)
    kernel = Kernel("recurrent", params=_KERNEL_PARAMS, attrs=flags, saved=1 if kind == "rnn" else 3,
                    skips=("x",))
    defop(kind, family="recurrent", attrs=_attrs(kind), params=_params(kind), flops=_flops(kind),
          kernel=kernel, lower=_lowering(kind), tags=("position",))(rule)


# every direction's weights, whether or not the spec has them (absent ones are passed empty)
_KERNEL_PARAMS = tuple(f"{w}_{d}" for d in (0, 1) for w in ("w_ih", "w_hh", "b_ih", "b_hh"))


def _lowering(kind: str):
    def lower(a: dict, rank: int) -> dict:
        flags = {"bidirectional": a["bidirectional"], "last": a["output"] == "last"}
        if kind == "rnn":
            flags["nonlinearity_tanh"] = a["nonlinearity"] == "tanh"
        return flags

    return lower


_rule("rnn", "Vanilla RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).")
_rule("lstm", "LSTM with input, forget, cell and output gates (i, f, g, o) and a cell state c.")
_rule("gru", "GRU with reset and update gates: n = tanh(W_in x + b_in + r·(W_hn h + b_hn)).")
