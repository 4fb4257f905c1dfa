"""CompiledModel behaviour: batch checking, locating non-finite values, train/eval modes,
determinism, and the generated driver's backward in training mode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from graphc.compiler import InputError, compile_spec
from graphc.compiler.checks import synthetic_batch

from .helpers import spec_text, write

CLASSIFIER = spec_text(
    {"x": ["B", 3], "y": (["B"], "int64")},
    {"fc": {"op": "linear", "in": "x", "out": 4},
     "act": {"op": "tanh", "in": "fc"},
     "logits": {"op": "linear", "in": "act", "out": 2},
     "loss": {"op": "cross_entropy", "in": ["logits", "y"]}},
    outputs=["logits"], losses=["loss"])

# dropout, batchnorm and a symbolic reshape: everything whose backward reads forward-only state
STOCHASTIC = spec_text(
    {"x": ["B", 2, 3], "t": ["B", 6]},
    {"bn": {"op": "batchnorm", "in": "x", "momentum": 0.5},
     "drop": {"op": "dropout", "in": "bn", "p": 0.5},
     "flat": {"op": "reshape", "in": "drop", "shape": ["B", -1]},
     "loss": {"op": "mse", "in": ["flat", "t"]}},
    outputs=["drop", "bn"], losses=["loss"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return compile_spec(write(tmp_path_factory.mktemp("clf"), CLASSIFIER))


@pytest.fixture(scope="module")
def stochastic(tmp_path_factory):
    return compile_spec(write(tmp_path_factory.mktemp("sto"), STOCHASTIC))


def _clf_batch(b=4):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((b, 3)).astype(np.float32), "y": rng.integers(0, 2, b)}


def _sto_batch(b=4):
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((b, 2, 3)).astype(np.float32) * 2 + 1,
            "t": rng.standard_normal((b, 6)).astype(np.float32)}


# ----------------------------------------------------------------------------- batch checking
@pytest.mark.parametrize(("change", "pattern"), [
    (lambda b: b.pop("y"), r"no `y`.*inputs are x, y"),
    (lambda b: b.update(x=np.zeros((4, 5), np.float32)), r"input `x` has shape \(4, 5\).*\[B×3\].*axis 1 must be 3"),
    (lambda b: b.update(x=np.zeros((4, 3, 1), np.float32)), r"input `x`.*rank 2"),
    (lambda b: b.update(y=np.zeros(5, np.int64)), r"dimension B is 4 in `x` but 5 in `y`"),
    (lambda b: b.update(y=np.zeros(4, np.float32)), r"input `y` must hold integers, found float32"),
    (lambda b: b.update(x=np.full((4, 3), "a")), r"input `x` must be numeric"),
], ids=["missing", "wrong-axis", "wrong-rank", "inconsistent-B", "float-ids", "strings"])
def test_bad_batches_raise_input_error(classifier, change, pattern):
    batch = _clf_batch()
    change(batch)
    params = classifier.init_params(0)
    with pytest.raises(InputError, match=pattern):
        classifier.forward(params, batch)


def test_input_error_is_a_value_error_and_good_batches_convert(classifier):
    assert issubclass(InputError, ValueError)
    batch = _clf_batch()
    fed = classifier.feed({"x": batch["x"].astype(np.float64), "y": batch["y"].astype(np.int32)})
    assert fed["x"].dtype == np.float32 and fed["y"].dtype == np.int64


# ----------------------------------------------------------------------------- non-finite values
def test_first_nonfinite_is_none_when_all_finite(classifier):
    assert classifier.first_nonfinite(classifier.init_params(0), _clf_batch()) is None


def test_first_nonfinite_names_the_node_owning_a_nan_parameter(classifier):
    params = classifier.init_params(0)
    params["logits.weight"][0, 0] = np.nan
    assert classifier.first_nonfinite(params, _clf_batch()) == "logits"


def test_first_nonfinite_names_the_node_that_overflows(classifier):
    params = classifier.init_params(0)
    params["fc.weight"][:] = 1e30  # finite, but x·Wᵀ overflows float32 in `fc`; tanh makes it finite again
    batch = _clf_batch()
    batch["x"] = np.abs(batch["x"]) * 1e10 + 1e10
    assert classifier.first_nonfinite(params, batch) == "fc"


def test_first_nonfinite_names_a_non_finite_input(classifier):
    batch = _clf_batch()
    batch["x"][1, 2] = np.inf
    assert classifier.first_nonfinite(classifier.init_params(0), batch) == "x"


# ----------------------------------------------------------------------------- modes
def test_dropout_is_the_identity_in_eval(stochastic):
    params = stochastic.init_params(0)
    r = stochastic.forward(params, _sto_batch(), training=False)
    np.testing.assert_array_equal(r.outputs["drop"], r.outputs["bn"])


def test_dropout_zeroes_and_rescales_in_training(stochastic):
    params = stochastic.init_params(0)
    r = stochastic.forward(params, _sto_batch(), training=True, seed=5)
    drop, bn = r.outputs["drop"], r.outputs["bn"]
    kept = drop != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(drop[kept], bn[kept] * 2.0, rtol=1e-6)


def test_batchnorm_running_stats_update_only_in_training(stochastic):
    batch = _sto_batch()
    params = stochastic.init_params(0)
    before = {k: v.copy() for k, v in params.items()}
    stochastic.forward(params, batch, training=False)
    for k in ("bn.running_mean", "bn.running_var"):
        np.testing.assert_array_equal(params[k], before[k])
    stochastic.forward(params, batch, training=True)
    x = batch["x"].astype(np.float64)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2), ddof=1)  # torch blends the unbiased variance
    np.testing.assert_allclose(params["bn.running_mean"], 0.5 * before["bn.running_mean"] + 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(params["bn.running_var"], 0.5 * before["bn.running_var"] + 0.5 * var, rtol=1e-5)
    assert not stochastic.params["bn.running_mean"].trainable


def test_batchnorm_eval_normalizes_with_running_stats(stochastic):
    params = stochastic.init_params(0)
    params["bn.running_mean"][:] = [1.0, -1.0]
    params["bn.running_var"][:] = [4.0, 0.25]
    batch = _sto_batch()
    r = stochastic.forward(params, batch, training=False)
    x = batch["x"].astype(np.float64)
    ref = (x - params["bn.running_mean"][None, :, None]) / np.sqrt(params["bn.running_var"][None, :, None] + 1e-5)
    np.testing.assert_allclose(r.outputs["bn"], ref, rtol=1e-5, atol=1e-6)


def test_training_step_backward_runs_and_is_deterministic(stochastic):
    """The backward of dropout/batchnorm reads the mode, and reshape's [B, -1] reads B."""
    batch = _sto_batch()

    def step(seed):
        params = stochastic.init_params(0)
        r = stochastic.forward(params, batch, training=True, seed=seed)
        return r, stochastic.backward(r)

    (r1, g1), (r2, g2), (r3, _) = step(3), step(3), step(4)
    assert set(g1) == {"bn.weight", "bn.bias"}
    assert r1.losses == r2.losses
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
        assert np.all(np.isfinite(g1[k]))
    np.testing.assert_array_equal(r1.outputs["drop"], r2.outputs["drop"])
    assert not np.array_equal(r1.outputs["drop"], r3.outputs["drop"]), "another seed, another mask"


def test_eval_forward_is_deterministic_and_seed_independent(stochastic):
    params = stochastic.init_params(0)
    a = stochastic.forward(params, _sto_batch(), training=False, seed=1)
    b = stochastic.forward(params, _sto_batch(), training=False, seed=2)
    np.testing.assert_array_equal(a.outputs["drop"], b.outputs["drop"])
    assert a.losses == b.losses


def test_init_params_is_deterministic_per_seed(classifier):
    a, b, c = classifier.init_params(0), classifier.init_params(0), classifier.init_params(1)
    assert set(a) == set(classifier.params)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == np.float32 and a[k].shape == classifier.params[k].shape
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_float64_model_computes_in_float64(classifier):
    m64 = classifier.astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in m64.init_params(0).items()}
    r = m64.forward(params, _clf_batch())
    assert r.outputs["logits"].dtype == np.float64
    assert all(g.dtype == np.float64 for g in m64.backward(r).values())
    r32 = classifier.forward(classifier.init_params(0), _clf_batch())
    assert r32.outputs["logits"].dtype == np.float32
    assert r.losses["loss"] == pytest.approx(r32.losses["loss"], rel=1e-5)


# ----------------------------------------------------------------------------- driver names
def test_dims_and_nodes_named_like_driver_locals(tmp_path):
    """Symbolic dims `P`, `S`, `training` and a node named `S` must not clobber the driver's own
    variables (P = parameters, S = tape, training = mode) or each other."""
    from .helpers import check_gradients, compile64, params64

    text = spec_text(
        {"q": ["P", "training", 4], "kv": ["P", "S", 4], "m": ["P", "S"], "t": ["P", 6]},
        {"a": {"op": "attention", "in": {"q": "q", "kv": "kv", "key_padding_mask": "m"}, "heads": 2},
         "S": {"op": "dropout", "in": "a", "p": 0.3},
         "flat": {"op": "reshape", "in": "S", "shape": ["P", -1]},
         "head": {"op": "slice", "in": "flat", "axis": 1, "start": 0, "stop": 6},
         "loss": {"op": "mse", "in": ["head", "t"]}},
        losses=["loss"])
    model = compile64(write(tmp_path, text))
    rng = np.random.default_rng(0)
    batch = {"q": rng.standard_normal((2, 3, 4)), "kv": rng.standard_normal((2, 5, 4)),
             "m": np.array([[0.0, 0, 1, 0, 1], [0, 1, 1, 1, 1]]), "t": rng.standard_normal((2, 6))}
    check_gradients(model, params64(model), batch, training=True, seed=1, rng=rng,
                    expect_inputs={"q", "kv", "t"})


def test_first_nonfinite_leaves_the_parameters_alone(stochastic):
    """A diagnostic must not move batchnorm's running statistics (it runs a training forward)."""
    params = stochastic.init_params(0)
    before = {k: v.copy() for k, v in params.items()}
    assert stochastic.first_nonfinite(params, _sto_batch()) is None
    for k in params:
        np.testing.assert_array_equal(params[k], before[k], err_msg=k)


def test_a_loss_that_is_not_a_scalar_is_a_compile_error(tmp_path):
    from graphc.compiler import CompileError

    text = spec_text({"x": [2, 3]}, {"h": {"op": "linear", "in": "x", "out": 3},
                                     "a": {"op": "tanh", "in": "h"}}, losses=["a"])
    with pytest.raises(CompileError) as info:
        compile_spec(write(tmp_path, text))
    (d,) = info.value.diagnostics
    assert d.code == "GC206" and d.nodes == ("a",) and d.span is not None
    assert "loss `a` must be a scalar" in d.message and "[2×3]" in d.message


@pytest.mark.parametrize(("change", "pattern"), [
    (lambda b: b["tokens"].__setitem__((0, 0), 13), "embedding: id out of range"),
    (lambda b: b["targets"].__setitem__((1, 2), -3), "cross_entropy: target class out of range"),
    (lambda b: b.update({k: np.tile(v, (1, 9)) for k, v in b.items()}),
     r"do not fit node `pos` \(positional_encoding\): max_len 64 is shorter than the sequence "
     r"\(axis 1 of its input, T\) \(short by 8\)"),
], ids=["token-id", "target-class", "too-long"])
def test_out_of_range_values_raise_instead_of_reading_garbage(change, pattern):
    from tests.conftest import SPECS

    model = compile_spec(SPECS / "transformer.yaml", dtype=np.float64)  # the kernels test_vjp_identity uses
    rng = np.random.default_rng(0)
    batch = {"tokens": rng.integers(0, 13, (2, 8)), "targets": rng.integers(0, 13, (2, 8)),
             "loss_mask": np.ones((2, 8))}
    model.forward(model.init_params(0), batch)  # fine as it is
    change(batch)
    with pytest.raises((IndexError, ValueError), match=pattern):
        model.forward(model.init_params(0), batch)


def test_expression_dims_of_inputs_are_checked(tmp_path):
    text = spec_text({"a": ["B", 3], "b": ["2 * B", 3]},
                     {"c": {"op": "concat", "in": ["a", "a"], "axis": 0},
                      "loss": {"op": "mse", "in": ["c", "b"]}}, losses=["loss"])
    model = compile_spec(write(tmp_path, text))
    ok = model.forward({}, {"a": np.ones((2, 3)), "b": np.ones((4, 3))})
    assert ok.losses["loss"] == 0.0
    with pytest.raises(InputError, match=r"input `b` has shape \(2, 3\); axis 0 must be 2\*B = 4 \(B=2 from `a`\)"):
        model.forward({}, {"a": np.ones((2, 3)), "b": np.ones((2, 3))})


@pytest.mark.parametrize("expr", ["max(B/2, 3)", "B//2 + H/3", "(B + 1) % 2 + 1", "(H - B)**2", "H/B"])
def test_declared_input_sizes_are_computed_exactly(tmp_path, expr):
    """The generated check (graphc.compiler.guards) computes an expression-declared axis as sympy
    does: a quotient inside max() is not floored, 7/2 is reported as 7/2."""
    import sympy

    from graphc.shapes import symbol

    text = spec_text({"a": ["B", "H"], "b": [expr, 3]},
                     {"p": {"op": "mean", "in": "a"}, "q": {"op": "mean", "in": "b"},
                      "loss": {"op": "add", "in": ["p", "q"]}}, losses=["loss"])
    model = compile_spec(write(tmp_path, text))
    declared = model.inputs["b"].shape[0]
    for b, h in [(1, 1), (2, 5), (3, 6), (7, 6), (4, 9)]:
        want = sympy.sympify(declared, locals={"B": symbol("B"), "H": symbol("H")}).subs(
            {symbol("B"): b, symbol("H"): h})
        n = int(want) if want.is_Integer and want > 0 else 1
        batch = {"a": np.ones((b, h)), "b": np.ones((n, 3))}
        if want.is_Integer and want > 0:
            model.forward({}, batch)
        else:
            with pytest.raises(InputError, match=f"axis 0 must be {re.escape(declared)} = {re.escape(str(want))} "):
                model.forward({}, batch)


def test_backward_weights_the_losses():
    model = compile_spec(Path(__file__).resolve().parents[2] / "examples/early_exit.yaml")
    assert len(model.losses) >= 2
    params = model.init_params(0)
    batch = synthetic_batch(model, {"B": 4}, seed=0)
    first, *rest = model.losses
    per_loss = {}
    for name in model.losses:  # each loss alone: weight 1 on it, 0 on the others
        weights = {other: float(other == name) for other in model.losses}
        per_loss[name] = model.backward(model.forward(params, batch), weights)
    both = model.backward(model.forward(params, batch), {first: 2.0})
    for k, g in both.items():
        expected = 2.0 * per_loss[first][k] + sum(per_loss[n][k] for n in rest)
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6, err_msg=k)
    result = model.forward(params, batch)
    with pytest.raises(ValueError, match="no loss named"):
        model.backward(result, {"nope": 1.0})
    model.backward(result)
    with pytest.raises(ValueError, match="other loss weights"):
        model.backward(result, {first: 3.0})


def test_a_loss_built_from_losses(tmp_path):
    """Loss kernels compute into shape (1,) buffers; the spec types a loss as a scalar, and ops
    downstream of a loss (a sum of two, a weighted loss) see one."""
    from .helpers import check_gradients, compile64, params64

    text = spec_text(
        {"x": [3, 4], "y": ([3], "int64"), "t": [3, 2]},
        {
            "h": {"op": "linear", "in": "x", "out": 2},
            "ce": {"op": "cross_entropy", "in": {"logits": "h", "target": "y"}},
            "mse": {"op": "mse", "in": {"pred": "h", "target": "t"}},
            "both": {"op": "add", "in": ["ce", "mse"]},
            "total": {"op": "mul", "in": ["both", "both"]},
        },
        losses=["total"],
    )
    model = compile64(write(tmp_path, text))
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((3, 4)), "y": np.array([0, 1, 1]), "t": rng.standard_normal((3, 2))}
    assert check_gradients(model, params64(model), batch, rng=rng, expect_inputs={"x", "t"}) >= 3


def test_an_input_reaching_a_loss_only_as_a_label_gets_no_gradient(tmp_path):
    """`ones`/`zeros` → concat → the target of bce_with_logits: no differentiable path, so the
    reverse walk leaves them (and the concat) out instead of reporting a zero gradient."""
    from .helpers import check_gradients, compile64, params64

    text = spec_text(
        {"x": [4, 3], "ones": [2, 1], "zeros": [2, 1]},
        {
            "z": {"op": "linear", "in": "x", "out": 1},
            "labels": {"op": "concat", "in": ["ones", "zeros"], "axis": 0},
            "loss": {"op": "bce_with_logits", "in": {"logits": "z", "target": "labels"}},
        },
        losses=["loss"],
    )
    model = compile64(write(tmp_path, text))
    assert "concat_bwd" not in model.source
    rng = np.random.default_rng(1)
    batch = {"x": rng.standard_normal((4, 3)), "ones": np.ones((2, 1)), "zeros": np.zeros((2, 1))}
    assert check_gradients(model, params64(model), batch, rng=rng, expect_inputs={"x"}) >= 2


def test_a_floored_strided_conv_output_has_its_whole_size(tmp_path):
    """The driver sizes a fresh output with integer arithmetic: a floored stride-3 conv over a
    7x7 image is 3x3 (it was 2x2, computed with floats: 7/3 - 1/3 = 1.999…), and equals the
    NumPy reference for every size."""
    from tests.op_cases import np_conv2d

    spec = write(tmp_path, spec_text(
        {"x": ["B", 2, "H", "W"]},
        {"conv": {"op": "conv2d", "in": "x", "out": 3, "kernel": 3, "stride": 3, "padding": 1,
                  "round": "floor"},
         "act": {"op": "tanh", "in": "conv"},
         "loss": {"op": "mean", "in": "act"}},
        outputs=["conv"], losses=["loss"]))
    model = compile_spec(spec, dtype=np.float64)
    params = {k: v.astype(np.float64) for k, v in model.init_params(0).items()}
    rng = np.random.default_rng(0)
    for h, w in [(7, 7), (7, 8), (9, 10), (4, 13)]:
        x = rng.standard_normal((2, 2, h, w))
        out = model.predict(params, {"x": x})["conv"]
        ref = np_conv2d(x, params["conv.weight"], params["conv.bias"], (3, 3), (1, 1), (1, 1), 1)
        assert out.shape == ref.shape == (2, 3, (h - 1) // 3 + 1, (w - 1) // 3 + 1)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
