"""The four reference specs, and the benchmark workloads built on them, vs the same
architectures in PyTorch (float64).

graphc's initialized parameters are copied into the torch model (names mapped: attention
wq/wk/wv → in_proj_weight rows, bq/bk/bv → in_proj_bias, wo/bo → out_proj; lstm w_ih_0 →
weight_ih_l0, …; the learned positional encoding is a Parameter; the decoder layer is a
post-norm nn.TransformerEncoderLayer with GELU and a causal mask). The same batch goes through
both; the loss, the logits and every parameter gradient must agree, and so must the parameter
counts. The spatial transformer example is checked the same way against torch's affine_grid
and grid_sample.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.torch_models import TORCH_MODELS, by_name, sliced, torch_model  # noqa: E402
from graphc.compiler import compile_spec  # noqa: E402
from graphc.compiler.checks import synthetic_batch  # noqa: E402
from tests.conftest import REFERENCE_SPECS, SPECS  # noqa: E402

pytestmark = pytest.mark.torch
TOL = dict(rtol=1e-9, atol=1e-11)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


WORKLOADS = SPECS.parent / "benchmarks" / "specs" / "workloads"


def _spec(name):
    """A reference spec, or a benchmark workload (the same architectures at realistic sizes:
    benchmarks/compare_torch.py times them against these very PyTorch models)."""
    return SPECS / f"{name}.yaml" if (SPECS / f"{name}.yaml").exists() else WORKLOADS / f"{name}.yaml"


def _batch(name, constants, rng, b=5, model=None):
    if not (SPECS / f"{name}.yaml").exists():  # a workload: a small batch of its own shapes
        return synthetic_batch(model, {"B": 2, "T": 9}, seed=int(rng.integers(1 << 30)))
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


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_reference_spec_matches_torch(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = compile_spec(_spec(name), dtype=np.float64)
    params = {k: v.astype(np.float64) for k, v in model.init_params(0).items()}
    # move every parameter off its init so zero biases / unit gains are tested too
    params = {k: v + 0.05 * rng.standard_normal(v.shape) for k, v in params.items()}
    batch = _batch(name, model.graph.constants, rng, model=model)

    tm = torch_model(name, model).double()
    names = by_name(tm)
    assert set(names) == set(model.params), (sorted(set(names) ^ set(model.params)))
    with torch.no_grad():
        for k, ref in names.items():
            tensor, rows = sliced(ref)
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
    for k, ref in names.items():
        tensor, rows = sliced(ref)
        np.testing.assert_allclose(grads[k], tensor.grad[rows].numpy(), err_msg=k, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_parameter_count_equals_torch(name):
    model = compile_spec(_spec(name))
    ours = sum(int(np.prod(p.shape)) for p in model.params.values() if p.trainable)
    theirs = sum(p.numel() for p in torch_model(name, model).parameters())
    assert ours == theirs, f"{name}: graphc has {ours:,} parameters, PyTorch {theirs:,}"
    assert model.graph.param_count(trainable_only=True) == theirs


def test_every_reference_spec_has_a_torch_oracle():
    missing = sorted(p.stem for p in REFERENCE_SPECS if p.stem not in TORCH_MODELS)
    assert not missing, f"reference specs without a PyTorch model in this file: {', '.join(missing)}"


def test_spatial_transformer_example_matches_torch():
    """examples/spatial_transformer.yaml vs the same STN written with torch's affine_grid and
    grid_sample: logits, loss and every parameter gradient."""
    from tests.conftest import ROOT

    F = torch.nn.functional
    model = compile_spec(ROOT / "examples" / "spatial_transformer.yaml", dtype=np.float64)
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) + 0.05 * rng.standard_normal(v.shape)
              for k, v in model.init_params(0).items()}
    batch = {"x": rng.random((5, 1, 8, 8)), "y": rng.integers(0, 10, 5), "one": np.ones((5, 1)),
             "zero": np.zeros((5, 1))}  # the constant inputs train.data.generate fills
    result = model.forward(params, batch)
    grads = model.backward(result)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = _t(batch["x"])

    def conv(h, name):
        return F.conv2d(h, tp[f"{name}.weight"], tp[f"{name}.bias"], padding=1)

    def fc(h, name):
        return F.linear(h, tp[f"{name}.weight"], tp[f"{name}.bias"])

    h = F.max_pool2d(F.relu(conv(x, "loc_conv")), 2).flatten(1)
    delta = fc(F.relu(fc(h, "loc_fc")), "delta")
    theta = (torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64) + delta).reshape(-1, 2, 3)
    warped = F.grid_sample(x, F.affine_grid(theta, [5, 1, 8, 8], align_corners=False),
                           mode="bilinear", padding_mode="zeros", align_corners=False)
    h = F.max_pool2d(F.relu(conv(warped, "conv1")), 2)
    h = F.max_pool2d(F.relu(conv(h, "conv2")), 2).flatten(1)
    logits = fc(F.relu(fc(h, "fc")), "logits")
    loss = F.cross_entropy(logits, torch.tensor(batch["y"]))
    loss.backward()

    np.testing.assert_allclose(result.outputs["logits"], logits.detach().numpy(), **TOL)
    assert result.losses["loss"] == pytest.approx(loss.item(), rel=1e-10)
    assert set(grads) == set(tp)
    for k, t in tp.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), err_msg=k, rtol=1e-8, atol=1e-11)
