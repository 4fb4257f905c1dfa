"""What is drawn where: which nodes get a box, which cluster (block instance) holds them, and
the ×N folding of repeated blocks — repetition k>0 of a block is drawn as repetition 0, its
parameters counted into the folded cluster. Pure facts over the IR; nothing here draws."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc.ir import BlockFrame, Graph, Node


@dataclass
class RenderOptions:
    expand: bool = False  # draw every repetition of a repeated block instead of folding
    direction: str = "TB"
    shapes: bool = True  # label edges with their symbolic shapes


@dataclass
class Cluster:
    """One block instance (or, folded, all repetitions of one) drawn as a Graphviz cluster."""

    key: str  # the instance path as drawn, e.g. "decoder.0"
    frame: BlockFrame
    nodes: list[str] = field(default_factory=list)
    children: dict[str, Cluster] = field(default_factory=dict)
    params: int = 0  # over every repetition it stands for


def _fold_path(node: Node) -> tuple[str, list[str]]:
    """The node that stands for `node` when repeats are folded, and its drawn cluster keys.

    A node in repetition k>0 of a repeated block is drawn as the same node of repetition 0:
    the names differ only in the repetition index in each enclosing frame's path."""
    name, delta, keys = node.name, 0, []
    for frame in node.scope:  # outermost first; inner paths extend outer ones
        cut = len(frame.path) + delta
        prefix = name[:cut]
        if frame.index:  # repetition > 0: rewrite its index to 0
            folded = prefix[: len(prefix) - len(str(frame.index))] + "0"
            name, delta = folded + name[cut:], delta + len(folded) - len(prefix)
            prefix = folded
        keys.append(prefix)
    return name, keys


@dataclass
class Layout:
    """Which nodes are drawn, where (clusters), and what hidden nodes map to."""

    visible: dict[str, str]  # every node → the node drawn for it (itself unless folded away)
    stands_for: dict[str, list[str]]  # drawn node → the nodes it represents, in order
    clusters: dict[str, Cluster]  # top-level clusters by key
    top_nodes: list[str]  # drawn nodes outside any block


def plan_layout(graph: Graph, expand: bool) -> Layout:
    visible: dict[str, str] = {}
    stands_for: dict[str, list[str]] = {}
    clusters: dict[str, Cluster] = {}
    top: list[str] = []
    for name in _node_order(graph):
        node = graph.nodes[name]
        if expand:
            rep, keys = name, [f.path for f in node.scope]
        else:
            rep, keys = _fold_path(node)
            if rep not in graph.nodes:  # repetition 0 lacks it (expansion error): draw it as is
                rep, keys = name, [f.path for f in node.scope]
        visible[name] = rep
        stands_for.setdefault(rep, []).append(name)
        siblings, cluster = clusters, None
        for key, frame in zip(keys, node.scope, strict=True):
            cluster = siblings.setdefault(key, Cluster(key, frame))
            cluster.params += graph.param_count(name)
            siblings = cluster.children
        if rep == name:
            (cluster.nodes if cluster else top).append(name)
    return Layout(visible, stands_for, clusters, top)


def _node_order(graph: Graph) -> list[str]:
    """Topological when known (nicer cluster contents), else declaration order (broken specs)."""
    order = [n for n in graph.order if n in graph.nodes]
    return order + [n for n in graph.nodes if n not in set(order)]


def repetition_crossed(graph: Graph, layout: Layout, src: str, dst: str) -> str | None:
    """The drawn cluster of the repeated block whose repetition k feeds k+1 along src → dst
    (None when the edge stays within one repetition)."""
    a, b = graph.nodes[src].scope, graph.nodes[dst].scope
    for level, (fa, fb) in enumerate(zip(a, b, strict=False)):
        if fa.instance != fb.instance or fa.block != fb.block:
            return None
        if fa.index != fb.index:
            return graph.nodes[layout.visible[dst]].scope[level].path
    return None
