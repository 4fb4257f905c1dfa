"""End-to-end shape fuzzing: random specs chaining shape-changing ops over symbolic dims
(tests/compiler/shape_fuzz.py), compiled in float64 and run at random small dims.

For every generated spec the front end accepts (one it rejects must be rejected with a
diagnostic, never a GC900 internal error), and for several bindings of its dims (1, primes,
sizes where `round: floor` drops a window and where an `exact` size is not whole):
  1. every node's inferred shape, evaluated at those dims, is the shape of an independent NumPy
     forward's value, and the compiled model's outputs have exactly those shapes;
  2. outputs and loss equal the NumPy forward; a second forward and a forward with every tensor
     in a buffer of its own (`reuse=False`) are bit-identical, gradients included;
  3. gradients of parameters and inputs match central finite differences (float64);
  4. dims that make a node impossible (a non-whole `exact` size, an empty output, a slice past
     the end of its axis), and a batch that does not fit an input declared with an expression
     (`[2 * B, C]`), raise InputError.

The suite runs SPECS specs from a fixed seed; GRAPHC_SHAPE_FUZZ=N runs N (a long run),
GRAPHC_SHAPE_FUZZ_SEED=S starts at seed S.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from graphc.compiler import InputError
from graphc.pipeline import analyze
from graphc.shapes import bind

from .helpers import check_gradients, compile64, output_types, params64, spec_text, write
from .shape_fuzz import Misfit, draw_batch, draw_dims, generate, reference

SPECS = int(os.environ.get("GRAPHC_SHAPE_FUZZ", "40"))
FIRST = int(os.environ.get("GRAPHC_SHAPE_FUZZ_SEED", "0"))
BINDINGS = 5  # dims drawn per spec


def _at(t, dims: dict[str, int]):
    """An inferred shape at these dims: a tuple of ints, or None when a size is not a whole
    number ≥ 1 there."""
    shape = []
    for d in t.shape:
        v = bind(d, dims)
        if not v.is_Integer or int(v) < 1:
            return None
        shape.append(int(v))
    return tuple(shape)


def _values(result, grads=None) -> dict:
    out = {f"out:{k}": v.copy() for k, v in result.outputs.items()}
    out |= {f"loss:{k}": np.array(v) for k, v in result.losses.items()}
    return out | {f"grad:{k}": v for k, v in (grads or {}).items()}


def _run_case(case, tmp_path) -> str:
    """Everything above for one generated spec; returns what happened (for the long run's tally)."""
    path = write(tmp_path, spec_text(case.inputs, case.nodes, outputs=case.outputs, losses=case.losses,
                                     name=f"fuzz{case.seed}"))
    analysis = analyze(path)
    internal = [d.message for d in analysis.diagnostics if d.code == "GC900"]
    assert not internal, internal
    if not analysis.ok:
        assert analysis.errors  # rejected with a diagnostic
        return "rejected"
    types = analysis.graph.types
    model = compile64(path)
    params = params64(model, seed=case.seed)
    rng = np.random.default_rng(case.seed)
    fitted = 0
    for i in range(BINDINGS):
        dims = draw_dims(rng, case)
        batch = draw_batch(rng, case, dims)
        inferred = {(n, "out"): _at(types[(n, "out")], dims) for n in case.refs if (n, "out") in types}
        try:
            ref = reference(case, params, batch)
        except Misfit:  # the NumPy forward finds these dims impossible: so must the model
            with pytest.raises(InputError, match="do not fit node"):
                model.forward(params, batch)
            with pytest.raises(InputError, match="do not fit node"):
                model.forward(params, batch, training=True, reuse=False)
            continue
        for n in case.refs:  # the front end's shapes against the NumPy forward's
            if isinstance(ref[n], tuple):  # split: its pieces
                for k, piece in enumerate(ref[n]):
                    assert _at(types[(n, str(k))], dims) == piece.shape, (n, k, dims)
            else:
                assert inferred[(n, "out")] == ref[n].shape, (n, dims, types[(n, "out")])
        fitted += 1
        r = model.forward(params, batch)
        for name in case.outputs:
            out = r.outputs[name]
            assert out.shape == inferred[(name, "out")], (name, dims)
            np.testing.assert_allclose(out, ref[name], rtol=1e-9, atol=1e-11, err_msg=f"{name} at {dims}")
        (loss,) = case.losses
        np.testing.assert_allclose(r.losses[loss], ref[loss], rtol=1e-9, atol=1e-11, err_msg=f"loss at {dims}")
        again = model.forward(params, batch)
        first = _values(r, model.backward(r))
        second = _values(again, model.backward(again))
        alone = model.forward(params, batch, training=True, reuse=False)
        shared = model.forward(params, batch, training=True)
        for k, v in _values(alone, model.backward(alone)).items():
            np.testing.assert_array_equal(v, first[k], err_msg=f"{k}: reuse=False vs the first forward")
            np.testing.assert_array_equal(second[k], first[k], err_msg=f"{k}: a second forward")
        shared_values = _values(shared, model.backward(shared))
        for k, v in shared_values.items():
            np.testing.assert_array_equal(v, first[k], err_msg=f"{k}: training=True (no dropout) vs eval")
        for k, v in first.items():
            assert np.all(np.isfinite(v)), k
        if fitted <= 1:  # finite differences at the first dims that fit
            # their round-off grows with the loss (~1e-11·L at ε = 1e-5): a gradient that is
            # zero by symmetry (attention's key bias) came out 9e-8 at L = 4541
            check_gradients(model, params, batch, rng=np.random.default_rng(i), n_elements=2,
                            rtol=1e-5, atol=1e-9 * max(1.0, abs(r.losses[loss])))
        if case.expr_input and fitted <= 1:  # an input axis declared `2 * B` that is not 2·B
            bad = dict(batch)
            bad[case.expr_input] = np.concatenate([batch[case.expr_input]] * 2, 0)[:-1]
            with pytest.raises(InputError, match=r"2\*B"):
                model.forward(params, bad)
    return f"ran {fitted}/{BINDINGS} fitting dims"


def front_end(tmp_path):
    """`infer(case, node)` for the generator: the node's type in the spec built so far."""

    def infer(case, node):
        path = write(tmp_path, spec_text(case.inputs, case.nodes, outputs=[node]), "partial.yaml")
        analysis = analyze(path)
        return analysis.graph.types.get((node, "out")) if analysis.ok else None

    return infer


@pytest.mark.parametrize("seed", range(FIRST, FIRST + SPECS))
def test_random_spec_shapes_values_and_gradients(seed, tmp_path):
    _run_case(generate(seed, infer=front_end(tmp_path)), tmp_path)


# ----------------------------------------------------------------------------- what it found
# Each was a generated case first; these are the smallest forms.
def _model(tmp_path, inputs, nodes, out):
    return compile64(write(tmp_path, spec_text(inputs, nodes, outputs=[out], losses=["loss"])))


def test_an_exact_conv_refuses_dims_where_its_size_is_not_whole(tmp_path):
    """An `exact` stride-2 conv over a symbolic H is (H - 3)/2 + 1, whole only for odd H. At
    H = 8 the driver's integer arithmetic silently floored it to 3 (PyTorch's answer, which the
    spec did not ask for: `round: floor` does); it is an InputError naming the node."""
    from tests.op_cases import np_conv2d

    model = _model(tmp_path, {"x": ["B", 2, "H", "W"]},
                   {"conv": {"op": "conv2d", "in": "x", "out": 3, "kernel": 3, "stride": 2},
                    "loss": {"op": "mean", "in": "conv"}}, "conv")
    params = params64(model)
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 9))
    out = model.forward(params, {"x": x}).outputs["conv"]
    ref = np_conv2d(x, params["conv.weight"], params["conv.bias"], (2, 2), (0, 0), (1, 1), 1)
    assert out.shape == ref.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(InputError, match=r"H=8.*node `conv` \(conv2d\): its output axis 2, \(H/2 - 1/2\), "
                                         r"is 7/2 there, not a whole number \(an `exact` size; `round: floor` "
                                         r"drops the last partial window\)"):
        model.forward(params, {"x": np.zeros((2, 2, 8, 9))})
    with pytest.raises(InputError, match=r"output axis 3, \(W/2 - 1/2\), is 5/2"):
        model.forward(params, {"x": np.zeros((2, 2, 7, 6))})


def test_a_window_larger_than_the_image_is_an_input_error(tmp_path):
    """A 3×3 conv (floored or not) over H = 2 has no output row: it gave an empty output and a
    NaN loss, and at H = 1 NumPy's "negative dimensions are not allowed" from the driver."""
    model = _model(tmp_path, {"x": ["B", 1, "H", "W"]},
                   {"conv": {"op": "conv2d", "in": "x", "out": 1, "kernel": 3, "round": "floor"},
                    "loss": {"op": "mean", "in": "conv"}}, "conv")
    params = params64(model)
    assert model.forward(params, {"x": np.ones((1, 1, 3, 5))}).outputs["conv"].shape == (1, 1, 1, 3)
    for h in (1, 2):
        with pytest.raises(InputError, match=rf"H={h}.*output axis 2, \(H - 2\), is {h - 2} there: the "
                                             "output would be empty"):
            model.forward(params, {"x": np.ones((1, 1, h, 5))})


@pytest.mark.parametrize(("slice_attrs", "length", "pattern"), [
    ({"start": 1, "stop": 4}, 3, r"L=3.*slice 1:4 needs axis 2 of its input, L, to be at least 4 \(short by 1\)"),
    ({"start": 2}, 2, r"L=2.*output axis 2, \(L - 2\), is 0 there: the output would be empty"),
], ids=["stop-past-the-end", "start-at-the-end"])
def test_a_slice_past_the_end_of_a_symbolic_axis_is_an_input_error(tmp_path, slice_attrs, length, pattern):
    """`stop` past the end of a symbolic axis made NumPy's clipped slice, smaller than its
    buffer: a broadcast ValueError from the driver; `start` at the end an empty output and a NaN
    loss."""
    model = _model(tmp_path, {"x": ["B", 1, "L"]},
                   {"s": {"op": "slice", "in": "x", "axis": 2, **slice_attrs},
                    "loss": {"op": "mean", "in": "s"}}, "s")
    x = np.arange(5.0).reshape(1, 1, 5)
    np.testing.assert_array_equal(model.forward({}, {"x": x}).outputs["s"],
                                  x[:, :, slice_attrs["start"]:slice_attrs.get("stop")])
    with pytest.raises(InputError, match=pattern):
        model.forward({}, {"x": np.ones((1, 1, length))})


def test_a_reduction_over_a_repeated_axis_is_a_check_error(tmp_path):
    """`axis: [-1, 2]` of a rank-3 input names axis 2 twice: `check` passed it and the forward
    crashed in NumPy ("duplicate value in 'axis'")."""
    path = write(tmp_path, spec_text({"x": ["B", 2, "H"]},
                                     {"m": {"op": "mean", "in": "x", "axis": [-1, 2], "keepdims": True},
                                      "loss": {"op": "sum", "in": "m"}}, losses=["loss"]))
    analysis = analyze(path)
    assert not analysis.ok
    (d,) = analysis.errors
    assert d.code == "GC204" and d.nodes == ("m",) and "axis 2 repeats axis 2 in [-1, 2]" in d.message


def test_the_guards_are_saved_with_the_model(tmp_path, monkeypatch):
    """A model restored from the cache of saved models (graphc.compiler.saved) checks the dims
    as the one compiled: the guards are plain source and data."""
    from graphc.cli.train import _model as train_model

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    spec = write(tmp_path, spec_text({"x": ["B", 1, "L"]},
                                     {"c": {"op": "conv1d", "in": "x", "out": 1, "kernel": 2, "stride": 2},
                                      "loss": {"op": "mean", "in": "c"}}, losses=["loss"]))
    train_model(str(spec), ())
    restored, _ = train_model(str(spec), ())
    assert "graph" not in restored.__dict__  # restored, not compiled again
    params = restored.init_params(0)
    restored.forward(params, {"x": np.ones((2, 1, 6))})
    with pytest.raises(InputError, match=r"L=7.*node `c` \(conv1d\).*is 7/2 there, not a whole number"):
        restored.forward(params, {"x": np.ones((2, 1, 7))})


def test_a_size_written_with_a_fraction_stays_exact(tmp_path):
    """`W/3 + 2/3`, how graphc itself prints an exact pool's output size, was evaluated as
    W/3 + 0.666666666666667: a reshape to it with a -1 axis was accepted with the float in its
    type (and then failed to compile), and an input axis declared `H/2 + 1/2` was never checked
    (a float size is never an Integer, so any batch passed)."""
    from graphc.compiler import compile_spec
    from tests.op_cases import np_pool

    pool = spec_text({"x": ["B", 3, "H", "W"]},
                     {"p": {"op": "maxpool2d", "in": "x", "kernel": [2, 3], "padding": [0, 1]},
                      "r": {"op": "reshape", "in": "p", "shape": ["B", -1]},
                      "back": {"op": "reshape", "in": "r", "shape": ["B", 3, "H/2", "W/3 + 2/3"]},
                      "loss": {"op": "mean", "in": "back"}}, outputs=["back"], losses=["loss"])
    path = write(tmp_path, pool)
    assert str(output_types(path)[("back", "out")]) == "[B×3×H/2×(W/3 + 2/3)]"
    model = compile_spec(path, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 7))
    back = model.forward({}, {"x": x}).outputs["back"]
    ref = np_pool(SimpleNamespace(x=x), SimpleNamespace(kernel=[2, 3], padding=[0, 1], stride=None), "max")
    assert back.shape == ref.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(back, ref)
    with pytest.raises(InputError, match=r"not a whole number"):
        model.forward({}, {"x": np.zeros((2, 3, 4, 6))})

    float_dim = spec_text({"x": ["B", 3, "W"]},
                          {"r": {"op": "reshape", "in": "x", "shape": ["B", 3, "W * 0.5", -1]},
                           "loss": {"op": "mean", "in": "r"}}, losses=["loss"])
    analysis = analyze(write(tmp_path, float_dim, "float.yaml"))
    assert [(d.code, "holds a fractional number" in d.message) for d in analysis.errors] == [("GC104", True)]

    declared = spec_text({"a": ["B", "H"], "b": ["B", "H/2 + 1/2"]},
                         {"p": {"op": "mean", "in": "a"}, "q": {"op": "mean", "in": "b"},
                          "loss": {"op": "add", "in": ["p", "q"]}}, losses=["loss"])
    model = compile_spec(write(tmp_path, declared, "declared.yaml"))
    assert model.inputs["b"].shape == ("B", "H/2 + 1/2")
    assert model.forward({}, {"a": np.ones((2, 5)), "b": np.ones((2, 3))}).losses["loss"] == 2.0
    with pytest.raises(InputError, match=r"axis 1 must be H/2 \+ 1/2 = 3 \(H=5 from `a`\)"):
        model.forward({}, {"a": np.ones((2, 5)), "b": np.ones((2, 4))})
    with pytest.raises(InputError, match=r"axis 1 must be H/2 \+ 1/2 = 7/2 \(H=6 from `a`\)"):
        model.forward({}, {"a": np.ones((2, 6)), "b": np.ones((2, 3))})
