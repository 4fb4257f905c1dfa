"""Every op's ONNX exporter, one case per row of the op table (tests/compiler/test_op_gradients):
the row's single-node spec is exported with random parameters, must pass onnx's full checker
and strict shape inference, and onnxruntime's output must equal graphc's forward."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from graphc.export import NOT_EXPORTED, ExportError, to_onnx
from graphc.export.verify import compare, run_onnx
from graphc.ops import OPS
from tests.compiler.helpers import params64, spec_text, write
from tests.compiler.test_op_gradients import ROWS, Row, _batch, _key, _spec

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

EXTRA = [Row("rmsnorm", "3d", {"x": [2, 3, 4]}), Row("rmsnorm", "eps", {"x": [3, 5]}, {"eps": 1e-3}),
         Row("rsqrt", "positive", {"x": ([2, 3], "prob")})]
EXTRA = [r for r in EXTRA if r.op in OPS]
CASES = [r for r in ROWS + [r for r in EXTRA if r.op not in {x.op for x in ROWS}]
         if not OPS[r.op].loss and not r.as_loss]


def test_every_op_exports_or_is_listed_with_a_reason():
    missing = sorted(n for n, op in OPS.items() if "onnx" not in op.rules and n not in NOT_EXPORTED)
    assert not missing, f"ops with neither an ONNX exporter nor a NOT_EXPORTED reason: {missing}"
    both = sorted(n for n in NOT_EXPORTED if n in OPS and "onnx" in OPS[n].rules)
    assert not both, f"ops listed as not exported that have an exporter: {both}"
    assert all(n in OPS for n in NOT_EXPORTED), "NOT_EXPORTED names an op that does not exist"
    assert all(len(reason) > 20 for reason in NOT_EXPORTED.values())


def test_every_exportable_op_has_a_case():
    exportable = {n for n, op in OPS.items() if "onnx" in op.rules}
    assert not exportable - {r.op for r in CASES}


@pytest.mark.parametrize("r", CASES, ids=_key)
def test_op_exports_and_matches_graphc(r: Row, tmp_path):
    from graphc.compiler import compile_spec

    rng = np.random.default_rng(zlib.crc32(_key(r).encode()))
    model = compile_spec(write(tmp_path, _spec(r)), dtype=np.float64)  # float64 kernels: shared
    params = params64(model, 0)  # with the gradient tier's compiled specialisations
    params = {k: v + 0.1 * rng.standard_normal(v.shape) if model.params[k].trainable else v
              for k, v in params.items()}
    if r.prepare:
        params = r.prepare(params, rng)
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}  # same values
    batch = _batch(model, r, rng)
    batch = {k: v.astype(np.float32).astype(np.float64) if v.dtype.kind == "f" else v
             for k, v in batch.items()}
    m = to_onnx(model.graph, params)  # checker (full) and strict shape inference run here
    assert [n.name for n in m.graph.node if not n.name.startswith(("y/", "output/"))] == ["y"]
    got = run_onnx(m, batch)
    want = model.predict(params, batch)
    for name in model.outputs:
        c = compare(name, got[name], want[name])
        assert c.ok, c


def test_a_loss_is_not_exported_but_named(tmp_path):
    from graphc.pipeline import analyze

    text = spec_text({"x": [2, 3], "y": ([2], "int64")},
                     {"z": {"op": "linear", "in": "x", "out": 3},
                      "l": {"op": "cross_entropy", "in": ["z", "y"]}}, outputs=["l"], losses=["l"])
    graph = analyze(write(tmp_path, text)).graph
    with pytest.raises(ExportError) as err:
        to_onnx(graph, {"z.weight": np.zeros((3, 3)), "z.bias": np.zeros(3)})
    assert "node `l` (cross_entropy): a loss" in str(err.value)


POINTWISE = sorted(n for n, op in OPS.items() if getattr(op, "pointwise", None) is not None)


@pytest.mark.parametrize("op", POINTWISE)
def test_the_pointwise_rule_exporter_matches_graphc(op, tmp_path, monkeypatch):
    """Every op with a scalar rule also exports from the rule alone (what a new elementwise
    op without a hand-written exporter gets)."""
    from graphc.compiler import compile_spec
    from graphc.export.pointwise import export_pointwise

    ports = [p.name for p in OPS[op].inputs]
    model = compile_spec(write(tmp_path, spec_text({p: [2, 3] for p in ports}, {"y": {"op": op, "in": ports}},
                                                   outputs=["y"])), dtype=np.float64)
    rng = np.random.default_rng(0)
    batch = {p: rng.uniform(0.2, 2.0, (2, 3)) * rng.choice([-1.0, 1.0], (2, 3)) if op != "rsqrt"
             else rng.uniform(0.2, 2.0, (2, 3)) for p in ports}
    batch = {k: v.astype(np.float32).astype(np.float64) for k, v in batch.items()}
    monkeypatch.setitem(OPS[op].rules, "onnx", export_pointwise)
    got = run_onnx(to_onnx(model.graph, {}), batch)["y"]
    c = compare("y", got, model.predict({}, batch)["y"])
    assert c.ok, c
