"""The graph IR: a networkx DiGraph over `Node`s that keep their source marks.

Nodes hold their own input bindings (port → producing node and output) so that multi-use of
one tensor (add(x, x)) and named ports survive; the DiGraph carries the structure that graph
algorithms need (topological order, cycles, reachability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from graphc.diagnostics import Span
from graphc.shapes import Dim, TensorType

INPUT = "input"  # pseudo-op of graph inputs


@dataclass(frozen=True)
class BlockFrame:
    """One level of block nesting a node was expanded from (for render clusters, lint)."""

    path: str  # instance prefix, e.g. "layers.1"
    instance: str  # instance name as written, e.g. "layers"
    block: str  # block definition name
    index: int | None  # repetition index when the instance has `repeat`
    repeat: int
    span: Span | None = None


@dataclass(frozen=True)
class Input:
    port: str
    src: str  # producing node
    src_port: str  # its output name
    span: Span | None = None
    ref: str = ""  # the reference as written in the spec

    @property
    def tensor(self) -> tuple[str, str]:
        return (self.src, self.src_port)


@dataclass
class Node:
    name: str
    op: str
    attrs: dict[str, Any]
    inputs: list[Input]
    outputs: tuple[str, ...] = ("out",)
    span: Span | None = None
    attr_spans: dict[str, Span] = field(default_factory=dict)
    in_span: Span | None = None
    scope: tuple[BlockFrame, ...] = ()
    lint: dict = field(default_factory=dict)
    doc: str = ""
    dtype: str = "float32"  # graph inputs only
    shape_spec: tuple = ()  # graph inputs only: the declared (possibly symbolic) shape
    tie: dict[str, str] = field(default_factory=dict)  # own param → `node.param` it shares (`tie:`)

    @property
    def is_input(self) -> bool:
        return self.op == INPUT

    def port_inputs(self, port: str) -> list[Input]:
        return [i for i in self.inputs if i.port == port]

    def where(self, attr: str | None = None, port: str | None = None) -> Span | None:
        if attr and attr in self.attr_spans:
            return self.attr_spans[attr]
        if port:
            for i in self.inputs:
                if i.port == port and i.span:
                    return i.span
            return self.in_span or self.span
        return self.span


@dataclass
class Graph:
    """A whole spec after expansion: nodes in declaration order plus named outputs and losses."""

    name: str
    file: str
    nodes: dict[str, Node]
    outputs: dict[str, tuple[str, str]]  # output name → (node, port)
    losses: dict[str, tuple[str, str]]
    constants: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, Any] = field(default_factory=dict)  # symbolic dims, name → sympy symbol
    train: dict = field(default_factory=dict)
    compile: dict = field(default_factory=dict)  # back-end options from the spec (`fuse`)
    doc: str = ""
    output_spans: dict[str, Span] = field(default_factory=dict)
    # filled by inference:
    types: dict[tuple[str, str], TensorType] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)  # node → {param name: ParamDef}
    flops: dict[str, Dim] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # topological order once validated
    failed: set[str] = field(default_factory=set)  # nodes whose shape rule failed
    # parameter sharing (`tie:`), once checked after inference: `node.param` → the `node.param`
    # it uses instead of its own (which is then not in `params`, so it counts once)
    ties: dict[str, str] = field(default_factory=dict)

    def digraph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self.nodes.values():
            g.add_node(n.name)
            for i in n.inputs:
                if i.src in self.nodes:
                    g.add_edge(i.src, n.name)
        return g

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_input]

    def out_type(self, node: str, port: str = "out") -> TensorType | None:
        return self.types.get((node, port))

    def param_count(self, node: str | None = None, trainable_only: bool = False) -> int:
        names = [node] if node else list(self.params)
        return sum(p.size for n in names for p in self.params.get(n, {}).values()
                   if p.trainable or not trainable_only)
