"""Export graphc models to ONNX (opset 17), and check the export against graphc's forward.

    from graphc.export import export_onnx, verify
    export_onnx(analysis.graph, params, "model.onnx")
    report = verify(compiled_model, params)   # onnxruntime vs model.predict on a fresh batch

Each op's exporter is one registration on its op record, `graphc.ops.register(op, "onnx")`,
kept in the module of its family here (dense, elementwise, conv, norm, attention, recurrent,
sampling, shape; any other op with a scalar `Pointwise` rule exports from that rule, see
`pointwise`); importing this package registers them all. `onnx` and `onnxruntime` (the
`[onnx]` extra) are imported only when a model is built or run, so `graphc check` and the base
install never need them. The ops that do not export, and why, are `NOT_EXPORTED`.
"""

from graphc.export import (  # noqa: F401  (imported for their registrations)
    activations,
    attention,
    conv,
    dense,
    elementwise,
    norm,
    position,
    recurrent,
    sampling,
    shape,
    source,
)
from graphc.export.builder import OPSET, Emit, Unsupported
from graphc.export.model import NOT_EXPORTED, ExportError, Problem, build, export_onnx, to_onnx, unsupported
from graphc.export.pointwise import export_pointwise
from graphc.export.verify import Comparison, compare, run_onnx, verify, verify_dims
from graphc.ops import OPS, register

# an elementwise op with a scalar rule and no hand-written exporter exports from its rule
for _op in OPS.values():
    if getattr(_op, "pointwise", None) is not None and "onnx" not in _op.rules:
        register(_op.name, "onnx")(export_pointwise)

__all__ = ["NOT_EXPORTED", "OPSET", "Comparison", "Emit", "ExportError", "Problem", "Unsupported", "build",
           "compare", "export_onnx", "run_onnx", "to_onnx", "unsupported", "verify", "verify_dims"]
