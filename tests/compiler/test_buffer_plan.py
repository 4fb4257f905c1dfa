"""The buffer plan: shared buffers never hold two live tensors, and sharing changes no result.

Each reference spec and example runs one training step twice from the same parameters and
batch: with the plan's buffer sharing, and with every tensor in a buffer of its own
(`reuse=False`). If the plan let a kernel overwrite something still to be read, the two would
differ; they must be bit-identical.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from graphc.compiler import compile_spec
from graphc.compiler.checks import synthetic_batch
from graphc.compiler.plan import Arena, assign, describe

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
DIMS = {"B": 4, "T": 6, "S": 5}


def _dims(model) -> dict[str, int]:
    names = {n for s in model.inputs.values() for d in s.shape if isinstance(d, str)
             for n in re.findall(r"[A-Za-z_]\w*", d)}
    return {n: DIMS.get(n, 4) for n in names}


@pytest.fixture(scope="module", params=SPECS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def model(request):
    return compile_spec(request.param)


def _step(model, params, batch, reuse):
    # batchnorm updates its running statistics in place: each run gets its own copies
    result = model.forward({k: v.copy() for k, v in params.items()}, batch, training=True, seed=3,
                           reuse=reuse)
    outputs = {k: v.copy() for k, v in result.outputs.items()}
    return outputs, result.losses, model.backward(result)


def test_sharing_buffers_changes_no_result(model):
    params = model.init_params(0)
    batch = synthetic_batch(model, _dims(model), seed=1)
    shared, own = _step(model, params, batch, True), _step(model, params, batch, False)
    for a, b in zip(shared, own, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_no_buffer_holds_two_live_tensors(model):
    plan = model.buffer_plan
    sizes = plan.sizes_of(model.feed(synthetic_batch(model, _dims(model), seed=1)))
    where, capacity = assign(plan, plan.shapes(sizes))
    shapes = plan.shapes(sizes)
    by_buffer: dict[int, list] = {}
    for t in plan.tensors:
        assert int(np.prod(shapes[t.var])) <= capacity[where[t.var]], t.var
        by_buffer.setdefault(where[t.var], []).append(t)
    for tenants in by_buffer.values():
        tenants.sort(key=lambda t: t.start)
        for a, b in zip(tenants, tenants[1:], strict=False):
            assert a.end < b.start, f"{a.var} (live {a.start}..{a.end}) shares with {b.var} ({b.start}..)"


def test_transformer_plan_shares_memory():
    model = compile_spec(ROOT / "specs/transformer.yaml")
    plan = model.buffer_plan
    arena = Arena(plan, {"B": 64, "T": 16}, np.float32)
    alone = Arena(plan, {"B": 64, "T": 16}, np.float32, reuse=False)
    assert alone.nbytes == arena.unshared_nbytes
    assert arena.nbytes < 0.75 * arena.unshared_nbytes, describe(plan, {"B": 64, "T": 16})[-1]
    # every activation and gradient the kernels write goes through the plan, except the
    # step's own results (logits output, loss)
    assert model.source.count("out=np.empty(") == 2
    assert "out=buf[" in model.source and "into_x=buf[" in model.source


def test_results_alive_together_keep_their_own_buffers():
    model = compile_spec(ROOT / "specs/mlp.yaml")
    params = model.init_params(0)
    b1, b2 = synthetic_batch(model, {"B": 8}, seed=1), synthetic_batch(model, {"B": 8}, seed=2)
    alone = model.backward(model.forward(params, b1, training=True))
    r1 = model.forward(params, b1, training=True)
    r2 = model.forward(params, b2, training=True)  # must not overwrite r1's tape
    g1 = model.backward(r1)
    model.backward(r2)
    for k in alone:
        np.testing.assert_array_equal(g1[k], alone[k], err_msg=k)


def test_a_result_is_differentiated_once_and_its_buffers_return():
    model = compile_spec(ROOT / "specs/mlp.yaml")
    params = model.init_params(0)
    batch = synthetic_batch(model, {"B": 8}, seed=1)
    pool = model._arenas
    for _ in range(3):  # a training loop: steady state holds a single arena
        result = model.forward(params, batch, training=True)
        grads = model.backward(result)
    assert sum(len(v) for v in pool.free.values()) == 1
    assert model.backward(result) is grads  # the same gradients, not a second walk over a spent tape
    assert result.tape == {}
    model.forward(params, batch)  # an inference result dropped unused also gives its arena back
    assert sum(len(v) for v in pool.free.values()) == 1


def test_generated_driver_shows_the_plan():
    model = compile_spec(ROOT / "specs/mlp.yaml")
    src = model.source
    assert "# Buffer plan" in src
    for t in model.buffer_plan.tensors:
        assert f'buf["{t.var}"]' in src
        assert f"#   {t.var} " in src


@pytest.mark.parametrize("scale", [1, 3, 1000])
def test_the_plans_shape_arithmetic_is_the_symbolic_shapes(model, scale):
    """The plan computes shapes with generated Python (no sympy at run time): exactly what its
    symbolic shapes give, for small, odd and large dims."""
    import sympy

    sizes = {n: v * scale + (scale > 1) for n, v in _dims(model).items()}
    shapes = model.buffer_plan.shapes(sizes)
    assert set(shapes) == {t.var for t in model.buffer_plan.tensors}
    for t in model.buffer_plan.tensors:
        exact = tuple(int(sympy.sympify(d, locals={n: sympy.Symbol(n) for n in sizes}).subs(sizes))
                      for d in t.shape)
        assert shapes[t.var] == exact, (t.var, t.shape)


def test_floored_and_symbolic_sizes_are_computed_exactly(tmp_path):
    """A strided conv over a symbolic image with `round: floor` and a flatten of it: the plan's
    shapes hold floor((H + 2p - k)/s) + 1 and products of dims."""
    import sympy

    from .helpers import spec_text, write

    spec = write(tmp_path, spec_text(
        {"x": ["B", 2, "H", "W"]},
        {"conv": {"op": "conv2d", "in": "x", "out": 3, "kernel": 3, "stride": 3, "padding": 1,
                  "round": "floor"},
         "act": {"op": "tanh", "in": "conv"},
         "flat": {"op": "flatten", "in": "act"},
         "loss": {"op": "mean", "in": "flat"}},
        losses=["loss"]))
    model = compile_spec(spec)
    shapes = {t.var: t.shape for t in model.buffer_plan.tensors}
    assert any("floor" in d for s in shapes.values() for d in s), shapes
    for H, W in [(7, 7), (8, 13), (9, 4), (1000, 999)]:
        sizes = {"B": 2, "H": H, "W": W}
        got = model.buffer_plan.shapes(sizes)
        for var, shape in shapes.items():
            exact = tuple(int(sympy.sympify(d, locals={n: sympy.Symbol(n) for n in sizes}).subs(sizes))
                          for d in shape)
            assert got[var] == exact, (var, shape, sizes)
        assert got["conv"][2:] == ((H + 2 - 3) // 3 + 1, (W + 2 - 3) // 3 + 1)


def test_dimension_source_is_exact_integer_arithmetic():
    """codegen.pyexpr, which the driver and the plan compute sizes with, is exact where float
    arithmetic is not (7/3 - 1/3 is 1.999… in floats: floor gives 1, not 2)."""
    import itertools

    import sympy

    from graphc.compiler.codegen import pyexpr
    from graphc.shapes import symbol

    H, W = symbol("H"), symbol("W")
    exprs = [sympy.floor((H - 1) / 3) + 1, sympy.ceiling(W / 3), sympy.floor((H + 2 - 5) / 2) + 1,
             H * W / 4, (H - 1) * W, 3 * (sympy.floor((H - 1) / 3) + 1) ** 2, sympy.Max(H - 1, 2 * W),
             sympy.Min(H, W) - 1, sympy.Mod(H, 3), 5 - H, W * sympy.ceiling((H - 1) / 2),
             sympy.floor(H * W / 7) - sympy.ceiling(H / 5)]
    for e in exprs:
        source = pyexpr(e)
        assert "math." not in source and "/" not in source.replace("//", ""), source
        for h, w in itertools.product(range(1, 40), [4, 7, 12, 1000]):
            value = e.subs({H: h, W: w})
            if value.is_Integer:
                assert eval(source, {"H": h, "W": w}) == int(value), (e, source, h, w)  # noqa: S307


def test_sizes_of_absurd_dims_are_exact_not_wrapped_around():
    """`--dim B=2**60` or `--set B=…`: a tensor of 2**66 elements. int64 products wrapped around
    (summary --memory and compile --plan printed a wrong size, which a memory check could
    pass); the plan's sizes and the estimate of a step are Python integers."""
    from graphc.compiler.checks import step_bytes
    from graphc.compiler.plan import plan_bytes

    model = compile_spec(ROOT / "specs" / "mlp.yaml")
    B = 2**60
    shapes = model.buffer_plan.shapes({"B": B})
    shared, unshared = plan_bytes(model.buffer_plan, {"B": B})
    assert unshared == 4 * sum(int(np.prod(s, dtype=object)) for s in shapes.values())
    assert shared == 4 * sum(assign(model.buffer_plan, shapes)[1]) > 4 * B * 64
    assert step_bytes(model, {"B": B}) == 8 * (2 * B + B) + 2 * shared  # x [B, 2], y [B], the arena
