"""Structural validation of the graph with networkx: cycles, reachability, unused inputs.

Reference, name, attribute and port problems are found while expanding (where the source
marks are at hand); this pass looks at the graph as a whole.
"""

from __future__ import annotations

import networkx as nx

from graphc.diagnostics import Diagnostics
from graphc.ir import Graph
from graphc.spec.loader import paused_gc


def _cycles(g: nx.DiGraph, position: dict[str, int]) -> list[list[str]]:
    """One shortest cycle per strongly connected component, through its first-declared node.

    Not every simple cycle: a wrong `in:` inside a stack of residual blocks closes
    exponentially many of them, and listing them took minutes and gigabytes."""
    out = []
    for comp in nx.strongly_connected_components(g):
        start = min(comp, key=position.__getitem__)
        if len(comp) == 1 and not g.has_edge(start, start):
            continue
        parent = {start: None}
        frontier, found = [start], None
        while frontier and found is None:  # breadth first: the shortest way back to `start`
            nxt = []
            for u in frontier:
                for v in g.successors(u):
                    if v == start:
                        found = u
                        break
                    if v in comp and v not in parent:
                        parent[v] = u
                        nxt.append(v)
                if found is not None:
                    break
            frontier = nxt
        cycle = []
        while found is not None:
            cycle.append(found)
            found = parent[found]
        out.append(cycle[::-1])
    return sorted(out, key=lambda c: position[c[0]])


@paused_gc()
def validate(graph: Graph, after_errors: bool = False) -> list:
    """Cycles (errors), then reachability warnings — unless the passes before reported an error
    (`after_errors`): an unresolved output, loss or reference, or a node dropped for an unknown
    op, makes the nodes that fed it look dead, and warning about each of them would bury the one
    real problem. The warnings come back once the errors are fixed."""
    diags = Diagnostics()
    g = graph.digraph()
    position = {name: i for i, name in enumerate(graph.nodes)}  # declaration order
    try:  # one linear pass on the usual acyclic graph; cycles are searched only when there are some
        graph.order = list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
        cycles = []
    except nx.NetworkXUnfeasible:
        graph.order = []
        cycles = _cycles(g, position)
    reported = set()
    for cycle in cycles:
        key = frozenset(cycle)
        if key in reported:
            continue
        reported.add(key)
        start = min(range(len(cycle)), key=lambda i: position[cycle[i]])
        cycle = cycle[start:] + cycle[:start]  # report from the node declared first
        first = graph.nodes[cycle[0]]
        path = " → ".join(cycle + [cycle[0]])
        diags.error("GC203", f"the graph has a cycle: {path}", first.in_span or first.span,
                    nodes=tuple(cycle),
                    hint="a spec describes one forward pass; feed state back with a recurrent op "
                         "(rnn/lstm/gru) instead")
    if cycles:
        return diags.items
    if graph.failed or after_errors:  # broken references make live nodes look dead: no noise
        return diags.items
    sinks = {node for node, _ in list(graph.outputs.values()) + list(graph.losses.values())}
    live = set(sinks)
    for s in sinks:
        live |= nx.ancestors(g, s)
    for node in graph.nodes.values():
        if node.name in live or not sinks:
            continue
        if node.is_input:
            diags.warning("GC302", f"input `{node.name}` is never used by an output or loss",
                          node.span, nodes=(node.name,),
                          hint="remove it, or connect it to the nodes that should read it")
        elif not any(s in live for s in g.successors(node.name)):
            # report only the last dead node of a chain, not every node in it
            diags.warning("GC301", f"node `{node.name}` ({node.op}) reaches no output or loss",
                          node.span, nodes=(node.name,),
                          hint="list it under `outputs:`, feed it to a loss, or delete it")
    return diags.items
