"""The backward view (`graphc render --backward`): where the compiler's reverse-mode autodiff
sends gradients, read back from its backward plan, and the dashed edges that draw it. Imports
the compiler (and so Numba's kernels) only when asked for."""

from __future__ import annotations

from dataclasses import dataclass

import graphviz

from graphc.ir import Graph
from graphc.render.layout import Layout, repetition_crossed
from graphc.render.style import GRADIENT_COLOUR


@dataclass
class GradientFlow:
    """What the compiler's reverse walk does, as facts to draw: which tensors receive a gradient
    from which node, and which parameters get one."""

    edges: list[tuple[str, str]]  # (producer, consumer): d(loss)/d(producer's output) from consumer
    params: dict[str, list[str]]  # node → its parameters that receive a gradient
    seeds: list[str]  # loss nodes where the walk starts (d loss / d loss = 1)


def gradient_flow(graph: Graph) -> GradientFlow:
    """Run the compiler's autodiff (graphc.compiler.autodiff) and read its backward calls:
    a call's results are one gradient per kernel input slot (variadic slots expanded), then
    one per parameter, `Drop` where none is kept."""
    from graphc.compiler.autodiff import build  # imports the compiler: only for --backward
    from graphc.compiler.calls import Drop, ParamGrad
    from graphc.ops import OPS

    program = build(graph)
    flow = GradientFlow([], {}, [n for n, _ in graph.losses.values()
                                 if any(c.node == n for c in program.backward)])
    for call in program.backward:
        node = graph.nodes[call.node]
        kernel = OPS[node.op].kernel
        slots = []
        for port in kernel.inputs:
            bound = node.port_inputs(port)
            slots += bound if kernel.variadic else [bound[0] if bound else None]
        for inp, result in zip(slots, call.results, strict=False):
            if inp is not None and not isinstance(result, Drop):
                flow.edges.append((inp.src, node.name))
        trained = [r.name.rsplit(".", 1)[1] for r in call.results if isinstance(r, ParamGrad)]
        if trained:
            flow.params[node.name] = trained
    return flow


def draw_gradient_edges(dot: graphviz.Digraph, graph: Graph, layout: Layout,
                        gradients: GradientFlow, expand: bool) -> None:
    """Gradients flow against the data: dashed edges drawn tail-first (dir=back) so they run
    beside their forward edge without changing the layout."""
    style = {"color": GRADIENT_COLOUR, "style": "dashed", "dir": "back", "arrowtail": "normal",
             "constraint": "false", "penwidth": "1.2"}
    drawn: set[tuple[str, str]] = set()
    for src, dst in gradients.edges:
        if not expand and repetition_crossed(graph, layout, src, dst):
            continue  # the folded loop-back already says "repeats"
        pair = (layout.visible[src], layout.visible[dst])
        if pair not in drawn:
            drawn.add(pair)
            dot.edge(*pair, tooltip=f"d loss / d {src}", **style)
    # where the walk starts (d loss / d loss = 1) is written on the loss node (diagram._end_rows)
