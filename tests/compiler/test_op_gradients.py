"""Gradient check of every op in the REGISTRY through the whole compiled path.

Each row is a tiny spec — inputs, one node of the op under test, and (unless the op is itself a
loss) a loss `sum(y.p * c_p)` for every output p it produces, with a random cotangent input
c_p — compiled in float64 with input gradients on. (`mul` and `sum` run over NumPy, so the
loss adds no Numba specialisations to compile.) Every trainable parameter gradient and every float input gradient is
compared with central finite differences (helpers.check_gradients). So this tier proves the
op's lowering, the generated driver's argument plumbing, the reverse walk and the kernels
together, where tests/kernels only proves the kernels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

from graphc.ops import OPS

from .helpers import check_gradients, compile64, output_types, params64, spec_text, write


@dataclass
class Row:
    op: str
    id: str
    inputs: dict  # name → shape, or (shape, kind) with kind "float" | "int:N" | "mask" | "prob"
    attrs: dict = field(default_factory=dict)
    ins: object = None  # the node's `in:` (default: the inputs in order)
    training: bool = False
    seed: int = 0
    unused: tuple = ()  # output ports left out of the loss
    nondiff: tuple = ()  # float inputs that get no gradient by the op's definition
    prepare: object = None  # (params, rng) → params, e.g. set batchnorm running statistics
    frozen: object = None  # (batch) → {param: row mask} of rows whose gradient is zero by definition
    as_loss: bool = False  # the node itself is the spec's loss (a scalar `sum`/`mean`)


ROWS: list[Row] = []


def row(op, cid, inputs, attrs=None, **kw):
    ROWS.append(Row(op, cid, inputs, attrs or {}, **kw))


def _i(n, *shape):
    return (list(shape), f"int:{n}")


# -- dense
row("linear", "2d", {"x": [3, 4]}, {"out": 5})
row("linear", "nobias", {"x": [3, 4]}, {"out": 2, "bias": False})  # rank 3: test_vjp_identity
row("linear", "size1", {"x": [1, 1]}, {"out": 1})
row("linear", "symbolic-batch", {"x": ["B", 3]}, {"out": 2})
row("embedding", "2d", {"ids": _i(5, 2, 3)}, {"num": 5, "dim": 4})
row("embedding", "padding", {"ids": _i(4, 2, 3)}, {"num": 4, "dim": 3, "padding_idx": 0},
    frozen=lambda batch: {"y.weight": np.arange(4) == 0})
row("positional_encoding", "sinusoidal", {"x": [2, 3, 4]}, {"max_len": 8})
row("positional_encoding", "learned", {"x": [2, 3, 4]}, {"kind": "learned", "max_len": 5})
row("positional_encoding", "learned-T1", {"x": [1, 1, 2]}, {"kind": "learned", "max_len": 1})
row("matmul", "3d-2d", {"a": [2, 3, 4], "b": [4, 5]})
row("matmul", "batch-broadcast", {"a": [2, 1, 3, 4], "b": [3, 4, 2]})
row("matmul", "size1", {"a": [1, 2], "b": [2, 1]})

# -- arithmetic with broadcasting
for _op in ("add", "sub", "mul"):
    row(_op, "same", {"a": [2, 3], "b": [2, 3]})
    row(_op, "B1D-D", {"a": [2, 1, 3], "b": [3]})
    row(_op, "D-B1D", {"a": [3], "b": [2, 1, 3]})
    row(_op, "1-vs-2x3", {"a": [1], "b": [2, 3]})
    row(_op, "outer", {"a": [2, 1, 3], "b": [1, 4, 1]})
row("add", "same-tensor-twice", {"x": [2, 3]}, ins=["x", "x"])
row("mul", "same-tensor-twice", {"x": [2, 3]}, ins=["x", "x"])

for _op in ("sum", "mean"):
    row(_op, "all-keepdims", {"x": [2, 3, 4]}, {"axis": None, "keepdims": True})
    row(_op, "axis1", {"x": [2, 3, 4]}, {"axis": 1})
    row(_op, "axis-1-keepdims", {"x": [2, 3, 4]}, {"axis": -1, "keepdims": True})
    row(_op, "axes0,2", {"x": [2, 3, 4]}, {"axis": [0, 2]})
    row(_op, "size1", {"x": [1, 1]}, {"axis": 0})
    row(_op, "negative-axes", {"x": [2, 3, 4]}, {"axis": [-1, 0]})
    row(_op, "all-as-the-loss", {"x": [2, 3]}, as_loss=True)

# -- activations
# (shapes share a rank where the rank does not matter: each new rank is one more Numba
# specialisation to compile on a cold cache)
for _op in ("relu", "gelu", "tanh", "sigmoid"):
    row(_op, "2d", {"x": [2, 3]})
    row(_op, "size1", {"x": [1, 1]})
    row(_op, "column", {"x": [3, 1]})
for _op in ("softmax", "log_softmax"):
    row(_op, "last", {"x": [2, 3, 4]})
    row(_op, "axis1", {"x": [2, 3, 4]}, {"axis": 1})
    row(_op, "axis0", {"x": [3, 2, 2]}, {"axis": 0})
    row(_op, "size1", {"x": [2, 2, 1]})
    row(_op, "axis-2", {"x": [2, 3, 4]}, {"axis": -2})

# -- dropout: the noise comes from the seed, so differences with the same seed are valid
row("dropout", "p0-train", {"x": [3, 4]}, {"p": 0.0}, training=True)
row("dropout", "p.5-train", {"x": [3, 4]}, {"p": 0.5}, training=True, seed=3)
row("dropout", "p.5-eval", {"x": [3, 4]}, {"p": 0.5})

# -- convolutions and pooling
row("conv1d", "stride-pad", {"x": [2, 3, 7]}, {"out": 4, "kernel": 3, "stride": 2, "padding": 1})
row("conv1d", "groups-dil", {"x": [2, 4, 6]}, {"out": 6, "kernel": 2, "dilation": 2, "groups": 2})
row("conv1d", "nobias-k1", {"x": [1, 2, 1]}, {"out": 1, "kernel": 1, "bias": False})
row("conv2d", "stride-pad-dil-groups", {"x": [2, 4, 6, 5]},
    {"out": 6, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2],
     "groups": 2, "round": "floor"})
row("conv2d", "depthwise", {"x": [1, 3, 4, 4]}, {"out": 3, "kernel": 3, "padding": 1, "groups": 3})
row("conv2d", "k1-nobias", {"x": [2, 2, 1, 1]}, {"out": 3, "kernel": 1, "bias": False})
row("conv2d", "stride2", {"x": [2, 2, 5, 5]}, {"out": 2, "kernel": 3, "stride": 2})
row("conv_transpose2d", "stride-pad-outpad-groups", {"x": [2, 4, 3, 3]},
    {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 2})
row("conv_transpose2d", "dilation", {"x": [1, 2, 3, 2]}, {"out": 3, "kernel": [2, 3], "dilation": 2})
row("conv_transpose2d", "k1-nobias", {"x": [2, 3, 2, 2]}, {"out": 1, "kernel": 1, "bias": False})
for _op in ("maxpool2d", "avgpool2d"):
    row(_op, "k2", {"x": [2, 3, 4, 4]}, {"kernel": 2})
    row(_op, "k3-s1-p1", {"x": [1, 2, 4, 5]}, {"kernel": 3, "stride": 1, "padding": 1})
    row(_op, "rect-floor", {"x": [2, 1, 5, 7]}, {"kernel": [2, 3], "stride": [2, 2], "round": "floor"})
row("global_avgpool", "4d", {"x": [2, 3, 4, 5]})
row("global_avgpool", "size1", {"x": [1, 1, 1, 1]})
row("upsample", "x2", {"x": [2, 3, 2, 3]})
row("upsample", "x3-size1", {"x": [1, 1, 1, 2]}, {"scale": 3})

# -- spatial transformer sampling (random normal grids land inside and outside the image; a
# point within ~1e-5 px of a pixel line, where central differences break, has probability ~1e-4)
row("affine_grid", "3x4", {"theta": [2, 2, 3]}, {"size": [3, 4]})
row("affine_grid", "align-1x5", {"theta": [1, 2, 3]}, {"size": [1, 5], "align_corners": True})
row("grid_sample", "x-and-grid", {"x": [2, 3, 4, 5], "grid": [2, 3, 2, 2]})
row("grid_sample", "align", {"x": [2, 2, 3, 4], "grid": [2, 2, 3, 2]}, {"align_corners": True})
row("grid_sample", "size1-image", {"x": [1, 1, 1, 1], "grid": [1, 2, 2, 2]})
row("grid_sample", "symbolic-batch", {"x": ["B", 2, 3, 3], "grid": ["B", 2, 2, 2]})

# -- data movement
row("flatten", "start1", {"x": [2, 3, 4]})
row("flatten", "start0", {"x": [2, 3]}, {"start": 0})
row("flatten", "start2-4d", {"x": [2, 3, 2, 2]}, {"start": 2})
row("reshape", "minus1", {"x": [2, 3, 4]}, {"shape": [-1, 4]})
row("reshape", "symbolic", {"x": ["B", 6]}, {"shape": ["B", 2, 3]})
row("reshape", "symbolic-minus1", {"x": ["B", 2, 3]}, {"shape": ["B", -1]})
row("transpose", "default", {"x": [2, 3, 4]})
row("transpose", "0-2", {"x": [2, 3, 4]}, {"dim0": 0, "dim1": 2})
row("permute", "3d", {"x": [2, 3, 4]}, {"dims": [2, 0, 1]})
row("permute", "4d", {"x": [2, 1, 3, 2]}, {"dims": [0, 2, 3, 1]})
row("permute", "negative-dims", {"x": [2, 3, 4]}, {"dims": [0, -1, 1]})
row("concat", "three", {"a": [2, 1, 3], "b": [2, 2, 3], "c": [2, 3, 3]}, {"axis": 1}, ins=["a", "b", "c"])
row("concat", "last", {"a": [2, 3], "b": [2, 1]}, ins=["a", "b"])
row("concat", "same-twice", {"a": [2, 3]}, {"axis": 0}, ins=["a", "a"])
row("split", "both-used", {"x": [2, 5]}, {"sizes": [2, 3]})
row("split", "one-unused", {"x": [2, 6, 3]}, {"axis": 1, "sizes": [1, 2, 3]}, unused=("1",))
row("split", "negative-axis", {"x": [2, 3, 4]}, {"axis": -2, "sizes": [2, 1]})
row("slice", "mid", {"x": [2, 5, 3]}, {"axis": 1, "start": 1, "stop": 3})
row("slice", "to-end", {"x": [4, 3]}, {"axis": 0, "start": 2})
row("slice", "size1", {"x": [2, 3]}, {"axis": -1, "start": 0, "stop": 1})

# -- normalization


def _running_stats(params, rng):
    p = dict(params)
    p["y.running_mean"] = rng.standard_normal(p["y.running_mean"].shape)
    p["y.running_var"] = rng.uniform(0.5, 2.0, p["y.running_var"].shape)
    return p


row("layernorm", "3d", {"x": [2, 3, 4]})
row("layernorm", "no-affine", {"x": [3, 1, 5]}, {"affine": False})
row("layernorm", "size1-rows", {"x": [1, 1, 3]})
row("batchnorm", "train-2d", {"x": [4, 3]}, training=True)  # ([B, C, L] is the same reshape)
row("batchnorm", "train-4d", {"x": [2, 2, 3, 3]}, {"momentum": 0.5}, training=True)
row("batchnorm", "eval-4d", {"x": [2, 3, 2, 2]}, prepare=_running_stats)
row("add_norm", "3d", {"x": [2, 3, 4], "y2": [2, 3, 4]})
row("add_norm", "size1", {"x": [1, 1, 5], "y2": [1, 1, 5]})

# -- attention
# (self vs cross and mask vs none are separate Numba specialisations: two of each pairing)
row("attention", "self", {"q": [2, 3, 4]}, {"heads": 2})
row("attention", "causal", {"q": [2, 4, 6]}, {"heads": 3, "causal": True})
row("attention", "causal-T1", {"q": [1, 1, 2]}, {"heads": 1, "causal": True})
row("attention", "cross-padding-mask", {"q": [2, 3, 4], "kv": [2, 5, 6], "m": ([2, 5], "mask")},
    {"heads": 2}, ins={"q": "q", "kv": "kv", "key_padding_mask": "m"}, nondiff=("m",))
row("attention", "cross-mask-nobias", {"q": [2, 2, 4], "kv": [2, 3, 2], "m": ([2, 3], "mask")},
    {"heads": 1, "bias": False}, ins={"q": "q", "kv": "kv", "key_padding_mask": "m"}, nondiff=("m",))

# -- recurrent
for _op in ("rnn", "lstm", "gru"):
    row(_op, "sequence", {"x": [2, 4, 3]}, {"hidden": 3})
    row(_op, "last", {"x": [2, 3, 2]}, {"hidden": 4, "output": "last"})
    row(_op, "bidirectional", {"x": [2, 3, 2]}, {"hidden": 2, "bidirectional": True})
    row(_op, "bidir-last", {"x": [3, 4, 2]}, {"hidden": 2, "bidirectional": True, "output": "last"})
    row(_op, "T1", {"x": [1, 1, 1]}, {"hidden": 1})
row("rnn", "relu", {"x": [2, 3, 2]}, {"hidden": 3, "nonlinearity": "relu"})

# -- losses: the op is the loss
row("cross_entropy", "2d", {"logits": [4, 5], "target": _i(5, 4)})
# [B, T, C] logits with a [B, T] mask: test_torch_oracle (transformer)
row("cross_entropy", "mask-ignore", {"logits": [6, 4], "target": _i(4, 6), "m": ([6], "mask")},
    {"ignore_index": 0}, ins={"logits": "logits", "target": "target", "mask": "m"}, nondiff=("m",))
row("cross_entropy", "smoothing", {"logits": [3, 4], "target": _i(4, 3)}, {"label_smoothing": 0.1})
row("cross_entropy", "one-class", {"logits": [2, 1], "target": _i(1, 2)})
row("bce_with_logits", "2d", {"logits": [3, 4], "target": ([3, 4], "prob")}, nondiff=("target",))
row("bce_with_logits", "size1", {"logits": [1, 1], "target": ([1, 1], "prob")}, nondiff=("target",))
row("mse", "2d", {"pred": [3, 4], "target": [3, 4]})
row("mse", "size1", {"pred": [1, 1], "target": [1, 1]})
row("hinge", "2d", {"scores": [4, 5], "target": _i(5, 4)})
row("hinge", "margin", {"scores": [3, 3], "target": _i(3, 3)}, {"margin": 0.3})
row("hinge", "3d", {"scores": [2, 3, 4], "target": _i(4, 2, 3)})
row("kl_div", "T1", {"student": [1, 3, 4], "teacher": [1, 3, 4]})
row("kl_div", "3d-T2", {"student": [2, 3, 4], "teacher": [2, 3, 4]}, {"temperature": 2.0})

XFAIL: dict[tuple[str, str], str] = {}


def _key(r: Row) -> str:
    return f"{r.op}-{r.id}"


def _input_kinds(r: Row) -> dict[str, tuple[list, str]]:
    return {k: (v if isinstance(v, tuple) else (v, "float")) for k, v in r.inputs.items()}


def _spec(r: Row, targets: dict | None = None) -> str:
    inputs = {k: (shape, "int64" if kind.startswith("int") else "float32")
              for k, (shape, kind) in _input_kinds(r).items()}
    ins = r.ins if r.ins is not None else list(r.inputs)
    if r.op == "add_norm":
        ins = {"x": "x", "y": "y2"}
    ins = ins[0] if isinstance(ins, list) and len(ins) == 1 else ins
    nodes = {"y": {"op": r.op, "in": ins, **r.attrs}}
    if OPS[r.op].loss or r.as_loss:
        return spec_text(inputs, nodes, losses=["y"])
    losses = []
    for port, shape in (targets or {}).items():  # loss_p = sum(y.p * c_p): cotangent c_p
        inputs[f"c_{port}"] = shape
        ref = "y" if port == "out" else f"y.{port}"
        nodes[f"weighted_{port}"] = {"op": "mul", "in": [ref, f"c_{port}"]}
        nodes[f"loss_{port}"] = {"op": "sum", "in": f"weighted_{port}"}
        losses.append(f"loss_{port}")
    return spec_text(inputs, nodes, outputs=[] if targets else ["y"], losses=losses)


def _dim(d, sizes):
    return int(d) if d.is_Integer else int(d.subs(sizes))


def _build(r: Row, tmp_path):
    """Compile the row's spec: first the bare node (to learn its output shapes), then with losses."""
    if OPS[r.op].loss or r.as_loss:
        return compile64(write(tmp_path, _spec(r)))
    types = output_types(write(tmp_path, _spec(r), "bare.yaml"))
    targets = {port: [str(d) if not d.is_Integer else int(d) for d in types[("y", port)].shape]
               for (node, port) in types if node == "y" and port not in r.unused}
    return compile64(write(tmp_path, _spec(r, targets)))


def _batch(model, r: Row, rng, batch_size=3):
    sizes = {}
    out = {}
    kinds = _input_kinds(r)
    for name, spec in model.inputs.items():
        shape = []
        for d in spec.shape:
            if isinstance(d, str):
                d = sizes.setdefault(d, batch_size)
            shape.append(d)
        kind = kinds.get(name, (None, "float"))[1]
        if kind.startswith("int:"):
            out[name] = rng.integers(0, int(kind[4:]), size=shape)
        elif kind == "mask":  # 1 marks padding; keep key 0 of every row visible
            m = (rng.random(shape) < 0.4).astype(np.float64)
            m[..., 0] = 0.0 if r.op == "attention" else 1.0
            out[name] = m
        elif kind == "prob":
            out[name] = rng.uniform(0.0, 1.0, shape)
        else:
            out[name] = rng.standard_normal(shape)
    return out


@pytest.mark.parametrize("r", ROWS, ids=_key)
def test_gradients_match_finite_differences(r: Row, tmp_path):
    rng = np.random.default_rng(zlib.crc32(_key(r).encode()))
    model = _build(r, tmp_path)
    params = params64(model, 0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) if model.params[k].trainable else v
              for k, v in params.items()}  # away from symmetric inits (γ=1, β=0, zero biases)
    if r.prepare:
        params = r.prepare(params, rng)
    batch = _batch(model, r, rng)
    floats = {n for n, s in model.inputs.items() if s.dtype != "int64"}
    frozen = r.frozen(batch) if r.frozen else None
    n = check_gradients(model, params, batch, training=r.training, seed=r.seed, rng=rng,
                        expect_inputs=floats - set(r.nondiff), frozen_rows=frozen)
    assert n >= 1


def test_every_registered_op_has_a_gradient_row():
    covered = {r.op for r in ROWS}
    missing = sorted(set(OPS) - covered)
    assert not missing, f"ops in graphc.ops.OPS without a gradient-check row: {', '.join(missing)}"
    unknown = sorted(covered - set(OPS))
    assert not unknown, f"gradient rows for ops that are not registered: {unknown}"


def test_row_ids_are_unique():
    keys = [_key(r) for r in ROWS]
    assert len(keys) == len(set(keys))
