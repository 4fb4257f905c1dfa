"""A seeded generator of small random specs that chain shape-changing ops over symbolic dims,
each with an independent NumPy forward (tests/compiler/test_shape_fuzz.py runs them).

A generated `Case` is a spec (inputs, nodes, outputs, losses) plus, per node, a NumPy function
of the values computed so far and the parameters. The NumPy side computes sizes on its own (as
PyTorch does, flooring where `round: floor` says so) and raises `Misfit` where the batch's dims
make a node impossible: a size of an `exact` conv or pool that is not whole, an empty output, a
slice past the end of its axis. For such dims the compiled model must refuse the batch
(InputError); for all others its shapes must be the front end's, evaluated at those dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from tests.op_cases import np_attention, np_conv2d, np_conv_transpose2d, np_pool


class Misfit(Exception):
    """These dims make a node of the spec impossible (the model must raise InputError)."""


@dataclass
class Case:
    seed: int
    inputs: dict = field(default_factory=dict)  # name → shape list or (shape, dtype)
    nodes: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)  # node → fn(values, params) → array
    outputs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    dims: tuple = ()  # the symbolic dims the inputs use
    expr_input: str | None = None  # an input with an axis declared as an expression (2*B)
    infer: object = None  # node → its inferred TensorType (the front end on the spec so far), or None
    n: int = 0

    def add(self, op: str, inp, ref, **attrs) -> str:
        name = f"n{self.n}_{op}"
        self.n += 1
        self.nodes[name] = {"op": op} | ({} if inp is None else {"in": inp}) | attrs
        self.refs[name] = ref
        return name


def _exact(n_num: int, s: int, what: str) -> int:
    """(size + 2p - span) / s + 1 for an `exact` window: a whole number ≥ 1, else Misfit."""
    if n_num < 0 or n_num % s:
        raise Misfit(f"{what}: {n_num}/{s} + 1 is not a whole size ≥ 1")
    return n_num // s + 1


def _window_check(size: int, k: int, s: int, p: int, d: int, rnd: str, what: str) -> None:
    num = size + 2 * p - d * (k - 1) - 1
    if rnd == "floor":
        if num < 0:
            raise Misfit(f"{what}: window larger than the padded input")
    else:
        _exact(num, s, what)


def _positive(x: np.ndarray, what: str) -> np.ndarray:
    if 0 in x.shape:
        raise Misfit(f"{what}: empty output {x.shape}")
    return x


# ----------------------------------------------------------------------------- the ops
def _conv2d(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    k = [int(rng.integers(1, 4)) for _ in range(2)]
    s = [int(rng.integers(1, 4)) for _ in range(2)]
    p = [int(rng.integers(0, 3)) for _ in range(2)]
    d = [int(rng.integers(1, 3)) for _ in range(2)]
    depthwise = c > 1 and rng.random() < 0.3
    g = c if depthwise else 1
    out = g * int(rng.integers(1, 3)) if depthwise else int(rng.integers(1, 4))
    rnd = str(rng.choice(["floor", "exact"]))
    bias = bool(rng.random() < 0.7)

    def ref(v, P, name):
        x = v[cur]
        for ax in range(2):
            _window_check(x.shape[2 + ax], k[ax], s[ax], p[ax], d[ax], rnd, name)
        return _positive(np_conv2d(x, P[f"{name}.weight"], P.get(f"{name}.bias"), s, p, d, g), name)

    name = case.add("conv2d", cur, None, out=out, kernel=k, stride=s, padding=p, dilation=d,
                    groups=g, bias=bias, round=rnd)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, out


def _conv1d(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    k, s, p, d = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
    g = c if c > 1 and rng.random() < 0.3 else 1
    out = g * int(rng.integers(1, 3))
    rnd = str(rng.choice(["floor", "exact"]))

    def ref(v, P, name):
        x = v[cur]
        _window_check(x.shape[2], k, s, p, d, rnd, name)
        w = P[f"{name}.weight"][:, :, None, :]
        y = np_conv2d(x[:, :, None, :], w, P[f"{name}.bias"], (1, s), (0, p), (1, d), g)
        return _positive(y[:, :, 0, :], name)

    name = case.add("conv1d", cur, None, out=out, kernel=k, stride=s, padding=p, dilation=d, groups=g,
                    round=rnd)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, out


def _conv_transpose2d(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    k = [int(rng.integers(1, 4)) for _ in range(2)]
    s = [int(rng.integers(1, 3)) for _ in range(2)]
    p = [int(rng.integers(0, 2)) for _ in range(2)]
    d = [int(rng.integers(1, 3)) for _ in range(2)]
    op = [int(rng.integers(0, max(s[i], d[i]))) for i in range(2)]
    g = c if c > 1 and rng.random() < 0.3 else 1
    out = g * int(rng.integers(1, 3)) if g > 1 else int(rng.integers(1, 4))

    def ref(v, P, name):
        y = np_conv_transpose2d(v[cur], P[f"{name}.weight"], P[f"{name}.bias"], s, p, op, d, g)
        return _positive(y, name)

    name = case.add("conv_transpose2d", cur, None, out=out, kernel=k, stride=s, padding=p, dilation=d,
                    output_padding=op, groups=g)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, out


def _pool(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    kind = str(rng.choice(["max", "avg"]))
    k = [int(rng.integers(1, 4)) for _ in range(2)]
    stride = None if rng.random() < 0.4 else [int(rng.integers(1, 4)) for _ in range(2)]
    pad = [int(rng.integers(0, k[i] // 2 + 1)) for i in range(2)]
    rnd = str(rng.choice(["floor", "exact"]))

    def ref(v, P, name):
        x = v[cur]
        st = stride or k
        for ax in range(2):
            _window_check(x.shape[2 + ax], k[ax], st[ax], pad[ax], 1, rnd, name)
        a = SimpleNamespace(kernel=k, padding=pad, stride=stride)
        return _positive(np_pool(SimpleNamespace(x=x), a, kind), name)

    attrs = {"kernel": k, "padding": pad, "round": rnd} | ({"stride": stride} if stride else {})
    name = case.add(f"{kind}pool2d", cur, None, **attrs)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, c


def _upsample(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    sc = int(rng.integers(1, 3))
    return case.add("upsample", cur, lambda v, P: v[cur].repeat(sc, 2).repeat(sc, 3), scale=sc), c


def _slice(case: Case, rng, cur: str, c: int, axes=(2, 3)) -> tuple[str, int]:
    ax = int(rng.choice(axes))
    start = int(rng.integers(0, 2))
    stop = None if rng.random() < 0.5 else start + int(rng.integers(1, 4))

    def ref(v, P):
        x = v[cur]
        n = x.shape[ax]
        if start >= n or (stop is not None and stop > n):
            raise Misfit(f"slice {start}:{stop} of an axis of {n}")
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(start, stop)
        return x[tuple(idx)]

    return case.add("slice", cur, ref, axis=ax, start=start, stop=stop), c


def _concat(case: Case, rng, cur: str, c: int, axes=(1, 2, 3)) -> tuple[str, int]:
    ax = int(rng.choice(axes))
    t = case.add("tanh", cur, lambda v, P: np.tanh(v[cur]))
    name = case.add("concat", [cur, t], lambda v, P: np.concatenate([v[cur], v[t]], ax), axis=ax)
    return name, 2 * c if ax == 1 else c


def _split(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    if c < 2:
        return _tanh(case, rng, cur, c)
    a = int(rng.integers(1, c))
    name = case.add("split", cur, lambda v, P: (v[cur][:, :a], v[cur][:, a:]), axis=1, sizes=[a, c - a])
    swap = case.add("concat", [f"{name}.1", f"{name}.0"],
                    lambda v, P: np.concatenate([v[name][1], v[name][0]], 1), axis=1)
    return swap, c


def _tanh(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    return case.add("tanh", cur, lambda v, P: np.tanh(v[cur])), c


def _transpose_hw(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    return case.add("permute", cur, lambda v, P: v[cur].transpose(0, 1, 3, 2), dims=[0, 1, 3, 2]), c


def _reshape_swap(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    """Viewed as [B, C, W, H] of the input's W and H (not a transpose): a target of symbolic
    dims (the front end refuses it unless the sizes agree for every H and W)."""
    if "H" not in case.dims:  # an image made from a signal
        return _tanh(case, rng, cur, c)
    return case.add("reshape", cur, lambda v, P: v[cur].reshape(*v[cur].shape[:2], *v["x"].shape[:1:-1]),
                    shape=["B", c, "W", "H"]), c


def _channel_scale(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    """× a learned [1, C, 1, 1] gain: a broadcast whose gradient sums over B, H and W."""
    gain = case.add("param", None, None, shape=[1, c, 1, 1], init="normal(1.0)")
    case.refs[gain] = lambda v, P: P[f"{gain}.weight"]
    return case.add("mul", [cur, gain], lambda v, P: v[cur] * v[gain]), c


def _mean_last(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    """Mean over the last axis, kept: [B, C, H, 1] (a negative axis, keepdims)."""
    return case.add("mean", cur, lambda v, P: v[cur].mean(-1, keepdims=True), axis=[-1], keepdims=True), c


def spec_dim(d) -> str:
    """A size as the spec writes it: `/` stays exact (`W/3 + 2/3`, whole only where the front
    end proved it), a floor is `//` (`(H - 1) // 3`: the spec's floor() takes numbers only)."""
    import sympy

    from graphc.compiler.codegen import pyexpr

    floors = {f: sympy.Symbol(f"_f{i}") for i, f in enumerate(d.atoms(sympy.floor))}
    text = str(d.xreplace(floors))
    for f, sym in floors.items():
        text = text.replace(sym.name, f"({pyexpr(f)})")
    return text


def _roundtrip(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    """Flatten to [B, -1] and reshape back to the shape the front end inferred, written in the
    spec's integer syntax (`(H - 1) // 3 + 1`): the expression parser, symbolic equality of
    sizes and the driver's evaluation of a symbolic target. The values come back unchanged."""
    t = case.infer(cur) if case.infer else None
    if t is None or t.rank < 2:
        return _tanh(case, rng, cur, c)
    target = ["B", *(int(d) if d.is_Integer else spec_dim(d) for d in t.shape[1:])]
    hole = int(rng.integers(1, len(target)))
    if rng.random() < 0.5:
        target[hole] = -1
    flat = case.add("reshape", cur, lambda v, P: v[cur].reshape(len(v[cur]), -1), shape=["B", -1])
    return case.add("reshape", flat, lambda v, P: v[flat].reshape(v[cur].shape), shape=target), c


def _expand_gain(case: Case, rng, cur: str, c: int) -> tuple[str, int]:
    """A learned [1, C, 1, 1] gain expanded to the inferred shape written out (`B`, `(H - 1) // 3
    + 1`, …): the driver evaluates a symbolic target; the backward sums over the copies."""
    t = case.infer(cur) if case.infer else None
    if t is None:
        return _tanh(case, rng, cur, c)
    gain = case.add("param", None, lambda v, P: None, shape=[1, c, 1, 1], init="normal(1.0)")
    case.refs[gain] = lambda v, P: P[f"{gain}.weight"]
    target = ["B", c, *(int(d) if d.is_Integer else spec_dim(d) for d in t.shape[2:])]
    big = case.add("expand", gain, lambda v, P: np.broadcast_to(v[gain], v[cur].shape), shape=target)
    return case.add("add", [cur, big], lambda v, P: v[cur] + v[big]), c


IMAGE_OPS = [_conv2d, _conv2d, _conv_transpose2d, _pool, _pool, _upsample, _slice, _concat, _split,
             _transpose_hw, _reshape_swap, _channel_scale, _mean_last, _roundtrip, _expand_gain]


def _linear(case: Case, rng, cur: str, e: int, out: int | None = None) -> tuple[str, int]:
    out = out or int(rng.integers(1, 5))
    bias = bool(rng.random() < 0.7)

    def ref(v, P, name):
        y = v[cur] @ P[f"{name}.weight"].T
        return y + P[f"{name}.bias"] if bias else y

    name = case.add("linear", cur, None, out=out, bias=bias)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, out


def _self_scores(case: Case, rng, cur: str, e: int) -> tuple[str, int]:
    """softmax(x xᵀ) x over [B, T, E]: a [B, T, T] matmul of two symbolic axes."""
    xt = case.add("transpose", cur, lambda v, P: v[cur].transpose(0, 2, 1))
    s = case.add("matmul", [cur, xt], lambda v, P: v[cur] @ v[xt])

    def softmax(v, P):
        z = np.exp(v[s] - v[s].max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    if rng.random() < 0.5:  # the future masked: -inf above the diagonal of [T, T]
        s = case.add("causal_mask", s, lambda v, P, s=s: np.where(np.triu(np.ones(v[s].shape[-2:], bool), 1),
                                                                   -np.inf, v[s]))
    p = case.add("softmax", s, softmax, axis=-1)
    return case.add("matmul", [p, cur], lambda v, P: v[p] @ v[cur]), e


def _layernorm(case: Case, rng, cur: str, e: int) -> tuple[str, int]:
    def ref(v, P, name):
        x = v[cur]
        y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return y * P[f"{name}.weight"] + P[f"{name}.bias"]

    name = case.add("layernorm", cur, None)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, e


def _attention(case: Case, rng, cur: str, e: int) -> tuple[str, int]:
    if e % 2:
        cur, e = _linear(case, rng, cur, e, out=4)
    heads = int(rng.choice([h for h in (1, 2) if e % h == 0]))
    causal = bool(rng.random() < 0.5)

    def ref(v, P, name):
        t = SimpleNamespace(q=v[cur], kv=None, key_padding_mask=None,
                            **{w: P[f"{name}.{w}"] for w in ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")})
        return np_attention(t, SimpleNamespace(heads=heads, causal=causal))

    name = case.add("attention", cur, None, heads=heads, causal=causal)
    case.refs[name] = lambda v, P, name=name: ref(v, P, name)
    return name, e


# ----------------------------------------------------------------------------- whole specs
def generate(seed: int, length: int | None = None, infer=None) -> Case:
    """A random chain: an image [B, C, H, W], a signal [B, C, L] or tokens [B, T] → ops that
    move between those layouts (reshape with -1, flatten, permute) → a loss."""
    rng = np.random.default_rng(seed)
    case = Case(seed, infer=infer and (lambda node: infer(case, node)))
    start = str(rng.choice(["image", "image", "image", "signal", "tokens"]))
    if start == "tokens":
        case.inputs["ids"] = (["B", "T"], "int64")
        e = int(rng.integers(2, 5))
        v = int(rng.integers(3, 7))
        cur = case.add("embedding", "ids", None, num=v, dim=e)
        case.refs[cur] = lambda vals, P, cur=cur: P[f"{cur}.weight"][vals["ids"]]
        layout, c = "seq", e
        case.dims = ("B", "T")
    else:
        c = int(rng.integers(1, 4))
        case.inputs["x"] = ["B", c, "H", "W"] if start == "image" else ["B", c, "L"]
        cur, layout = "x", ("image" if start == "image" else "signal")
        case.dims = ("B", "H", "W") if start == "image" else ("B", "L")
    marked = []
    for _ in range(length or int(rng.integers(2, 6))):
        if layout == "image":
            r = rng.random()
            if r < 0.12:  # [B, C, H, W] → [B, C, H·W]: a signal
                if rng.random() < 0.5:
                    cur = case.add("reshape", cur, lambda v, P, x=cur, c=c: v[x].reshape(v[x].shape[0], c, -1),
                                   shape=["B", c, -1])
                else:
                    cur = case.add("flatten", cur, lambda v, P, x=cur: v[x].reshape(*v[x].shape[:2], -1),
                                   start=2)
                layout = "signal"
            else:
                cur, c = IMAGE_OPS[int(rng.integers(len(IMAGE_OPS)))](case, rng, cur, c)
        elif layout == "signal":
            r = rng.random()
            if r < 0.45:
                cur, c = _conv1d(case, rng, cur, c)
            elif r < 0.6:
                cur, c = _slice(case, rng, cur, c, axes=(2,))
            elif r < 0.7:
                cur, c = _concat(case, rng, cur, c, axes=(1, 2))
            elif r < 0.85:  # [B, C, L] → [B, L, C]
                cur = case.add("permute", cur, lambda v, P, x=cur: v[x].transpose(0, 2, 1), dims=[0, 2, 1])
                layout = "seq"
            else:  # [B, C, L] → [B, C, 1, L]: an image one pixel high
                cur = case.add("reshape", cur, lambda v, P, x=cur: v[x][:, :, None, :], shape=["B", c, 1, -1])
                layout = "image"
        else:  # seq [B, T, E]
            r = rng.random()
            if r < 0.25:
                cur, c = _linear(case, rng, cur, c)
            elif r < 0.35:
                cur, c = _attention(case, rng, cur, c)
            elif r < 0.45:
                cur, c = _self_scores(case, rng, cur, c)
            elif r < 0.55:
                cur, c = _layernorm(case, rng, cur, c) if c > 1 else _tanh(case, rng, cur, c)
            elif r < 0.6:
                cur, c = _tanh(case, rng, cur, c)
            else:
                cur = case.add("permute", cur, lambda v, P, x=cur: v[x].transpose(0, 2, 1), dims=[0, 2, 1])
                layout = "signal"
        if rng.random() < 0.35:
            marked.append(cur)
    _finish(case, rng, cur, c, layout)
    case.outputs = sorted(set(marked + [cur]), key=list(case.nodes).index)
    return case


def _finish(case: Case, rng, cur: str, c: int, layout: str) -> None:
    spatial = {"image": [2, 3], "signal": [2], "seq": [1]}[layout]
    kind = str(rng.choice(["mean", "sum"]))
    fn = np.mean if kind == "mean" else np.sum
    if layout == "seq":  # channels last: sum over T keeps [B, E]
        pooled = case.add(kind, cur, lambda v, P: fn(v[cur], axis=1), axis=1)
    elif layout == "image" and rng.random() < 0.3:
        pooled = case.add("global_avgpool", cur, lambda v, P: v[cur].mean(axis=(2, 3)))
    else:
        pooled = case.add(kind, cur, lambda v, P: fn(v[cur], axis=tuple(spatial)), axis=spatial)
    end = str(rng.choice(["ce", "mse2b", "square"]))
    if end == "ce":
        k = int(rng.integers(2, 4))
        logits, _ = _linear(case, rng, pooled, c, out=k)
        case.inputs["y"] = (["B"], "int64")

        def ce(v, P):
            z = v[logits]
            lp = z - z.max(1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
            return -lp[np.arange(len(z)), v["y"]].mean()

        loss = case.add("cross_entropy", {"logits": logits, "target": "y"}, ce)
    elif end == "mse2b":  # a target declared [2*B, C]: an input axis that is an expression
        both = case.add("concat", [pooled, pooled], lambda v, P: np.concatenate([v[pooled]] * 2, 0), axis=0)
        case.inputs["t"] = ["2 * B", c]
        case.expr_input = "t"
        loss = case.add("mse", {"pred": both, "target": "t"}, lambda v, P: np.mean((v[both] - v["t"]) ** 2))
    else:
        sq = case.add("mul", [pooled, pooled], lambda v, P: v[pooled] * v[pooled])
        loss = case.add("mean", sq, lambda v, P: np.mean(v[sq]))
    case.losses = [loss]


# ----------------------------------------------------------------------------- batches
SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17)


def draw_dims(rng, case: Case) -> dict[str, int]:
    dims = {"B": int(rng.integers(1, 4))}
    for d in case.dims[1:]:
        dims[d] = int(rng.choice(SIZES))
    return dims


def draw_batch(rng, case: Case, dims: dict[str, int]) -> dict[str, np.ndarray]:
    b = dims["B"]
    batch = {}
    for name, spec in case.inputs.items():
        shape, dtype = spec if isinstance(spec, tuple) else (spec, "float32")
        size = tuple(2 * b if d == "2 * B" else dims[d] if isinstance(d, str) else d for d in shape)
        if name == "ids":
            batch[name] = rng.integers(0, case.nodes[next(iter(case.nodes))]["num"], size)
        elif name == "y":
            k = case.nodes[case.losses[0]]["in"]["logits"]
            batch[name] = rng.integers(0, case.nodes[k]["out"], size)
        else:
            batch[name] = rng.standard_normal(size)
    return batch


def reference(case: Case, params: dict, batch: dict) -> dict[str, np.ndarray]:
    """Every node's value, computed with NumPy alone (Misfit for dims that do not fit)."""
    values = dict(batch)
    for name, fn in case.refs.items():
        values[name] = fn(values, params)
    return values
