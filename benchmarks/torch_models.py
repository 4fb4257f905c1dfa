"""The reference specs' architectures in PyTorch, built from each spec's constants.

Used by the oracle tests (tests/compiler/test_torch_oracle.py: same weights, same batch, equal
outputs and gradients) and by benchmarks/compare_torch.py (step time ratios). Each model maps
graphc parameter names to its own tensors (`by_name`), so weights can be copied across.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


# Each model takes the spec's `constants` (so a retuned spec keeps its oracle).
class MLP(nn.Module):
    def __init__(self, hidden, depth, in_features=2, classes=2):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(in_features if i == 0 else hidden, hidden) for i in range(depth))
        self.out = nn.Linear(hidden, classes)

    def forward(self, b):
        h = b["x"]
        for fc in self.fcs:
            h = torch.tanh(fc(h))
        logits = self.out(h)
        return logits, F.cross_entropy(logits, b["y"])

    def mapping(self):
        return {f"hidden_layers.{i}.fc": fc for i, fc in enumerate(self.fcs)} | {"logits": self.out}


class CNN(nn.Module):
    def __init__(self, classes, c1, c2, hidden, size=8):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 3, padding=1), nn.Conv2d(c1, c2, 3, padding=1)
        side = size // 4  # two 2×2 max pools
        self.fc1, self.out = nn.Linear(c2 * side * side, hidden), nn.Linear(hidden, classes)

    def forward(self, b):
        h = F.max_pool2d(F.relu(self.conv1(b["x"])), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        logits = self.out(F.relu(self.fc1(h.flatten(1))))
        return logits, F.cross_entropy(logits, b["y"])

    def mapping(self):
        return {"conv1": self.conv1, "conv2": self.conv2, "fc1": self.fc1, "logits": self.out}


class LSTM(nn.Module):
    def __init__(self, hidden, classes, input_size=1):
        super().__init__()
        self.rnn, self.out = nn.LSTM(input_size, hidden, batch_first=True), nn.Linear(hidden, classes)

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


def by_name(model):
    if hasattr(model, "params_by_graphc_name"):
        return model.params_by_graphc_name()
    return {f"{node}.{k}": getattr(mod, k) for node, mod in model.mapping().items() for k in ("weight", "bias")}


TORCH_MODELS = {"mlp": MLP, "cnn": CNN, "lstm": LSTM, "transformer": Transformer,
                # benchmarks/specs/workloads: the same architectures at realistic sizes
                "mlp784": MLP, "cnn28": CNN, "lstm_h128": LSTM, "transformer_d128": Transformer,
                "lstm_h256": LSTM, "gpt_mini": Transformer}


def torch_model(name, model):
    return TORCH_MODELS[name](**{k: int(v) for k, v in model.graph.constants.items()})


def sliced(ref):
    return ref if isinstance(ref, tuple) else (ref, slice(None))
