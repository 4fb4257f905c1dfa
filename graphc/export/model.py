"""A spec's inference graph as an ONNX model.

    to_onnx(graph, params) → onnx.ModelProto        (checked: full checker, strict shape inference)
    export_onnx(graph, params, "model.onnx")       (the same, then written atomically)

What is exported is the forward to the spec's outputs in inference mode (dropout is the
identity, batchnorm uses its running statistics): the graph pruned by
`graphc.compiler.prune.outputs_only`, so targets, loss masks and losses are not part of it.
Inputs keep their symbolic dims as named `dim_param`s (B, T), parameters are initializers
named `<node>.<param>` in PyTorch's layouts, ONNX node names are the spec's node names, and
`metadata_props` carry graphc's version and the spec's name and content hash.

Every op of the graph must export; the ones that cannot, and why, are collected and raised
together as one ExportError before anything is built into a file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy

from graphc.compiler.prune import outputs_only
from graphc.export.builder import ELEM, OPSET, Builder, Emit, OnnxNode, Unsupported
from graphc.ir import Graph
from graphc.ops import OPS

IR_VERSION = 8  # the IR version of opset 17: what older runtimes read

# Ops with no ONNX exporter, and why. Losses are training objectives: the exported model is
# the inference forward to the spec's outputs, which never contains them.
NOT_EXPORTED: dict[str, str] = {
    "cross_entropy": "a loss (training objective, needs targets): not part of the inference graph",
    "bce_with_logits": "a loss (training objective, needs targets): not part of the inference graph",
    "mse": "a loss (training objective, needs targets): not part of the inference graph",
    "hinge": "a loss (training objective, needs targets): not part of the inference graph",
    "kl_div": "a loss (training objective, needs a teacher): not part of the inference graph",
}


@dataclass(frozen=True)
class Problem:
    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"node `{self.node}` ({self.op}): {self.reason}"


class ExportError(Exception):
    """The graph cannot be exported; `problems` names every node at fault."""

    def __init__(self, problems: list[Problem], what: str = "cannot export to ONNX"):
        self.problems = problems
        super().__init__(f"{what}:\n" + "\n".join(f"  {p}" for p in problems))


def onnx_modules() -> None:
    """An ExportError saying how to install onnx, unless it is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError([], "ONNX export needs the `onnx` package: pip install 'graphc[onnx]'") from None


def unsupported(graph: Graph) -> list[Problem]:
    """The nodes whose op has no ONNX exporter (`graph` is the pruned inference graph)."""
    out = []
    for name in graph.order:
        node = graph.nodes[name]
        if not node.is_input and "onnx" not in OPS[node.op].rules:
            reason = NOT_EXPORTED.get(node.op, "this op has no ONNX exporter")
            out.append(Problem(name, node.op, reason))
    return out


def _check_params(graph: Graph, params: dict[str, np.ndarray]) -> list[Problem]:
    problems = []
    for node, defs in graph.params.items():
        for p, d in defs.items():
            value = params.get(f"{node}.{p}")
            if value is None:
                problems.append(Problem(node, graph.nodes[node].op, f"no value for parameter `{node}.{p}`"))
            elif tuple(np.shape(value)) != tuple(d.shape):
                problems.append(Problem(node, graph.nodes[node].op, f"parameter `{node}.{p}` has shape "
                                        f"{list(np.shape(value))}, the spec says {list(d.shape)}"))
    return problems


def build(graph: Graph, params: dict[str, np.ndarray], outputs=None) -> Builder:
    """Run every node's exporter into a Builder (no onnx needed); ExportError lists all failures."""
    graph = outputs_only(graph, outputs)
    problems = unsupported(graph) + _check_params(graph, params)
    if problems:
        raise ExportError(problems)
    b = Builder(graph, params)
    for name in graph.order:
        node = graph.nodes[name]
        if node.is_input:
            continue
        e = Emit(b, node)
        try:
            result = OPS[node.op].rules["onnx"](e)
        except Unsupported as exc:
            problems.append(Problem(name, node.op, str(exc)))
            continue
        _finish(b, e, result)
    if problems:
        raise ExportError(problems)
    return b


def _finish(b: Builder, e: Emit, result) -> None:
    """Name the node's output tensors after the spec node, and its ONNX nodes."""
    node = e.node
    results = [result] if isinstance(result, str) else list(result)
    if len(results) != len(node.outputs):
        raise RuntimeError(f"the ONNX exporter of `{node.op}` returned {len(results)} tensors for "
                           f"{len(node.outputs)} outputs")
    producer = {t: rec for rec in e.emitted for t in rec.outputs}
    for port, t in zip(node.outputs, results, strict=True):
        canonical = node.name if len(node.outputs) == 1 else f"{node.name}.{port}"
        if canonical in b.taken:
            raise RuntimeError(f"ONNX tensor name `{canonical}` is used twice")
        b.taken.add(canonical)
        if t in producer:
            for rec in e.emitted:
                rec.outputs = [canonical if x == t else x for x in rec.outputs]
                rec.inputs = [canonical if x == t else x for x in rec.inputs]
            producer[canonical] = producer.pop(t)
        else:  # an input passed through, or a tensor of another node
            rec = OnnxNode("Identity", [t], [canonical], {})
            e.emitted.append(rec)
            producer[canonical] = rec
        b.tensors[(node.name, port)] = canonical
    main = producer[b.tensors[(node.name, node.outputs[0])]]
    counts: dict[str, int] = {}
    for rec in e.emitted:
        if rec is main:
            rec.name = node.name
        else:
            k = counts[rec.op_type] = counts.get(rec.op_type, 0) + 1
            rec.name = f"{node.name}/{rec.op_type}" + (f"_{k}" if k > 1 else "")
    b.nodes.extend(e.emitted)


def _dim(d):
    d = sympy.sympify(d)
    return int(d) if d.is_Integer else str(d)


def spec_hash(path: str | None) -> str | None:
    """sha256 (16 hex digits) of the spec file, as the runtime records it in checkpoints."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None
    except OSError:
        return None


def to_onnx(graph: Graph, params: dict[str, np.ndarray], *, outputs=None,
            metadata: dict[str, str] | None = None, check: bool = True):
    """The ONNX model of `graph`'s inference forward with these parameters (checked unless
    `check=False`). ExportError names every node that cannot be exported."""
    onnx_modules()
    from onnx import helper, numpy_helper

    import graphc

    b = build(graph, params, outputs)
    g = b.graph
    nodes = [helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, **n.attrs) for n in b.nodes]
    out_nodes, outs = [], []
    for out, (node, port) in g.outputs.items():
        tensor = b.tensors[(node, port)]
        if out != tensor:
            if out in b.taken:
                raise ExportError([Problem(node, g.nodes[node].op, f"output name `{out}` is also the "
                                           "name of another tensor")])
            out_nodes.append(helper.make_node("Identity", [tensor], [out], name=f"output/{out}"))
        t = g.types[(node, port)]
        outs.append(helper.make_tensor_value_info(out, ELEM[t.dtype], [_dim(d) for d in t.shape]))
    inputs = [helper.make_tensor_value_info(n.name, ELEM[n.dtype], [_dim(d) for d in n.shape_spec])
              for n in g.inputs]
    inits = [numpy_helper.from_array(np.array(v, order="C"), name) for name, v in b.initializers.items()]
    body = helper.make_graph(nodes + out_nodes, g.name, inputs, outs, initializer=inits,
                             doc_string=g.doc or "")
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="graphc", producer_version=graphc.__version__,
                              doc_string=g.doc or "")
    model.ir_version = IR_VERSION
    meta = {"graphc.version": graphc.__version__, "graphc.spec": graph.name,
            "graphc.spec_file": Path(graph.file).name if graph.file else "",
            "graphc.spec_hash": spec_hash(graph.file) or "",
            "graphc.outputs": ",".join(g.outputs), "graphc.opset": str(OPSET)}
    helper.set_model_props(model, {**meta, **(metadata or {})})
    if check:
        check_model(model)
    return model


def check_model(model) -> None:
    """onnx's full checker and strict shape inference; a failure is a graphc bug (GC900-style)."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - reported with what onnx said
        raise ExportError([], f"internal error: the exported model fails onnx's checks "
                              f"({type(exc).__name__}: {exc}); this is a graphc bug") from None


def export_onnx(graph: Graph, params: dict[str, np.ndarray], path: str | Path, **kw):
    """`to_onnx`, then written to `path` atomically (nothing is written if export fails)."""
    import onnx

    model = to_onnx(graph, params, **kw)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return model
