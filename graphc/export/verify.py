"""Check an ONNX export against graphc: run it in onnxruntime on a synthetic batch whose sizes
differ from the training batch, and compare every output with `CompiledModel.predict`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.export.model import ExportError

DIMS = {"B": 3, "T": 5, "S": 4, "N": 5}  # small, and unlike any training batch of the specs
RTOL = 1e-4


@dataclass
class Comparison:
    output: str
    shape: tuple
    max_abs: float  # largest |onnx - graphc|
    max_rel: float  # largest |onnx - graphc| / (|graphc| + atol)
    ok: bool


def verify_dims(model, dims: dict[str, int] | None = None) -> dict[str, int]:
    """DIMS with the caller's values; B moved off the training batch size if they coincide."""
    out = {**DIMS, **(dims or {})}
    batch = (model.train or {}).get("batch")
    if not dims or "B" not in dims:
        while out["B"] == batch:
            out["B"] += 1
    return out


def _session(onnx_model):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError([], "--verify needs onnxruntime: pip install 'graphc[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # a small check; leave the cores to others
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_onnx(onnx_model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX model in onnxruntime (CPU, one thread); its inputs are taken from `inputs`
    (float32 or int64, as the model declares them)."""
    session = _session(onnx_model)
    feeds = {i.name: np.ascontiguousarray(inputs[i.name], np.int64 if "int64" in i.type else np.float32)
             for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def compare(name: str, got, want, rtol: float = RTOL) -> Comparison:
    """Whether `got` (onnxruntime) equals `want` (graphc): every element within `rtol` of
    graphc's value, relative to max(|value|, 1% of max|output|), so the elements near zero of
    an output compare at 1% of its scale."""
    a, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if a.shape != w.shape:
        return Comparison(name, a.shape, float("inf"), float("inf"), False)
    if not w.size:
        return Comparison(name, w.shape, 0.0, 0.0, True)
    same = a == w  # equal infinities (causal_mask's -inf) compare as equal, not as inf - inf
    finite_w = np.isfinite(w)
    floor = max(1e-2 * float(np.max(np.abs(w[finite_w]))), 1e-12) if finite_w.any() else 1e-12
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - w))
        max_rel = float(np.max(diff / np.maximum(np.abs(w), floor)))
    return Comparison(name, w.shape, float(diff.max()), max_rel,
                      bool(np.all(np.isfinite(a) | same) and max_rel <= rtol))


def verify(model, params: dict[str, np.ndarray], onnx_model=None, *, dims: dict[str, int] | None = None,
           seed: int = 0, rtol: float = RTOL) -> list[Comparison]:
    """Compare onnxruntime's outputs with graphc's forward (float32) on a synthetic batch of
    sizes `verify_dims` (B unlike the training batch), one Comparison per output.
    `onnx_model` defaults to a fresh export of `model` with `params`."""
    from graphc.compiler.checks import synthetic_batch
    from graphc.export.model import to_onnx

    if onnx_model is None:
        onnx_model = to_onnx(model.graph, params)
    names = [o.name for o in onnx_model.graph.output]
    inference = model.inference_model([n for n in names if n in model.outputs])
    batch = synthetic_batch(inference, verify_dims(model, dims), seed)
    got = run_onnx(onnx_model, batch)
    want = model.predict(params, batch, outputs=inference.outputs)
    return [compare(name, got[name], want[name], rtol) for name in inference.outputs]
