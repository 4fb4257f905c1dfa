"""ONNX exporters of rnn, lstm and gru: ONNX's RNN/LSTM/GRU ops, time-major.

graphc keeps PyTorch's parameters (gates i, f, g, o for LSTM; r, z, n for GRU; separate
input and hidden biases), which stay the initializers; the graph reorders them into ONNX's
layout (LSTM i, o, f, c; GRU z, r, h; W [D, G·H, I], R [D, G·H, H], B [D, 2·G·H]) with
Split/Concat, which a runtime folds once. GRU uses `linear_before_reset=1`, PyTorch's form
n = tanh(W_in x + b_in + r·(W_hn h + b_hn)).
"""

from __future__ import annotations

from graphc.export.builder import Emit
from graphc.ops import register

# ONNX gate order as indices into PyTorch's
ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _gates(e: Emit, w: str, kind: str, hidden: int) -> str:
    order = ORDER[kind]
    if len(order) == 1:
        return w
    parts = e.op("Split", w, e.ints([hidden] * len(order)), axis=0, outputs=len(order))
    return e.op("Concat", *(parts[i] for i in order), axis=0)


def _stack(e: Emit, tensors: list[str]) -> str:
    """[D, …] from one tensor per direction."""
    rows = [e.op("Unsqueeze", t, e.ints([0])) for t in tensors]
    return rows[0] if len(rows) == 1 else e.op("Concat", *rows, axis=0)


def _recurrent(kind: str):
    def export(e: Emit) -> str:
        hidden = e.attrs["hidden"]
        dirs = range(2 if e.attrs["bidirectional"] else 1)
        w = _stack(e, [_gates(e, e.param(f"w_ih_{d}"), kind, hidden) for d in dirs])
        r = _stack(e, [_gates(e, e.param(f"w_hh_{d}"), kind, hidden) for d in dirs])
        b = _stack(e, [e.op("Concat", _gates(e, e.param(f"b_ih_{d}"), kind, hidden),
                            _gates(e, e.param(f"b_hh_{d}"), kind, hidden), axis=0) for d in dirs])
        attrs = {"hidden_size": hidden,
                 "direction": "bidirectional" if e.attrs["bidirectional"] else "forward"}
        if kind == "gru":
            attrs["linear_before_reset"] = 1
        if kind == "rnn":
            attrs["activations"] = ["Tanh" if e.attrs["nonlinearity"] == "tanh" else "Relu"] * len(dirs)
        xt = e.op("Transpose", e.input("x"), perm=[1, 0, 2])  # [T, B, I]
        y, y_h = e.op(ONNX_OP[kind], xt, w, r, b, outputs=2, **attrs)[:2]
        if e.attrs["output"] == "last":  # Y_h [D, B, H]: forward at T-1, reverse at 0 (torch's h_n)
            return e.op("Reshape", e.op("Transpose", y_h, perm=[1, 0, 2]), e.ints([0, -1]))
        # Y [T, D, B, H] → [B, T, D·H]
        return e.op("Reshape", e.op("Transpose", y, perm=[2, 0, 1, 3]), e.ints([0, 0, -1]))

    return export


for _kind in ORDER:
    register(_kind, "onnx")(_recurrent(_kind))
