"""The `fuse` pass and the kernels generated from pointwise rules (issue #17).

Gradient rows for fused groups (float64 central differences, through the whole compiled
model), the groups the pass forms, broadcasting collapse, the primitives spec against the
library ops, `--no-fuse`, `--emit` and `--dump-after fuse`. Each spec here is small and the
groups are few: every distinct group is a Numba compile of its own on a cold cache.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from click.testing import CliRunner

from graphc.compiler import compile_spec
from graphc.compiler.checks import synthetic_batch
from graphc.compiler.kernelgen import collapse
from graphc.ops import OPS
from graphc.ops.scalar import Pointwise, RuleError
from tests.compiler.helpers import check_gradients, compile64, params64, write
from tests.conftest import ROOT

DIMS = {"B": 2, "T": 3}

# name → (spec text, the member ops of each fused group the pass must form)
GROUPS = {
    "broadcast-chain": ("""
inputs: {x: [B, T, 4], s: [B, T, 1], w: [4]}
nodes:
  gate: {op: sigmoid, in: x}
  h: {op: mul, in: [x, gate]}
  c: {op: sub, in: [h, s]}
  t: {op: tanh, in: c}
  r: {op: add, in: [t, w]}
  act: {op: gelu, in: r}
  loss: {op: mse, in: [act, x]}
outputs: [act]
losses: [loss]
""", [["sigmoid", "mul", "sub", "tanh", "add", "gelu"]]),
    "literals-and-bounds": ("""
inputs: {a: [B, 5], b: [B, 5]}
nodes:
  swish: {op: silu, in: a}
  glu: {op: mul, in: [swish, b]}
  half: {op: mul, in: [glu, 0.5]}
  res: {op: add, in: [a, half]}
  low: {op: clamp, in: res, min: -1.5}
  hs: {op: hardswish, in: low}
  r6: {op: relu6, in: hs}
  out: {op: sub, in: [3.0, r6]}
  loss: {op: mse, in: [out, b]}
losses: [loss]
""", [["silu", "mul", "mul", "add", "clamp", "hardswish", "relu6", "sub"]]),
    "fan-out-and-outputs": ("""
inputs: {x: [B, 6], y: [B, 6]}
nodes:
  sq: {op: mul, in: [x, x]}
  e: {op: add, in: [sq, y]}
  t: {op: tanh, in: e}
  fc: {op: linear, in: e, out: 6}
  m: {op: mul, in: [t, fc]}
  r: {op: relu, in: m}
  o: {op: add, in: [r, t]}
  loss: {op: mse, in: [o, y]}
outputs: [t, o]
losses: [loss]
""", [["mul", "add", "tanh"], ["mul", "relu", "add"]]),
    "layer-norm-rows": ("""
inputs: {x: [B, T, 8]}
nodes:
  mu: {op: mean, in: x, axis: -1, keepdims: true}
  xc: {op: sub, in: [x, mu]}
  sq: {op: mul, in: [xc, xc]}
  var: {op: mean, in: sq, axis: -1, keepdims: true}
  ve: {op: add, in: [var, 1e-5]}
  rstd: {op: rsqrt, in: ve}
  xn: {op: mul, in: [xc, rstd]}
  gain: {op: param, shape: [8], init: ones}
  y: {op: mul, in: [xn, gain]}
  tot: {op: sum, in: y, axis: -1, keepdims: true}
  z: {op: sub, in: [y, tot]}
  loss: {op: mse, in: [z, x]}
outputs: [z]
losses: [loss]
""", [["mean", "sub", "mul", "mean", "add", "rsqrt", "mul", "mul", "sum", "sub"]]),
}


def _spec(tmp_path, name: str):
    return write(tmp_path, GROUPS[name][0], f"{name.replace('-', '_')}.yaml")


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_fused_group_gradients_match_finite_differences(tmp_path, name):
    model = compile64(_spec(tmp_path, name))
    assert [g.ops for g in model.fused] == GROUPS[name][1]
    params = params64(model)
    rng = np.random.default_rng(1)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    batch = {k: v.astype(np.float64) for k, v in synthetic_batch(model, DIMS).items()}
    assert check_gradients(model, params, batch) >= 2


def test_unfused_compile_has_no_groups_and_agrees(tmp_path):
    path = _spec(tmp_path, "broadcast-chain")
    fused, plain = compile64(path), compile64(path, fuse=False)
    assert fused.fused and not plain.fused
    batch = {k: v.astype(np.float64) for k, v in synthetic_batch(fused, DIMS).items()}
    results = [m.forward(params64(m), batch) for m in (fused, plain)]
    grads = [m.input_gradients(r) for m, r in zip((fused, plain), results, strict=True)]
    for k in grads[1]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-12, atol=1e-14)


def test_spec_level_switch_turns_fusion_off(tmp_path):
    from graphc.compiler import compile_graph
    from graphc.pipeline import analyze

    graph = analyze(_spec(tmp_path, "broadcast-chain")).graph
    graph.compile = {"fuse": False}  # what `compile: {fuse: false}` gives the graph
    assert not compile_graph(graph).fused


def test_groups_are_shared_across_specs(tmp_path):
    """Two specs whose groups differ only in names and sizes use one generated module."""
    a = write(tmp_path, "inputs: {p: [B, 4]}\nnodes:\n  q: {op: tanh, in: p}\n  r: {op: mul, in: [q, p]}\n"
              "outputs: [r]\n", "a.yaml")
    b = write(tmp_path, "inputs: {u: [N, 7]}\nnodes:\n  v: {op: tanh, in: u}\n  w: {op: mul, in: [v, u]}\n"
              "outputs: [w]\n", "b.yaml")
    ma, mb = compile_spec(a), compile_spec(b)
    assert ma.fused[0].module is mb.fused[0].module
    assert ma.fused[0].module.__file__ == mb.fused[0].module.__file__


# ----------------------------------------------------------------------------- primitives vs library

_PRIMITIVES = {
    "layer-norm": ("""
inputs: {x: [B, T, 8]}
nodes:
  mu: {op: mean, in: x, axis: -1, keepdims: true}
  xc: {op: sub, in: [x, mu]}
  sq: {op: mul, in: [xc, xc]}
  var: {op: mean, in: sq, axis: -1, keepdims: true}
  ve: {op: add, in: [var, 1e-5]}
  rstd: {op: rsqrt, in: ve}
  y: {op: mul, in: [xc, rstd]}
outputs: [y]
""", """
inputs: {x: [B, T, 8]}
nodes:
  y: {op: layernorm, in: x, affine: false}
outputs: [y]
"""),
    "swiglu": ("""
inputs: {a: [B, 16], b: [B, 16]}
nodes:
  s: {op: sigmoid, in: a}
  sw: {op: mul, in: [a, s]}
  y: {op: mul, in: [sw, b]}
outputs: [y]
""", """
inputs: {a: [B, 16], b: [B, 16]}
nodes:
  sw: {op: silu, in: a}
  y: {op: mul, in: [sw, b]}
outputs: [y]
"""),
}


@pytest.mark.parametrize("name", sorted(_PRIMITIVES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_primitives_match_the_library_ops(tmp_path, name, dtype):
    prim, lib = (compile_spec(write(tmp_path, t, f"{k}.yaml"), dtype=dtype, wrt_inputs=True)
                 for k, t in zip(("prim", "lib"), _PRIMITIVES[name], strict=True))
    assert prim.fused
    batch = {k: v.astype(dtype) for k, v in synthetic_batch(prim, {"B": 4, "T": 3}).items()}
    outs = [m.forward(m.init_params(0), batch) for m in (prim, lib)]
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(outs[0].outputs["y"], outs[1].outputs["y"], rtol=tol, atol=tol)


def test_tanh_gelu_from_primitives_matches_pytorchs_formula():
    model = compile_spec(ROOT / "benchmarks/specs/primitive_blocks.yaml", dtype=np.float64)
    batch = {k: v.astype(np.float64) for k, v in synthetic_batch(model, {"B": 2, "T": 3}).items()}
    u = batch["u"]
    ref = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    out = model.forward(model.init_params(0), batch).outputs
    np.testing.assert_allclose(out["gelu"], ref, rtol=1e-13, atol=1e-15)
    s = 1 / (1 + np.exp(-u))
    np.testing.assert_allclose(out["glu"], u * s * batch["v"], rtol=1e-13, atol=1e-15)


def test_primitives_spec_is_one_group_per_block():
    model = compile_spec(ROOT / "benchmarks/specs/primitives.yaml")
    ops = [g.ops for g in model.fused]
    assert ["mean", "sub", "mul", "mean", "add", "rsqrt", "mul", "mul", "add"] in ops  # the first norm
    assert ["mul", "mul", "mul", "add", "mul", "tanh", "add", "mul", "mul"] in ops  # tanh-GELU
    assert ["sigmoid", "mul", "mul"] in ops  # SwiGLU's gate
    assert ["mul", "add"] in ops  # the last scaled residual
    calls = model.source.count("_fwd(")
    assert calls <= 16, calls  # 5 linears, 5 fused groups, 4 params, the loss (not 54 nodes)


# ----------------------------------------------------------------------------- pieces


def test_collapse_merges_axes_with_the_same_broadcast_pattern():
    B, T = sympy.symbols("B T", positive=True, integer=True)
    ranges, patterns = collapse((B, T, 64), [(B, T, 64), (B, T, 1), (64,)])
    assert ranges == [(0, 2), (2, 3)]
    assert patterns == [(True, True), (True, False), (False, True)]
    assert collapse((2, 1, 3), [(2, 1, 3), (3,)]) == ([(0, 2), (2, 3)], [(True, True), (False, True)])
    assert collapse((1, 1), [(1, 1), ()]) == ([(0, 2)], [(True,), (True,)])
    assert collapse((4, 5), [(4, 5), (4, 5)]) == ([(0, 2)], [(True,), (True,)])


def test_every_pointwise_rule_parses_and_names_what_its_op_has():
    ruled = sorted(n for n, op in OPS.items() if op.pointwise is not None)
    assert {"add", "sub", "mul", "relu", "gelu", "tanh", "sigmoid", "rsqrt", "silu", "clamp", "relu6",
            "hardswish"} <= set(ruled)
    for name in ruled:
        op = OPS[name]
        assert op.kernel.module == "pointwise", name
        op.pointwise.check(name, tuple(p.name for p in op.inputs), (*op.attrs, *op.kernel.attrs),
                           tuple(p.name for p in op.inputs if p.differentiable))


def test_a_rule_without_a_vjp_or_with_unknown_names_fails_naming_the_op():
    with pytest.raises(RuleError, match="op `cube`.*no VJP"):
        Pointwise("x * x * x").check("cube", ("x",), (), ("x",))
    with pytest.raises(RuleError, match="op `cube`.*names z"):
        Pointwise("x * z", x="g").check("cube", ("x",), (), ("x",))
    with pytest.raises(RuleError, match="not allowed"):
        Pointwise("x.real", x="g").check("cube", ("x",), (), ("x",))


def test_expensive_vjps_save_their_jacobian_cheap_ones_recompute():
    assert OPS["gelu"].kernel.saved == 1 and OPS["silu"].kernel.saved == 1
    assert OPS["tanh"].kernel.saved == 0 and OPS["mul"].kernel.saved == 0


# ----------------------------------------------------------------------------- commands


def test_cli_emit_no_fuse_and_dump_after_fuse(tmp_path):
    from graphc.cli import main

    spec = _spec(tmp_path, "layer-norm-rows")  # a parameter inside: the group has a backward
    runner = CliRunner()
    r = runner.invoke(main, ["compile", str(spec), "--emit", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    kernels = sorted((tmp_path / "out").glob("*.fused_*.py"))
    assert len(kernels) == 1
    text = kernels[0].read_text()
    assert "# fused_mu: mu (mean), xc (sub), sq (mul)" in text and "loop (B·T, 8)" in text
    assert "def _fwd32(" in text and "def bwd(" in text
    compile(text, str(kernels[0]), "exec")  # a valid module as written
    r = runner.invoke(main, ["compile", str(spec), "--no-fuse", "--emit", str(tmp_path / "plain")])
    assert r.exit_code == 0 and not list((tmp_path / "plain").glob("*.fused_*.py"))
    r = runner.invoke(main, ["compile", str(spec), "--dump-after", "fuse"])
    assert r.exit_code == 0 and "fused_mu_fwd(" in r.output and "fused_mu_bwd(" in r.output
    r = runner.invoke(main, ["compile", str(spec), "--dump-after", "fuse", "--no-fuse"])
    assert r.exit_code == 0 and "fused_" not in r.output
