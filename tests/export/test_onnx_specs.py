"""Every reference spec and example exports to ONNX and runs in onnxruntime with graphc's
outputs (float32, rtol 1e-4) on a batch of other sizes than the training batch (random
initial parameters: the check is of the graph, not of training)."""

from __future__ import annotations

import numpy as np
import pytest

from graphc.compiler import compile_spec
from graphc.export import export_onnx, verify
from graphc.export.verify import DIMS, verify_dims
from tests.conftest import REFERENCE_SPECS, ROOT

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# Every reference spec and example exports (the README says so); a spec that cannot must fail here.


@pytest.mark.parametrize("spec", REFERENCE_SPECS + EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_export_runs_in_onnxruntime_with_graphcs_outputs(spec, tmp_path):
    model = compile_spec(spec)
    params = model.init_params(0)
    path = tmp_path / "model.onnx"
    export_onnx(model.graph, params, path)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    assert m.opset_import[0].version >= 17
    # metadata: graphc's version, the spec's name and content hash
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["graphc.spec"] == model.name and len(meta["graphc.spec_hash"]) == 16
    # parameters are initializers named <node>.<param>; node names are the spec's node names
    inits = {t.name for t in m.graph.initializer}
    inference = model.inference_model()
    assert set(inference.params) <= inits
    named = {n.name for n in m.graph.node}
    assert {n for n in inference.graph.order if not inference.graph.nodes[n].is_input} <= named
    # only the inputs the outputs read, with their symbolic dims as dim_params
    assert [i.name for i in m.graph.input] == list(inference.inputs)
    for i in m.graph.input:
        dims = [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        assert dims == list(inference.inputs[i.name].shape)
    sizes = verify_dims(model)
    assert sizes["B"] != (model.train or {}).get("batch")
    rows = verify(model, params, m)
    assert [r.output for r in rows] == model.outputs
    assert all(r.ok for r in rows), rows


def test_verify_batch_sizes_differ_from_training():
    class M:
        train = {"batch": DIMS["B"]}

    assert verify_dims(M())["B"] != DIMS["B"]
    assert verify_dims(M(), {"B": 7})["B"] == 7


def test_nothing_is_written_when_a_node_cannot_export(tmp_path, monkeypatch):
    from graphc.export import ExportError
    from graphc.ops import OPS

    model = compile_spec(ROOT / "specs" / "cnn.yaml")
    monkeypatch.delitem(OPS["maxpool2d"].rules, "onnx")
    path = tmp_path / "cnn.onnx"
    with pytest.raises(ExportError) as err:
        export_onnx(model.graph, model.init_params(0), path)
    assert "node `pool1` (maxpool2d): this op has no ONNX exporter" in str(err.value)
    assert "node `pool2` (maxpool2d)" in str(err.value)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_missing_or_misshapen_parameters_are_named(tmp_path):
    from graphc.export import ExportError

    model = compile_spec(ROOT / "specs" / "mlp.yaml")
    params = model.init_params(0)
    first, second = list(params)[:2]
    params[first] = np.zeros((1, 1), np.float32)
    del params[second]
    with pytest.raises(ExportError) as err:
        export_onnx(model.graph, params, tmp_path / "m.onnx")
    assert f"parameter `{first}` has shape [1, 1]" in str(err.value)
    assert f"no value for parameter `{second}`" in str(err.value)
