"""The four reference specs vs the same architectures in PyTorch (float64).

graphc's initialized parameters are copied into the torch model (names mapped: attention
wq/wk/wv → in_proj_weight rows, bq/bk/bv → in_proj_bias, wo/bo → out_proj; lstm w_ih_0 →
weight_ih_l0, …; the learned positional encoding is a Parameter; the decoder layer is a
post-norm nn.TransformerEncoderLayer with GELU and a causal mask). The same batch goes through
both; the loss, the logits and every parameter gradient must agree, and so must the parameter
counts.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from graphc.compiler import compile_spec  # noqa: E402
from tests.conftest import REFERENCE_SPECS, SPECS  # noqa: E402

pytestmark = pytest.mark.torch
TOL = dict(rtol=1e-9, atol=1e-11)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------- torch models
# Each model takes the spec's `constants` (so a retuned spec keeps its oracle).
class MLP(nn.Module):
    def __init__(self, hidden, depth):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(2 if i == 0 else hidden, hidden) for i in range(depth))
        self.out = nn.Linear(hidden, 2)

    def forward(self, b):
        h = b["x"]
        for fc in self.fcs:
            h = torch.tanh(fc(h))
        logits = self.out(h)
        return logits, F.cross_entropy(logits, b["y"])

    def mapping(self):
        return {f"hidden_layers.{i}.fc": fc for i, fc in enumerate(self.fcs)} | {"logits": self.out}


class CNN(nn.Module):
    def __init__(self, classes, c1, c2, hidden):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 3, padding=1), nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1, self.out = nn.Linear(c2 * 2 * 2, hidden), nn.Linear(hidden, classes)

    def forward(self, b):
        h = F.max_pool2d(F.relu(self.conv1(b["x"])), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        logits = self.out(F.relu(self.fc1(h.flatten(1))))
        return logits, F.cross_entropy(logits, b["y"])

    def mapping(self):
        return {"conv1": self.conv1, "conv2": self.conv2, "fc1": self.fc1, "logits": self.out}


class LSTM(nn.Module):
    def __init__(self, hidden, classes):
        super().__init__()
        self.rnn, self.out = nn.LSTM(1, hidden, batch_first=True), nn.Linear(hidden, classes)

    def forward(self, b):
        _, (h_n, _) = self.rnn(b["x"])
        logits = self.out(h_n[-1])
        return logits, F.cross_entropy(logits, b["y"])

    def params_by_graphc_name(self):
        p = {f"rnn.{w}_0": getattr(self.rnn, f"{t}_l0")
             for w, t in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))}
        return p | {"logits.weight": self.out.weight, "logits.bias": self.out.bias}


class Transformer(nn.Module):
    def __init__(self, vocab, d_model, heads, d_ff, layers, max_len):
        super().__init__()
        d, ff = d_model, d_ff
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(max_len, d))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=False) for _ in range(layers))
        self.out = nn.Linear(d, vocab)

    def forward(self, b):
        t = b["tokens"].shape[1]
        h = self.embed(b["tokens"]) + self.pos[:t]
        causal = nn.Transformer.generate_square_subsequent_mask(t, dtype=torch.float64)
        for layer in self.layers:
            h = layer(h, src_mask=causal, is_causal=True)
        logits = self.out(h)
        per_token = F.cross_entropy(logits.flatten(0, 1), b["targets"].flatten(), reduction="none")
        m = b["loss_mask"].flatten()
        return logits, (per_token * m).sum() / m.sum()

    def params_by_graphc_name(self):
        """graphc name → torch tensor, or (torch tensor, row slice) for the packed in_proj."""
        p = {"embed.weight": self.embed.weight, "pos.weight": self.pos,
             "logits.weight": self.out.weight, "logits.bias": self.out.bias}
        for i, layer in enumerate(self.layers):
            pre, e = f"decoder.{i}.", layer.self_attn.embed_dim
            for k, n in enumerate("qkv"):
                rows = slice(k * e, (k + 1) * e)
                p[f"{pre}attn.w{n}"] = (layer.self_attn.in_proj_weight, rows)
                p[f"{pre}attn.b{n}"] = (layer.self_attn.in_proj_bias, rows)
            p[f"{pre}attn.wo"] = layer.self_attn.out_proj.weight
            p[f"{pre}attn.bo"] = layer.self_attn.out_proj.bias
            for ours, theirs in (("norm1", layer.norm1), ("norm2", layer.norm2), ("ff1", layer.linear1),
                                 ("ff2", layer.linear2)):
                p[f"{pre}{ours}.weight"], p[f"{pre}{ours}.bias"] = theirs.weight, theirs.bias
        return p


def _by_name(model):
    if hasattr(model, "params_by_graphc_name"):
        return model.params_by_graphc_name()
    return {f"{node}.{k}": getattr(mod, k) for node, mod in model.mapping().items() for k in ("weight", "bias")}


def _batch(name, constants, rng, b=5):
    if name == "mlp":
        return {"x": rng.standard_normal((b, 2)), "y": rng.integers(0, 2, b)}
    if name == "cnn":
        return {"x": rng.random((b, 1, 8, 8)), "y": rng.integers(0, int(constants["classes"]), b)}
    if name == "lstm":
        return {"x": rng.integers(0, 2, (b, 7, 1)).astype(np.float64), "y": rng.integers(0, 2, b)}
    t = 9
    mask = (rng.random((b, t)) < 0.5).astype(np.float64)
    mask[:, -1] = 1.0
    vocab = int(constants["vocab"])
    return {"tokens": rng.integers(0, vocab, (b, t)), "targets": rng.integers(0, vocab, (b, t)),
            "loss_mask": mask}


TORCH_MODELS = {"mlp": MLP, "cnn": CNN, "lstm": LSTM, "transformer": Transformer}


def _torch_model(name, model):
    return TORCH_MODELS[name](**{k: int(v) for k, v in model.graph.constants.items()})


def _sliced(ref):
    return ref if isinstance(ref, tuple) else (ref, slice(None))


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_reference_spec_matches_torch(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = compile_spec(SPECS / f"{name}.yaml", dtype=np.float64)
    params = {k: v.astype(np.float64) for k, v in model.init_params(0).items()}
    # move every parameter off its init so zero biases / unit gains are tested too
    params = {k: v + 0.05 * rng.standard_normal(v.shape) for k, v in params.items()}
    batch = _batch(name, model.graph.constants, rng)

    tm = _torch_model(name, model).double()
    by_name = _by_name(tm)
    assert set(by_name) == set(model.params), (sorted(set(by_name) ^ set(model.params)))
    with torch.no_grad():
        for k, ref in by_name.items():
            tensor, rows = _sliced(ref)
            target = tensor[rows]
            assert tuple(target.shape) == params[k].shape, f"{k}: torch {tuple(target.shape)} vs {params[k].shape}"
            target.copy_(_t(params[k]))

    result = model.forward(params, batch)
    grads = model.backward(result)
    tb = {k: (torch.tensor(v) if v.dtype.kind in "iu" else _t(v)) for k, v in batch.items()}
    logits, loss = tm(tb)
    loss.backward()

    np.testing.assert_allclose(result.outputs["logits"], logits.detach().numpy(), **TOL)
    assert result.losses["loss"] == pytest.approx(loss.item(), rel=1e-10)
    for k, ref in by_name.items():
        tensor, rows = _sliced(ref)
        np.testing.assert_allclose(grads[k], tensor.grad[rows].numpy(), err_msg=k, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_parameter_count_equals_torch(name):
    model = compile_spec(SPECS / f"{name}.yaml")
    ours = sum(int(np.prod(p.shape)) for p in model.params.values() if p.trainable)
    theirs = sum(p.numel() for p in _torch_model(name, model).parameters())
    assert ours == theirs, f"{name}: graphc has {ours:,} parameters, PyTorch {theirs:,}"
    assert model.graph.param_count(trainable_only=True) == theirs


def test_every_reference_spec_has_a_torch_oracle():
    missing = sorted(p.stem for p in REFERENCE_SPECS if p.stem not in TORCH_MODELS)
    assert not missing, f"reference specs without a PyTorch model in this file: {', '.join(missing)}"
