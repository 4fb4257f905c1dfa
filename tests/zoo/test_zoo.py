"""The model zoo (examples/zoo/): published architectures written as a user would. Each one
checks, lints clean, renders and validates against the JSON Schema; its parameter count is
the published figure and its multiply-accumulates match the published figure where one
exists. The big ones are only checked (front end, seconds each); the small Llama-style
decoder is compiled, gradient-checked in float64 and compared with a PyTorch reference."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pytest
import sympy
import yaml

from graphc.lint.engine import lint_file
from graphc.pipeline import analyze
from graphc.schema import spec_schema

ZOO = Path(__file__).resolve().parents[2] / "examples" / "zoo"

# trainable parameters as published (Hugging Face / torchvision model cards; GPT-2 tied)
PUBLISHED = {
    "gpt2_small": 124_439_808,
    "bert_base": 109_482_240,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
    "vit_b16": 86_567_656,
}
SPECS = sorted(ZOO.glob("*.yaml"))

# multiply-accumulates of the convolutions, linear layers and attention at batch 1, 224×224:
# torchvision's published GFLOPS (which count MACs) — ResNet-50 "≈ 4.1 GMACs"
PUBLISHED_GMACS = {"resnet50": (4.09, 0.01), "vgg16": (15.47, 0.01), "vit_b16": (17.56, 0.01),
                   "mobilenet_v2": (0.30, 0.04)}
MAC_OPS = {"conv2d", "linear", "attention", "matmul"}


def _analysis(name: str, overrides=None):
    a = analyze(ZOO / f"{name}.yaml", overrides)
    assert a.ok, [(d.code, d.message) for d in a.diagnostics]
    return a


def test_the_zoo_is_complete():
    assert {p.stem for p in SPECS} == set(PUBLISHED) | {"llama_small"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_is_the_published_one(name):
    a = _analysis(name)
    assert not a.diagnostics, [(d.code, d.message) for d in a.diagnostics]
    assert a.graph.param_count(trainable_only=True) == PUBLISHED[name]


def test_gpt2_counts_its_tied_head_once():
    g = _analysis("gpt2_small").graph
    assert g.ties == {"lm_head.weight": "wte.weight"}
    untied = PUBLISHED["gpt2_small"] + 50257 * 768
    assert untied == 163_037_184  # what the issue measured before `tie:` existed


def test_mobilenet_stages_of_one_block_repeat_zero_times():
    g = _analysis("mobilenet_v2").graph
    assert not any(n.startswith("stage7.rest") for n in g.nodes)
    depthwise = [n for n, node in g.nodes.items() if node.op == "conv2d" and node.attrs["groups"] > 1]
    assert len(depthwise) == 1 + 2 + 3 + 4 + 3 + 3 + 1  # the paper's 17 bottlenecks


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_multiply_accumulates_match_the_published_figure(name):
    g = _analysis(name, {"B": 1}).graph
    macs = sum(sympy.sympify(f) for n, f in g.flops.items() if g.nodes[n].op in MAC_OPS) / 2
    want, tol = PUBLISHED_GMACS[name]
    assert float(macs) / 1e9 == pytest.approx(want, rel=tol)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_lints_clean(path):
    result = lint_file(str(path))
    assert not result.diagnostics, [(d.code, d.message) for d in result.diagnostics]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_schema_accepts_it(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), spec_schema())


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_renders_with_blocks_folded(path):
    from graphc.render import RenderOptions, build_diagram

    a = _analysis(path.stem)
    dot = build_diagram(a, RenderOptions()).source
    assert "cluster_" in dot and "×" in dot  # a folded stack, marked ×N
    if path.stem == "gpt2_small":
        assert "shares weight" in dot and "weight = wte.weight" in dot


# ------------------------------------------------------------------ the small Llama, compiled
def _llama(dtype=np.float64):
    from graphc.compiler import compile_spec

    return compile_spec(ZOO / "llama_small.yaml", dtype=dtype)


def _batch(seed=0, b=2, t=5):
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, 96, (b, t)), "targets": rng.integers(0, 96, (b, t))}


def test_llama_gradients_match_finite_differences():
    from tests.compiler.helpers import check_gradients

    model = _llama()
    params = {k: v.astype(np.float64) for k, v in model.init_params(0).items()}
    assert check_gradients(model, params, _batch()) == len(model.params) == 21


def test_llama_forward_matches_a_pytorch_reference():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = _llama()
    params = {k: v.astype(np.float64) * 4 for k, v in model.init_params(1).items()}  # livelier
    batch = _batch(1)
    ours = model.forward(params, batch)
    P = {k: torch.tensor(v) for k, v in params.items()}

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w

    def rope(x):  # Hugging Face Llama's rotate_half over [B, H, T, d]
        t, d = x.shape[-2], x.shape[-1]
        inv = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        ang = torch.outer(torch.arange(t, dtype=torch.float64), inv)
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        return x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1) * sin

    b, t = batch["tokens"].shape
    x = P["embed.weight"][torch.tensor(batch["tokens"])]
    for i in range(2):
        p = f"layers.{i}."
        h = rms(x, P[p + "attn_norm.weight"])
        q, k, v = (F.linear(h, P[f"{p}attn.{n}.weight"]).view(b, t, 4, 16).transpose(1, 2) for n in "qkv")
        a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(b, t, 64), P[p + "attn.o.weight"])
        h = rms(x, P[p + "ffn_norm.weight"])
        gated = F.silu(F.linear(h, P[p + "ffn.gate.weight"])) * F.linear(h, P[p + "ffn.up.weight"])
        x = x + F.linear(gated, P[p + "ffn.down.weight"])
    logits = F.linear(rms(x, P["norm.weight"]), P["output.weight"])
    np.testing.assert_allclose(ours.outputs["output"], logits.numpy(), rtol=1e-9, atol=1e-9)
    loss = F.cross_entropy(logits.reshape(-1, 96), torch.tensor(batch["targets"]).reshape(-1))
    assert ours.losses["loss"] == pytest.approx(loss.item(), rel=1e-10)
