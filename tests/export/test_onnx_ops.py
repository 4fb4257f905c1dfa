"""The ONNX tier of the op table (tests/op_cases.py): every row's one-node spec, with the
row's parameters and inputs, is exported (onnx's full checker and strict shape inference run
on it), run in onnxruntime, and compared with the row's NumPy reference, computed on the same
float32-rounded values. Rows of losses (not exported) and training-mode rows (the export is the
inference forward) are left out."""

from __future__ import annotations

import numpy as np
import pytest

from graphc.export import NOT_EXPORTED, ExportError, to_onnx
from graphc.export.verify import compare, run_onnx
from graphc.ops import OPS
from tests.compiler.helpers import spec_text, write
from tests.op_cases import ROWS, case

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CASES = [r for r in ROWS if not OPS[r.op].loss and not r.training]


def test_every_op_exports_or_is_listed_with_a_reason():
    missing = sorted(n for n, op in OPS.items() if "onnx" not in op.rules and n not in NOT_EXPORTED)
    assert not missing, f"ops with neither an ONNX exporter nor a NOT_EXPORTED reason: {missing}"
    both = sorted(n for n in NOT_EXPORTED if n in OPS and "onnx" in OPS[n].rules)
    assert not both, f"ops listed as not exported that have an exporter: {both}"
    assert all(n in OPS for n in NOT_EXPORTED), "NOT_EXPORTED names an op that does not exist"
    assert all(len(reason) > 20 for reason in NOT_EXPORTED.values())


def test_every_exportable_op_has_a_case():
    exportable = {n for n, op in OPS.items() if "onnx" in op.rules}
    missing = sorted(exportable - {r.op for r in CASES})
    assert not missing, f"exportable ops without an inference-mode row in tests/op_cases.py: {missing}"


def _f32(v):
    return v.astype(np.float32) if v.dtype.kind == "f" else v


@pytest.mark.parametrize("r", CASES, ids=lambda r: r.key)
def test_op_exports_and_matches_the_reference(r):
    c = case(r)
    params = {f"y.{n}": _f32(v) for n, v in c.params.items() if v is not None}
    m = to_onnx(c.graph, params)  # checker (full) and strict shape inference run here
    assert [n.name for n in m.graph.node if not n.name.startswith(("y/", "output/"))] == ["y"]
    got = run_onnx(m, {k: _f32(v) for k, v in c.batch.items()})
    want = c.reference(cast=np.float32)
    for out, (_, port) in c.graph.outputs.items():
        result = compare(out, got[out], np.reshape(want[port], got[out].shape))
        assert result.ok, result


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
def test_the_pointwise_rule_exporter_matches_the_reference(op, monkeypatch):
    """Every op with a scalar rule also exports from the rule alone (what a new elementwise
    op without a hand-written exporter gets), on its op-table rows."""
    from graphc.export.pointwise import export_pointwise

    rows = [r for r in CASES if r.op == op]
    assert rows, f"`{op}` has no row in tests/op_cases.py"
    monkeypatch.setitem(OPS[op].rules, "onnx", export_pointwise)
    for r in rows:
        test_op_exports_and_matches_the_reference(r)
