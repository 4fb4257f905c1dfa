"""Tier 5: every row of the op table as a compiled one-node spec.

The spec is the row's inputs and node `y`; unless the node is itself a loss (or a scalar),
each output p it produces feeds a loss `sum(y.p * c_p)` with a random cotangent input c_p
(`mul` and `sum` run over NumPy: no Numba specialisation of their own). The model is
compiled once with input gradients on, then
  - its forward, in float32 and in float64 (`CompiledModel.astype`), must equal the row's
    NumPy reference on the table's values;
  - every trainable parameter gradient and every float input gradient must match central
    differences (helpers.check_gradients: a random direction and single elements, the exact
    set of inputs that get a gradient, entries that get none by definition);
  - `graphc.compiler.checks.gradcheck`, the check `graphc gradcheck` runs, must pass.
So this tier proves the op's lowering, the driver's argument plumbing, the buffer plan and the
reverse walk together, where tests/kernels proves the kernels. Special cases that are not a
per-op table follow.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from graphc.compiler import compile_spec
from graphc.compiler.checks import gradcheck
from tests.op_cases import (
    DIMS,
    ROWS,
    Bag,
    by_key,
    case,
    np_affine_grid,
    np_attention,
    np_cross_entropy,
    np_grid_sample,
    spec_doc,
    write_spec,
)

from .helpers import check_gradients, spec_text, write

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=1e-5)}


def _with_losses(c, rng):
    """The row's spec with its losses, and the cotangent inputs' values."""
    r, types = c.row, c.graph.types
    if c.op.loss or all(types[("y", p)].rank == 0 for p in c.node.outputs):
        return spec_doc(r, losses=["y"]), {}
    inputs, nodes, losses, values = {}, {}, [], {}
    for p in c.node.outputs:
        if p in r.unused:
            continue
        ref = "y" if p == "out" else f"y.{p}"
        if r.loss_via:  # e.g. softmax after a -inf mask: the loss must stay finite
            nodes[f"via_{p}"] = r.loss_via | {"in": ref}
            ref = f"via_{p}"
        inputs[f"c_{p}"] = {"shape": [int(d) if d.is_Integer else str(d) for d in types[("y", p)].shape]}
        nodes[f"weighted_{p}"] = {"op": "mul", "in": [ref, f"c_{p}"]}
        nodes[f"loss_{p}"] = {"op": "sum", "in": f"weighted_{p}"}
        losses.append(f"loss_{p}")
        values[f"c_{p}"] = rng.standard_normal(c.outputs[p])
    outputs = ["y" if p == "out" else f"y.{p}" for p in c.node.outputs]
    return spec_doc(r, outputs=outputs, losses=losses, extra_inputs=inputs, extra_nodes=nodes), values


def _nondiff_inputs(c) -> set[str]:
    """Spec inputs that reach the node only through ports no gradient flows into."""
    diff = {i.src for i in c.node.inputs if c.op.port(i.port).differentiable}
    return {i.src for i in c.node.inputs} - diff


def _cast(d: dict, dtype) -> dict:
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in d.items()}


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.key)
def test_compiled_single_node(r, tmp_path):
    c = case(r)
    rng = np.random.default_rng(zlib.crc32(f"compiled/{r.key}".encode()))
    doc, cotangents = _with_losses(c, rng)
    model = compile_spec(write_spec(doc, tmp_path), wrt_inputs=True, fuse=False)  # the op's own kernels
    params = {f"y.{n}": v for n, v in c.params.items() if v is not None}
    batch = c.batch | cotangents

    for dtype in (np.float32, np.float64):
        m = model if dtype is np.float32 else model.astype(np.float64)
        p = {k: v.copy() for k, v in _cast(params, dtype).items()}  # a training forward updates buffers
        res = m.forward(p, _cast(batch, dtype), training=r.training, seed=0)
        t = c.tensors(None if dtype is np.float64 else (lambda v: v.astype(np.float32).astype(np.float64)))
        got = {port: (res.losses["y"] if "y" in res.losses else res.outputs["y" if port == "out" else f"y.{port}"])
               for port in c.node.outputs}
        if c.op.kernel.noise and r.training:  # the driver draws the noise: read back where it dropped
            t[c.op.kernel.noise] = (got["out"] != 0).astype(np.float64)
        want = r.ref(t, c.attrs)
        for port, w in zip(c.node.outputs, want if isinstance(want, tuple) else (want,), strict=True):
            out = np.asarray(got[port])
            assert out.dtype == dtype or out.ndim == 0, f"{port}: {out.dtype}"
            np.testing.assert_allclose(out.reshape(np.shape(w)), w, err_msg=f"{port} ({np.dtype(dtype)})",
                                       **TOL[dtype])

    m64 = model.astype(np.float64)
    frozen = r.frozen(c.tensors(), c.attrs) if r.frozen else {}
    floats = {n for n, s in model.inputs.items() if s.dtype != "int64"}
    n = check_gradients(m64, _cast(params, np.float64), _cast(batch, np.float64), training=r.training, seed=0,
                        rng=rng, expect_inputs=floats - _nondiff_inputs(c),
                        frozen_rows={f"y.{k}": v for k, v in frozen.items()})
    assert n >= 1
    # gradcheck draws its own batch (normal floats): not for ops defined on x > 0; and its random
    # directions would move entries that have no gradient by definition (frozen)
    if not frozen and all(v.kind != "positive" for v in r.inputs.values()):
        bad = [row for row in gradcheck(model, DIMS, training=r.training) if not row.ok]
        assert not bad, f"graphc gradcheck: {bad}"


# ----------------------------------------------------------------------------- special cases
TOL32 = TOL[np.float32]


def _f32(a):
    return np.asarray(a, np.float32)


def _rng(key: str):
    return np.random.default_rng(zlib.crc32(key.encode()))


def _run(tmp_path, inputs, node, batch, *, loss=False, training=False, rng=None):
    """Compile `inputs` + one node `y` (float32); (value of y, params as float64)."""
    text = spec_text(inputs, {"y": node}, **({"losses": ["y"]} if loss else {"outputs": ["y"]}))
    model = compile_spec(write(tmp_path, text))
    p = model.init_params(0)
    if rng is not None:  # move trainable params off their init (γ=1, β=0, zero biases)
        p = {k: _f32(v + 0.3 * rng.standard_normal(v.shape)) if model.params[k].trainable else v
             for k, v in p.items()}
    r = model.forward(p, batch, training=training)
    return (r.losses["y"] if loss else r.outputs["y"]), {k: v.astype(np.float64) for k, v in p.items()}


@pytest.mark.parametrize("align_corners", [False, True])
def test_spatial_transformer_with_symbolic_size(tmp_path, align_corners):
    """affine_grid sized [H // 2, W] from the image's symbolic dims, then grid_sample."""
    rng = _rng(f"stn{align_corners}")
    x = _f32(rng.standard_normal((3, 2, 6, 5)))
    theta = _f32(np.array([[1, 0, 0], [0, 1, 0]]) + 0.5 * rng.standard_normal((3, 2, 3)))
    nodes = {"grid": {"op": "affine_grid", "in": "theta", "size": ["H // 2", "W"], "align_corners": align_corners},
             "y": {"op": "grid_sample", "in": ["x", "grid"], "align_corners": align_corners}}
    text = spec_text({"x": ["B", 2, "H", "W"], "theta": ["B", 2, 3]}, nodes, outputs=["grid", "y"])
    out = compile_spec(write(tmp_path, text)).forward({}, {"x": x, "theta": theta}).outputs
    a = Bag(size=(3, 5), align_corners=align_corners)
    np.testing.assert_allclose(out["grid"], np_affine_grid(Bag(theta=theta.astype(np.float64)), a), **TOL32)
    want = np_grid_sample(Bag(x=x.astype(np.float64), grid=out["grid"].astype(np.float64)), a)
    np.testing.assert_allclose(out["y"], want, **TOL32)
    assert out["y"].shape == (3, 2, 3, 5) and out["y"].dtype == np.float32


def test_grid_sample_identity_and_zero_padding(tmp_path):
    """The identity grid reproduces the image; a grid shifted by a whole image width reads zeros."""
    x = _f32(_rng("stn-identity").standard_normal((2, 3, 4, 4)))
    theta = _f32(np.tile([[1, 0, 0], [0, 1, 0]], (2, 1, 1)))
    nodes = {"grid": {"op": "affine_grid", "in": "theta", "size": [4, 4]},
             "y": {"op": "grid_sample", "in": ["x", "grid"]}}
    model = compile_spec(write(tmp_path, spec_text({"x": [2, 3, 4, 4], "theta": [2, 2, 3]}, nodes, outputs=["y"])))
    np.testing.assert_allclose(model.forward({}, {"x": x, "theta": theta}).outputs["y"], x, **TOL32)
    shifted = theta.copy()
    shifted[:, 0, 2] = 2.5  # x + 2.5: more than one pixel right of the image everywhere
    assert not model.forward({}, {"x": x, "theta": shifted}).outputs["y"].any()


def _huge_logits(rng):
    x = rng.standard_normal((4, 6)) * 1e4
    x[0] = [1e4, -1e4, 1e4, 0, -1e4, 5e3]
    x[1] = -1e4
    return _f32(x)


def test_cross_entropy_finite_on_huge_logits(tmp_path):
    logits, target = _huge_logits(_rng("huge-ce")), np.array([1, 2, 3, 0])
    y, _ = _run(tmp_path, {"z": [4, 6], "t": ([4], "int64")}, {"op": "cross_entropy", "in": ["z", "t"]},
                {"z": logits, "t": target}, loss=True)
    want = np_cross_entropy(Bag(logits=logits.astype(np.float64), target=target),
                            case(by_key("cross_entropy-2d")).attrs)  # the defaults
    assert np.isfinite(y) and y == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_finite_on_huge_logits(tmp_path, op):
    from tests.op_cases import _log_softmax, _softmax

    x = _huge_logits(_rng(f"huge-{op}"))
    y, _ = _run(tmp_path, {"x": [4, 6]}, {"op": op, "in": "x"}, {"x": x})
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, (_softmax if op == "softmax" else _log_softmax)(x.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["bce_with_logits", "kl_div"])
def test_losses_finite_on_huge_logits(tmp_path, op):
    rng = _rng(f"huge-{op}")
    z = _huge_logits(rng)
    other = _f32(rng.random(z.shape)) if op == "bce_with_logits" else _huge_logits(rng)[::-1].copy()
    shape = [4, 6] if op == "bce_with_logits" else [1, 4, 6]  # ranks the table compiles already
    y, _ = _run(tmp_path, {"a": shape, "b": shape}, {"op": op, "in": ["a", "b"]},
                {"a": z.reshape(shape), "b": other.reshape(shape)}, loss=True)
    a64, b64 = z.reshape(shape).astype(np.float64), other.reshape(shape).astype(np.float64)
    t = Bag(logits=a64, target=b64) if op == "bce_with_logits" else Bag(student=a64, teacher=b64)
    want = by_key(f"{op}-2d").ref(t, case(by_key(f"{op}-2d")).attrs)  # the default attributes
    assert np.isfinite(y) and y == pytest.approx(want, rel=1e-5)


def test_fully_masked_attention_row_is_finite_and_uniform(tmp_path):
    """Every key of batch row 0 is padding: documented to attend uniformly, never NaN."""
    rng = _rng("attention-full-mask")
    q = _f32(rng.standard_normal((2, 3, 4)))
    m = _f32([[1, 1, 1], [0, 1, 0]])
    y, p = _run(tmp_path, {"q": [2, 3, 4], "m": [2, 3]},
                {"op": "attention", "in": {"q": "q", "kv": "q", "key_padding_mask": "m"}, "heads": 2},
                {"q": q, "m": m}, rng=rng)  # kv given explicitly: the cross-attention kernel
    assert np.all(np.isfinite(y))
    q64 = q.astype(np.float64)
    w = Bag({k.split(".")[1]: v for k, v in p.items()})
    want = np_attention(Bag(w, q=q64, kv=q64, key_padding_mask=m.astype(np.float64)), Bag(heads=2, causal=False))
    np.testing.assert_allclose(y, want, **TOL32)
    row0 = (q64[0] @ w.wv.T + w.bv).mean(axis=0) @ w.wo.T + w.bo  # uniform weights over the keys
    np.testing.assert_allclose(y[0], np.broadcast_to(row0, (3, 4)), **TOL32)


def test_cross_entropy_with_nothing_counted_is_zero(tmp_path):
    logits = _f32(_rng("ce-empty").standard_normal((2, 3)))
    y, _ = _run(tmp_path, {"z": [2, 3], "t": ([2], "int64"), "m": [2]},
                {"op": "cross_entropy", "in": {"logits": "z", "target": "t", "mask": "m"}},
                {"z": logits, "t": np.array([0, 2]), "m": _f32([0, 0])}, loss=True)
    assert y == 0.0


def test_norms_of_constant_rows_are_finite(tmp_path):
    x = np.ones((2, 3, 4), np.float32)
    y, p = _run(tmp_path, {"x": [2, 3, 4]}, {"op": "layernorm", "in": "x"}, {"x": x})
    np.testing.assert_allclose(y, np.broadcast_to(p["y.bias"], y.shape), atol=1e-6)
    y, _ = _run(tmp_path, {"x": [1, 3]}, {"op": "batchnorm", "in": "x"}, {"x": np.ones((1, 3), np.float32)},
                training=True)
    assert np.all(np.isfinite(y))
