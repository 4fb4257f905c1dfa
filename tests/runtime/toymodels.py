"""Small, honest NumPy models implementing the CompiledModel protocol, for runtime tests.

Gradients are written by hand and checked against finite differences in test_toymodels.py.
Computation follows the dtype of the parameters (float32 in training, float64 in the checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple
    dtype: str


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple
    init: str
    decay: bool
    node: str
    trainable: bool = True


@dataclass
class ForwardResult:
    outputs: dict
    losses: dict
    cache: dict = field(default_factory=dict)


def _softmax_ce(logits, labels, mask):
    """(mean masked CE, d loss / d logits)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    logp = np.log(p)
    nll = -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    denom = mask.sum()
    loss = (nll * mask).sum() / denom
    d = p.copy()
    np.put_along_axis(d, labels[..., None], np.take_along_axis(d, labels[..., None], -1) - 1, -1)
    d *= (mask / denom)[..., None]
    return loss, d


class MLP:
    """x -> (x - running_mean) -> fc1 -> relu -> dropout -> fc2 -> logits; CE loss on y.

    ``norm.running_mean`` is a buffer (trainable=False) updated in training mode, like
    BatchNorm's running statistics. ``nan_at`` poisons fc1's output when ``x`` has a huge value,
    to test the non-finite stop.
    """

    def __init__(
        self,
        in_shape=(2,),
        hidden=16,
        classes=2,
        dropout=0.0,
        train=None,
        name="mlp",
        track_stats=True,
    ):
        self.name = name
        self.in_shape = tuple(in_shape)
        features = int(np.prod(in_shape))
        self.inputs = {
            "x": TensorSpec("x", ("B", *in_shape), "float32"),
            "y": TensorSpec("y", ("B",), "int64"),
        }
        self.outputs = ["logits"]
        self.losses = ["ce"]
        self.dropout = dropout
        self.track_stats = track_stats
        self.params = {
            "norm.running_mean": ParamSpec(
                "norm.running_mean", (features,), "zeros", False, "norm", trainable=False
            ),
            "fc1.w": ParamSpec("fc1.w", (features, hidden), "xavier_uniform", True, "fc1"),
            "fc1.b": ParamSpec("fc1.b", (hidden,), "zeros", False, "fc1"),
            "fc2.w": ParamSpec("fc2.w", (hidden, classes), "xavier_uniform", True, "fc2"),
            "fc2.b": ParamSpec("fc2.b", (classes,), "zeros", False, "fc2"),
        }
        self.train = train if train is not None else {}
        self.calls = 0

    def init_params(self, seed):
        rng = np.random.default_rng(seed)
        out = {}
        for name, p in self.params.items():
            if p.init == "zeros":
                out[name] = np.zeros(p.shape, np.float32)
            else:
                bound = np.sqrt(6.0 / sum(p.shape))
                out[name] = rng.uniform(-bound, bound, p.shape).astype(np.float32)
        return out

    def _stages(self, params, batch, training, seed):
        x = batch["x"].reshape(len(batch["x"]), -1).astype(params["fc1.w"].dtype)
        xc = x - params["norm.running_mean"]
        a = xc @ params["fc1.w"] + params["fc1.b"]
        h = np.maximum(a, 0)
        mask = None
        if training and self.dropout:
            keep = np.random.default_rng(seed).random(h.shape) >= self.dropout
            mask = keep / (1 - self.dropout)
            h = h * mask.astype(h.dtype)
        logits = h @ params["fc2.w"] + params["fc2.b"]
        return x, xc, a, h, mask, logits

    def forward(self, params, batch, *, training, seed):
        self.calls += 1
        x, xc, a, h, mask, logits = self._stages(params, batch, training, seed)
        y = batch["y"]
        loss, dlogits = _softmax_ce(logits, y, np.ones(y.shape, logits.dtype))
        if training and self.track_stats:
            rm = params["norm.running_mean"]
            rm *= 0.9
            rm += 0.1 * x.mean(axis=0).astype(rm.dtype)
        cache = {"xc": xc, "a": a, "h": h, "mask": mask, "dlogits": dlogits, "params": params}
        return ForwardResult({"logits": logits}, {"ce": float(loss)}, cache)

    def backward(self, result):
        c = result.cache
        p = c["params"]
        d = c["dlogits"]
        grads = {"fc2.w": c["h"].T @ d, "fc2.b": d.sum(axis=0)}
        dh = d @ p["fc2.w"].T
        if c["mask"] is not None:
            dh = dh * c["mask"]
        da = dh * (c["a"] > 0)
        grads["fc1.w"] = c["xc"].T @ da
        grads["fc1.b"] = da.sum(axis=0)
        return {k: v.astype(p[k].dtype) for k, v in grads.items()}

    def first_nonfinite(self, params, batch, *, seed):
        x, xc, a, h, _, logits = self._stages(params, batch, True, seed)
        for node, value in (("input", x), ("fc1", a), ("relu", h), ("fc2", logits)):
            if not np.all(np.isfinite(value)):
                return node
        return "loss"


class TokenModel:
    """tokens -> embed + pos -> out projection -> logits [B,T,V]; CE on targets under loss_mask.

    Causal by construction (position t sees only token t).
    """

    def __init__(self, vocab=11, seq_len=8, dim=8, train=None, name="tokens"):
        self.name = name
        self.inputs = {
            "tokens": TensorSpec("tokens", ("B", seq_len), "int64"),
            "targets": TensorSpec("targets", ("B", seq_len), "int64"),
            "loss_mask": TensorSpec("loss_mask", ("B", seq_len), "float32"),
        }
        self.outputs = ["logits"]
        self.losses = ["ce"]
        self.params = {
            "embed": ParamSpec("embed", (vocab, dim), "normal(0.02)", False, "embed"),
            "pos": ParamSpec("pos", (seq_len, dim), "normal(0.02)", False, "pos"),
            "out.w": ParamSpec("out.w", (dim, vocab), "normal(0.02)", True, "out"),
            "out.b": ParamSpec("out.b", (vocab,), "zeros", False, "out"),
        }
        self.train = train if train is not None else {}

    def init_params(self, seed):
        rng = np.random.default_rng(seed)
        return {
            n: (
                np.zeros(p.shape) if p.init == "zeros" else 0.5 * rng.standard_normal(p.shape)
            ).astype(np.float32)
            for n, p in self.params.items()
        }

    def forward(self, params, batch, *, training, seed):
        tok = batch["tokens"]
        e = params["embed"][tok] + params["pos"][None, : tok.shape[1]]
        logits = e @ params["out.w"] + params["out.b"]
        loss, d = _softmax_ce(logits, batch["targets"], batch["loss_mask"].astype(logits.dtype))
        cache = {"tok": tok, "e": e, "d": d, "params": params}
        return ForwardResult({"logits": logits}, {"ce": float(loss)}, cache)

    def backward(self, result):
        c = result.cache
        p, d, e, tok = c["params"], c["d"], c["e"], c["tok"]
        de = d @ p["out.w"].T
        g_embed = np.zeros_like(p["embed"])
        np.add.at(g_embed, tok, de)
        return {
            "out.w": np.einsum("btd,btv->dv", e, d).astype(p["out.w"].dtype),
            "out.b": d.sum(axis=(0, 1)).astype(p["out.b"].dtype),
            "embed": g_embed,
            "pos": de.sum(axis=0).astype(p["pos"].dtype),
        }

    def first_nonfinite(self, params, batch, *, seed):
        return "out"
