"""Static shape inference: a TensorType on every edge, parameter shapes, FLOP counts.

Runs each op's shape rule in topological order. A failed node is remembered and its
consumers are skipped, so one mistake yields one diagnostic, not a cascade.
"""

from __future__ import annotations

from graphc.diagnostics import Diagnostics
from graphc.ir import Graph, Node
from graphc.ops import OPS, ShapeError
from graphc.ops.registry import Ctx
from graphc.shapes import MAX_TERMS, expanded_terms, fmt_dim, is_integral, tensor
from graphc.spec.loader import paused_gc

# A tensor size is a product of its axes; multiplied out, symbolic sums multiply their terms
# (FLOPs, comparisons and `summary` expand them), so a size is refused past MAX_TERMS terms.
_TOO_BIG = f"a symbolic expression too large to work with (more than {MAX_TERMS} terms multiplied out)"
_TOO_BIG_HINT = "bind some dimensions to numbers (`--set H=32`, or numbers in the input shapes)"



def _clip(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:28]}…{text[-28:]}"


@paused_gc()
def infer(graph: Graph) -> list:
    diags = Diagnostics()
    for name in graph.order or list(graph.nodes):
        node = graph.nodes[name]
        if name in graph.failed:  # expansion already reported what is wrong with it
            continue
        if node.is_input:
            t = tensor(node.shape_spec, node.dtype)
            if expanded_terms(t.numel()) > MAX_TERMS:
                graph.failed.add(name)
                diags.error("GC104", f"input `{name}`: its size {_clip(fmt_dim(t.numel()))} is {_TOO_BIG}",
                            node.span, nodes=(name,), hint=_TOO_BIG_HINT)
                continue
            graph.types[(name, "out")] = t
            continue
        ctx = _context(graph, node, diags)
        if ctx is None:
            graph.failed.add(name)
            continue
        op = OPS[node.op]
        try:
            result = op.shape(ctx)
            outputs = result if isinstance(result, dict) else {node.outputs[0]: result}
            ctx.outputs = outputs
            for t in outputs.values():
                for i, d in enumerate(t.shape):
                    if is_integral(d) is False:
                        raise ShapeError(f"output axis {i} has size {fmt_dim(d)}, not a whole number")
                if expanded_terms(t.numel()) > MAX_TERMS:
                    raise ShapeError(f"the output's size is {_TOO_BIG}", hint=_TOO_BIG_HINT)
            params = op.params(ctx) if op.params else {}
            flops = op.flops(ctx) if op.flops else 0
        except ShapeError as exc:
            graph.failed.add(name)
            diags.error("GC204", f"node `{name}` ({node.op}): {exc}",
                        node.where(attr=exc.attr, port=exc.port), nodes=(name,), hint=exc.hint,
                        path=_path(node, exc))
            continue
        for port, t in outputs.items():
            graph.types[(name, port)] = t
        graph.params[name] = params
        graph.flops[name] = flops
    _check_losses(graph, diags)
    return diags.items


def _check_losses(graph: Graph, diags: Diagnostics) -> None:
    """Training seeds every loss with d(objective)/d(loss) = 1, so a loss must be a scalar."""
    for name, (node, port) in graph.losses.items():
        t = graph.types.get((node, port))
        if t is not None and t.rank != 0:
            diags.error("GC206", f"loss `{name}` must be a scalar, but `{node}` "
                        f"({graph.nodes[node].op}) is {t}", graph.output_spans.get(name),
                        path=f"losses.{name}", nodes=(node,),
                        hint="use a loss op (cross_entropy, mse, ...) or reduce it with `mean`/`sum` "
                             "(axis: null)")


def _context(graph: Graph, node: Node, diags: Diagnostics) -> Ctx | None:
    op = OPS[node.op]
    inputs: dict = {}
    for port in op.inputs:
        bound = node.port_inputs(port.name)
        types = []
        for inp in bound:
            t = graph.types.get(inp.tensor)
            if t is None:
                return None  # the producer failed; its own diagnostic says why
            if port.dtype == "float" and not t.is_float:
                diags.error("GC205", f"node `{node.name}` ({node.op}): input `{port.name}` must be a "
                            f"float tensor, found {t} from `{inp.ref}`", inp.span or node.span,
                            nodes=(node.name,),
                            hint="integer ids go through an `embedding` first" if t.dtype == "int64"
                            else None)
                return None
            if port.dtype == "int" and t.dtype != "int64":
                diags.error("GC205", f"node `{node.name}` ({node.op}): input `{port.name}` must hold "
                            f"integer class/token ids (int64), found {t} from `{inp.ref}`",
                            inp.span or node.span, nodes=(node.name,),
                            hint="declare the input with `dtype: int64`")
                return None
            types.append(t)
        if not types and not port.optional:
            return None  # a missing required input was reported by expansion
        inputs[port.name] = types if port.variadic else (types[0] if types else None)
    return Ctx(node.name, node.op, node.attrs, inputs)


def _path(node: Node, exc: ShapeError) -> str:
    return f"nodes.{node.name}" + (f".{exc.attr}" if exc.attr else "")
