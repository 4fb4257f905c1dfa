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
    """Run the compiler's autodiff (graphc.compiler.autodiff) and read back its backward plan.

    Each backward `Call` assigns one target per kernel input slot (variadic slots expanded),
    then one per kernel parameter, `_` where no gradient is kept; aligning the targets with
    the node's inputs the same way the reverse walk built them tells where gradients flow."""
    from graphc.compiler.autodiff import build  # imports the kernels: only for --backward
    from graphc.compiler.lowering import lower

    program = build(graph)
    flow = GradientFlow([], {}, [n for n, _ in graph.losses.values()
                                 if any(c.node == n for c in program.backward)])
    for call in program.backward:
        node = graph.nodes[call.node]
        first = graph.types.get(node.inputs[0].tensor) if node.inputs else None
        kernel = lower(node, first.rank if first else 0).kernel
        slots = []
        for port in kernel.inputs:
            bound = node.port_inputs(port)
            slots += bound if kernel.variadic else [bound[0] if bound else None]
        for inp, target in zip(slots, call.targets, strict=False):
            if inp is not None and target != "_":
                flow.edges.append((inp.src, node.name))
        param_targets = call.targets[len(slots):]
        trained = [p for p, t in zip(kernel.params, param_targets, strict=False) if t != "_"]
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
    for out_name, (node, _) in graph.losses.items():
        if node in gradients.seeds:
            dot.edge(layout.visible[node], f"loss/{out_name}", label=" ∂=1 ",
                     fontcolor=GRADIENT_COLOUR, **style)
