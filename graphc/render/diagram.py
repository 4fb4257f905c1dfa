"""The Graphviz graph of an analysed spec: the nodes (inputs, ops with their key attributes and
parameter counts, hover text with everything else; an output or a loss is framed on the node
that computes it), the edges labelled with inferred shapes, the clusters of block instances (a
folded stack marked ×N, with one dashed loop-back edge), the error marks, and the title that
carries the legend. `layout` decides what goes where; this
module only draws it."""

from __future__ import annotations

import textwrap

import graphviz

from graphc.diagnostics import summary_line
from graphc.ops import OPS
from graphc.pipeline import Analysis
from graphc.render.backward import GradientFlow, draw_gradient_edges
from graphc.render.labels import (
    _declared_shape,
    _h,
    _rows,
    _short_name,
    _small,
    _variants,
    key_attributes,
    tooltip,
)
from graphc.render.layout import Cluster, RenderOptions, _node_order, plan_layout, repetition_crossed
from graphc.render.marks import _marks
from graphc.render.style import (
    ERROR_COLOUR,
    FAMILY_COLOURS,
    FONT,
    GRADIENT_COLOUR,
    INPUT_FILL,
    INPUT_TEXT,
    LOSS_COLOUR,
    MUTED,
    OUTPUT_COLOUR,
    REPEAT_COLOUR,
    REPEAT_EDGE,
    TIE_COLOUR,
    UNKNOWN_COLOURS,
    legend,
)
from graphc.shapes import fmt_shape


class DiagramBuilder:
    """Turns an analysed graph into a `graphviz.Digraph`."""

    def __init__(self, analysis: Analysis, options: RenderOptions,
                 gradients: GradientFlow | None = None):
        self.analysis, self.graph, self.options = analysis, analysis.graph, options
        self.gradients = gradients
        self.layout = plan_layout(self.graph, options.expand)
        self.marks = _marks(analysis, self.layout)
        self.families: set[str] = set()
        self.missing: set[str] = set()  # referenced but never defined (spec errors)
        self.ends = self._ends()  # drawn node → the outputs and losses it produces
        self.dot = graphviz.Digraph(self.graph.name or "graph")

    def build(self) -> graphviz.Digraph:
        dot = self.dot
        dot.attr(rankdir=self.options.direction, fontname=FONT, nodesep="0.35", ranksep="0.4",
                 labelloc="t", labeljust="c", fontsize="18", newrank="true", bgcolor="white")
        dot.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="11",
                 margin="0.14,0.06", penwidth="1.3")
        dot.attr("edge", fontname=FONT, fontsize="9", fontcolor=MUTED, color="#78909C",
                 arrowsize="0.7")
        for name in self.layout.top_nodes:
            self._node(dot, name, None)
        for cluster in self.layout.clusters.values():
            self._cluster(dot, cluster)
        self._edges()
        self._ties()
        if self.gradients is not None:
            draw_gradient_edges(dot, self.graph, self.layout, self.gradients, self.options.expand)
            self.families.add("gradient")
        for name in sorted(self.missing):
            dot.node(name, _rows(f"<b>{_h(name)}</b>", _small("not defined", ERROR_COLOUR)),
                     fillcolor="#FFFFFF", color=ERROR_COLOUR, style="rounded,dashed", penwidth="2")
        # the legend rides in the title: a free-standing legend node would stretch a rank
        dot.attr(label=self._title_and_legend())
        return dot

    def _title_and_legend(self) -> str:
        g = self.graph
        params = g.param_count(trainable_only=True)
        sub = f"{len(g.nodes)} nodes" + (f" · {params:,} parameters" if g.params else "")
        errors = self.analysis.errors
        if errors:
            sub += f' · <font color="{ERROR_COLOUR}">{_h(summary_line(errors))}</font>'
        rows = [f'<font point-size="18"><b>{_h(g.name)}</b></font>',
                f'<font point-size="11" color="{MUTED}">{sub}</font>']
        for message in self.marks.unplaced[:3]:  # errors no drawn node can show
            text = textwrap.shorten(message, 100, placeholder="…")
            rows.append(f'<font point-size="10" color="{ERROR_COLOUR}">✗ {_h(text)}</font>')
        if len(self.marks.unplaced) > 3:
            rows.append(_small(f"… and {len(self.marks.unplaced) - 3} more (see the diagnostics)",
                               ERROR_COLOUR, 10))
        rows.append(legend(self.families))
        cells = "".join(f"<tr><td>{r}</td></tr>" for r in rows) + '<tr><td height="6"></td></tr>'
        return f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="0">{cells}</table>>'

    def _cluster(self, parent: graphviz.Digraph, cluster: Cluster) -> None:
        frame = cluster.frame
        folded = not self.options.expand and frame.repeat > 1
        if folded:  # the ×N badge is the point of folding: make it the first thing one reads
            head = (f'<b>{_h(frame.instance)}</b>  <font point-size="15" color="{REPEAT_COLOUR}">'
                    f"<b>×{frame.repeat}</b></font>")
        elif frame.index is not None:
            head = f"<b>{_h(cluster.key)}</b>  ({frame.index + 1} of {frame.repeat})"
        else:
            head = f"<b>{_h(cluster.key)}</b>"
        info = f"block {_h(frame.block)}"
        if cluster.params:
            info += f" · {cluster.params:,} params" + (" in all" if folded else "")
        label = ('<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
                 f'<tr><td align="left">{head}</td></tr>'
                 f'<tr><td align="left"><font point-size="9" color="{MUTED}">{info}</font>'
                 "</td></tr></table>>")
        # a folded stack gets a heavier frame: it stands for N copies, not one
        style = {"style": "rounded,bold", "penwidth": "2.2"} if folded else {"style": "rounded"}
        with parent.subgraph(name=f"cluster_{cluster.key}") as sub:
            sub.attr(label=label, fontsize="12", color="#90A4AE", bgcolor="#FAFBFC", margin="12",
                     labeljust="l", **style)
            for name in cluster.nodes:
                self._node(sub, name, cluster.key)
            for child in cluster.children.values():
                self._cluster(sub, child)

    def _node(self, dot: graphviz.Digraph, name: str, cluster_key: str | None) -> None:
        node = self.graph.nodes[name]
        g = self.graph
        if node.is_input:
            t = g.out_type(name)
            declared = t.shape if t else _declared_shape(node)  # inference may not have run
            shape = fmt_shape(declared) if declared is not None else "?"
            dtype = t.dtype if t else node.dtype
            label = _rows(f'<font color="{INPUT_TEXT}"><b>{_h(name)}</b></font>',
                          _small(f"input · {_h(shape)} · {_h(dtype)}", "#CFD8DC"))
            dot.node(name, label, fillcolor=INPUT_FILL, color=INPUT_FILL, shape="box",
                     style="rounded,filled", tooltip=tooltip(g, name))
            self.families.add("input")
            return
        if node.op == "constant" and name not in self.marks.errors:  # a number: drawn as its value
            dot.node(name, _h(_constant_text(node)), shape="plaintext", style="", fontsize="10",
                     fontcolor="#263238", margin="0.02", tooltip=tooltip(g, name))
            return
        op = OPS.get(node.op)
        family = op.family if op else None
        fill, border = FAMILY_COLOURS.get(family, UNKNOWN_COLOURS)
        if family:
            self.families.add(family)
        attrs = " ".join(key_attributes(node))
        rows = [f"<b>{_h(_short_name(name, cluster_key))}</b>",
                _small(f"{_h(node.op)}" + (f"  {_h(attrs)}" if attrs else ""), "#263238", 10),
                _small(self._param_text(name), MUTED)]
        if self.gradients is not None and name in self.gradients.params:
            trained = self.gradients.params[name]
            listed = ", ".join(trained if len(trained) <= 4 else [*trained[:3], f"… ({len(trained)})"])
            rows.append(_small(f"∇ {_h(listed)}", GRADIENT_COLOUR))
        extra: dict[str, str] = {}
        rows += self._end_rows(name)
        if self.ends.get(name):  # an output or a loss: a double frame in its colour
            is_loss = any(end[0] == "loss" for end in self.ends[name])
            extra = {"color": LOSS_COLOUR if is_loss else OUTPUT_COLOUR, "peripheries": "2",
                     "penwidth": "1.5"}
        if name in self.marks.errors:
            message = textwrap.shorten(self.marks.errors[name], 110, placeholder="…")
            lines = textwrap.wrap(message, 42)[:3]
            rows.append(_small("<br/>".join(f"✗ {_h(lines[0])}" if i == 0 else _h(line)
                                            for i, line in enumerate(lines)), ERROR_COLOUR))
            extra = {"color": ERROR_COLOUR, "penwidth": "3"}
            self.families.add("error")
        elif name in self.marks.shapeless:
            rows.append(_small("shape unknown (upstream error)", MUTED))
            extra = {"style": "rounded,filled,dashed"}
        tip = tooltip(g, name, len(self.layout.stands_for.get(name, [name])))
        dot.node(name, _rows(*rows), **{"fillcolor": fill, "color": border, "tooltip": tip, **extra})

    def _ends(self) -> dict[str, list[tuple[str, str, str, str]]]:
        """Which drawn node carries each named output and loss: (kind, name, node, port)."""
        ends: dict[str, list[tuple[str, str, str, str]]] = {}
        for kind, named in (("output", self.graph.outputs), ("loss", self.graph.losses)):
            for out_name, (src, port) in named.items():
                if src in self.graph.nodes:
                    ends.setdefault(self.layout.visible[src], []).append((kind, out_name, src, port))
        return ends

    def _end_rows(self, name: str) -> list[str]:
        """`output · B×10` or `loss d_real, minimized · scalar` under a node that is one."""
        rows = []
        for kind, out_name, src, port in self.ends.get(name, []):
            t = self.graph.out_type(src, port)
            shape = f" · {fmt_shape(t.shape)}" if t else ""
            named = "" if out_name == name.rsplit(".", 1)[-1] and port == "out" else f" {out_name}"
            if kind == "output":
                rows.append(_small(f"<b>output{_h(named)}</b>{_h(shape)}", OUTPUT_COLOUR, 10))
                self.families.add("output")
            else:
                rows.append(_small(f"<b>loss{_h(named)}</b>, minimized{_h(shape)}", LOSS_COLOUR, 10))
                self.families.add("loss_terminal")
            if kind == "loss" and self.gradients is not None and src in self.gradients.seeds:
                rows.append(_small("∂ = 1: the backward pass starts here", GRADIENT_COLOUR))
        return rows

    def _param_text(self, name: str) -> str:
        counts = [self.graph.param_count(n) for n in self.layout.stands_for.get(name, [name])]
        shared = [f"{_h(full.rsplit('.', 1)[1])} = {_h(owner)}" for full, owner in self.graph.ties.items()
                  if full.rsplit(".", 1)[0] == name]  # counted at its owner
        own = _variants([f"{c:,}" for c in counts]) + " params" if any(counts) else ""
        return " · ".join(t for t in (own, *shared) if t)

    def _ties(self) -> None:
        """One dashed line from the node that owns a shared parameter to each other user."""
        drawn = set()
        for full, owner in self.graph.ties.items():
            src = self.layout.visible.get(owner.rsplit(".", 1)[0])
            dst = self.layout.visible.get(full.rsplit(".", 1)[0])
            if src is None or dst is None or (src, dst) in drawn:
                continue
            drawn.add((src, dst))
            self.dot.edge(src, dst, label=f" shares {owner.rsplit('.', 1)[1]} ", style="dashed",
                          color=TIE_COLOUR, fontcolor=TIE_COLOUR, constraint="false", arrowhead="none",
                          tooltip=f"{full} is {owner}: one parameter used twice")

    def _edge_label(self, src: str, port: str) -> str:
        if not self.options.shapes:
            return ""
        t = self.graph.out_type(src, port)
        text = fmt_shape(t.shape) if t else "?"
        node = self.graph.nodes.get(src)
        if node is not None and len(node.outputs) > 1:
            text = f"{port}: {text}"
        return text

    def _edges(self) -> None:
        g, visible = self.graph, self.layout.visible
        labels: dict[tuple, list[str]] = {}  # drawn edge → its shape in each repetition
        folded_back: dict[str, tuple[str, str, str]] = {}  # stack → first (dst order, src, dst)
        for name in _node_order(g):
            node, dst = g.nodes[name], visible[name]
            for inp in node.inputs:
                if inp.src not in g.nodes:
                    self.missing.add(inp.src)
                    self.dot.edge(inp.src, dst, color=ERROR_COLOUR, style="dashed")
                    continue
                src = visible[inp.src]
                if g.nodes[inp.src].op == "constant":  # the number speaks for itself: no shape
                    labels.setdefault((src, inp.src_port, dst, inp.port), []).append("")
                    continue
                stack = None if self.options.expand else repetition_crossed(g, self.layout, inp.src, name)
                if stack is not None:  # repetition k's output feeding k+1: drawn as the ×N loop
                    folded_back.setdefault(stack, (name, src, dst))
                    continue
                key = (src, inp.src_port, dst, inp.port)
                labels.setdefault(key, []).append(self._edge_label(inp.src, inp.src_port))
        for (src, _, dst, _), shapes in labels.items():
            label = _variants([s.strip() for s in shapes])
            self.dot.edge(src, dst, label=f" {label} " if label else "")  # spaces: off the line
        # One dashed loop-back per folded stack says "and again, N times" without a wall of edges.
        for (_, src, dst) in sorted(folded_back.values()):
            self.dot.edge(src, dst, style="dashed", color=REPEAT_EDGE, constraint="false",
                          arrowhead="empty", tooltip="output of one repetition feeds the next")
            self.families.add("repeat")


def _constant_text(node) -> str:
    if node.doc:  # a literal from `in:`, as written (`1 / sqrt(d)` says more than 0.353553)
        return node.doc if len(node.doc) <= 24 else node.doc[:23] + "…"
    value = node.attrs.get("value")
    if isinstance(value, tuple):
        text = "[" + ", ".join(f"{v:g}" for v in value[:4]) + (", …" if len(value) > 4 else "") + "]"
    else:
        text = f"{value:g}" if isinstance(value, float) else str(value)
    shape = node.attrs.get("shape") or ()
    return text if not shape or isinstance(value, tuple) else f"{text} × {'×'.join(map(str, shape))}"


def build_diagram(analysis: Analysis, options: RenderOptions | None = None,
                  gradients: GradientFlow | None = None) -> graphviz.Digraph:
    """The Graphviz graph of an analysed spec (partial graphs included)."""
    return DiagramBuilder(analysis, options or RenderOptions(), gradients).build()

