"""Errors on the picture: which drawn node each diagnostic blames (folded nodes blame the node
drawn for them), which nodes lost their shape upstream, and the errors no node can carry."""

from __future__ import annotations

from dataclasses import dataclass

from graphc.diagnostics import Diagnostic
from graphc.ir import Graph, Node
from graphc.pipeline import Analysis
from graphc.render.layout import Layout


@dataclass
class _Marks:
    """Which nodes the diagnostics blame (with the first message), which lost their shape, and
    the errors no drawn node can carry (they go under the title, so the picture stays honest)."""

    errors: dict[str, str]
    shapeless: set[str]
    unplaced: list[str]


def _node_lines(node: Node) -> set[tuple[str, int]]:
    spans = [node.span, node.in_span, *node.attr_spans.values(), *(i.span for i in node.inputs)]
    return {(s.file, s.line) for s in spans if s is not None}


def blamed_nodes(diagnostic: Diagnostic, graph: Graph) -> list[str]:
    """The nodes a diagnostic is about: those it names, else those declared on the line it
    points at (expansion errors such as a missing attribute carry a span but no node names)."""
    named = [n for n in diagnostic.nodes if n in graph.nodes]
    if named or diagnostic.span is None:
        return named
    where = (diagnostic.span.file, diagnostic.span.line)
    return [n.name for n in graph.nodes.values() if where in _node_lines(n)]


def _marks(analysis: Analysis, layout: Layout) -> _Marks:
    graph = analysis.graph
    errors: dict[str, str] = {}
    unplaced: list[str] = []
    for d in analysis.errors:
        names = blamed_nodes(d, graph)
        if not names:
            line = f" (line {d.span.line})" if d.span else ""
            unplaced.append(f"{d.code}{line}: {d.message}")
        for name in names:  # blame the drawn node, even if it stands for a folded one
            shown = layout.visible.get(name, name)
            where = f" (in {name})" if shown != name else ""
            errors.setdefault(shown, f"{d.code}: {d.message}{where}")
    shapeless = {layout.visible.get(n, n) for n in graph.failed} - set(errors)
    return _Marks(errors, shapeless, unplaced)

