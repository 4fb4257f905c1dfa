"""The inference graph: a spec's graph pruned to the nodes its outputs are computed from.

`outputs_only(graph)` keeps the ancestors of the chosen outputs and drops the losses, so the
usual back end (autodiff → plan → codegen) builds a forward that needs only the inputs those
outputs read (no targets, loss masks or a loss's generated inputs) and an empty backward.
`CompiledModel.predict` and the ONNX exporter both start from it.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import sympy

from graphc.ir import Graph
from graphc.ops import OPS
from graphc.ops.registry import RuntimeShape


def outputs_only(graph: Graph, outputs: list[str] | tuple[str, ...] | None = None) -> Graph:
    """`graph` restricted to what `outputs` (default: all of the spec's outputs) depend on,
    without losses. Inputs that only bind a dimension a kept node's shape attribute uses
    (reshape to `[B, -1]`) are kept too."""
    names = list(graph.outputs) if outputs is None else list(outputs)
    unknown = [o for o in names if o not in graph.outputs]
    if unknown:
        raise KeyError(f"no output named {', '.join(unknown)}; the spec's outputs are "
                       f"{', '.join(graph.outputs) or 'none'}")
    if not names:
        raise ValueError(f"spec `{graph.name}` declares no outputs to compute")
    g = graph.digraph()
    keep: set[str] = set()
    for out in names:
        node = graph.outputs[out][0]
        keep |= {node} | nx.ancestors(g, node)
    keep |= _dim_binders(graph, keep)
    order = [n for n in graph.order if n in keep]
    return replace(
        graph,
        nodes={n: node for n, node in graph.nodes.items() if n in keep},
        outputs={o: graph.outputs[o] for o in names},
        losses={},
        output_spans={o: s for o, s in graph.output_spans.items() if o in names},
        types={k: t for k, t in graph.types.items() if k[0] in keep},
        params={n: p for n, p in graph.params.items() if n in keep},
        flops={n: f for n, f in graph.flops.items() if n in keep},
        order=order,
        failed=set(),
    )


def _dim_binders(graph: Graph, keep: set[str]) -> set[str]:
    """Inputs outside `keep` that are the only source of a dim some kept node evaluates."""
    bound = {str(s) for n in keep if graph.nodes[n].is_input for d in graph.nodes[n].shape_spec
             for s in sympy.sympify(d).free_symbols}
    needed: set[str] = set()
    for name in keep:
        node = graph.nodes[name]
        if node.is_input:
            continue
        first = graph.types.get(node.inputs[0].tensor) if node.inputs else None
        for value in OPS[node.op].lower(dict(node.attrs), first.rank if first else 0).values():
            if isinstance(value, RuntimeShape):
                needed |= {str(s) for d in value.dims for s in sympy.sympify(d).free_symbols}
    extra = set()
    for dim in sorted(needed - bound):
        binder = next((n for n in graph.inputs if any(
            dim in {str(s) for s in sympy.sympify(d).free_symbols} for d in n.shape_spec)), None)
        if binder is not None:
            extra.add(binder.name)
    return extra

